//! The breaker at work in `serve`: on the replica that holds the Lease, each pass reads the
//! exporter's records of the hosts worth a look (no LIST of the cluster), steps each host's
//! [`HostBreaker`], and writes only the GitRepositories it acts on, each write conditional on the
//! resourceVersion it judged, with an Event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::args::TripArgs;
use super::{Action, BreakerState, HostBreaker, Member, ProbeOutcome, member_of_record};
use crate::election::Leadership;
use crate::exporter::Store;
use crate::exporter::store::HostTally;
use crate::flux::{self, quarantine};
use crate::metrics::{
    BreakerActionLabels, BreakerMetrics, HostOutcomeLabels, HostStateLabels, HostTransitionLabels,
};
use crate::policy::rfc3339_seconds;

/// After the watch reports a change, wait this long for more before a pass: a burst of events
/// (a re-list, many failures at once) becomes one pass. Shorter than source-controller's first
/// retry after a failure (`--min-retry-delay`, 750ms), so a failure on an open host is
/// quarantined before it is tried again and holds a worker for another timeout.
const SETTLE: Duration = Duration::from_millis(200);

/// Event notes are limited to 1 KiB by the API.
const EVENT_NOTE_LIMIT: usize = 1000;

/// Per-host breakers and what they need to run.
pub struct Breakers {
    trip: TripArgs,
    breakers: BTreeMap<Arc<str>, HostBreaker>,
    metrics: BreakerMetrics,
}

/// One pass's decisions: the actions per host, after the state changes were recorded.
#[derive(Debug, Default)]
pub struct PassPlan {
    pub actions: Vec<(Arc<str>, Action)>,
}

impl Breakers {
    pub fn new(trip: TripArgs, metrics: BreakerMetrics) -> Self {
        Self {
            trip,
            breakers: BTreeMap::new(),
            metrics,
        }
    }

    /// Forgets every host's memory and state series: a replica that lost the Lease must not
    /// publish stale states, and one that gains it rebuilds them from the marks.
    pub fn reset(&mut self) {
        self.breakers.clear();
        self.metrics.state.clear();
    }

    /// Decides one pass as of `now` from the store's records. Pure apart from the metrics.
    pub fn plan(&mut self, store: &Store, now: OffsetDateTime) -> PassPlan {
        let started = Instant::now();
        let settings = self.trip.settings();
        let min_failing = i64::try_from(settings.min_failing.max(1)).unwrap_or(i64::MAX);
        // Hosts worth a look: enough transport failures to maybe trip, quarantined objects to
        // look after, or a breaker that is not at rest.
        let tallies = store.host_tallies();
        let mut hosts: BTreeSet<Arc<str>> = tallies
            .iter()
            .filter(|(_, t)| t.transport_failing >= min_failing || t.quarantine_marked > 0)
            .map(|(host, _)| host.clone())
            .collect();
        hosts.extend(
            self.breakers
                .iter()
                .filter(|(_, b)| !b.at_rest())
                .map(|(host, _)| host.clone()),
        );
        let mut members = members_by_host(store, &hosts, &tallies, &self.trip);

        let mut plan = PassPlan::default();
        for host in hosts {
            let members = members.remove(&host).unwrap_or_default();
            let breaker = self.breakers.entry(host.clone()).or_default();
            let step = breaker.step(&members, now, &settings);
            if let Some((from, to)) = step.transition {
                tracing::info!(%host, from = from.as_str(), to = to.as_str(), quarantined = step.snapshot.quarantined, "host breaker changed state");
                self.metrics
                    .transitions
                    .get_or_create(&HostTransitionLabels {
                        host: host.to_string(),
                        from: from.as_str(),
                        to: to.as_str(),
                    })
                    .inc();
            }
            if let Some(outcome) = step.probe {
                let outcome = match outcome {
                    ProbeOutcome::Passed => "passed",
                    ProbeOutcome::Failed => "failed",
                    ProbeOutcome::ReleaseAborted => "release_aborted",
                };
                tracing::info!(%host, outcome, "host probed");
                self.metrics
                    .probes
                    .get_or_create(&HostOutcomeLabels {
                        host: host.to_string(),
                        outcome,
                    })
                    .inc();
            }
            for state in BreakerState::ALL {
                self.metrics
                    .state
                    .get_or_create(&HostStateLabels {
                        host: host.to_string(),
                        state: state.as_str(),
                    })
                    .set(i64::from(state == step.snapshot.state));
            }
            plan.actions
                .extend(step.actions.into_iter().map(|a| (host.clone(), a)));
        }
        self.metrics
            .pass_duration
            .observe(started.elapsed().as_secs_f64());
        plan
    }
}

/// Each of `hosts`' GitRepositories as the breaker judges them, from the store's records: every
/// pass, and `fluxgate report`, read a host through this. On a host `trip` excludes all of them
/// are opted out, so nothing there is quarantined and what was is released.
pub fn members_by_host(
    store: &Store,
    hosts: &BTreeSet<Arc<str>>,
    tallies: &BTreeMap<Arc<str>, HostTally>,
    trip: &TripArgs,
) -> BTreeMap<Arc<str>, Vec<Member>> {
    // Each host's members in one allocation of the size the store counted (it may have
    // changed since, by a few): grown by doubling, the 87 000 of a large outage took up to
    // twice their size, and a copy of it.
    let mut members: BTreeMap<Arc<str>, Vec<Member>> = hosts
        .iter()
        .map(|host| {
            let records = tallies.get(host).map_or(0, |t| t.records);
            let capacity = usize::try_from(records).unwrap_or(0);
            (host.clone(), Vec::with_capacity(capacity))
        })
        .collect();
    store.visit_hosts(hosts, |uid, record| {
        // Every host visited has its entry.
        if let Some(members) = members.get_mut(&record.host) {
            members.push(member_of_record(uid, record));
        }
    });
    for (host, members) in &mut members {
        if trip.excludes(host) {
            for member in members {
                member.opted_out = true;
            }
        }
    }
    members
}

/// What became of one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The object changed or vanished since it was judged; left alone.
    Skipped,
}

impl Applied {
    fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Skipped => "skip",
        }
    }
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Quarantine { .. } => "quarantine",
        Action::Release { .. } => "release",
        Action::AcknowledgeOverride { .. } => "acknowledge_override",
    }
}

/// The merge patch that carries out `action` on a GitRepository of `host`.
pub fn patch_for(host: &str, action: &Action, now: OffsetDateTime) -> Value {
    let stamp = rfc3339_seconds(now);
    let mut patch = match action {
        Action::Quarantine { reason, .. } => json!({
            "metadata": {
                "labels": { quarantine::LABEL: "true" },
                "annotations": {
                    quarantine::HOST_ANNOTATION: host,
                    quarantine::AT_ANNOTATION: stamp,
                    quarantine::REASON_ANNOTATION: reason,
                },
            },
            "spec": { "suspend": true },
        }),
        // One patch: a suspend lifted while the label stays would read as someone else's.
        Action::Release { .. } => json!({
            "metadata": {
                "labels": { quarantine::LABEL: null },
                "annotations": {
                    quarantine::HOST_ANNOTATION: null,
                    quarantine::AT_ANNOTATION: null,
                    quarantine::REASON_ANNOTATION: null,
                    quarantine::RELEASED_AT_ANNOTATION: stamp,
                    flux::REQUESTED_AT_ANNOTATION: stamp,
                },
            },
            "spec": { "suspend": false },
        }),
        // Only fluxgate's own marks change: whoever lifted the suspend keeps it lifted.
        Action::AcknowledgeOverride { .. } => json!({
            "metadata": {
                "labels": { quarantine::LABEL: null },
                "annotations": {
                    quarantine::HOST_ANNOTATION: null,
                    quarantine::AT_ANNOTATION: null,
                    quarantine::REASON_ANNOTATION: null,
                    quarantine::OVERRIDDEN_AT_ANNOTATION: stamp,
                },
            },
        }),
    };
    // Version 0 (not one the store could keep) leaves the write unconditional.
    if let (
        Some(metadata),
        Action::Quarantine {
            resource_version, ..
        }
        | Action::Release {
            resource_version, ..
        },
    ) = (patch["metadata"].as_object_mut(), action)
        && *resource_version != 0
    {
        metadata.insert(
            "resourceVersion".to_owned(),
            Value::String(resource_version.to_string()),
        );
    }
    patch
}

fn event_for(host: &str, action: &Action) -> Event {
    let (type_, reason, note, verb) = match action {
        Action::Quarantine { reason, .. } => (
            EventType::Warning,
            "Quarantined",
            format!(
                "fluxgate's circuit breaker for {host} suspended this GitRepository: {reason}. It is \
                 released by itself once {host} answers again (or now with `fluxgate restore NAMESPACE/NAME`)"
            ),
            "Quarantine",
        ),
        Action::Release { canary: true, .. } => (
            EventType::Normal,
            "Probing",
            format!("fluxgate released this GitRepository to probe whether {host} answers again"),
            "Release",
        ),
        Action::Release { canary: false, .. } => (
            EventType::Normal,
            "Released",
            format!("fluxgate's circuit breaker released this GitRepository: {host} answers again"),
            "Release",
        ),
        Action::AcknowledgeOverride { .. } => (
            EventType::Warning,
            "QuarantineOverridden",
            format!(
                "this GitRepository was unsuspended while quarantined for {host}; fluxgate leaves it \
                 alone until {host} answers again (annotate fluxgate.io/breaker: \"false\" to opt out for good)"
            ),
            "Acknowledge",
        ),
    };
    Event {
        type_,
        reason: reason.to_owned(),
        note: Some(crate::text::fit(&note, EVENT_NOTE_LIMIT).into_owned()),
        action: verb.to_owned(),
        secondary: None,
    }
}

fn is_precondition_failure(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.is_conflict() || status.is_not_found())
}

/// Carries out one action, then records its Event.
pub async fn apply(
    client: &kube::Client,
    recorder: Option<&Recorder>,
    host: &str,
    action: &Action,
    now: OffsetDateTime,
) -> Result<Applied, kube::Error> {
    let key = action.key();
    let api = flux::gitrepositories(client, Some(&key.namespace));
    let patch = patch_for(host, action, now);
    match api
        .patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(err) if is_precondition_failure(&err) => return Ok(Applied::Skipped),
        Err(err) => return Err(err),
    }
    tracing::info!(namespace = %key.namespace, name = %key.name, host, action = action_name(action), "breaker acted");
    if let Some(recorder) = recorder {
        let reference =
            flux::object_reference(&key.namespace, &key.name, Some(key.uid.to_string()), None);
        if let Err(err) = recorder.publish(&event_for(host, action), &reference).await {
            // The change itself is made; a lost Event must not undo or repeat it.
            tracing::warn!(error = %err, name = %key.name, "recording the Event failed");
        }
    }
    Ok(Applied::Done)
}

pub fn recorder(client: &kube::Client, instance: Option<String>) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: "fluxgate-breaker".to_owned(),
            instance,
        },
    )
}

/// Runs passes while `leadership` says this replica leads: every `pass_interval`, and within
/// about a second of any change the watch sees.
pub async fn run_while_leading(
    client: kube::Client,
    store: Arc<Store>,
    mut breakers: Breakers,
    mut leadership: Leadership,
    instance: String,
    pass_interval: Duration,
) -> anyhow::Result<()> {
    let metrics = breakers.metrics.clone();
    let mut ticker = tokio::time::interval(pass_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = store.changed() => tokio::time::sleep(SETTLE).await,
            changed = leadership.changed() => {
                let Ok(leading) = changed else {
                    anyhow::bail!("breaker Lease manager stopped");
                };
                tracing::info!(leader = leading, "breaker leadership changed");
                breakers.reset();
                continue;
            }
        }
        // A partial view (the first list, or a re-list after a watch failure) would misjudge.
        if !leadership.is_leader() || !store.is_synced() {
            continue;
        }
        let plan = breakers.plan(&store, OffsetDateTime::now_utc());
        if plan.actions.is_empty() {
            continue;
        }
        // A recorder per pass: each action is a distinct Event (RBAC stays `create`).
        let recorder = recorder(&client, Some(instance.clone()));
        for (host, action) in &plan.actions {
            // Re-checked before every write: a replica that lost the Lease stops at once.
            if !leadership.is_leader() {
                break;
            }
            let outcome = apply(
                &client,
                Some(&recorder),
                host,
                action,
                OffsetDateTime::now_utc(),
            )
            .await;
            let label = match &outcome {
                Ok(applied) => applied.as_str(),
                Err(err) => {
                    tracing::warn!(error = %err, name = %action.key().name, "breaker action failed");
                    "error"
                }
            };
            metrics
                .actions
                .get_or_create(&BreakerActionLabels {
                    action: action_name(action),
                    outcome: label,
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ObjectKey;
    use super::*;
    use time::macros::datetime;

    fn key() -> ObjectKey {
        ObjectKey {
            namespace: "proj-1".into(),
            name: "app".into(),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn quarantine_and_release_are_conditional_and_undo_each_other() {
        let now = datetime!(2026-11-30 10:00 UTC);
        let quarantine = patch_for(
            "github.com",
            &Action::Quarantine {
                key: key(),
                resource_version: 41,
                reason: "timeout".into(),
            },
            now,
        );
        assert_eq!(quarantine["metadata"]["resourceVersion"], "41");
        assert_eq!(quarantine["spec"]["suspend"], true);
        assert_eq!(quarantine["metadata"]["labels"][quarantine::LABEL], "true");
        assert_eq!(
            quarantine["metadata"]["annotations"][quarantine::HOST_ANNOTATION],
            "github.com"
        );
        let release = patch_for(
            "github.com",
            &Action::Release {
                key: key(),
                resource_version: 42,
                canary: true,
            },
            now,
        );
        assert_eq!(release["metadata"]["resourceVersion"], "42");
        assert_eq!(release["spec"]["suspend"], false);
        assert!(release["metadata"]["labels"][quarantine::LABEL].is_null());
        let annotations = &release["metadata"]["annotations"];
        assert_eq!(
            annotations[flux::REQUESTED_AT_ANNOTATION],
            "2026-11-30T10:00:00Z"
        );
        assert_eq!(
            annotations[quarantine::RELEASED_AT_ANNOTATION],
            "2026-11-30T10:00:00Z"
        );
        for mark in [
            quarantine::HOST_ANNOTATION,
            quarantine::AT_ANNOTATION,
            quarantine::REASON_ANNOTATION,
        ] {
            assert!(annotations.get(mark).is_some_and(Value::is_null), "{mark}");
        }
        let unconditional = patch_for(
            "h",
            &Action::Release {
                key: key(),
                resource_version: 0,
                canary: false,
            },
            now,
        );
        assert!(unconditional["metadata"].get("resourceVersion").is_none());
    }

    #[test]
    fn an_acknowledged_override_never_touches_the_spec() {
        let patch = patch_for(
            "github.com",
            &Action::AcknowledgeOverride { key: key() },
            datetime!(2026-11-30 10:00 UTC),
        );
        assert!(patch.get("spec").is_none());
        assert!(patch["metadata"].get("resourceVersion").is_none());
        assert!(patch["metadata"]["labels"][quarantine::LABEL].is_null());
        assert_eq!(
            patch["metadata"]["annotations"][quarantine::OVERRIDDEN_AT_ANNOTATION],
            "2026-11-30T10:00:00Z"
        );
    }
}
