//! `fluxgate report`: the exporter's numbers and the janitor's candidates, computed offline from
//! `kubectl get gitrepositories -A -o json` with the same health model and rules.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::health::{self, Health, State};
use crate::janitor::{self, Rules};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("encoding the report: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("item {index} ({kind}) is not a GitRepository")]
    NotAGitRepository { index: usize, kind: String },
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FailedGroup {
    pub namespace: Option<String>,
    pub host: Option<String>,
    pub reason: Option<String>,
    pub count: usize,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Failing {
    pub namespace: String,
    pub name: String,
    pub host: String,
    pub reason: String,
    pub since: Option<String>,
    pub failing_seconds: Option<i64>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Waiting {
    pub namespace: String,
    pub name: String,
    pub waiting_seconds: Option<i64>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Candidate {
    pub namespace: String,
    pub name: String,
    pub rule: String,
    pub action: String,
    pub reason: String,
}

/// The whole report; `--output json` prints it as is.
#[derive(Debug, Serialize)]
pub struct Report {
    pub total: usize,
    pub ready: usize,
    pub failed: usize,
    pub pending: usize,
    pub suspended: usize,
    pub progressing: usize,
    pub unobserved: usize,
    pub failed_by_host_reason: Vec<FailedGroup>,
    pub failed_by_namespace: Vec<FailedGroup>,
    pub longest_failing: Vec<Failing>,
    pub pending_repositories: Vec<Waiting>,
    pub janitor_candidates: Vec<Candidate>,
}

const LONGEST_FAILING: usize = 10;

/// Builds the report for these GitRepository objects as of `now`, with the janitor's default
/// rules.
pub fn build(objects: &[Value], now: OffsetDateTime) -> Result<Report, ReportError> {
    let mut healths = Vec::with_capacity(objects.len());
    for (index, object) in objects.iter().enumerate() {
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        if !kind.is_empty() && kind != "GitRepository" {
            return Err(ReportError::NotAGitRepository {
                index: index + 1,
                kind: kind.to_owned(),
            });
        }
        let health = health::classify(object).map_err(|_| ReportError::NotAGitRepository {
            index: index + 1,
            kind: "not an object".to_owned(),
        })?;
        healths.push(health);
    }

    let count = |state: State| healths.iter().filter(|h| h.state == state).count();
    let failed: Vec<&Health> = healths
        .iter()
        .filter(|h| h.state == State::Failed)
        .collect();
    let class_of = |h: &Health| h.failure.as_ref().map_or("other", |f| f.class.as_str());

    let mut by_host_reason: BTreeMap<(String, &str), usize> = BTreeMap::new();
    let mut by_namespace: BTreeMap<String, usize> = BTreeMap::new();
    for h in &failed {
        *by_host_reason
            .entry((h.host.clone(), class_of(h)))
            .or_default() += 1;
        *by_namespace.entry(h.namespace.clone()).or_default() += 1;
    }
    let mut failed_by_host_reason: Vec<FailedGroup> = by_host_reason
        .into_iter()
        .map(|((host, reason), count)| FailedGroup {
            namespace: None,
            host: Some(host),
            reason: Some(reason.to_owned()),
            count,
        })
        .collect();
    failed_by_host_reason.sort_by_key(|g| std::cmp::Reverse(g.count));
    let mut failed_by_namespace: Vec<FailedGroup> = by_namespace
        .into_iter()
        .map(|(namespace, count)| FailedGroup {
            namespace: Some(namespace),
            host: None,
            reason: None,
            count,
        })
        .collect();
    failed_by_namespace.sort_by_key(|g| std::cmp::Reverse(g.count));

    let seconds_since = |t: Option<OffsetDateTime>| t.map(|t| (now - t).whole_seconds());
    let mut longest: Vec<&Health> = failed.clone();
    // Oldest failure first; unknown start times last.
    longest.sort_by_key(|h| {
        (
            h.failure.as_ref().and_then(|f| f.since).is_none(),
            h.failure.as_ref().and_then(|f| f.since),
            h.namespace.clone(),
            h.name.clone(),
        )
    });
    let longest_failing = longest
        .into_iter()
        .take(LONGEST_FAILING)
        .map(|h| {
            let since = h.failure.as_ref().and_then(|f| f.since);
            Failing {
                namespace: h.namespace.clone(),
                name: h.name.clone(),
                host: h.host.clone(),
                reason: class_of(h).to_owned(),
                since: since.map(crate::policy::rfc3339_seconds),
                failing_seconds: seconds_since(since),
            }
        })
        .collect();

    let mut pending: Vec<&Health> = healths.iter().filter(|h| h.is_pending()).collect();
    pending.sort_by_key(|h| (h.created, h.namespace.clone(), h.name.clone()));
    let pending_repositories = pending
        .into_iter()
        .map(|h| Waiting {
            namespace: h.namespace.clone(),
            name: h.name.clone(),
            waiting_seconds: seconds_since(h.created),
        })
        .collect();

    let rules = Rules::default();
    let mut janitor_candidates: Vec<Candidate> = healths
        .iter()
        .filter_map(|h| {
            let subject = janitor::subject_from(h)?;
            let verdict = rules.evaluate(&subject, now)?;
            Some(Candidate {
                namespace: subject.namespace,
                name: subject.name,
                rule: verdict.rule.to_owned(),
                action: verdict.action.as_str().to_owned(),
                reason: verdict.reason,
            })
        })
        .collect();
    janitor_candidates.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    Ok(Report {
        total: healths.len(),
        ready: count(State::Ready),
        failed: failed.len(),
        pending: count(State::Pending),
        suspended: count(State::Suspended),
        progressing: count(State::Progressing),
        unobserved: healths.iter().filter(|h| h.unobserved).count(),
        failed_by_host_reason,
        failed_by_namespace,
        longest_failing,
        pending_repositories,
        janitor_candidates,
    })
}

/// Renders the report for these GitRepository objects as of `now`.
pub fn render(
    objects: &[Value],
    now: OffsetDateTime,
    format: ReportFormat,
) -> Result<String, ReportError> {
    let report = build(objects, now)?;
    Ok(match format {
        ReportFormat::Json => {
            let mut text = serde_json::to_string_pretty(&report)?;
            text.push('\n');
            text
        }
        ReportFormat::Table => table(&report),
    })
}

fn age(seconds: Option<i64>) -> String {
    seconds.map_or_else(
        || "unknown".to_owned(),
        |s| janitor::rules::human_age(time::Duration::seconds(s)),
    )
}

/// Aligned columns, header first.
fn columns(out: &mut String, rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::from("  ");
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn table(r: &Report) -> String {
    let mut out = String::new();
    let percent = |n: usize| (n * 100 + r.total / 2).checked_div(r.total).unwrap_or(0);
    let _ = writeln!(
        out,
        "GitRepositories: {} total, {} failed ({}%), {} ready, {} pending, {} suspended, {} progressing",
        r.total,
        r.failed,
        percent(r.failed),
        r.ready,
        r.pending,
        r.suspended,
        r.progressing
    );
    let _ = writeln!(
        out,
        "Unobserved (observedGeneration missing, -1 or behind): {}",
        r.unobserved
    );

    if !r.failed_by_host_reason.is_empty() {
        out.push_str("\nFailed by host and reason:\n");
        let mut rows = vec![vec![
            "HOST".to_owned(),
            "REASON".to_owned(),
            "COUNT".to_owned(),
        ]];
        rows.extend(r.failed_by_host_reason.iter().map(|g| {
            vec![
                g.host.clone().unwrap_or_default(),
                g.reason.clone().unwrap_or_default(),
                g.count.to_string(),
            ]
        }));
        columns(&mut out, &rows);

        out.push_str("\nFailed by namespace (most first):\n");
        let mut rows = vec![vec!["NAMESPACE".to_owned(), "COUNT".to_owned()]];
        rows.extend(
            r.failed_by_namespace
                .iter()
                .take(10)
                .map(|g| vec![g.namespace.clone().unwrap_or_default(), g.count.to_string()]),
        );
        columns(&mut out, &rows);
        if r.failed_by_namespace.len() > 10 {
            let _ = writeln!(
                out,
                "  ... and {} more namespaces",
                r.failed_by_namespace.len() - 10
            );
        }

        out.push_str("\nLongest failing:\n");
        let mut rows = vec![
            ["NAMESPACE/NAME", "HOST", "REASON", "FAILING FOR", "SINCE"]
                .map(str::to_owned)
                .to_vec(),
        ];
        rows.extend(r.longest_failing.iter().map(|f| {
            vec![
                format!("{}/{}", f.namespace, f.name),
                f.host.clone(),
                f.reason.clone(),
                age(f.failing_seconds),
                f.since.clone().unwrap_or_else(|| "unknown".to_owned()),
            ]
        }));
        columns(&mut out, &rows);
    }

    if !r.pending_repositories.is_empty() {
        out.push_str("\nPending (never picked up by source-controller):\n");
        let mut rows = vec![vec!["NAMESPACE/NAME".to_owned(), "WAITING".to_owned()]];
        rows.extend(r.pending_repositories.iter().map(|w| {
            vec![
                format!("{}/{}", w.namespace, w.name),
                age(w.waiting_seconds),
            ]
        }));
        columns(&mut out, &rows);
    }

    let _ = writeln!(
        out,
        "\nJanitor candidates (default rules: failing > 24h, test/demo/tmp names without a new artifact for 7d): {}",
        r.janitor_candidates.len()
    );
    if !r.janitor_candidates.is_empty() {
        let mut rows = vec![
            ["NAMESPACE/NAME", "RULE", "ACTION", "WHY"]
                .map(str::to_owned)
                .to_vec(),
        ];
        rows.extend(r.janitor_candidates.iter().take(TABLE_CANDIDATES).map(|c| {
            vec![
                format!("{}/{}", c.namespace, c.name),
                c.rule.clone(),
                c.action.clone(),
                c.reason.clone(),
            ]
        }));
        columns(&mut out, &rows);
        if r.janitor_candidates.len() > TABLE_CANDIDATES {
            let _ = writeln!(
                out,
                "  ... and {} more (-o json lists them all)",
                r.janitor_candidates.len() - TABLE_CANDIDATES
            );
        }
    }
    out
}

/// Candidates shown in the table; the JSON output has all of them.
const TABLE_CANDIDATES: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

    fn object(ns: &str, name: &str, status: Value) -> Value {
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": { "name": name, "namespace": ns, "uid": format!("{ns}-{name}"), "generation": 1,
                          "resourceVersion": "1", "creationTimestamp": "2026-11-20T00:00:00Z" },
            "spec": { "url": "https://github.com/o/r", "interval": "1m" },
            "status": status,
        })
    }

    #[test]
    fn counts_and_candidates_match_the_health_model() {
        let failing = |since: &str| {
            json!({ "observedGeneration": -1, "conditions": [{ "type": "Ready", "status": "False",
                "reason": "GitOperationFailed", "message": "context deadline exceeded", "lastTransitionTime": since }] })
        };
        let objects = vec![
            object("a", "old", failing("2026-11-26T12:00:00Z")),
            object("a", "new", failing("2026-11-28T11:00:00Z")),
            object("b", "waiting", json!({ "observedGeneration": -1 })),
            object(
                "b",
                "fine",
                json!({ "observedGeneration": 1, "conditions": [{ "type": "Ready", "status": "True",
                "reason": "Succeeded", "message": "", "lastTransitionTime": "2026-11-28T11:00:00Z" }] }),
            ),
        ];
        let report = build(&objects, NOW).unwrap();
        assert_eq!(
            (
                report.total,
                report.failed,
                report.pending,
                report.ready,
                report.unobserved
            ),
            (4, 2, 1, 1, 3)
        );
        assert_eq!(report.longest_failing[0].name, "old");
        assert_eq!(report.longest_failing[0].failing_seconds, Some(48 * 3600));
        assert_eq!(report.janitor_candidates.len(), 1);
        assert_eq!(
            report.janitor_candidates[0].reason,
            "failing for 48h (timeout, github.com)"
        );
        let table = render(&objects, NOW, ReportFormat::Table).unwrap();
        assert!(
            table.starts_with("GitRepositories: 4 total, 2 failed (50%), 1 ready, 1 pending"),
            "{table}"
        );
        assert!(
            table.contains("  a/old           github.com  timeout  48h"),
            "{table}"
        );
    }

    #[test]
    fn other_kinds_are_refused() {
        let err = build(&[json!({ "kind": "Kustomization" })], NOW).unwrap_err();
        assert_eq!(
            err.to_string(),
            "item 1 (Kustomization) is not a GitRepository"
        );
    }
}
