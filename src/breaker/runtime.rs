//! The breaker at work in `serve`: on the replica that holds the Lease, each pass reads the
//! exporter's records of the hosts worth a look (no LIST of the cluster), steps each host's
//! [`HostBreaker`], and writes only the GitRepositories it acts on, through the marks' one
//! writer ([`crate::marks::Writer`]): conditional on the resourceVersion it judged, with an Event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::args::TripArgs;
use super::{Action, BreakerState, HostBreaker, Member, ProbeOutcome, member_of_record};
use crate::election::{Duty, Leadership};
use crate::exporter::Store;
use crate::exporter::store::HostTally;
use crate::marks::{Change, Target, Writer};
use crate::metrics::{
    BreakerActionLabels, BreakerMetrics, HostOutcomeLabels, HostStateLabels, HostTransitionLabels,
};

/// After the watch reports a change, wait this long for more before a pass: a burst of events
/// (a re-list, many failures at once) becomes one pass. Shorter than source-controller's first
/// retry after a failure (`--min-retry-delay`, 750ms), so a failure on an open host is
/// quarantined before it is tried again and holds a worker for another timeout.
const SETTLE: Duration = Duration::from_millis(200);

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

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Quarantine { .. } => "quarantine",
        Action::Release { .. } => "release",
        Action::AcknowledgeOverride { .. } => "acknowledge_override",
    }
}

/// What `action` on a GitRepository of `host` is, as a change to its marks, and the object and
/// version it was judged on (version 0, one the store could not keep, leaves it unconditional).
pub fn change_for(host: &str, action: &Action) -> (Target, Change) {
    let key = action.key();
    let (version, change) = match action {
        Action::Quarantine {
            resource_version,
            reason,
            ..
        } => (
            *resource_version,
            Change::Quarantine {
                host: host.to_owned(),
                reason: reason.clone(),
            },
        ),
        Action::Release {
            resource_version,
            canary,
            ..
        } => (
            *resource_version,
            Change::Release {
                host: host.to_owned(),
                canary: *canary,
            },
        ),
        Action::AcknowledgeOverride { .. } => (
            0,
            Change::AcknowledgeOverride {
                host: host.to_owned(),
            },
        ),
    };
    let target = Target {
        namespace: key.namespace.to_string(),
        name: key.name.to_string(),
        uid: Some(key.uid.to_string()),
        resource_version: (version != 0).then(|| version.to_string()),
    };
    (target, change)
}

/// The breaker's passes on the Lease holder, over the exporter's records.
pub struct BreakerDuty {
    pub client: kube::Client,
    pub store: Arc<Store>,
    pub breakers: Breakers,
    pub instance: String,
}

impl Duty for BreakerDuty {
    async fn wake(&self) {
        self.store.changed().await;
        tokio::time::sleep(SETTLE).await;
    }

    /// Forgets every host's memory and state series: a replica that lost the Lease must not
    /// publish stale states, and one that gains it rebuilds them from the marks.
    fn leadership_changed(&mut self, _leading: bool) {
        self.breakers.reset();
    }

    async fn pass(&mut self, leadership: &Leadership) {
        // A partial view (the first list, or a re-list after a watch failure) would misjudge.
        if !self.store.is_synced() {
            return;
        }
        let plan = self.breakers.plan(&self.store, OffsetDateTime::now_utc());
        if plan.actions.is_empty() {
            return;
        }
        let writer = Writer::new(
            &self.client,
            "fluxgate-breaker",
            Some(self.instance.clone()),
        );
        for (host, action) in &plan.actions {
            // Re-checked before every write: a replica that lost the Lease stops at once.
            if !leadership.is_leader() {
                break;
            }
            let (target, change) = change_for(host, action);
            let outcome = writer
                .write(&target, &change, OffsetDateTime::now_utc())
                .await;
            let label = match &outcome {
                Ok(written) => written.as_str(),
                Err(err) => {
                    tracing::warn!(error = %err, name = %target.name, "breaker action failed");
                    "error"
                }
            };
            self.breakers
                .metrics
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

    fn key() -> ObjectKey {
        ObjectKey {
            namespace: "proj-1".into(),
            name: "app".into(),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn decisions_are_written_on_the_version_they_judged() {
        let (target, change) = change_for(
            "github.com",
            &Action::Quarantine {
                key: key(),
                resource_version: 41,
                reason: "timeout".into(),
            },
        );
        assert_eq!(target.resource_version.as_deref(), Some("41"));
        assert_eq!(target.uid.as_deref(), Some("u-1"));
        assert_eq!(
            change,
            Change::Quarantine {
                host: "github.com".into(),
                reason: "timeout".into()
            }
        );
        let (target, change) = change_for(
            "github.com",
            &Action::Release {
                key: key(),
                resource_version: 0,
                canary: true,
            },
        );
        assert_eq!(
            target.resource_version, None,
            "0: the store could not keep it"
        );
        assert!(matches!(change, Change::Release { canary: true, .. }));
        let (target, change) =
            change_for("github.com", &Action::AcknowledgeOverride { key: key() });
        assert_eq!(
            (target.namespace.as_str(), target.name.as_str()),
            ("proj-1", "app")
        );
        assert!(!change.judged_on_a_version());
    }
}
