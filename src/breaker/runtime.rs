//! The breaker at work in `serve`: on the replica that holds the Lease, each pass reads the
//! exporter's records of the hosts worth a look (no LIST of the cluster), steps each host's
//! [`HostBreaker`], and writes only the GitRepositories it acts on, through the marks' one
//! writer ([`crate::marks::Writer`]): conditional on the resourceVersion it judged, with an Event.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::args::TripArgs;
use super::machine::{HostCheck, Inputs, ProbeReport};
use super::probe::Prober;
use super::{Action, BreakerState, HostBreaker, Member, ProbeOutcome, counts, member_of_record};
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
    /// fluxgate's own probe of open hosts; without one (tests of the state machine's pacing,
    /// the offline report) a due canary goes out unprobed.
    probes: Option<Arc<ProbeBook>>,
    /// `--breaker-lane`: the shard a tripped host's GitRepositories move to, instead of being
    /// suspended.
    lane: Option<String>,
    /// The cluster-wide failure guard is engaged ([`cluster_wide_failure`]).
    cluster_wide: bool,
}

/// One pass's decisions: the actions per host, after the state changes were recorded, and the
/// hosts to probe now (with a URL of one of their GitRepositories).
#[derive(Debug, Default)]
pub struct PassPlan {
    pub actions: Vec<(Arc<str>, Action)>,
    pub probes: Vec<(Arc<str>, Box<str>)>,
    /// See [`Inputs::cluster_wide_failure`].
    pub cluster_wide_failure: bool,
}

/// When each open host was last probed, and what the probe found: written by the probe tasks,
/// read by the passes.
#[derive(Debug, Default)]
pub struct ProbeBook {
    hosts: Mutex<HashMap<Arc<str>, ProbeEntry>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct ProbeEntry {
    started: Option<OffsetDateTime>,
    /// A probe of the host is under way: never two at once, whatever the timeout and period.
    running: bool,
    report: Option<ProbeReport>,
}

impl ProbeBook {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, ProbeEntry>> {
        self.hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn report(&self, host: &str) -> Option<ProbeReport> {
        self.entries().get(host).and_then(|e| e.report)
    }

    /// Takes note that `host` is probed as of `now`, if its last probe started at least a
    /// `period` ago and has finished (at most one probe per host per period, one at a time).
    fn start_if_due(&self, host: &Arc<str>, now: OffsetDateTime, period: Duration) -> bool {
        let mut entries = self.entries();
        let entry = entries.entry(host.clone()).or_default();
        let period = time::Duration::try_from(period).unwrap_or(time::Duration::MAX);
        let due = !entry.running && entry.started.is_none_or(|t| now - t >= period);
        if due {
            entry.started = Some(now);
            entry.running = true;
        }
        due
    }

    /// A probe of `host` finished (every probe does, within its timeout).
    pub fn record(&self, host: &Arc<str>, report: ProbeReport) {
        let mut entries = self.entries();
        let entry = entries.entry(host.clone()).or_default();
        entry.report = Some(report);
        entry.running = false;
    }

    /// A host no longer open is probed afresh next time: an old answer is no news.
    fn forget(&self, host: &str) {
        self.entries().remove(host);
    }

    fn clear(&self) {
        self.entries().clear();
    }
}

/// Whether transport failures span several hosts at once: at least two hosts newly meet the
/// trip condition (closed breakers, not already open for an outage of their own) and they are at
/// least as many as the hosts still answering (some Ready GitRepository, not tripping). A far
/// host failing among healthy ones is its own outage; every host failing at once is the
/// cluster's egress, DNS or proxy. A cluster with one host cannot tell the two apart: its host
/// trips as before, and the probe, which goes out the same way, keeps it quarantined until the
/// path answers again.
pub fn cluster_wide_failure(newly_failing: usize, answering: usize) -> bool {
    newly_failing >= 2 && newly_failing >= answering
}

impl Breakers {
    pub fn new(trip: TripArgs, metrics: BreakerMetrics) -> Self {
        Self {
            trip,
            breakers: BTreeMap::new(),
            metrics,
            probes: None,
            lane: None,
            cluster_wide: false,
        }
    }

    /// Moves a tripped host's GitRepositories into the host lane `shard` instead of suspending
    /// them, and back once they are Ready there and the host answers again.
    #[must_use]
    pub fn in_lane(mut self, shard: Option<String>) -> Self {
        self.lane = shard;
        self
    }

    pub fn lane(&self) -> Option<&str> {
        self.lane.as_deref()
    }

    /// Probes open hosts before releasing any of their GitRepositories: their results go into
    /// `book`.
    #[must_use]
    pub fn probed(mut self, book: Arc<ProbeBook>) -> Self {
        self.probes = Some(book);
        self
    }

    /// Forgets every host's memory and state series: a replica that lost the Lease must not
    /// publish stale states, and one that gains it rebuilds them from the marks.
    pub fn reset(&mut self) {
        self.breakers.clear();
        self.cluster_wide = false;
        self.metrics.state.clear();
        self.metrics.cluster_wide_failure.set(0);
        if let Some(book) = &self.probes {
            book.clear();
        }
    }

    /// Decides one pass as of `now` from the store's records. Pure apart from the metrics and
    /// the probe book.
    pub fn plan(&mut self, store: &Store, now: OffsetDateTime) -> PassPlan {
        let started = Instant::now();
        let settings = super::Settings {
            lane: self.lane.is_some(),
            ..self.trip.settings()
        };
        let min_failing = i64::try_from(settings.min_failing.max(1)).unwrap_or(i64::MAX);
        // Hosts worth a look: enough transport failures to maybe trip, quarantined objects to
        // look after, or a breaker that is not at rest.
        let tallies = store.host_tallies();
        // A host with no GitRepositories left is forgotten, with its series.
        self.forget_hosts_without_members(&tallies);
        let worth_a_look = |t: &HostTally| t.transport_failing >= min_failing;
        // An excluded host never trips, so its failures alone are no reason to build a member
        // for each of its GitRepositories: it is published closed, as a step would leave it.
        // Quarantines left from before it was excluded still get a step, which releases them.
        let resting: Vec<Arc<str>> = tallies
            .iter()
            .filter(|(host, t)| {
                t.quarantine_marked == 0 && worth_a_look(t) && self.trip.excludes(host)
            })
            .filter(|(host, _)| self.breakers.get(*host).is_none_or(HostBreaker::at_rest))
            .map(|(host, _)| host.clone())
            .collect();
        for host in &resting {
            self.breakers.entry(host.clone()).or_default();
            self.publish_state(host, BreakerState::Closed);
        }
        let mut hosts: BTreeSet<Arc<str>> = tallies
            .iter()
            .filter(|(_, t)| worth_a_look(t) || t.quarantine_marked > 0)
            .map(|(host, _)| host.clone())
            .filter(|host| !resting.contains(host))
            .collect();
        hosts.extend(
            self.breakers
                .iter()
                .filter(|(_, b)| !b.at_rest())
                .map(|(host, _)| host.clone()),
        );
        let mut members = members_by_host(store, &hosts, &tallies, &self.trip);
        let mut plan = PassPlan {
            cluster_wide_failure: self.judge_cluster(&members, &tallies, &settings, now),
            ..PassPlan::default()
        };
        self.metrics
            .cluster_wide_failure
            .set(i64::from(plan.cluster_wide_failure));
        // The release budget, shared by every host: released GitRepositories not tried yet.
        let budget = settings.release_batch.max(1);
        let mut in_flight: usize = hosts
            .iter()
            .filter_map(|h| Some(self.breakers.get(h)?.in_flight(members.get(h)?)))
            .sum();
        for host in hosts {
            let members = members.remove(&host).unwrap_or_default();
            let breaker = self.breakers.entry(host.clone()).or_default();
            let own = breaker.in_flight(&members);
            let inputs = Inputs {
                check: match &self.probes {
                    Some(book) => HostCheck::Probed(book.report(&host)),
                    None => HostCheck::Unchecked,
                },
                cluster_wide_failure: plan.cluster_wide_failure,
                release_room: budget.saturating_sub(in_flight),
            };
            let step = breaker.step_checked(&members, now, &settings, inputs);
            in_flight = in_flight - own + breaker.in_flight(&members).max(releases(&step));
            if let Some(book) = &self.probes {
                if !step.snapshot.wants_probe {
                    book.forget(&host);
                } else if book.start_if_due(&host, now, settings.probe_interval)
                    && let Some(url) = store.probe_url(&host)
                {
                    plan.probes.push((host.clone(), url));
                }
            }
            self.record_step(&host, &step);
            plan.actions
                .extend(step.actions.into_iter().map(|a| (host.clone(), a)));
        }
        self.metrics
            .pass_duration
            .observe(started.elapsed().as_secs_f64());
        plan
    }

    /// See [`cluster_wide_failure`]: counted from the members this pass holds (hosts worth a
    /// look) and the store's tallies (every host). The guard engages only on hosts whose
    /// failures all began lately (within two windows and a probe period: they answered just
    /// before), so hosts failing for long — the incident's far host — never make an egress
    /// failure of themselves; once engaged it holds while the hosts keep failing together.
    fn judge_cluster(
        &mut self,
        members: &BTreeMap<Arc<str>, Vec<Member>>,
        tallies: &BTreeMap<Arc<str>, HostTally>,
        settings: &super::Settings,
        now: OffsetDateTime,
    ) -> bool {
        let lately = settings
            .window
            .saturating_mul(2)
            .saturating_add(settings.probe_interval);
        let lately = time::Duration::try_from(lately).unwrap_or(time::Duration::MAX);
        let mut tripping: BTreeSet<&Arc<str>> = BTreeSet::new();
        let (mut newly_failing, mut newly_failing_lately) = (0, 0);
        for (host, members) in members {
            let counts = counts(members);
            if !counts.trip(settings) {
                continue;
            }
            tripping.insert(host);
            let closed = self
                .breakers
                .get(host)
                .is_none_or(|b| b.state() == BreakerState::Closed);
            if closed {
                newly_failing += 1;
                if counts.first_failure_at.is_some_and(|t| now - t <= lately) {
                    newly_failing_lately += 1;
                }
            }
        }
        let answering = tallies
            .iter()
            .filter(|(host, t)| t.ready > 0 && !tripping.contains(host))
            .count();
        let engaged = if self.cluster_wide {
            cluster_wide_failure(newly_failing, answering)
        } else {
            cluster_wide_failure(newly_failing_lately, answering)
        };
        if engaged != self.cluster_wide {
            tracing::warn!(
                engaged,
                failing_hosts = newly_failing,
                answering_hosts = answering,
                "transport failures across hosts: the cluster's egress, DNS or proxy"
            );
        }
        self.cluster_wide = engaged;
        engaged
    }

    fn forget_hosts_without_members(&mut self, tallies: &BTreeMap<Arc<str>, HostTally>) {
        let gone: Vec<Arc<str>> = self
            .breakers
            .keys()
            .filter(|host| !tallies.contains_key(*host))
            .cloned()
            .collect();
        for host in gone {
            self.breakers.remove(&host);
            for state in BreakerState::ALL {
                self.metrics.state.remove(&HostStateLabels {
                    host: host.to_string(),
                    state: state.as_str(),
                });
            }
            if let Some(book) = &self.probes {
                book.forget(&host);
            }
        }
    }

    /// The step's state, transition and probe verdict, in the logs and metrics.
    fn record_step(&self, host: &Arc<str>, step: &super::Step) {
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
                ProbeOutcome::Answered => "answered",
                ProbeOutcome::Unanswered => "unanswered",
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
        self.publish_state(host, step.snapshot.state);
    }

    fn publish_state(&self, host: &str, current: BreakerState) {
        for state in BreakerState::ALL {
            self.metrics
                .state
                .get_or_create(&HostStateLabels {
                    host: host.to_owned(),
                    state: state.as_str(),
                })
                .set(i64::from(state == current));
        }
    }
}

/// How many GitRepositories a step released.
fn releases(step: &super::Step) -> usize {
    step.actions
        .iter()
        .filter(|a| matches!(a, Action::Release { .. }))
        .count()
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
/// With a `lane`, a quarantine is a move into it and a release a move back.
pub fn change_for(host: &str, action: &Action, lane: Option<&str>) -> (Target, Change) {
    let key = action.key();
    let (version, change) = match action {
        Action::Quarantine {
            resource_version,
            reason,
            ..
        } => (
            *resource_version,
            match lane {
                Some(shard) => Change::MoveToLane {
                    host: host.to_owned(),
                    shard: shard.to_owned(),
                    reason: reason.clone(),
                },
                None => Change::Quarantine {
                    host: host.to_owned(),
                    reason: reason.clone(),
                },
            },
        ),
        Action::Release {
            resource_version,
            canary,
            ..
        } => (
            *resource_version,
            match lane {
                Some(_) => Change::MoveBack {
                    host: host.to_owned(),
                    canary: *canary,
                },
                None => Change::Release {
                    host: host.to_owned(),
                    canary: *canary,
                },
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
    /// fluxgate's own probe of open hosts, with the book the breakers read its results from
    /// (see [`Breakers::probed`]); `None` releases canaries unprobed.
    pub prober: Option<(Prober, Arc<ProbeBook>)>,
    /// Woken when a probe finishes, so its verdict is acted on at once.
    pub probed: Arc<tokio::sync::Notify>,
}

impl BreakerDuty {
    /// The breaker as `serve` runs it: `prober` probes each open host, and `breakers` read its
    /// verdicts from the same book before any canary.
    pub fn probed(
        client: kube::Client,
        store: Arc<Store>,
        breakers: Breakers,
        instance: String,
        prober: Prober,
    ) -> Self {
        let book = Arc::new(ProbeBook::default());
        Self {
            client,
            store,
            breakers: breakers.probed(book.clone()),
            instance,
            prober: Some((prober, book)),
            probed: Arc::default(),
        }
    }

    /// Probes each host in the background (the prober bounds how many at once and how long
    /// each takes); the verdict lands in the book and wakes a pass.
    fn start_probes(&self, probes: Vec<(Arc<str>, Box<str>)>) {
        let Some((prober, book)) = &self.prober else {
            return;
        };
        for (host, url) in probes {
            let (prober, book, probed) = (prober.clone(), book.clone(), self.probed.clone());
            tokio::spawn(async move {
                let verdict = prober.probe_url(&url).await;
                let answered = verdict.answered();
                tracing::info!(%host, answered, verdict = verdict.reason(), "probed the host");
                let at = OffsetDateTime::now_utc();
                book.record(&host, ProbeReport { at, answered });
                probed.notify_one();
            });
        }
    }
}

impl Duty for BreakerDuty {
    async fn wake(&self) {
        tokio::select! {
            () = self.store.changed() => tokio::time::sleep(SETTLE).await,
            () = self.probed.notified() => {}
        }
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
        self.start_probes(plan.probes);
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
            let (target, change) = change_for(host, action, self.breakers.lane());
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
            None,
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
            None,
        );
        assert_eq!(
            target.resource_version, None,
            "0: the store could not keep it"
        );
        assert!(matches!(change, Change::Release { canary: true, .. }));
        let (target, change) = change_for(
            "github.com",
            &Action::AcknowledgeOverride { key: key() },
            None,
        );
        assert_eq!(
            (target.namespace.as_str(), target.name.as_str()),
            ("proj-1", "app")
        );
        assert!(!change.judged_on_a_version());
    }

    fn repo(host: &str, i: usize, ready: bool) -> crate::health::Health {
        let condition = if ready {
            serde_json::json!({ "type": "Ready", "status": "True", "reason": "Succeeded",
                "message": "stored artifact", "lastTransitionTime": "2026-12-06T10:00:00Z" })
        } else {
            serde_json::json!({ "type": "Ready", "status": "False", "reason": "GitOperationFailed",
                "message": "dial tcp: connect: connection refused",
                "lastTransitionTime": "2026-12-06T10:00:00Z" })
        };
        crate::health::classify(&serde_json::json!({
            "metadata": { "name": format!("r{i}"), "namespace": "p", "uid": format!("{host}-{i}"),
                          "resourceVersion": "5", "generation": 1 },
            "spec": { "url": format!("http://{host}/org/r{i}") },
            "status": { "observedGeneration": 1, "conditions": [condition] },
        }))
        .unwrap()
    }

    /// Four hosts, three GitRepositories each; `failing` of the hosts fail.
    fn cluster(failing: usize) -> Store {
        let store = Store::default();
        store.relist_start(0);
        for (h, host) in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
            .iter()
            .enumerate()
        {
            for i in 0..3 {
                store.relist_apply(0, &repo(host, i, h >= failing));
            }
        }
        store.relist_done(0, true, 0);
        store
    }

    fn trip() -> TripArgs {
        TripArgs {
            breaker_min_failing: 2,
            breaker_window: Duration::ZERO,
            ..TripArgs::default()
        }
    }

    #[test]
    fn with_a_lane_a_quarantine_is_a_move_and_a_release_a_move_back() {
        let quarantine = Action::Quarantine {
            key: key(),
            resource_version: 7,
            reason: "down".into(),
        };
        let (target, change) = change_for("github.com", &quarantine, Some("far"));
        assert_eq!(target.resource_version.as_deref(), Some("7"));
        assert!(matches!(change, Change::MoveToLane { ref shard, .. } if shard == "far"));
        let release = Action::Release {
            key: key(),
            resource_version: 8,
            canary: true,
        };
        let (_, change) = change_for("github.com", &release, Some("far"));
        assert!(matches!(change, Change::MoveBack { canary: true, .. }));
    }

    #[test]
    fn the_guard_tells_the_clusters_egress_from_one_hosts_outage() {
        assert!(
            !cluster_wide_failure(1, 0),
            "one host alone is its own outage"
        );
        assert!(cluster_wide_failure(2, 0));
        assert!(cluster_wide_failure(3, 3));
        assert!(
            !cluster_wide_failure(2, 3),
            "two of five hosts: their own outages"
        );
    }

    #[test]
    fn every_host_failing_at_once_quarantines_nothing() {
        // Their failures began half a minute ago: the hosts answered just before.
        let now = time::macros::datetime!(2026-12-06 10:00:30 UTC);
        let metrics = BreakerMetrics::default();
        let mut breakers = Breakers::new(trip(), metrics.clone());
        let plan = breakers.plan(&cluster(4), now);
        assert!(plan.cluster_wide_failure);
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert_eq!(metrics.cluster_wide_failure.get(), 1);
        // Still failing together an hour later: the guard holds.
        let plan = breakers.plan(&cluster(4), now + time::Duration::HOUR);
        assert!(plan.cluster_wide_failure);
        assert!(plan.actions.is_empty());
        // One host failing among three that answer trips as before.
        let plan = breakers.plan(&cluster(1), now + time::Duration::HOUR);
        assert!(!plan.cluster_wide_failure);
        assert_eq!(metrics.cluster_wide_failure.get(), 0);
        let quarantined: Vec<_> = plan.actions.iter().map(|(h, _)| &**h).collect();
        assert_eq!(quarantined, ["10.0.0.1"; 3]);
    }

    #[test]
    fn an_ssh_outage_is_not_diluted_by_the_same_hosts_https_successes() {
        let object = |i: usize, url: &str, ready: bool| {
            let mut health = repo("github.com", i, ready);
            health.host = crate::health::host_key(url);
            health.uid = format!("{url}-{i}");
            health
        };
        let store = Store::default();
        store.relist_start(0);
        for i in 0..6 {
            store.relist_apply(0, &object(i, "git@github.com:o/r", false));
            store.relist_apply(0, &object(i, "https://github.com/o/r", true));
            store.relist_apply(0, &object(i, "https://github.com/o/s", true));
        }
        store.relist_done(0, true, 0);
        let now = time::macros::datetime!(2026-12-06 14:00 UTC);
        let mut breakers = Breakers::new(trip(), BreakerMetrics::default());
        let plan = breakers.plan(&store, now);
        let hosts: BTreeSet<&str> = plan.actions.iter().map(|(h, _)| &**h).collect();
        assert_eq!(hosts, BTreeSet::from(["ssh://github.com"]));
        assert_eq!(plan.actions.len(), 6);
        // Excluding the host name leaves both transports alone.
        let excluded = TripArgs {
            breaker_exclude_hosts: vec!["github.com:22".into()],
            ..trip()
        };
        let plan = Breakers::new(excluded, BreakerMetrics::default()).plan(&store, now);
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn an_excluded_host_is_not_looked_at_unless_it_holds_quarantines() {
        let now = time::macros::datetime!(2026-12-06 14:00 UTC);
        let excluded = TripArgs {
            breaker_exclude_hosts: vec!["10.0.0.1".into()],
            ..trip()
        };
        let mut breakers = Breakers::new(excluded, BreakerMetrics::default());
        let plan = breakers.plan(&cluster(2), now);
        let hosts: BTreeSet<&str> = plan.actions.iter().map(|(h, _)| &**h).collect();
        assert_eq!(hosts, BTreeSet::from(["10.0.0.2"]));
        // Published closed, as a step over its members would leave it.
        assert!(breakers.breakers["10.0.0.1"].at_rest());
    }

    #[test]
    fn hosts_failing_for_long_are_no_egress_failure() {
        // The incident: hosts that have failed for hours, one that answers.
        let now = time::macros::datetime!(2026-12-06 14:00 UTC);
        let mut breakers = Breakers::new(trip(), BreakerMetrics::default());
        let plan = breakers.plan(&cluster(3), now);
        assert!(!plan.cluster_wide_failure);
        assert_eq!(plan.actions.len(), 9, "each failing host trips on its own");
    }

    #[test]
    fn a_probed_open_host_is_probed_once_a_period_and_forgotten_when_gone() {
        let now = OffsetDateTime::now_utc();
        let book = Arc::new(ProbeBook::default());
        let mut breakers = Breakers::new(trip(), BreakerMetrics::default()).probed(book.clone());
        let store = cluster(1);
        let plan = breakers.plan(&store, now);
        assert_eq!(plan.actions.len(), 3, "quarantined");
        // Open: probed at once, with a URL of one of its GitRepositories; not again within
        // the period, and nothing released while no probe has answered.
        let probes: Vec<_> = plan.probes.iter().map(|(h, u)| (&**h, &**u)).collect();
        assert_eq!(probes.len(), 1);
        assert!(
            probes[0].1.starts_with("http://10.0.0.1/org/r"),
            "{probes:?}"
        );
        let again = breakers.plan(&store, now + time::Duration::seconds(30));
        assert!(again.probes.is_empty());
        // (The store does not see the quarantine here, so it is asked for again.)
        assert!(
            again
                .actions
                .iter()
                .all(|(_, a)| matches!(a, Action::Quarantine { .. })),
            "{:?}",
            again.actions
        );
        let later = breakers.plan(&store, now + time::Duration::minutes(1));
        assert!(later.probes.is_empty(), "the first probe has not finished");
        let report = ProbeReport {
            at: now + time::Duration::seconds(70),
            answered: false,
        };
        book.record(&Arc::from("10.0.0.1"), report);
        let later = breakers.plan(&store, now + time::Duration::minutes(2));
        assert_eq!(later.probes.len(), 1, "one probe per period, one at a time");
        // The host's GitRepositories are deleted: the host, its breaker and series go.
        let empty = Store::default();
        empty.relist_start(0);
        empty.relist_done(0, true, 0);
        breakers.plan(&empty, now + time::Duration::minutes(3));
        assert!(breakers.breakers.is_empty());
        assert_eq!(book.report("10.0.0.1"), None);
    }
}
