//! `fluxgate report`: the exporter's numbers, the breaker's view of each host and the janitor's
//! candidates, computed offline from `kubectl get gitrepositories -A -o json`. The objects are
//! loaded into the exporter's store as its watch would list them, and every count is the store's
//! (what the gauges publish) or the breaker's reading of it; the objects themselves give only the
//! lists (names, messages, times).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::breaker::args::TripArgs;
use crate::breaker::{self, Settings, runtime};
use crate::exporter::Store;
use crate::exporter::store::Aggregate;
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

/// Checks that item `index` (1-based) is a GitRepository. Items of a typed list
/// (`GitRepositoryList` from the API itself) carry no `kind`; those are accepted when they look
/// like Kubernetes objects (a name and a spec), so `{"foo": 1}` is still refused.
fn check_kind(index: usize, object: &Value) -> Result<(), ReportError> {
    let refuse = |kind: String| Err(ReportError::NotAGitRepository { index, kind });
    let Some(map) = object.as_object() else {
        return refuse("not an object".to_owned());
    };
    let api_version = map.get("apiVersion").and_then(Value::as_str);
    match map.get("kind").and_then(Value::as_str) {
        Some("GitRepository") => match api_version {
            Some(v) if v.split('/').next() != Some(crate::flux::GROUP) => {
                refuse(format!("GitRepository {v}"))
            }
            _ => Ok(()),
        },
        Some(kind) => refuse(kind.to_owned()),
        None => {
            let named = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if named && map.get("spec").is_some_and(Value::is_object) {
                Ok(())
            } else {
                refuse("no kind, and no metadata.name and spec".to_owned())
            }
        }
    }
}

/// Counts of one namespace: the same numbers as the exporter's per-namespace gauges.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct NamespaceCounts {
    pub total: usize,
    pub ready: usize,
    pub failed: usize,
    pub pending: usize,
    pub suspended: usize,
    /// Suspended by the host circuit breaker until their host answers again.
    pub quarantined: usize,
    pub progressing: usize,
    pub unobserved: usize,
    /// Creation time of the oldest pending GitRepository (RFC 3339), as
    /// `fluxgate_gitrepositories_oldest_pending_timestamp_seconds`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_pending: Option<String>,
}

/// One group of failed GitRepositories; the fields not grouped by are left out.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct FailedGroup {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub count: usize,
}

/// GitRepositories a mirror rule sent from one host to another (they carry
/// `fluxgate.io/original-url`): whether the mirror serves them.
/// GitRepositories of one host lane (`sharding.fluxcd.io/key`), as the exporter counts them
/// (`fluxgate_lane_gitrepositories`).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct LaneGroup {
    pub lane: String,
    pub total: usize,
    /// By state, in the exporter's state names.
    pub by_state: BTreeMap<&'static str, usize>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MirrorGroup {
    /// The host of `fluxgate.io/original-url`.
    pub original_host: String,
    /// The host of `spec.url` now.
    pub mirror_host: String,
    pub total: usize,
    pub ready: usize,
    pub failed: usize,
    /// The failed ones by class, most first.
    pub failed_by_reason: Vec<FailedGroup>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Failing {
    pub namespace: String,
    pub name: String,
    pub host: String,
    pub reason: String,
    /// The Ready condition's reason as source-controller wrote it.
    pub ready_reason: String,
    pub since: Option<String>,
    pub failing_seconds: Option<i64>,
    pub age_seconds: Option<i64>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Waiting {
    pub namespace: String,
    pub name: String,
    pub created: Option<String>,
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
    pub now: String,
    pub total: usize,
    pub ready: usize,
    pub failed: usize,
    pub pending: usize,
    pub suspended: usize,
    /// Suspended by the host circuit breaker until their host answers again.
    pub quarantined: usize,
    pub progressing: usize,
    pub unobserved: usize,
    /// Per namespace, every state and the unobserved count (sorted by name).
    pub namespaces: BTreeMap<String, NamespaceCounts>,
    /// Failed by host and class, most first: where the failures come from.
    pub failed_by_host_reason: Vec<FailedGroup>,
    /// Failed by namespace, most first: whose projects fail.
    pub failed_by_namespace: Vec<FailedGroup>,
    /// Exactly the series of `fluxgate_gitrepositories_failed{namespace, host, reason}`.
    pub failed_by_namespace_host_reason: Vec<FailedGroup>,
    /// Rewritten by a mirror rule, by original host and mirror host, most failed first.
    pub mirrored: Vec<MirrorGroup>,
    /// In a host lane, by lane (sorted by name).
    pub lanes: Vec<LaneGroup>,
    /// The ones failing longest (unknown start times last), at most [`LONGEST_FAILING`].
    pub longest_failing: Vec<Failing>,
    /// Never picked up by source-controller, longest waiting first.
    pub pending_repositories: Vec<Waiting>,
    /// The rules the candidates were judged by, in words.
    pub janitor_rules: String,
    pub janitor_candidates: Vec<Candidate>,
    /// When a host's circuit breaker trips, in words.
    pub breaker_rules: String,
    /// Hosts with transport failures or quarantined GitRepositories, most failing first.
    pub breaker_hosts: Vec<BreakerHost>,
}

/// How `report` judges: the janitor's rules and the breaker's flags, the same as `serve`'s.
#[derive(Debug, Clone, Default)]
pub struct Rulebook {
    pub janitor: Rules,
    /// The breaker's thresholds and the hosts it leaves alone.
    pub breaker: TripArgs,
}

/// One host's circuit breaker as the snapshot shows it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct BreakerHost {
    pub host: String,
    /// `closed`, `open` or `half_open`, rebuilt from the quarantine marks the way a new leader
    /// does: the breaker's timers are not in the snapshot.
    pub state: String,
    pub quarantined: usize,
    pub transport_failing: usize,
    /// GitRepositories the trip condition counts: tried by source-controller, not suspended, not
    /// opted out (on an excluded host, all are opted out).
    pub considered: usize,
    /// Whether the host meets the trip condition now (it trips once that lasts the window).
    pub would_trip: bool,
    pub excluded: bool,
}

fn describe_breaker(settings: &Settings) -> String {
    format!(
        "trips at >= {} transport failures and >= {}% of a host's tried GitRepositories, for {}",
        settings.min_failing,
        (settings.failing_ratio * 100.0).round(),
        janitor::rules::human_age(time::Duration::seconds_f64(settings.window.as_secs_f64())),
    )
}

/// Each host with transport failures or quarantined GitRepositories, as `serve`'s breaker reads
/// it from the exporter's store ([`runtime::members_by_host`], with the hosts `trip` excludes
/// opted out): the state a new leader would take over from the marks, and the trip condition.
pub fn breaker_hosts(store: &Store, now: OffsetDateTime, trip: &TripArgs) -> Vec<BreakerHost> {
    let settings = trip.settings();
    let tallies = store.host_tallies();
    let hosts: BTreeSet<Arc<str>> = tallies
        .iter()
        .filter(|(_, t)| t.transport_failing > 0 || t.quarantine_marked > 0)
        .map(|(host, _)| host.clone())
        .collect();
    let mut hosts: Vec<BreakerHost> = runtime::members_by_host(store, &hosts, &tallies, trip)
        .into_iter()
        .map(|(host, members)| {
            let snapshot = breaker::HostBreaker::default()
                .step(&members, now, &settings)
                .snapshot;
            BreakerHost {
                host: host.to_string(),
                state: snapshot.state.as_str().to_owned(),
                quarantined: snapshot.quarantined,
                transport_failing: snapshot.transport_failing,
                considered: snapshot.considered,
                would_trip: breaker::would_trip(&members, &settings),
                excluded: trip.excludes(&host),
            }
        })
        .collect();
    hosts.sort_by(|a, b| {
        (b.transport_failing + b.quarantined)
            .cmp(&(a.transport_failing + a.quarantined))
            .then_with(|| a.host.cmp(&b.host))
    });
    hosts
}

pub const LONGEST_FAILING: usize = 10;

/// Candidates shown in the table; the JSON output has all of them.
const TABLE_CANDIDATES: usize = 20;

/// Namespaces shown in the table; the JSON output has all of them.
const TABLE_NAMESPACES: usize = 10;

/// What the janitor would do to each of these GitRepositories as of `now`, by namespace and name.
/// Pure: the same rules, through the same [`janitor::subject_from`], as the janitor's runs.
pub fn janitor_candidates(
    healths: &[Health],
    now: OffsetDateTime,
    rules: &Rules,
) -> Vec<Candidate> {
    let mut candidates: Vec<Candidate> = healths
        .iter()
        .filter_map(|h| {
            let subject = janitor::subject_from(h)?;
            let verdict = rules.evaluate(&subject, now)?;
            Some(Candidate {
                namespace: subject.namespace,
                name: subject.name,
                rule: verdict.rule.to_owned(),
                action: verdict.removal.as_str().to_owned(),
                reason: verdict.reason,
            })
        })
        .collect();
    candidates.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    candidates
}

/// The counts summed by key, most first; ties keep the key order.
fn group_sums<K: Ord>(counts: impl Iterator<Item = (K, usize)>) -> Vec<(K, usize)> {
    let mut sums: BTreeMap<K, usize> = BTreeMap::new();
    for (key, n) in counts {
        *sums.entry(key).or_default() += n;
    }
    let mut sums: Vec<(K, usize)> = sums.into_iter().collect();
    sums.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    sums
}

/// Builds the report for these GitRepository objects as of `now`, judged by `rules`.
pub fn build(
    objects: &[Value],
    now: OffsetDateTime,
    rules: &Rulebook,
) -> Result<Report, ReportError> {
    let healths = classify_all(objects)?;
    let store = load(&healths);
    Ok(from_store(&store, &healths, now, rules))
}

/// Each object's health, one per uid as the exporter's store keys them.
fn classify_all(objects: &[Value]) -> Result<Vec<Health>, ReportError> {
    let mut healths: Vec<Health> = Vec::with_capacity(objects.len());
    let mut positions: HashMap<String, usize> = HashMap::with_capacity(objects.len());
    for (index, object) in objects.iter().enumerate() {
        check_kind(index + 1, object)?;
        let mut health = health::classify(object).map_err(|_| ReportError::NotAGitRepository {
            index: index + 1,
            kind: "not an object".to_owned(),
        })?;
        if health.uid.is_empty() {
            // The API server always sets one; a hand-written item without is still one object.
            health.uid = format!("item {}", index + 1);
        }
        match positions.entry(health.uid.clone()) {
            // The same object twice (lists joined): one object, as the store would keep it.
            Entry::Occupied(at) => healths[*at.get()] = health,
            Entry::Vacant(at) => {
                at.insert(healths.len());
                healths.push(health);
            }
        }
    }
    Ok(healths)
}

/// The exporter's store as its watch leaves it after one list of these GitRepositories.
fn load(healths: &[Health]) -> Store {
    let store = Store::default();
    store.relist_start(0);
    for health in healths {
        store.relist_apply(0, health);
    }
    // The time of the last event feeds only the watch's staleness, which a file does not have.
    store.relist_done(0, true, 0);
    store
}

/// The report from the store's counts (what the gauges publish) and the breaker's reading of
/// it, with the classified objects for what the store does not keep: names, messages, marks.
fn from_store(store: &Store, healths: &[Health], now: OffsetDateTime, rules: &Rulebook) -> Report {
    let aggregate = store.aggregate();
    let total_of = |state: State| {
        aggregate
            .by_state
            .iter()
            .filter(|((_, s), _)| *s == state)
            .map(|(_, n)| count(*n))
            .sum()
    };
    Report {
        now: crate::policy::rfc3339_seconds(now),
        total: count(aggregate.objects),
        ready: total_of(State::Ready),
        failed: total_of(State::Failed),
        pending: total_of(State::Pending),
        suspended: total_of(State::Suspended),
        quarantined: total_of(State::Quarantined),
        progressing: total_of(State::Progressing),
        unobserved: aggregate.unobserved.values().map(|n| count(*n)).sum(),
        namespaces: namespace_counts(&aggregate),
        failed_by_host_reason: failed_by_host_reason(&aggregate),
        failed_by_namespace: failed_by_namespace(&aggregate),
        failed_by_namespace_host_reason: failed_by_namespace_host_reason(&aggregate),
        mirrored: mirrored(healths),
        lanes: lanes(&aggregate),
        longest_failing: longest_failing(healths, now),
        pending_repositories: pending_repositories(healths, now),
        janitor_rules: rules.janitor.describe(),
        janitor_candidates: janitor_candidates(healths, now, &rules.janitor),
        breaker_rules: describe_breaker(&rules.breaker.settings()),
        breaker_hosts: breaker_hosts(store, now, &rules.breaker),
    }
}

/// The exporter's lane counts, per lane.
fn lanes(aggregate: &Aggregate) -> Vec<LaneGroup> {
    let mut lanes: BTreeMap<String, LaneGroup> = BTreeMap::new();
    for ((lane, state), n) in &aggregate.by_lane {
        let group = lanes.entry(lane.to_string()).or_insert_with(|| LaneGroup {
            lane: lane.to_string(),
            total: 0,
            by_state: BTreeMap::new(),
        });
        group.total += count(*n);
        *group.by_state.entry(state.as_str()).or_default() += count(*n);
    }
    lanes.into_values().collect()
}

/// A store count as a number of objects (never negative).
fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

fn rfc3339(t: Option<OffsetDateTime>) -> Option<String> {
    t.map(crate::policy::rfc3339_seconds)
}

fn seconds_since(now: OffsetDateTime, t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(|t| (now - t).whole_seconds())
}

/// The failure class as the failed gauges name it.
fn class_of(h: &Health) -> &'static str {
    h.failure.as_ref().map_or("other", |f| f.class.as_str())
}

impl NamespaceCounts {
    fn of_state(&mut self, state: State) -> &mut usize {
        match state {
            State::Ready => &mut self.ready,
            State::Failed => &mut self.failed,
            State::Pending => &mut self.pending,
            State::Suspended => &mut self.suspended,
            State::Quarantined => &mut self.quarantined,
            State::Progressing => &mut self.progressing,
        }
    }
}

/// Per namespace: the states, unobserved and oldest pending gauges.
fn namespace_counts(aggregate: &Aggregate) -> BTreeMap<String, NamespaceCounts> {
    let mut namespaces: BTreeMap<String, NamespaceCounts> = BTreeMap::new();
    for ((namespace, state), n) in &aggregate.by_state {
        let counts = namespaces.entry(namespace.to_string()).or_default();
        counts.total += count(*n);
        *counts.of_state(*state) += count(*n);
    }
    for (namespace, n) in &aggregate.unobserved {
        namespaces
            .entry(namespace.to_string())
            .or_default()
            .unobserved += count(*n);
    }
    for (namespace, created) in &aggregate.oldest_pending {
        let created = OffsetDateTime::from_unix_timestamp(*created).ok();
        namespaces
            .entry(namespace.to_string())
            .or_default()
            .oldest_pending = rfc3339(created);
    }
    namespaces
}

fn failed_by_host_reason(aggregate: &Aggregate) -> Vec<FailedGroup> {
    let counts = aggregate
        .failed
        .iter()
        .map(|((_, host, class), n)| ((host.to_string(), class.as_str()), count(*n)));
    group_sums(counts)
        .into_iter()
        .map(|((host, reason), count)| FailedGroup {
            namespace: None,
            host: Some(host),
            reason: Some(reason.to_owned()),
            count,
        })
        .collect()
}

fn failed_by_namespace(aggregate: &Aggregate) -> Vec<FailedGroup> {
    let counts = aggregate
        .failed
        .iter()
        .map(|((namespace, _, _), n)| (namespace.to_string(), count(*n)));
    group_sums(counts)
        .into_iter()
        .map(|(namespace, count)| FailedGroup {
            namespace: Some(namespace),
            host: None,
            reason: None,
            count,
        })
        .collect()
}

/// Exactly the `fluxgate_gitrepositories_failed` series, by namespace, then host and class name.
fn failed_by_namespace_host_reason(aggregate: &Aggregate) -> Vec<FailedGroup> {
    let mut groups: Vec<FailedGroup> = aggregate
        .failed
        .iter()
        .map(|((namespace, host, class), n)| FailedGroup {
            namespace: Some(namespace.to_string()),
            host: Some(host.to_string()),
            reason: Some(class.as_str().to_owned()),
            count: count(*n),
        })
        .collect();
    groups.sort_by(|a, b| {
        (&a.namespace, &a.host, &a.reason).cmp(&(&b.namespace, &b.host, &b.reason))
    });
    groups
}

/// The failed ones whose failure started longest ago (unknown starts last).
fn longest_failing(healths: &[Health], now: OffsetDateTime) -> Vec<Failing> {
    let mut failed: Vec<&Health> = healths
        .iter()
        .filter(|h| h.state == State::Failed)
        .collect();
    failed.sort_by_key(|h| {
        (
            h.failing_since().is_none(),
            h.failing_since(),
            h.namespace.clone(),
            h.name.clone(),
        )
    });
    failed
        .into_iter()
        .take(LONGEST_FAILING)
        .map(|h| Failing {
            namespace: h.namespace.clone(),
            name: h.name.clone(),
            host: h.host.clone(),
            reason: class_of(h).to_owned(),
            ready_reason: h
                .failure
                .as_ref()
                .map_or_else(String::new, |f| f.reason.clone()),
            since: rfc3339(h.failing_since()),
            failing_seconds: seconds_since(now, h.failing_since()),
            age_seconds: seconds_since(now, h.created),
        })
        .collect()
}

/// The pending ones, longest waiting first (unknown creation last).
fn pending_repositories(healths: &[Health], now: OffsetDateTime) -> Vec<Waiting> {
    let mut pending: Vec<&Health> = healths.iter().filter(|h| h.is_pending()).collect();
    pending.sort_by_key(|h| {
        (
            h.created.is_none(),
            h.created,
            h.namespace.clone(),
            h.name.clone(),
        )
    });
    pending
        .into_iter()
        .map(|h| Waiting {
            namespace: h.namespace.clone(),
            name: h.name.clone(),
            created: rfc3339(h.created),
            waiting_seconds: seconds_since(now, h.created),
        })
        .collect()
}

/// Groups the GitRepositories that carry `fluxgate.io/original-url` by original and mirror host.
/// The exporter publishes no such counts, so they come from the objects.
fn mirrored(healths: &[Health]) -> Vec<MirrorGroup> {
    let mut groups: BTreeMap<(String, &str), Vec<&Health>> = BTreeMap::new();
    for h in healths {
        if let Some(original) = h.marks.original_url.as_deref() {
            groups
                .entry((health::git_host(original), h.host.as_str()))
                .or_default()
                .push(h);
        }
    }
    let mut out: Vec<MirrorGroup> = groups
        .into_iter()
        .map(|((original_host, mirror_host), members)| {
            let failed: Vec<&Health> = members
                .iter()
                .copied()
                .filter(|h| h.state == State::Failed)
                .collect();
            MirrorGroup {
                original_host,
                mirror_host: mirror_host.to_owned(),
                total: members.len(),
                ready: members.iter().filter(|h| h.state == State::Ready).count(),
                failed: failed.len(),
                failed_by_reason: group_sums(failed.iter().map(|h| (class_of(h), 1)))
                    .into_iter()
                    .map(|(reason, count)| FailedGroup {
                        namespace: None,
                        host: None,
                        reason: Some(reason.to_owned()),
                        count,
                    })
                    .collect(),
            }
        })
        .collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.failed));
    out
}

/// Renders the report for these GitRepository objects as of `now`, with the janitor's `rules`.
pub fn render(
    objects: &[Value],
    now: OffsetDateTime,
    format: ReportFormat,
    rules: &Rulebook,
) -> Result<String, ReportError> {
    let report = build(objects, now, rules)?;
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

/// Aligned columns, header first; the last column is not padded.
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

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// The table: the totals, then one section per part of the report; sections with nothing to
/// show are left out, except the breaker's and the janitor's (their rules are worth seeing).
fn table(r: &Report) -> String {
    let mut out = String::new();
    summary_section(&mut out, r);
    if !r.failed_by_host_reason.is_empty() {
        failed_by_host_section(&mut out, r);
        failed_by_namespace_section(&mut out, r);
        longest_failing_section(&mut out, r);
    }
    mirrored_section(&mut out, r);
    lanes_section(&mut out, r);
    pending_section(&mut out, r);
    breaker_section(&mut out, r);
    janitor_section(&mut out, r);
    out
}

fn summary_section(out: &mut String, r: &Report) {
    let percent = |n: usize| (n * 100 + r.total / 2).checked_div(r.total).unwrap_or(0);
    let _ = writeln!(
        out,
        "GitRepositories: {} total, {} failed ({}%), {} ready, {} pending, {} suspended, {}{} progressing",
        r.total,
        r.failed,
        percent(r.failed),
        r.ready,
        r.pending,
        r.suspended,
        if r.quarantined > 0 {
            format!("{} quarantined, ", r.quarantined)
        } else {
            String::new()
        },
        r.progressing
    );
    let _ = writeln!(
        out,
        "Unobserved (observedGeneration missing, -1 or behind): {}",
        r.unobserved
    );
    let _ = writeln!(out, "As of {}", r.now);
}

fn failed_by_host_section(out: &mut String, r: &Report) {
    out.push_str("\nFailed by host and reason:\n");
    let mut rows = vec![header(&["HOST", "REASON", "COUNT"])];
    rows.extend(r.failed_by_host_reason.iter().map(|g| {
        vec![
            g.host.clone().unwrap_or_default(),
            g.reason.clone().unwrap_or_default(),
            g.count.to_string(),
        ]
    }));
    columns(out, &rows);
}

fn failed_by_namespace_section(out: &mut String, r: &Report) {
    out.push_str("\nFailed by namespace (most first):\n");
    let mut rows = vec![header(&[
        "NAMESPACE",
        "FAILED",
        "TOTAL",
        "UNOBSERVED",
        "PENDING",
    ])];
    rows.extend(
        r.failed_by_namespace
            .iter()
            .take(TABLE_NAMESPACES)
            .map(|g| {
                let namespace = g.namespace.clone().unwrap_or_default();
                let counts = r.namespaces.get(&namespace);
                let n = |f: fn(&NamespaceCounts) -> usize| counts.map_or(0, f).to_string();
                vec![
                    namespace.clone(),
                    g.count.to_string(),
                    n(|c| c.total),
                    n(|c| c.unobserved),
                    n(|c| c.pending),
                ]
            }),
    );
    columns(out, &rows);
    if r.failed_by_namespace.len() > TABLE_NAMESPACES {
        let rest = &r.failed_by_namespace[TABLE_NAMESPACES..];
        let _ = writeln!(
            out,
            "  ... and {} more namespaces with {} failed",
            rest.len(),
            rest.iter().map(|g| g.count).sum::<usize>()
        );
    }
}

fn longest_failing_section(out: &mut String, r: &Report) {
    out.push_str("\nLongest failing:\n");
    let mut rows = vec![header(&[
        "NAMESPACE/NAME",
        "HOST",
        "REASON",
        "FAILING FOR",
        "AGE",
        "SINCE",
    ])];
    rows.extend(r.longest_failing.iter().map(|f| {
        vec![
            format!("{}/{}", f.namespace, f.name),
            f.host.clone(),
            f.reason.clone(),
            age(f.failing_seconds),
            age(f.age_seconds),
            f.since.clone().unwrap_or_else(|| "unknown".to_owned()),
        ]
    }));
    columns(out, &rows);
}

fn lanes_section(out: &mut String, r: &Report) {
    if r.lanes.is_empty() {
        return;
    }
    out.push_str(
        "\nHost lanes (sharding.fluxcd.io/key), each served by a source-controller of its own:\n",
    );
    let mut rows = vec![header(&["LANE", "TOTAL", "STATES"])];
    rows.extend(r.lanes.iter().map(|g| {
        let states: Vec<String> = g
            .by_state
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        vec![g.lane.clone(), g.total.to_string(), states.join(", ")]
    }));
    columns(out, &rows);
}

fn mirrored_section(out: &mut String, r: &Report) {
    if r.mirrored.is_empty() {
        return;
    }
    out.push_str("\nMirrored (fluxgate.io/original-url), by original host -> mirror host:\n");
    let mut rows = vec![header(&[
        "ORIGINAL HOST",
        "MIRROR HOST",
        "TOTAL",
        "READY",
        "FAILED",
        "REASONS",
    ])];
    rows.extend(r.mirrored.iter().map(|g| {
        let reasons: Vec<String> = g
            .failed_by_reason
            .iter()
            .map(|f| format!("{} {}", f.count, f.reason.as_deref().unwrap_or("")))
            .collect();
        vec![
            g.original_host.clone(),
            g.mirror_host.clone(),
            g.total.to_string(),
            g.ready.to_string(),
            g.failed.to_string(),
            reasons.join(", "),
        ]
    }));
    columns(out, &rows);
}

fn pending_section(out: &mut String, r: &Report) {
    if r.pending_repositories.is_empty() {
        return;
    }
    out.push_str("\nPending (never picked up by source-controller):\n");
    let mut rows = vec![header(&["NAMESPACE/NAME", "WAITING", "CREATED"])];
    rows.extend(r.pending_repositories.iter().map(|w| {
        vec![
            format!("{}/{}", w.namespace, w.name),
            age(w.waiting_seconds),
            w.created.clone().unwrap_or_else(|| "unknown".to_owned()),
        ]
    }));
    columns(out, &rows);
}

fn breaker_section(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "\nHost circuit breaker ({}): {} hosts with transport failures or quarantined",
        r.breaker_rules,
        r.breaker_hosts.len()
    );
    if r.breaker_hosts.is_empty() {
        return;
    }
    let mut rows = vec![header(&[
        "HOST",
        "STATE",
        "QUARANTINED",
        "FAILING",
        "OF",
        "WOULD TRIP",
    ])];
    rows.extend(r.breaker_hosts.iter().map(|h| {
        vec![
            h.host.clone(),
            h.state.clone(),
            h.quarantined.to_string(),
            h.transport_failing.to_string(),
            h.considered.to_string(),
            if h.excluded {
                "excluded".to_owned()
            } else if h.would_trip {
                "yes".to_owned()
            } else {
                "no".to_owned()
            },
        ]
    }));
    columns(out, &rows);
}

fn janitor_section(out: &mut String, r: &Report) {
    let by_rule = group_sums(r.janitor_candidates.iter().map(|c| (c.rule.as_str(), 1)));
    let _ = writeln!(
        out,
        "\nJanitor candidates ({}): {}{}",
        r.janitor_rules,
        r.janitor_candidates.len(),
        if by_rule.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = by_rule
                .iter()
                .map(|(rule, n)| format!("{n} {rule}"))
                .collect();
            format!(" ({})", parts.join(", "))
        }
    );
    if r.janitor_candidates.is_empty() {
        return;
    }
    let mut rows = vec![header(&["NAMESPACE/NAME", "RULE", "ACTION", "WHY"])];
    rows.extend(r.janitor_candidates.iter().take(TABLE_CANDIDATES).map(|c| {
        vec![
            format!("{}/{}", c.namespace, c.name),
            c.rule.clone(),
            c.action.clone(),
            c.reason.clone(),
        ]
    }));
    columns(out, &rows);
    if r.janitor_candidates.len() > TABLE_CANDIDATES {
        let _ = writeln!(
            out,
            "  ... and {} more (-o json lists them all)",
            r.janitor_candidates.len() - TABLE_CANDIDATES
        );
    }
}

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

    fn failing(since: &str) -> Value {
        json!({ "observedGeneration": -1, "conditions": [{ "type": "Ready", "status": "False",
            "reason": "GitOperationFailed", "message": "context deadline exceeded", "lastTransitionTime": since }] })
    }

    fn objects() -> Vec<Value> {
        vec![
            object("a", "old", failing("2026-11-26T12:00:00Z")),
            object("a", "new", failing("2026-11-28T11:00:00Z")),
            object("b", "waiting", json!({ "observedGeneration": -1 })),
            object(
                "b",
                "fine",
                json!({ "observedGeneration": 1, "conditions": [{ "type": "Ready", "status": "True",
                "reason": "Succeeded", "message": "", "lastTransitionTime": "2026-11-28T11:00:00Z" }] }),
            ),
        ]
    }

    #[test]
    fn counts_and_candidates_match_the_health_model() {
        let report = build(&objects(), NOW, &Rulebook::default()).unwrap();
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
        assert_eq!(
            report.longest_failing[0].age_seconds,
            Some(8 * 86400 + 12 * 3600)
        );
        assert_eq!(report.janitor_candidates.len(), 1);
        assert_eq!(
            report.janitor_candidates[0].reason,
            "failing for 48h (timeout, github.com)"
        );
        assert_eq!(
            report.namespaces["b"],
            NamespaceCounts {
                total: 2,
                ready: 1,
                pending: 1,
                unobserved: 1,
                oldest_pending: Some("2026-11-20T00:00:00Z".to_owned()),
                ..NamespaceCounts::default()
            }
        );
        let table = render(&objects(), NOW, ReportFormat::Table, &Rulebook::default()).unwrap();
        assert!(
            table.starts_with("GitRepositories: 4 total, 2 failed (50%), 1 ready, 1 pending"),
            "{table}"
        );
        assert!(
            table.contains(
                "  a/old           github.com  timeout  48h          8d   2026-11-26T12:00:00Z\n"
            ),
            "{table}"
        );
        assert!(table.contains("): 1 (1 failing)\n"), "{table}");
    }

    #[test]
    fn json_leaves_out_the_fields_a_group_is_not_grouped_by() {
        let text = render(&objects(), NOW, ReportFormat::Json, &Rulebook::default()).unwrap();
        let report: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            report["failed_by_host_reason"],
            json!([{ "host": "github.com", "reason": "timeout", "count": 2 }])
        );
        assert_eq!(
            report["failed_by_namespace"],
            json!([{ "namespace": "a", "count": 2 }])
        );
        assert_eq!(
            report["failed_by_namespace_host_reason"],
            json!([{ "namespace": "a", "host": "github.com", "reason": "timeout", "count": 2 }])
        );
        assert!(report["namespaces"]["a"].get("oldest_pending").is_none());
    }

    #[test]
    fn lanes_are_shown_as_the_exporter_counts_them() {
        let mut objects = objects();
        for i in [0, 1, 3] {
            objects[i]["metadata"]["labels"] = json!({ crate::flux::SHARD_LABEL: "far" });
        }
        let report = build(&objects, NOW, &Rulebook::default()).unwrap();
        assert_eq!(report.lanes.len(), 1);
        let far = &report.lanes[0];
        assert_eq!((far.lane.as_str(), far.total), ("far", 3));
        assert_eq!(far.by_state.get("failed"), Some(&2));
        assert_eq!(far.by_state.get("ready"), Some(&1));
        let text = table(&report);
        assert!(text.contains("Host lanes"), "{text}");
        assert!(text.contains("2 failed, 1 ready"), "{text}");
        assert!(
            build(&self::objects(), NOW, &Rulebook::default())
                .unwrap()
                .lanes
                .is_empty()
        );
    }

    #[test]
    fn mirrored_repositories_are_grouped_by_original_and_mirror_host() {
        let mut objects = objects();
        let mirror = |mut object: Value, url: &str, original: &str| {
            object["spec"]["url"] = json!(url);
            object["metadata"]["annotations"] =
                json!({ "fluxgate.io/original-url": original, "other": "x" });
            object
        };
        objects[0] = mirror(
            objects[0].clone(),
            "https://gitee.com/m/o/r",
            "https://github.com/o/r",
        );
        objects[3] = mirror(
            objects[3].clone(),
            "https://gitee.com/m/o/s",
            "https://GitHub.com/o/s",
        );
        let report = build(&objects, NOW, &Rulebook::default()).unwrap();
        assert_eq!(
            report.mirrored,
            [MirrorGroup {
                original_host: "github.com".into(),
                mirror_host: "gitee.com".into(),
                total: 2,
                ready: 1,
                failed: 1,
                failed_by_reason: vec![FailedGroup {
                    namespace: None,
                    host: None,
                    reason: Some("timeout".into()),
                    count: 1,
                }],
            }]
        );
        let text = table(&report);
        assert!(text.contains("by original host -> mirror host:"), "{text}");
        assert!(
            text.contains("github.com     gitee.com    2      1      1       1 timeout"),
            "{text}"
        );
        // Without mirrored objects, no section.
        let plain = build(&self::objects(), NOW, &Rulebook::default()).unwrap();
        assert!(plain.mirrored.is_empty());
        assert!(!table(&plain).contains("Mirrored"));
    }

    #[test]
    fn an_empty_list_is_an_empty_cluster() {
        let report = build(&[], NOW, &Rulebook::default()).unwrap();
        assert_eq!((report.total, report.failed), (0, 0));
        let table = table(&report);
        assert!(
            table.starts_with("GitRepositories: 0 total, 0 failed (0%)"),
            "{table}"
        );
    }

    #[test]
    fn other_kinds_and_shapes_are_refused() {
        for (object, message) in [
            (
                json!({ "kind": "Kustomization" }),
                "item 1 (Kustomization) is not a GitRepository",
            ),
            (
                json!({ "kind": "GitRepository", "apiVersion": "example.com/v1" }),
                "item 1 (GitRepository example.com/v1) is not a GitRepository",
            ),
            (
                json!({ "foo": 1 }),
                "item 1 (no kind, and no metadata.name and spec) is not a GitRepository",
            ),
            (json!([1]), "item 1 (not an object) is not a GitRepository"),
        ] {
            let err = build(&[object], NOW, &Rulebook::default()).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
        // Items of a typed list (GitRepositoryList from the API) have no kind.
        let mut item = object("a", "x", failing("2026-11-28T11:00:00Z"));
        item.as_object_mut().unwrap().remove("kind");
        item.as_object_mut().unwrap().remove("apiVersion");
        assert_eq!(build(&[item], NOW, &Rulebook::default()).unwrap().failed, 1);
        let v1beta2 = json!({ "apiVersion": "source.toolkit.fluxcd.io/v1beta2", "kind": "GitRepository",
                              "metadata": { "name": "x" }, "spec": {} });
        assert_eq!(
            build(&[v1beta2], NOW, &Rulebook::default())
                .unwrap()
                .pending,
            1
        );
    }

    #[test]
    fn janitor_candidates_is_the_janitors_rules() {
        let healths: Vec<Health> = objects()
            .iter()
            .map(|o| health::classify(o).unwrap())
            .collect();
        let off = Rules {
            failing: None,
            stale_test: None,
            ..Rules::default()
        };
        assert!(janitor_candidates(&healths, NOW, &off).is_empty());
        let default = janitor_candidates(&healths, NOW, &Rules::default());
        assert_eq!(
            default
                .iter()
                .map(|c| (c.name.as_str(), c.rule.as_str(), c.action.as_str()))
                .collect::<Vec<_>>(),
            [("old", "failing", "suspend")]
        );
    }

    #[test]
    fn breaker_hosts_are_judged_by_the_breakers_own_functions() {
        let mut objects: Vec<Value> = (0..12)
            .map(|i| object("a", &format!("q{i}"), failing("2026-11-28T11:00:00Z")))
            .collect();
        for (i, object) in objects.iter_mut().enumerate().take(9) {
            object["spec"]["suspend"] = json!(true);
            object["metadata"]["labels"] = json!({ "fluxgate.io/quarantined": "true" });
            object["metadata"]["annotations"] = json!({
                "fluxgate.io/quarantined-at": format!("2026-11-28T11:{:02}:00Z", 10 + i) });
        }
        let report = build(&objects, NOW, &Rulebook::default()).unwrap();
        assert_eq!(report.quarantined, 9);
        assert_eq!(
            report.failed, 3,
            "quarantined ones are not counted as failed"
        );
        let [host] = report.breaker_hosts.as_slice() else {
            panic!("{:?}", report.breaker_hosts)
        };
        assert_eq!(host.host, "github.com");
        assert_eq!(host.quarantined, 9);
        assert_eq!(host.transport_failing, 3);
        // Quarantined objects mean an open breaker, as a new leader would take it over; the
        // three still failing are not enough of a (4-strong) trip on their own.
        assert!(
            host.state == "open" || host.state == "half_open",
            "{}",
            host.state
        );
        assert!(!host.would_trip);
    }

    /// An excluded host is judged as `serve` judges it: every member opted out, so nothing
    /// counts towards a trip, however many fail.
    #[test]
    fn an_excluded_hosts_members_are_all_opted_out() {
        let objects: Vec<Value> = (0..6)
            .map(|i| object("a", &format!("f{i}"), failing("2026-11-28T11:00:00Z")))
            .collect();
        let open = build(&objects, NOW, &Rulebook::default()).unwrap();
        let [host] = open.breaker_hosts.as_slice() else {
            panic!("{:?}", open.breaker_hosts)
        };
        assert_eq!((host.transport_failing, host.considered), (6, 6));
        assert!(host.would_trip && !host.excluded);

        let excluded = Rulebook {
            breaker: TripArgs {
                breaker_exclude_hosts: vec!["other.example".into(), " GitHub.com".into()],
                ..TripArgs::default()
            },
            ..Rulebook::default()
        };
        let report = build(&objects, NOW, &excluded).unwrap();
        assert_eq!(
            report.breaker_hosts,
            [BreakerHost {
                host: "github.com".into(),
                state: "closed".into(),
                quarantined: 0,
                transport_failing: 0,
                considered: 0,
                would_trip: false,
                excluded: true,
            }]
        );
        assert!(
            table(&report).contains("  github.com  closed  0            0        0   excluded\n")
        );
        // The gauges' counts do not depend on the breaker.
        assert_eq!(report.failed, 6);
    }

    #[test]
    fn an_object_listed_twice_is_one_and_one_without_uid_still_counts() {
        let mut objects = objects();
        objects.push(objects[0].clone());
        let mut no_uid = object("c", "typed", failing("2026-11-28T11:00:00Z"));
        no_uid["metadata"].as_object_mut().unwrap().remove("uid");
        objects.push(no_uid.clone());
        objects.push(no_uid);
        let report = build(&objects, NOW, &Rulebook::default()).unwrap();
        // The copy is the object it copies; the two without a uid count as two.
        assert_eq!((report.total, report.failed), (6, 4));
        assert_eq!(report.longest_failing.len(), 4);
        assert_eq!(report.namespaces["c"].failed, 2);
    }
}
