//! `fluxgate restore`: a person lets GitRepositories run again, one by name or all that the
//! breaker (`--quarantined`) or the janitor (`--archived`) holds. A restore is the person's word
//! and wins: it unsuspends whatever was found, lifts fluxgate's marks, and stamps an override
//! that keeps the breaker off the object until its host's episode ends.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use kube::api::{DynamicObject, ListParams};
use serde_json::Value;
use time::OffsetDateTime;

use crate::flux::{self, parse_object_ref};
use crate::marks::{Change, Lifted, Marks, Target, Writer, Written, archive, lane, quarantine};
use crate::text::rfc3339_seconds;

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// One GitRepository to restore.
    #[arg(
        value_name = "NAMESPACE/NAME",
        value_parser = parse_object_ref,
        required_unless_present_any = ["quarantined", "archived"],
        conflicts_with_all = ["quarantined", "archived"]
    )]
    pub target: Option<(String, String)>,

    /// Restore every GitRepository the host circuit breaker holds: quarantined
    /// (`fluxgate.io/quarantined`) or moved into its lane (`fluxgate.io/laned`).
    #[arg(long)]
    pub quarantined: bool,

    /// Restore every GitRepository the janitor archived (`fluxgate.io/archived`).
    #[arg(long)]
    pub archived: bool,

    /// With --quarantined: only those quarantined for this Git host.
    #[arg(long, value_name = "HOST", requires = "quarantined")]
    pub host: Option<String>,

    /// With --quarantined or --archived: only this namespace.
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,

    /// List what would be restored and change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Bulk pace: at most this many restored GitRepositories that source-controller has not
    /// handled yet, so a large restore does not flood its queue.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub in_flight: u32,

    /// Bulk pace: how long one restored GitRepository may wait to be handled before the next
    /// one goes anyway (a source-controller that is down or busy does not stop the restore).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    pub max_wait: Duration,
}

/// The label selector of the bulk restore's families.
fn selector(args: &RestoreArgs) -> Vec<&'static str> {
    let mut families = Vec::new();
    if args.quarantined {
        families.push(quarantine::LABEL);
        families.push(lane::MOVED_LABEL);
    }
    if args.archived {
        families.push(archive::LABEL);
    }
    families
}

/// Whether an object listed for a bulk restore is one of those asked for: `--host` compares the
/// quarantine's host without letter case or a trailing dot.
fn wanted(marks: &Marks, args: &RestoreArgs) -> bool {
    let of_host = |held_for: Option<&str>| {
        args.host
            .as_deref()
            .is_none_or(|host| held_for.is_some_and(|h| same_host(h, host)))
    };
    let quarantined = args.quarantined
        && (marks
            .quarantine
            .as_ref()
            .is_some_and(|q| of_host(q.host.as_deref()))
            || marks
                .lane_move
                .as_ref()
                .is_some_and(|m| of_host(m.host.as_deref())));
    quarantined || (args.archived && marks.archive.is_some())
}

/// `--host github.com` takes both transports of the host; `--host ssh://github.com` only SSH.
fn same_host(held_for: &str, asked: &str) -> bool {
    let same = |a: &str, b: &str| {
        a.trim_end_matches('.')
            .eq_ignore_ascii_case(b.trim_end_matches('.'))
    };
    same(held_for, asked)
        || (!asked.contains("://") && same(crate::health::host_name(held_for), asked))
}

/// `fluxgate restore`, with the caller's kubeconfig.
pub async fn run(args: RestoreArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (restore uses your kubeconfig)")?;
    let writer = Writer::new(&client, "fluxgate-restore", None);
    if let Some((namespace, name)) = &args.target {
        let api = flux::gitrepositories(&client, Some(namespace));
        let object = api
            .get(name)
            .await
            .with_context(|| format!("reading GitRepository {namespace}/{name}"))?;
        let line = restore_one(&writer, &object, args.dry_run).await?;
        writeln!(out, "{line}")?;
        return Ok(());
    }
    let objects = list(&client, &args).await?;
    if objects.is_empty() {
        writeln!(out, "nothing to restore")?;
        return Ok(());
    }
    restore_paced(&client, &writer, &objects, &args, out).await
}

/// Every GitRepository of the asked families in scope, a page at a time.
async fn list(client: &kube::Client, args: &RestoreArgs) -> anyhow::Result<Vec<DynamicObject>> {
    let api = flux::gitrepositories(client, args.namespace.as_deref());
    let mut found = Vec::new();
    for label in selector(args) {
        let mut params = ListParams::default()
            .labels(&format!("{label}=true"))
            .limit(500);
        loop {
            let page = api
                .list(&params)
                .await
                .with_context(|| format!("listing GitRepositories labelled {label}"))?;
            found.extend(
                page.items
                    .into_iter()
                    .filter(|o| wanted(&Marks::of_object(o), args)),
            );
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
    }
    // Both families on one object: restored once.
    found.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    found.dedup_by(|a, b| a.metadata.uid == b.metadata.uid);
    Ok(found)
}

fn target_of(object: &DynamicObject) -> Target {
    Target {
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        name: object.metadata.name.clone().unwrap_or_default(),
        uid: object.metadata.uid.clone(),
        resource_version: object.metadata.resource_version.clone(),
    }
}

/// Restores one object (or says what it would lift) and returns its line of output.
async fn restore_one(
    writer: &Writer,
    object: &DynamicObject,
    dry_run: bool,
) -> anyhow::Result<String> {
    let target = target_of(object);
    let lifted = Lifted::of(&Marks::of_object(object));
    let what = lifted.describe();
    let (namespace, name) = (&target.namespace, &target.name);
    if dry_run {
        return Ok(format!(
            "{namespace}/{name}: would restore, lifting {what} (dry run)"
        ));
    }
    let change = Change::Restore { lifted };
    let written = writer
        .write(&target, &change, OffsetDateTime::now_utc())
        .await
        .with_context(|| format!("restoring {namespace}/{name}"))?;
    Ok(match written {
        Written::Done => format!("{namespace}/{name}: restored, lifted {what}"),
        Written::Skipped => format!("{namespace}/{name}: gone meanwhile; nothing to restore"),
    })
}

/// One restored object source-controller has yet to handle.
struct InFlight {
    namespace: String,
    name: String,
    token: String,
    since: Instant,
}

/// Restores `objects` one by one, keeping at most `--in-flight` of them unhandled by
/// source-controller, each for at most `--max-wait`.
async fn restore_paced(
    client: &kube::Client,
    writer: &Writer,
    objects: &[DynamicObject],
    args: &RestoreArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let limit = usize::try_from(args.in_flight).unwrap_or(1);
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut restored = 0usize;
    for object in objects {
        if !args.dry_run {
            while in_flight.len() >= limit {
                wait_for_one(client, &mut in_flight, args.max_wait).await;
            }
        }
        let line = restore_one(writer, object, args.dry_run).await?;
        writeln!(out, "{line}")?;
        if !args.dry_run {
            restored += 1;
            let target = target_of(object);
            in_flight.push_back(InFlight {
                namespace: target.namespace,
                name: target.name,
                token: rfc3339_seconds(OffsetDateTime::now_utc()),
                since: Instant::now(),
            });
        }
    }
    let verb = if args.dry_run {
        "would restore"
    } else {
        "restored"
    };
    writeln!(
        out,
        "{verb} {} GitRepositories",
        if args.dry_run {
            objects.len()
        } else {
            restored
        }
    )?;
    Ok(())
}

/// How often a paced restore looks whether source-controller handled what it restored.
const POLL: Duration = Duration::from_secs(1);

/// Waits until one of `in_flight` was handled or waited its `max_wait`, and removes it.
async fn wait_for_one(
    client: &kube::Client,
    in_flight: &mut VecDeque<InFlight>,
    max_wait: Duration,
) {
    loop {
        let mut done = None;
        for (i, item) in in_flight.iter().enumerate() {
            if item.since.elapsed() >= max_wait || handled(client, item).await {
                done = Some(i);
                break;
            }
        }
        if let Some(i) = done {
            in_flight.remove(i);
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether source-controller has handled the restore's reconcile request: its
/// `status.lastHandledReconcileAt` is at or past the request, or its Ready condition changed
/// since. A vanished object counts as handled.
async fn handled(client: &kube::Client, item: &InFlight) -> bool {
    let api = flux::gitrepositories(client, Some(&item.namespace));
    match api.get_opt(&item.name).await {
        Ok(Some(object)) => status_handled(&object.data, &item.token),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// The pure part of [`handled`]: RFC 3339 stamps at whole seconds in UTC compare as text.
fn status_handled(data: &Value, token: &str) -> bool {
    let status = &data["status"];
    let handled_at = status["lastHandledReconcileAt"].as_str();
    let ready_changed = status["conditions"].as_array().and_then(|conditions| {
        conditions
            .iter()
            .find(|c| c["type"] == "Ready")
            .and_then(|c| c["lastTransitionTime"].as_str())
    });
    handled_at.is_some_and(|t| t >= token) || ready_changed.is_some_and(|t| t >= token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marks::tests::marks;
    use clap::Parser;
    use serde_json::json;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        restore: RestoreArgs,
    }

    fn parse(args: &[&str]) -> Result<RestoreArgs, clap::Error> {
        let mut all = vec!["restore"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.restore)
    }

    #[test]
    fn a_name_or_a_family_is_required_and_they_exclude_each_other() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["no-slash"]).is_err());
        assert!(parse(&["ns/app", "--quarantined"]).is_err());
        assert!(
            parse(&["--host", "github.com"]).is_err(),
            "--host needs --quarantined"
        );
        assert!(parse(&["--quarantined", "--in-flight", "0"]).is_err());
        let one = parse(&["ns/app"]).unwrap();
        assert_eq!(one.target, Some(("ns".into(), "app".into())));
        let bulk = parse(&[
            "--quarantined",
            "--host",
            "GitHub.com",
            "-n",
            "proj",
            "--dry-run",
        ])
        .unwrap();
        assert!(bulk.quarantined && bulk.dry_run);
        assert_eq!(bulk.namespace.as_deref(), Some("proj"));
        assert_eq!(bulk.max_wait, Duration::from_secs(120));
    }

    #[test]
    fn bulk_restore_picks_the_asked_family_and_host() {
        let held = marks(
            json!({ quarantine::LABEL: "true" }),
            json!({ quarantine::HOST_ANNOTATION: "github.com" }),
        );
        let archived = marks(json!({ archive::LABEL: "true" }), json!({}));
        let by_host = parse(&["--quarantined", "--host", "GitHub.com."]).unwrap();
        assert!(wanted(&held, &by_host));
        assert!(!wanted(&archived, &by_host));
        let other_host = parse(&["--quarantined", "--host", "gitlab.com"]).unwrap();
        assert!(!wanted(&held, &other_host));
        let both = parse(&["--quarantined", "--archived"]).unwrap();
        assert!(wanted(&held, &both) && wanted(&archived, &both));
        assert_eq!(
            selector(&both),
            [quarantine::LABEL, lane::MOVED_LABEL, archive::LABEL]
        );
    }

    #[test]
    fn handled_means_the_request_was_seen_or_ready_changed_since() {
        let token = "2026-12-06T10:00:05Z";
        let status = |handled: &str, ready: &str| {
            json!({ "status": { "lastHandledReconcileAt": handled,
                "conditions": [{ "type": "Ready", "lastTransitionTime": ready }] } })
        };
        assert!(status_handled(
            &status(token, "2026-12-06T09:00:00Z"),
            token
        ));
        assert!(status_handled(&status("", "2026-12-06T10:00:07Z"), token));
        assert!(!status_handled(
            &status("2026-12-06T09:59:00Z", "2026-12-06T09:00:00Z"),
            token
        ));
        assert!(!status_handled(&json!({}), token));
    }
}
