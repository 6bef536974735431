//! One host's breaker: closed → open → half-open → closed, decided pass by pass from the host's
//! GitRepositories and the `now` the caller gives.

use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use time::{OffsetDateTime, PrimitiveDateTime};

use super::{Condition, Member, ObjectKey, Settings, counts, would_trip};
use crate::uid::Uid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BreakerState {
    /// Nothing quarantined, or the quarantined GitRepositories are being released in batches.
    Closed,
    /// The host fails: its failing GitRepositories are quarantined until the next probe.
    Open,
    /// One quarantined GitRepository, the canary, was released; its next attempt decides.
    HalfOpen,
}

impl BreakerState {
    pub const ALL: [BreakerState; 3] = [Self::Closed, Self::Open, Self::HalfOpen];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// One change for the runtime to make, conditional on the object's uid and resourceVersion so
/// that a change made meanwhile wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `spec.suspend: true`, the quarantine label, and the host, time and reason annotations.
    Quarantine {
        key: ObjectKey,
        /// 0: unknown, the write is unconditional.
        resource_version: u64,
        reason: String,
    },
    /// `spec.suspend: false`, the label removed and the release time annotated, in one patch: a
    /// suspend lifted while the label stays reads as someone else's override.
    Release {
        key: ObjectKey,
        /// 0: unknown, the write is unconditional.
        resource_version: u64,
        canary: bool,
    },
    /// Someone else lifted a quarantine: an Event, the label removed and the time annotated
    /// ([`crate::marks::stamps::OVERRIDDEN_AT_ANNOTATION`]). Never suspended again in this episode.
    AcknowledgeOverride { key: ObjectKey },
}

impl Action {
    pub fn key(&self) -> &ObjectKey {
        match self {
            Self::Quarantine { key, .. }
            | Self::Release { key, .. }
            | Self::AcknowledgeOverride { key } => key,
        }
    }
}

/// The latest of fluxgate's own checks of a host ([`super::probe`]): whether it answered at the
/// protocol level (an HTTP status below 500 other than 429, or an SSH banner), and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeReport {
    pub at: OffsetDateTime,
    pub answered: bool,
}

/// What a pass knows beyond the host's GitRepositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    pub check: HostCheck,
    /// Transport failures span several hosts at once: the cluster's own egress, DNS or proxy is
    /// failing, not this host. Nothing is quarantined and no breaker opens while it holds.
    pub cluster_wide_failure: bool,
    /// How many GitRepositories this pass may release: what the release budget shared by every
    /// host has left.
    pub release_room: usize,
}

impl Default for Inputs {
    fn default() -> Self {
        Self {
            check: HostCheck::Unchecked,
            cluster_wide_failure: false,
            release_room: usize::MAX,
        }
    }
}

/// What a pass knows of a host beyond its GitRepositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCheck {
    /// No probe is run (`fluxgate report`, which has no network): a canary that is due goes out
    /// as if the host had answered.
    Unchecked,
    /// fluxgate probes the host: its latest result, if any. No canary goes out, and so no worker
    /// of source-controller is held, unless the host has just answered.
    Probed(Option<ProbeReport>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// fluxgate's own probe found the host answering.
    Answered,
    /// fluxgate's own probe found no answer (a hang, a refusal, DNS, TLS, 429 or 5xx).
    Unanswered,
    /// The canary became Ready (or the host at least answered it): closed, releasing the rest.
    Passed,
    /// The canary failed with a transport error or was not Ready in time; or no canary was left
    /// and the host's visible GitRepositories still meet the trip condition.
    Failed,
    /// The batch release was stopped because what it released fails again.
    ReleaseAborted,
}

/// What the runtime and the metrics read about one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub state: BreakerState,
    pub quarantined: usize,
    /// Of the members the trip condition looks at (see [`super::counts`]).
    pub transport_failing: usize,
    pub considered: usize,
    pub total: usize,
    /// The wait before the next probe (or the one a reopening would start from).
    pub probe_delay: Duration,
    /// When the next canary may go out (after a probe answers), while open.
    pub next_probe_at: Option<OffsetDateTime>,
    /// Open: fluxgate should keep probing the host, once every `probe_interval`.
    pub wants_probe: bool,
    pub canary: Option<ObjectKey>,
    /// Closed, and quarantined GitRepositories are still being released or watched.
    pub releasing: bool,
    /// Since when the trip condition has held without a break, while closed.
    pub tripping_since: Option<OffsetDateTime>,
}

/// What one pass decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// In order of importance; no more than `max_actions_per_pass`.
    pub actions: Vec<Action>,
    /// At most one per pass: (from, to).
    pub transition: Option<(BreakerState, BreakerState)>,
    /// Set when a probe (or a batched release) was decided in this pass.
    pub probe: Option<ProbeOutcome>,
    pub snapshot: Snapshot,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Closed {
        release: Option<Release>,
    },
    /// `episode`: when the breaker opened; overrides acknowledged since then are honoured.
    Open {
        episode: OffsetDateTime,
        next_probe_at: OffsetDateTime,
    },
    HalfOpen {
        episode: OffsetDateTime,
        canary: Uid,
        released_at: OffsetDateTime,
    },
}

impl Default for Phase {
    fn default() -> Self {
        Self::Closed { release: None }
    }
}

/// A batched release after a passed probe, watched until what it released has been tried.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Release {
    episode: OffsetDateTime,
    /// By uid: when each was released (the canary included).
    released: BTreeMap<Uid, OffsetDateTime>,
    last_batch_at: Option<OffsetDateTime>,
}

#[derive(Debug, Default)]
struct Progress {
    attempted: usize,
    failing: usize,
    waiting: usize,
}

impl Release {
    /// How many the next batch releases: twice what is out already (the canary included), at
    /// least 2 and at most `release_batch`. A canary that passed on a flaky host was luck; a
    /// small first batch shows it before the workers are handed 20 hanging clones, and on a host
    /// that answers the batches reach full size within a few steps. Counted from what was
    /// released, so a new leader that took the release over from the marks goes on alike.
    fn next_batch(&self, settings: &Settings) -> usize {
        let full = settings.release_batch.max(1);
        (2 * self.released.len()).clamp(2.min(full), full)
    }

    fn progress(&self, members: &[Member]) -> Progress {
        let mut progress = Progress::default();
        for member in members {
            let Some(&released_at) = self.released.get(&member.key.uid) else {
                continue;
            };
            let fresh = attempted_since(member, released_at);
            match member.condition {
                Condition::Ready => progress.attempted += 1,
                Condition::TransportFailing { .. } if fresh => {
                    progress.attempted += 1;
                    progress.failing += 1;
                }
                Condition::OtherFailing if fresh => progress.attempted += 1,
                // Throttled is no return: counted as failing again, like a transport failure.
                Condition::Throttled if fresh => {
                    progress.attempted += 1;
                    progress.failing += 1;
                }
                Condition::SuspendedByOthers | Condition::QuarantineOverridden => {}
                _ => progress.waiting += 1,
            }
        }
        progress
    }
}

/// What let a canary out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum CanaryCause {
    /// The host answered a probe after the canary's delay.
    Answered,
    /// The host answered every probe for `probe_interval_max`, before the delay ran out.
    Steady,
    /// No probe runs ([`HostCheck::Unchecked`]): the delay alone lets the canary out.
    #[default]
    Unprobed,
}

/// The breaker of one host. Its memory is small and can be rebuilt: the first [`Self::step`] of a
/// fresh breaker (a new leader) takes over from the marks on the members:
///
/// - quarantined members → open since the oldest quarantine, probing a probe delay after that
///   (at once if that is past);
/// - members released after that time of which at least one is Ready → a batched release in
///   progress (closed), resumed rather than probed again;
/// - released members, none Ready yet → a probe in flight: half-open, with the latest released as
///   the canary and its timeout counted from its release;
/// - nothing quarantined → closed.
///
/// The probe backoff is not in the marks, so a new leader starts it again at `probe_interval`.
///
/// # Flapping
///
/// A host that answers some attempts (say 30%) passes a probe now and then, and a naive breaker
/// would close, release everything, trip again and repeat every few minutes. Two rules stop this:
///
/// - a batched release is aborted, counted as a failed probe, once what it released fails again
///   with transport errors (at least half of the released members that have been tried, and
///   enough of them that one unlucky repository is not an outage);
/// - the probe delay survives closing: tripping again within `probe_interval_max` of closing
///   doubles the last delay instead of starting over;
/// - a host that answered a probe and then failed again in the same episode (its canary or its
///   release) is flapping: its delay starts at `canary_timeout` and may grow to
///   `flapping_probe_interval_max` (1h) instead of `probe_interval_max` (10m), so the canaries
///   of a flaky host thin out to a few an hour, while a host that is plainly down is still
///   probed often enough to be back within minutes of its return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostBreaker {
    phase: Phase,
    taken_over: bool,
    tripping_since: Option<OffsetDateTime>,
    /// Zero until first chosen; always read through [`Self::delay`].
    probe_delay: Duration,
    closed_at: Option<OffsetDateTime>,
    /// Answered a probe and failed again since it last rested: see [`HostBreaker`], flapping.
    flapping: bool,
    /// The time of the latest probe result judged, so that each is judged once.
    probe_judged_at: Option<OffsetDateTime>,
    /// Since when every probe of the host has answered, without a break.
    answered_since: Option<OffsetDateTime>,
    /// Why the canary out now went: its failure after an answer means the host answers but its
    /// clones fail.
    canary_cause: CanaryCause,
    /// A canary sent on steady answers failed in this episode: for this host the probe's answers
    /// do not say that clones work, so they no longer cut a wait short.
    steady_misled: bool,
    /// The last pass held by a cluster-wide failure: failures from before it are the egress's,
    /// not this host's, so the trip window counts from here.
    held_at: Option<OffsetDateTime>,
}

impl HostBreaker {
    /// Closed, not counting towards a trip, and not releasing: nothing to watch closely.
    pub fn at_rest(&self) -> bool {
        matches!(self.phase, Phase::Closed { release: None }) && self.tripping_since.is_none()
    }

    pub fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// One pass over one host's GitRepositories, unprobed ([`HostCheck::Unchecked`]).
    pub fn step(&mut self, members: &[Member], now: OffsetDateTime, settings: &Settings) -> Step {
        self.step_checked(members, now, settings, Inputs::default())
    }

    /// One pass over one host's GitRepositories, with what fluxgate's own probe found: what to
    /// change, and the breaker's new state.
    pub fn step_checked(
        &mut self,
        members: &[Member],
        now: OffsetDateTime,
        settings: &Settings,
        inputs: Inputs,
    ) -> Step {
        if !self.taken_over {
            self.take_over(members, now, settings);
            self.taken_over = true;
        }
        let before = self.state();
        let mut pass = Pass {
            members,
            now,
            settings,
            actions: Vec::new(),
            probe: None,
            hold: inputs.cluster_wide_failure,
            release_room: inputs.release_room,
            answered: self.answered_since.is_some(),
        };
        match &mut self.phase {
            // Taken, not copied: a release remembers every member it released, up to a host's
            // whole quarantine. `step_closed` always sets the phase again.
            Phase::Closed { release } => {
                let release = release.take();
                self.step_closed(release, &mut pass);
            }
            &mut Phase::Open {
                episode,
                next_probe_at,
            } => {
                let canary = self.may_send_canary(inputs.check, next_probe_at, &mut pass);
                pass.answered = self.answered_since.is_some();
                if let Some(cause) = canary {
                    self.canary_cause = cause;
                    self.probe(episode, &mut pass);
                }
            }
            Phase::HalfOpen {
                episode,
                canary,
                released_at,
            } => {
                let (episode, canary, released_at) = (*episode, canary.clone(), *released_at);
                self.judge_canary(episode, &canary, released_at, &mut pass);
            }
        }
        pass.acknowledge_overrides();
        pass.release_opted_out();
        match &self.phase {
            // A failing egress is no reason to suspend anyone's GitRepository.
            _ if pass.hold => {}
            Phase::Open { episode, .. } => pass.quarantine_failing(*episode, None),
            Phase::HalfOpen {
                episode, canary, ..
            } => pass.quarantine_failing(*episode, Some(canary)),
            Phase::Closed { .. } => {}
        }
        let after = self.state();
        Step {
            transition: (before != after).then_some((before, after)),
            probe: pass.probe,
            snapshot: self.snapshot(members, settings),
            actions: pass.actions,
        }
    }

    /// GitRepositories this breaker released that source-controller has not tried yet: what it
    /// holds of the release budget shared by every host.
    pub fn in_flight(&self, members: &[Member]) -> usize {
        match &self.phase {
            Phase::Closed {
                release: Some(release),
            } => release.progress(members).waiting,
            Phase::HalfOpen {
                canary,
                released_at,
                ..
            } => usize::from(
                members
                    .iter()
                    .any(|m| &m.key.uid == canary && !attempted_since(m, *released_at)),
            ),
            _ => 0,
        }
    }

    pub fn snapshot(&self, members: &[Member], settings: &Settings) -> Snapshot {
        let counts = counts(members);
        Snapshot {
            state: self.state(),
            quarantined: members.iter().filter(|m| m.is_quarantined()).count(),
            transport_failing: counts.transport_failing,
            considered: counts.considered,
            total: members.len(),
            probe_delay: self.delay(settings),
            next_probe_at: match self.phase {
                Phase::Open { next_probe_at, .. } => Some(next_probe_at),
                _ => None,
            },
            wants_probe: matches!(self.phase, Phase::Open { .. }),
            canary: match &self.phase {
                Phase::HalfOpen { canary, .. } => members
                    .iter()
                    .find(|m| &m.key.uid == canary)
                    .map(|m| m.key.clone()),
                _ => None,
            },
            releasing: matches!(self.phase, Phase::Closed { release: Some(_) }),
            tripping_since: self.tripping_since,
        }
    }

    fn take_over(&mut self, members: &[Member], now: OffsetDateTime, settings: &Settings) {
        let oldest_quarantine = members
            .iter()
            .filter_map(|m| match m.condition {
                // Unknown or future times (clock skew) count as now: wait a full delay.
                Condition::Quarantined { at } => Some(at.map_or(now, |at| at.min(now))),
                _ => None,
            })
            .min();
        let Some(episode) = oldest_quarantine else {
            return;
        };
        let released: BTreeMap<Uid, OffsetDateTime> = members
            .iter()
            .filter(|m| !m.is_quarantined())
            .filter_map(|m| Some((m.key.uid.clone(), m.released_at.filter(|t| *t > episode)?)))
            .collect();
        let recovered = members
            .iter()
            .any(|m| m.condition == Condition::Ready && released.contains_key(&m.key.uid));
        let latest_release = released.iter().max_by_key(|(_, at)| **at);
        self.phase = if recovered {
            self.closed_at = released.values().min().copied();
            Phase::Closed {
                release: Some(Release {
                    episode,
                    last_batch_at: released.values().max().copied(),
                    released,
                }),
            }
        } else if let Some((canary, released_at)) = latest_release {
            Phase::HalfOpen {
                episode,
                canary: canary.clone(),
                released_at: *released_at,
            }
        } else {
            Phase::Open {
                episode,
                next_probe_at: after(episode, self.delay(settings)),
            }
        };
    }

    /// Judges the latest probe result once, and says whether a canary may go out now: only just
    /// after the host answered, and once its delay has passed or the host has answered every
    /// probe for `probe_interval_max` (a host that flapped and then came back for good is not
    /// held for the rest of a long delay: the latch lasts only as long as its reason).
    ///
    /// A host whose probe never answers releases nothing, however long: a canary would hold a
    /// source-controller worker for a whole timeout on a host that is down. A path only the
    /// probe lacks (a NetworkPolicy, a port not allowed) holds the host as well; the
    /// `FluxGitHostBreakerOpen` alert and the probe outcomes say so, and a person's restore
    /// lifts it.
    fn may_send_canary(
        &mut self,
        check: HostCheck,
        next_probe_at: OffsetDateTime,
        pass: &mut Pass,
    ) -> Option<CanaryCause> {
        let (now, settings) = (pass.now, pass.settings);
        let report = match check {
            HostCheck::Unchecked => {
                return (now >= next_probe_at).then_some(CanaryCause::Unprobed);
            }
            HostCheck::Probed(report) => report,
        };
        if let Some(report) = report.filter(|r| self.probe_judged_at.is_none_or(|t| r.at > t)) {
            self.probe_judged_at = Some(report.at);
            if report.answered {
                self.answered_since.get_or_insert(report.at);
                pass.probe = Some(ProbeOutcome::Answered);
            } else {
                self.answered_since = None;
                pass.probe = Some(ProbeOutcome::Unanswered);
            }
        }
        // An answer older than two probe periods says nothing about the host now.
        let recent = settings.probe_interval.saturating_mul(2);
        let answering = self.answered_since.is_some()
            && self
                .probe_judged_at
                .is_some_and(|t| elapsed(t, now) <= recent);
        let steady = !self.steady_misled
            && self
                .answered_since
                .is_some_and(|t| elapsed(t, now) >= settings.probe_interval_max);
        if !answering {
            None
        } else if now >= next_probe_at {
            Some(CanaryCause::Answered)
        } else {
            steady.then_some(CanaryCause::Steady)
        }
    }

    /// The probe delay in force, within the settings' bounds whatever they are.
    fn delay(&self, settings: &Settings) -> Duration {
        self.probe_delay
            .max(settings.probe_interval)
            .min(self.delay_cap(settings))
    }

    fn delay_cap(&self, settings: &Settings) -> Duration {
        let cap = if self.flapping {
            settings.flapping_probe_interval_max
        } else {
            settings.probe_interval_max
        };
        cap.max(settings.probe_interval)
    }

    /// Doubles the delay within the cap in force now, so a cap raised later (the host turned out
    /// to flap) continues from the delay actually used.
    ///
    /// A flapping host's canaries wait at least `canary_timeout`, what each of them may hold a
    /// worker for: with probes a minute apart, doubling from one minute would send most of an
    /// episode's canaries in its first half hour, each a state change and a held worker.
    fn back_off(&mut self, settings: &Settings) {
        let floor = if self.flapping {
            settings.canary_timeout
        } else {
            Duration::ZERO
        };
        self.probe_delay = self
            .delay(settings)
            .saturating_mul(2)
            .max(floor)
            .min(self.delay_cap(settings));
    }

    fn open(&mut self, episode: OffsetDateTime, pass: &Pass) {
        self.tripping_since = None;
        // The next canary needs a new answer.
        self.answered_since = None;
        self.phase = Phase::Open {
            episode,
            next_probe_at: after(pass.now, self.delay(pass.settings)),
        };
    }

    /// A canary sent on the host's answer that fails shows a host that answers but fails
    /// clones: it flaps. Without a probe, nothing tells a flaky host from a down one.
    fn fail_canary(&mut self, episode: OffsetDateTime, pass: &mut Pass) {
        match self.canary_cause {
            CanaryCause::Answered => self.flapping = true,
            CanaryCause::Steady => (self.flapping, self.steady_misled) = (true, true),
            CanaryCause::Unprobed => {}
        }
        self.fail_probe(episode, ProbeOutcome::Failed, pass);
    }

    fn fail_probe(&mut self, episode: OffsetDateTime, outcome: ProbeOutcome, pass: &mut Pass) {
        self.back_off(pass.settings);
        pass.probe = Some(outcome);
        self.open(episode, pass);
    }

    fn close(
        &mut self,
        episode: OffsetDateTime,
        canary: Option<(&Uid, OffsetDateTime)>,
        pass: &mut Pass,
    ) {
        self.closed_at = Some(pass.now);
        self.tripping_since = None;
        pass.probe = Some(ProbeOutcome::Passed);
        let release = Release {
            episode,
            released: canary
                .map(|(uid, at)| (uid.clone(), at))
                .into_iter()
                .collect(),
            last_batch_at: None,
        };
        // Only the Ready canary has been released: this cannot abort.
        self.step_closed(Some(release), pass);
    }

    /// Closed: watches what was released and the host as a whole, and releases the next batch
    /// when it is due and neither says the host is down. Always sets the phase.
    fn step_closed(&mut self, release: Option<Release>, pass: &mut Pass) {
        let (now, settings) = (pass.now, pass.settings);
        let waiting = pass.releasable(settings.release_batch.max(1));
        let release = release.or_else(|| {
            // Quarantined members while closed (left over, or applied late) are ours to release.
            (!waiting.is_empty()).then(|| Release {
                episode: whole_seconds(now),
                released: BTreeMap::new(),
                last_batch_at: None,
            })
        });
        let Some(mut release) = release else {
            self.phase = Phase::Closed { release: None };
            self.watch_for_trip(None, pass);
            return;
        };
        let progress = release.progress(pass.members);
        // A quarter of a batch failing again (two at least), and half of what was tried, is an
        // outage; one repository failing alone is not. Each failure holds a worker for its whole timeout, so
        // waiting for more would let a flaky host's release take the workers from everyone else.
        let enough = (settings.release_batch.min(release.released.len()) / 4).max(2);
        if progress.failing >= enough && progress.failing * 2 >= progress.attempted {
            self.flapping = true;
            self.fail_probe(release.episode, ProbeOutcome::ReleaseAborted, pass);
            return;
        }
        // Before handing out more: the host failing as a whole opens the breaker, in the same
        // episode. Releasing a batch first would have it quarantined again in the same pass.
        if self.watch_for_trip(Some(release.episode), pass) {
            return;
        }
        // The next batch waits until at least half of what was released has been tried (or a
        // canary timeout has passed): on a host that answers again, clones take seconds and the
        // batches follow at `release_every`; on one that does not, released GitRepositories
        // hold the workers, and more of them would only queue up before the abort.
        let due = release.last_batch_at.is_none_or(|t| {
            elapsed(t, now) >= settings.release_every
                && (progress.attempted >= progress.waiting
                    || elapsed(t, now) >= settings.canary_timeout)
        });
        let mut released_now = 0;
        if due {
            let batch = release.next_batch(settings).min(pass.release_room);
            for member in waiting.iter().take(batch) {
                if !pass.push(Action::Release {
                    key: member.key.clone(),
                    resource_version: member.resource_version,
                    canary: false,
                }) {
                    break;
                }
                release.released.insert(member.key.uid.clone(), now);
                released_now += 1;
            }
            pass.release_room -= released_now;
            if released_now > 0 {
                release.last_batch_at = Some(now);
            }
        }
        // Done once nothing is left and what was released has been tried (or had its chance).
        let done = waiting.is_empty()
            && (progress.waiting == 0
                || release
                    .last_batch_at
                    .is_none_or(|t| elapsed(t, now) >= settings.canary_timeout));
        self.phase = Phase::Closed {
            release: (!done).then_some(release),
        };
    }

    /// Opens the breaker when the trip condition has held for the window; `episode` is that of
    /// a release in progress, which the opening continues. Returns whether it opened.
    fn watch_for_trip(&mut self, episode: Option<OffsetDateTime>, pass: &mut Pass) -> bool {
        let (now, settings) = (pass.now, pass.settings);
        // One count of the members for both the condition and its start.
        let counts = counts(pass.members);
        if !counts.trip(settings) {
            self.tripping_since = None;
            return false;
        }
        // Judged again once the cluster's egress answers: the window keeps running meanwhile.
        if pass.hold {
            self.held_at = Some(now);
            self.tripping_since = None;
            return false;
        }
        // The window runs from the host's first failure still standing, not from the pass that
        // first saw enough of them: with a 5m timeout and two workers, the fourth failure comes
        // ten minutes into an outage, and waiting a window after that doubles the damage.
        // After a cluster-wide failure, a host is judged on what it does once the egress is back:
        // the statuses it left behind are still failures until each GitRepository is retried.
        let first_failure = counts
            .first_failure_at
            .map_or(now, |t| t.min(now))
            .max(self.held_at.unwrap_or(OffsetDateTime::UNIX_EPOCH).min(now));
        let since = *self.tripping_since.get_or_insert(first_failure);
        if elapsed(since, now) < settings.window {
            return false;
        }
        // Tripping again soon after closing: the passed probe was luck, keep backing off.
        let recently_closed = self
            .closed_at
            .is_some_and(|closed| elapsed(closed, now) < settings.flapping_probe_interval_max);
        if recently_closed {
            self.flapping = true;
            self.back_off(settings);
        } else {
            (self.flapping, self.steady_misled) = (false, false);
            self.probe_delay = settings.probe_interval;
        }
        self.open(episode.unwrap_or_else(|| whole_seconds(now)), pass);
        true
    }

    /// Releases one canary; with none left, judges the host by what is visible of it.
    fn probe(&mut self, episode: OffsetDateTime, pass: &mut Pass) {
        match pass.releasable(1).first() {
            // The release budget is spent by other hosts: the canary waits for the next pass.
            Some(_) if pass.release_room == 0 => {}
            Some(canary) => {
                if pass.push(Action::Release {
                    key: canary.key.clone(),
                    resource_version: canary.resource_version,
                    canary: true,
                }) {
                    pass.release_room -= 1;
                    self.phase = Phase::HalfOpen {
                        episode,
                        canary: canary.key.uid.clone(),
                        released_at: pass.now,
                    };
                }
            }
            None if would_trip(pass.members, pass.settings) => {
                self.fail_probe(episode, ProbeOutcome::Failed, pass);
            }
            // In a lane the host's GitRepositories are still being tried, by the lane's
            // source-controller: one Ready there is the canary. Until then only an answer to
            // fluxgate's own probe says the host is back; a due canary without a probe, with
            // nothing Ready in the lane, is no reason to close while they all still fail there.
            None if pass.settings.lane
                && self.answered_since.is_none()
                && pass
                    .members
                    .iter()
                    .any(|m| matches!(m.condition, Condition::Quarantined { .. })) => {}
            None => self.close(episode, None, pass),
        }
    }

    fn judge_canary(
        &mut self,
        episode: OffsetDateTime,
        uid: &Uid,
        released_at: OffsetDateTime,
        pass: &mut Pass,
    ) {
        let Some(canary) = pass
            .members
            .iter()
            .find(|m| &m.key.uid == uid && !m.opted_out)
        else {
            // Deleted or opted out: another canary.
            self.probe(episode, pass);
            return;
        };
        let fresh = attempted_since(canary, released_at);
        let timed_out = elapsed(released_at, pass.now) >= pass.settings.canary_timeout;
        match canary.condition {
            Condition::Ready => self.close(episode, Some((uid, released_at)), pass),
            // An auth or not-found failure after the release still means the host answered.
            Condition::OtherFailing if fresh => {
                self.close(episode, Some((uid, released_at)), pass);
            }
            // A 429 or 502/503 answer is the host asking for fewer attempts, not a return.
            Condition::TransportFailing { .. } | Condition::Throttled if fresh => {
                self.fail_canary(episode, pass);
            }
            Condition::SuspendedByOthers | Condition::QuarantineOverridden => {
                self.probe(episode, pass);
            }
            _ if timed_out => self.fail_canary(episode, pass),
            Condition::Quarantined { .. } => {
                // The release has not been seen yet: ask again (a stale resourceVersion makes a
                // repeat harmless).
                pass.push(Action::Release {
                    key: canary.key.clone(),
                    resource_version: canary.resource_version,
                    canary: true,
                });
            }
            _ => {}
        }
    }
}

/// One pass's inputs and the actions collected so far, within the pass's budget.
struct Pass<'a> {
    members: &'a [Member],
    now: OffsetDateTime,
    settings: &'a Settings,
    actions: Vec<Action>,
    probe: Option<ProbeOutcome>,
    /// See [`Inputs::cluster_wide_failure`].
    hold: bool,
    /// See [`Inputs::release_room`]; what is left of it in this pass.
    release_room: usize,
    /// fluxgate's probe found the host answering in this episode: see [`Pass::releasable`].
    answered: bool,
}

impl<'a> Pass<'a> {
    fn push(&mut self, action: Action) -> bool {
        let room = self.actions.len() < self.settings.max_actions_per_pass;
        if room {
            self.actions.push(action);
        }
        room
    }

    /// The first `limit` quarantined members the breaker may release, oldest quarantine first,
    /// then by name.
    /// In a lane (`Settings::lane`), until fluxgate's probe finds the host answering, only those
    /// Ready there: one the lane's source-controller still fails on would only fail on the main
    /// one too, and it is served where it is. Once the host answers, any of them, as a release
    /// after suspending: the lane's workers may still be held by attempts hanging until their
    /// timeout, and the main source-controller clones a GitRepository moved back at once.
    fn releasable(&self, limit: usize) -> Vec<&'a Member> {
        let only_ready = self.settings.lane && !self.answered;
        first_by_key(self.members, limit, |m| match m.condition {
            Condition::Quarantined { at } if !m.opted_out && (!only_ready || m.ready_in_lane) => {
                Some((at, &m.key))
            }
            _ => None,
        })
    }

    fn acknowledge_overrides(&mut self) {
        let members: &'a [Member] = self.members;
        for member in members
            .iter()
            .filter(|m| m.condition == Condition::QuarantineOverridden)
        {
            self.push(Action::AcknowledgeOverride {
                key: member.key.clone(),
            });
        }
    }

    /// Opting out undoes the breaker's own quarantine: the owner asked for no breaker.
    fn release_opted_out(&mut self) {
        let members: &'a [Member] = self.members;
        for member in members.iter().filter(|m| m.opted_out && m.is_quarantined()) {
            self.push(Action::Release {
                key: member.key.clone(),
                resource_version: member.resource_version,
                canary: false,
            });
        }
    }

    /// Open or half-open: suspends what would only hold a worker on a dead host, transport
    /// failures first. Ready and other failures are the repositories' own business.
    fn quarantine_failing(&mut self, episode: OffsetDateTime, canary: Option<&Uid>) {
        let members: &'a [Member] = self.members;
        let room = self
            .settings
            .max_actions_per_pass
            .saturating_sub(self.actions.len());
        let candidates = first_by_key(members, room, |m| {
            let transport = match m.condition {
                Condition::TransportFailing { .. } => true,
                Condition::NotAttempted => false,
                _ => return None,
            };
            let candidate = !m.opted_out
                && canary != Some(&m.key.uid)
                && m.overridden_at.is_none_or(|t| t < episode);
            candidate.then_some((!transport, &m.key))
        });
        if candidates.is_empty() {
            return;
        }
        let counts = counts(members);
        let quarantined = members.iter().filter(|m| m.is_quarantined()).count();
        let reason = format!(
            "{} of {} GitRepositories of this host fail with transport errors (timeout, DNS, TLS \
             or connection); circuit breaker open since {}",
            counts.transport_failing + quarantined,
            counts.considered + quarantined,
            crate::policy::rfc3339_seconds(episode),
        );
        for member in candidates {
            if !self.push(Action::Quarantine {
                key: member.key.clone(),
                resource_version: member.resource_version,
                reason: reason.clone(),
            }) {
                break;
            }
        }
    }
}

/// The first `limit` of the members that `key` gives a key, by key, and in their order among
/// equal keys (as a stable sort would put them). A pass acts on a few of a host's members (its
/// `max_actions_per_pass`, a release batch, one canary): this holds no more than `limit` of them
/// at a time, where collecting and sorting every candidate took a pointer each (87 000 in a large
/// outage) and n log n comparisons of names, on every pass.
fn first_by_key<'m, K: Ord>(
    members: &'m [Member],
    limit: usize,
    key: impl Fn(&'m Member) -> Option<K>,
) -> Vec<&'m Member> {
    // The largest kept on top, to be replaced by a smaller one; ties go to the earlier member.
    let mut first: BinaryHeap<(K, usize)> = BinaryHeap::new();
    for (i, member) in members.iter().enumerate() {
        let Some(key) = key(member) else {
            continue;
        };
        if first.len() < limit {
            first.push((key, i));
        } else if let Some(mut largest) = first.peek_mut()
            && key < largest.0
        {
            *largest = (key, i);
        }
    }
    first
        .into_sorted_vec()
        .into_iter()
        .map(|(_, i)| &members[i])
        .collect()
}

/// Whether the member's Ready condition changed at or after `t` (one second of slack: condition
/// times have whole seconds): only then is its status news since its release.
fn attempted_since(member: &Member, t: OffsetDateTime) -> bool {
    member
        .attempted_at
        .is_some_and(|at| t - at <= time::Duration::SECOND)
}

fn elapsed(since: OffsetDateTime, now: OffsetDateTime) -> Duration {
    Duration::try_from(now - since).unwrap_or(Duration::ZERO)
}

/// An episode starts on a whole second, as the marks it is compared with are written: an
/// override acknowledged in the episode's first second must not read as older than it.
fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

fn after(t: OffsetDateTime, wait: Duration) -> OffsetDateTime {
    time::Duration::try_from(wait)
        .ok()
        .and_then(|wait| t.checked_add(wait))
        .unwrap_or(PrimitiveDateTime::MAX.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use BreakerState::{Closed, HalfOpen, Open};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);
    const FAILING: Condition = Condition::TransportFailing { since: None };

    /// The settings these tests were written against, whatever the defaults become: trip at 10
    /// failing, a first canary 5 minutes after opening, at most hourly after failures, release
    /// 10 at a time every 30 seconds at the most.
    fn pinned() -> Settings {
        Settings {
            min_failing: 10,
            probe_interval: Duration::from_secs(5 * 60),
            release_every: Duration::from_secs(30),
            probe_interval_max: Duration::from_secs(3600),
            flapping_probe_interval_max: Duration::from_secs(3600),
            release_batch: 10,
            ..Settings::default()
        }
    }

    fn minutes(n: i64) -> time::Duration {
        time::Duration::minutes(n)
    }

    fn member(i: usize, condition: Condition) -> Member {
        Member {
            key: ObjectKey {
                namespace: "proj".into(),
                name: format!("repo-{i:03}").into(),
                uid: format!("u{i:03}").into(),
            },
            resource_version: 1,
            condition,
            opted_out: false,
            released_at: None,
            overridden_at: None,
            attempted_at: None,
            ready_in_lane: false,
        }
    }

    /// Members numbered in order: `count` of each condition.
    fn host(groups: &[(usize, Condition)]) -> Vec<Member> {
        groups
            .iter()
            .flat_map(|&(count, condition)| std::iter::repeat_n(condition, count))
            .enumerate()
            .map(|(i, condition)| member(i, condition))
            .collect()
    }

    fn find<'m>(members: &'m mut [Member], key: &ObjectKey) -> &'m mut Member {
        members.iter_mut().find(|m| &m.key == key).unwrap()
    }

    /// What the runtime would do; a released member shows its stale failure until it is tried.
    fn apply(members: &mut [Member], actions: &[Action], now: OffsetDateTime) {
        for action in actions {
            let member = find(members, action.key());
            match action {
                Action::Quarantine { .. } => {
                    member.condition = Condition::Quarantined { at: Some(now) }
                }
                Action::Release { .. } => {
                    member.condition = FAILING;
                    member.released_at = Some(now);
                }
                Action::AcknowledgeOverride { .. } => member.overridden_at = Some(now),
            }
        }
    }

    fn names(actions: &[Action], kind: fn(&Action) -> bool) -> Vec<&str> {
        let mut names: Vec<&str> = actions
            .iter()
            .filter(|a| kind(a))
            .map(|a| &*a.key().name)
            .collect();
        names.sort_unstable();
        names
    }

    fn is_quarantine(a: &Action) -> bool {
        matches!(a, Action::Quarantine { .. })
    }

    fn is_release(a: &Action) -> bool {
        matches!(a, Action::Release { .. })
    }

    fn is_canary(a: &Action) -> bool {
        matches!(a, Action::Release { canary: true, .. })
    }

    /// A breaker that tripped at T0 + 10m on `members` (all failing members now quarantined).
    fn tripped(members: &mut [Member], settings: &Settings) -> HostBreaker {
        let mut breaker = HostBreaker::default();
        assert!(breaker.step(members, T0, settings).actions.is_empty());
        let step = breaker.step(members, T0 + minutes(10), settings);
        assert_eq!(step.transition, Some((Closed, Open)));
        apply(members, &step.actions, T0 + minutes(10));
        breaker
    }

    /// A breaker that tripped on `members` and closed on a Ready canary released at T0 + 15m;
    /// with the closing step.
    fn closed_by_a_ready_canary(
        members: &mut [Member],
        settings: &Settings,
    ) -> (HostBreaker, Step) {
        let mut breaker = tripped(members, settings);
        let step = probe(
            &mut breaker,
            members,
            T0 + minutes(15),
            Condition::Ready,
            settings,
        );
        (breaker, step)
    }

    /// Probes at `now` and lets the canary end as `condition`, tried at `now + 1m`.
    fn probe(
        breaker: &mut HostBreaker,
        members: &mut [Member],
        now: OffsetDateTime,
        condition: Condition,
        settings: &Settings,
    ) -> Step {
        let step = breaker.step(members, now, settings);
        assert_eq!(step.transition, Some((Open, HalfOpen)), "{step:?}");
        apply(members, &step.actions, now);
        let canary = step.snapshot.canary.unwrap();
        let canary = find(members, &canary);
        canary.condition = condition;
        canary.attempted_at = Some(now + minutes(1));
        let step = breaker.step(members, now + minutes(1), settings);
        apply(members, &step.actions, now + minutes(1));
        step
    }

    #[test]
    fn state_names() {
        let names: Vec<_> = BreakerState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["closed", "open", "half_open"]);
    }

    #[test]
    fn the_first_by_key_are_those_a_stable_sort_puts_first() {
        // Out of name order, keys with ties, and a third left out by the key.
        let mut members = host(&[(40, FAILING)]);
        members.reverse();
        let key = |m: &Member| {
            let n: usize = m.key.name["repo-".len()..].parse().unwrap();
            (!n.is_multiple_of(3)).then_some(n % 7)
        };
        for limit in [0, 1, 5, 26, 27, 100] {
            let mut sorted: Vec<&Member> = members.iter().filter(|m| key(m).is_some()).collect();
            sorted.sort_by_key(|m| key(m));
            sorted.truncate(limit);
            assert_eq!(first_by_key(&members, limit, key), sorted, "{limit}");
        }
    }

    #[test]
    fn trips_after_the_window_and_a_dip_restarts_the_timer() {
        let settings = pinned();
        let mut members = host(&[(12, FAILING), (3, Condition::Ready)]);
        let mut breaker = HostBreaker::default();
        for minute in [0, 5, 9] {
            let step = breaker.step(&members, T0 + minutes(minute), &settings);
            assert_eq!((step.transition, step.actions.len()), (None, 0));
            assert_eq!(step.snapshot.tripping_since, Some(T0));
        }
        // Three recover for one pass: 9 failing is below the minimum of 10.
        for m in &mut members[..3] {
            m.condition = Condition::Ready;
        }
        let step = breaker.step(
            &members,
            T0 + minutes(9) + time::Duration::seconds(30),
            &settings,
        );
        assert_eq!(step.snapshot.tripping_since, None);
        for m in &mut members[..3] {
            m.condition = FAILING;
        }
        for minute in [10, 15, 19] {
            let step = breaker.step(&members, T0 + minutes(minute), &settings);
            assert_eq!(step.snapshot.state, Closed, "{minute}");
        }
        let step = breaker.step(&members, T0 + minutes(20), &settings);
        assert_eq!(step.transition, Some((Closed, Open)));
        assert_eq!(step.snapshot.next_probe_at, Some(T0 + minutes(25)));
        assert_eq!(names(&step.actions, is_quarantine).len(), 12);
        let Action::Quarantine { reason, .. } = &step.actions[0] else {
            panic!("{:?}", step.actions[0]);
        };
        assert_eq!(
            reason,
            "12 of 15 GitRepositories of this host fail with transport errors (timeout, DNS, TLS \
             or connection); circuit breaker open since 2026-11-28T12:20:00Z"
        );
    }

    #[test]
    fn a_few_failures_among_many_never_trip() {
        let settings = pinned();
        for (members, trips) in [
            (host(&[(15, FAILING), (20, Condition::Ready)]), false),
            (host(&[(9, FAILING)]), false),
            (host(&[(10, FAILING), (10, Condition::Ready)]), true),
            (host(&[]), false),
        ] {
            assert_eq!(would_trip(&members, &settings), trips, "{members:?}");
            let mut breaker = HostBreaker::default();
            for minute in 0..120 {
                breaker.step(&members, T0 + minutes(minute), &settings);
            }
            let tripped = breaker.state() == Open;
            assert_eq!(tripped, trips, "{members:?}");
        }
    }

    #[test]
    fn failures_that_are_not_the_hosts_never_trip() {
        let settings = pinned();
        let members = host(&[
            (100, Condition::OtherFailing),
            (50, Condition::NotAttempted),
        ]);
        let mut breaker = HostBreaker::default();
        for minute in 0..120 {
            let step = breaker.step(&members, T0 + minutes(minute), &settings);
            assert!(step.actions.is_empty());
            assert_eq!(step.snapshot.state, Closed);
        }
        // Suspended and opted-out members say nothing about the host: 10 failing of the 10 left.
        let mut members = host(&[
            (10, FAILING),
            (30, Condition::SuspendedByOthers),
            (30, Condition::Ready),
        ]);
        assert!(!would_trip(&members, &settings));
        for m in &mut members[40..] {
            m.opted_out = true;
        }
        assert!(would_trip(&members, &settings));
    }

    #[test]
    fn open_quarantines_only_failing_and_not_attempted_members() {
        let settings = pinned();
        let mut members = host(&[
            (12, FAILING),
            (3, Condition::NotAttempted),
            (4, Condition::Ready),
            (2, Condition::OtherFailing),
            (2, Condition::SuspendedByOthers),
            (2, FAILING),
        ]);
        for m in &mut members[23..] {
            m.opted_out = true;
        }
        let mut breaker = HostBreaker::default();
        breaker.step(&members, T0, &settings);
        let step = breaker.step(&members, T0 + minutes(10), &settings);
        let quarantined: Vec<&str> = step.actions.iter().map(|a| &*a.key().name).collect();
        let expected: Vec<String> = (0..15).map(|i| format!("repo-{i:03}")).collect();
        assert_eq!(
            quarantined, expected,
            "transport failures first, then by name"
        );
        apply(&mut members, &step.actions, T0 + minutes(10));
        assert!(
            breaker
                .step(&members, T0 + minutes(11), &settings)
                .actions
                .is_empty()
        );
        // A Ready one that starts failing is quarantined on the next pass, the others never.
        members[15].condition = FAILING;
        let step = breaker.step(&members, T0 + minutes(12), &settings);
        assert_eq!(names(&step.actions, is_quarantine), ["repo-015"]);
    }

    #[test]
    fn actions_per_pass_are_bounded() {
        let settings = Settings {
            max_actions_per_pass: 5,
            ..pinned()
        };
        let mut members = host(&[(3, Condition::NotAttempted), (12, FAILING)]);
        let mut breaker = HostBreaker::default();
        breaker.step(&members, T0, &settings);
        let mut per_pass = Vec::new();
        for minute in 10..14 {
            let step = breaker.step(&members, T0 + minutes(minute), &settings);
            per_pass.push(names(&step.actions, is_quarantine).len());
            if minute == 12 {
                assert_eq!(
                    names(&step.actions, is_quarantine),
                    ["repo-000", "repo-001", "repo-002", "repo-013", "repo-014"],
                    "the not-attempted ones come after every transport failure"
                );
            }
            apply(&mut members, &step.actions, T0 + minutes(minute));
        }
        assert_eq!(per_pass, [5, 5, 5, 0]);
    }

    #[test]
    fn probes_one_canary_after_the_delay_oldest_quarantine_first() {
        let settings = pinned();
        let mut members = host(&[(12, FAILING), (3, Condition::Ready)]);
        let mut breaker = tripped(&mut members, &settings);
        members[7].condition = Condition::Quarantined {
            at: Some(T0 + minutes(9)),
        };
        let step = breaker.step(&members, T0 + minutes(14), &settings);
        assert_eq!((step.transition, step.actions.len()), (None, 0));
        let step = breaker.step(&members, T0 + minutes(15), &settings);
        assert_eq!(step.transition, Some((Open, HalfOpen)));
        assert_eq!(step.actions.len(), 1);
        assert_eq!(names(&step.actions, is_canary), ["repo-007"]);
        assert_eq!(&*step.snapshot.canary.unwrap().name, "repo-007");
    }

    #[test]
    fn a_ready_canary_closes_and_the_rest_is_released_in_spaced_batches() {
        let settings = pinned();
        let mut members = host(&[(25, FAILING)]);
        let (mut breaker, step) = closed_by_a_ready_canary(&mut members, &settings);
        assert_eq!(step.transition, Some((HalfOpen, Closed)));
        assert_eq!(step.probe, Some(ProbeOutcome::Passed));
        let mut batches = vec![(0, names(&step.actions, is_release).len())];
        for second in (70..=300).step_by(10) {
            let now = T0 + minutes(15) + time::Duration::seconds(second);
            for m in members.iter_mut().filter(|m| m.released_at.is_some()) {
                m.condition = Condition::Ready;
            }
            let step = breaker.step(&members, now, &settings);
            assert_eq!(step.snapshot.state, Closed);
            if !step.actions.is_empty() {
                assert!(step.actions.iter().all(|a| !is_canary(a) && is_release(a)));
                batches.push((second - 60, step.actions.len()));
            }
            apply(&mut members, &step.actions, now);
        }
        // Twice what is out each time (the canary first), up to the full batch of 10.
        assert_eq!(batches, [(0, 2), (30, 6), (60, 10), (90, 6)]);
        assert!(members.iter().all(|m| !m.is_quarantined()));
        let step = breaker.step(&members, T0 + minutes(21), &settings);
        assert!(!step.snapshot.releasing, "all released and tried");
    }

    #[test]
    fn a_failing_canary_reopens_with_a_doubled_delay_up_to_the_cap() {
        let settings = pinned();
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        let mut now = T0 + minutes(15);
        let mut delays = Vec::new();
        for _ in 0..6 {
            let step = probe(&mut breaker, &mut members, now, FAILING, &settings);
            assert_eq!(step.transition, Some((HalfOpen, Open)));
            assert_eq!(step.probe, Some(ProbeOutcome::Failed));
            assert_eq!(
                names(&step.actions, is_quarantine).len(),
                1,
                "the canary again"
            );
            let next = step.snapshot.next_probe_at.unwrap();
            delays.push((next - now - minutes(1)).whole_minutes());
            now = next;
        }
        assert_eq!(delays, [10, 20, 40, 60, 60, 60]);
    }

    #[test]
    fn a_canary_is_judged_by_news_since_its_release_or_by_its_timeout() {
        let settings = pinned();
        for (condition, tried, at_timeout) in [
            // The failure from before the quarantine is not news.
            (FAILING, false, Some(ProbeOutcome::Failed)),
            (Condition::NotAttempted, false, Some(ProbeOutcome::Failed)),
            // The host answered, with a failure of the repository's own.
            (Condition::OtherFailing, true, None),
        ] {
            let mut members = host(&[(12, FAILING)]);
            let mut breaker = tripped(&mut members, &settings);
            let released = T0 + minutes(15);
            let step = breaker.step(&members, released, &settings);
            apply(&mut members, &step.actions, released);
            let canary = find(&mut members, &step.snapshot.canary.unwrap());
            canary.condition = condition;
            canary.attempted_at = Some(released - minutes(if tried { 0 } else { 6 }));
            let step = breaker.step(&members, released + minutes(9), &settings);
            if tried {
                assert_eq!(step.probe, Some(ProbeOutcome::Passed), "{condition:?}");
                continue;
            }
            assert_eq!((step.probe, step.snapshot.state), (None, HalfOpen));
            let step = breaker.step(&members, released + minutes(10), &settings);
            assert_eq!(step.probe, at_timeout, "{condition:?}");
            assert_eq!(
                names(&step.actions, is_quarantine).len(),
                1,
                "the canary again"
            );
        }
    }

    #[test]
    fn a_lost_canary_is_replaced_and_without_one_the_visible_members_decide() {
        let settings = pinned();
        let mut members = host(&[(12, FAILING), (10, Condition::Ready)]);
        let mut breaker = tripped(&mut members, &settings);
        let step = breaker.step(&members, T0 + minutes(15), &settings);
        apply(&mut members, &step.actions, T0 + minutes(15));
        assert_eq!(names(&step.actions, is_canary), ["repo-000"]);
        members.remove(0);
        let step = breaker.step(&members, T0 + minutes(16), &settings);
        assert_eq!(names(&step.actions, is_canary), ["repo-001"]);
        assert_eq!(step.transition, None);
        apply(&mut members, &step.actions, T0 + minutes(16));
        members[0].opted_out = true;
        let step = breaker.step(&members, T0 + minutes(17), &settings);
        assert_eq!(names(&step.actions, is_canary), ["repo-002"]);
        assert_eq!(step.snapshot.state, HalfOpen);
        apply(&mut members, &step.actions, T0 + minutes(17));
        // The canary is suspended by someone, the rest overridden: no canary is left, and only
        // 2 of the 19 visible members fail.
        members[1].condition = Condition::SuspendedByOthers;
        for m in members.iter_mut().filter(|m| m.is_quarantined()) {
            m.condition = Condition::NotAttempted;
            m.overridden_at = Some(T0 + minutes(17));
        }
        members[2].condition = FAILING;
        members[3].condition = FAILING;
        let mut still_failing = (breaker.clone(), members.clone());
        for m in &mut still_failing.1[4..12] {
            m.condition = FAILING;
        }
        let step = still_failing
            .0
            .step(&still_failing.1, T0 + minutes(18), &settings);
        assert_eq!(
            (step.transition, step.probe),
            (Some((HalfOpen, Open)), Some(ProbeOutcome::Failed)),
            "10 of 19 visible members fail"
        );
        let step = breaker.step(&members, T0 + minutes(18), &settings);
        assert_eq!(step.transition, Some((HalfOpen, Closed)));
        assert_eq!(step.probe, Some(ProbeOutcome::Passed));
        assert!(step.actions.is_empty(), "{:?}", step.actions);
    }

    #[test]
    fn reopening_soon_after_closing_keeps_backing_off() {
        let settings = pinned();
        for (closed_for, delay) in [(20, 20), (70, 5)] {
            let mut members = host(&[(12, FAILING)]);
            let mut breaker = tripped(&mut members, &settings);
            probe(
                &mut breaker,
                &mut members,
                T0 + minutes(15),
                FAILING,
                &settings,
            );
            let step = probe(
                &mut breaker,
                &mut members,
                T0 + minutes(26),
                Condition::Ready,
                &settings,
            );
            assert_eq!(step.transition, Some((HalfOpen, Closed)));
            assert_eq!(step.snapshot.probe_delay, Duration::from_secs(600));
            let closed = T0 + minutes(27);
            let mut now = closed;
            while now < closed + minutes(closed_for) {
                now += minutes(1);
                for m in members.iter_mut().filter(|m| !m.is_quarantined()) {
                    m.condition = Condition::Ready;
                }
                let step = breaker.step(&members, now, &settings);
                apply(&mut members, &step.actions, now);
            }
            for m in &mut members {
                m.condition = FAILING;
                m.attempted_at = Some(now);
            }
            breaker.step(&members, now, &settings);
            let step = breaker.step(&members, now + minutes(10), &settings);
            assert_eq!(step.transition, Some((Closed, Open)));
            assert_eq!(
                step.snapshot.probe_delay,
                Duration::from_secs(delay * 60),
                "closed for {closed_for}m"
            );
        }
    }

    #[test]
    fn a_release_whose_members_fail_again_is_aborted() {
        let settings = pinned();
        let mut members = host(&[(30, FAILING)]);
        let (mut breaker, step) = closed_by_a_ready_canary(&mut members, &settings);
        let released = names(&step.actions, is_release).len();
        assert_eq!(released, 2, "a small first batch");
        let released_at = |members: &[Member], at| -> Vec<usize> {
            (0..members.len())
                .filter(|&i| members[i].released_at == Some(at))
                .collect()
        };
        // Of the first batch, one fails again and one is Ready: one failure is not an outage,
        // and with all of it tried the next batch follows.
        let first = released_at(&members, T0 + minutes(16));
        let tried = T0 + minutes(16) + time::Duration::seconds(20);
        members[first[0]].condition = Condition::Ready;
        for &i in &first {
            members[i].attempted_at = Some(tried);
        }
        let now = T0 + minutes(16) + time::Duration::seconds(30);
        let step = breaker.step(&members, now, &settings);
        assert_eq!((step.transition, step.snapshot.state), (None, Closed));
        assert_eq!(names(&step.actions, is_release).len(), 6);
        apply(&mut members, &step.actions, now);
        // Of the second, two fail again and four are not tried yet: a quarter of the batch, and
        // half of what was tried (the canary and the Ready one count as tried).
        let second = released_at(&members, now);
        for &i in &second[..2] {
            members[i].attempted_at = Some(now + time::Duration::seconds(20));
        }
        let step = breaker.step(&members, T0 + minutes(17), &settings);
        assert_eq!(step.transition, Some((Closed, Open)));
        assert_eq!(step.probe, Some(ProbeOutcome::ReleaseAborted));
        assert_eq!(step.snapshot.probe_delay, Duration::from_secs(600));
        let requarantined = names(&step.actions, is_quarantine);
        assert_eq!(
            requarantined.len(),
            7,
            "all released but the canary and the Ready one"
        );
    }

    /// Found in the lab (g-6): a pass released a batch and then, seeing the host fail as a
    /// whole, opened the breaker and quarantined that batch again.
    #[test]
    fn a_release_hands_out_nothing_in_the_pass_that_opens_the_breaker() {
        let settings = pinned();
        let mut members = host(&[(10, Condition::Ready), (30, FAILING)]);
        let (mut breaker, step) = closed_by_a_ready_canary(&mut members, &settings);
        assert_eq!(names(&step.actions, is_release).len(), 2);
        // The first batch is Ready (a next one is due), but the host's other GitRepositories,
        // Ready so far, now fail: the trip condition, on failures that began long ago.
        let tried = T0 + minutes(16) + time::Duration::seconds(20);
        for m in members.iter_mut() {
            if m.released_at == Some(T0 + minutes(16)) {
                m.condition = Condition::Ready;
                m.attempted_at = Some(tried);
            } else if m.condition == Condition::Ready && m.released_at.is_none() {
                m.condition = Condition::TransportFailing { since: Some(T0) };
                m.attempted_at = Some(tried);
            }
        }
        let step = breaker.step(&members, T0 + minutes(17), &settings);
        assert_eq!(step.transition, Some((Closed, Open)));
        assert!(
            names(&step.actions, is_release).is_empty(),
            "{:?}",
            step.actions
        );
        assert_eq!(names(&step.actions, is_quarantine).len(), 10);
    }

    #[test]
    fn an_override_is_acknowledged_and_respected_for_the_episode() {
        let settings = pinned();
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        members[3].condition = Condition::QuarantineOverridden;
        let step = breaker.step(&members, T0 + minutes(11), &settings);
        assert_eq!(
            step.actions,
            [Action::AcknowledgeOverride {
                key: members[3].key.clone()
            }]
        );
        apply(&mut members, &step.actions, T0 + minutes(11));
        members[3].condition = FAILING;
        assert!(
            breaker
                .step(&members, T0 + minutes(12), &settings)
                .actions
                .is_empty()
        );
        // Still this episode after a failed probe.
        let step = probe(
            &mut breaker,
            &mut members,
            T0 + minutes(15),
            FAILING,
            &settings,
        );
        assert_eq!(step.probe, Some(ProbeOutcome::Failed));
        assert!(!names(&step.actions, is_quarantine).contains(&"repo-003"));
        // A new episode: it fails with the others, it is quarantined with them.
        let step = probe(
            &mut breaker,
            &mut members,
            T0 + minutes(26),
            Condition::Ready,
            &settings,
        );
        assert_eq!(step.probe, Some(ProbeOutcome::Passed));
        let mut now = T0 + minutes(27);
        for _ in 0..100 {
            for m in members.iter_mut().filter(|m| !m.is_quarantined()) {
                m.condition = Condition::Ready;
            }
            now += minutes(1);
            let step = breaker.step(&members, now, &settings);
            apply(&mut members, &step.actions, now);
        }
        for m in &mut members {
            m.condition = FAILING;
            m.attempted_at = Some(now);
        }
        breaker.step(&members, now, &settings);
        let step = breaker.step(&members, now + minutes(10), &settings);
        assert_eq!(step.transition, Some((Closed, Open)));
        assert!(names(&step.actions, is_quarantine).contains(&"repo-003"));
    }

    #[test]
    fn an_override_in_the_episodes_first_second_is_respected() {
        let settings = pinned();
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = HostBreaker::default();
        breaker.step(&members, T0, &settings);
        let opened = T0 + minutes(10) + time::Duration::milliseconds(700);
        let step = breaker.step(&members, opened, &settings);
        assert_eq!(step.transition, Some((Closed, Open)));
        apply(&mut members, &step.actions, opened);
        members[3].condition = Condition::QuarantineOverridden;
        let acknowledged = opened + time::Duration::milliseconds(200);
        let step = breaker.step(&members, acknowledged, &settings);
        assert_eq!(step.actions.len(), 1);
        // The mark is written in whole seconds, before the sub-second moment the breaker opened.
        members[3].overridden_at = Some(T0 + minutes(10));
        members[3].condition = FAILING;
        let step = breaker.step(&members, acknowledged + time::Duration::SECOND, &settings);
        assert!(step.actions.is_empty(), "{:?}", step.actions);
    }

    #[test]
    fn opted_out_suspended_by_others_ready_and_other_failures_are_never_touched() {
        let settings = pinned();
        let mut members = host(&[
            (20, FAILING),
            (2, Condition::SuspendedByOthers),
            (2, Condition::Ready),
            (2, Condition::OtherFailing),
            (2, FAILING),
        ]);
        for m in &mut members[26..] {
            m.opted_out = true;
        }
        let untouchable: Vec<ObjectKey> = members[20..].iter().map(|m| m.key.clone()).collect();
        let mut breaker = tripped(&mut members, &settings);
        let mut all = Vec::new();
        let mut now = T0 + minutes(10);
        // A probe fails, the next passes: every state is visited.
        let step = probe(
            &mut breaker,
            &mut members,
            T0 + minutes(15),
            FAILING,
            &settings,
        );
        all.extend(step.actions);
        members[0].opted_out = true; // opted out while quarantined: the breaker lets go
        while now < T0 + minutes(60) {
            now += time::Duration::seconds(30);
            let step = breaker.step(&members, now, &settings);
            apply(&mut members, &step.actions, now);
            if step.transition == Some((Open, HalfOpen)) {
                let canary = find(&mut members, &step.snapshot.canary.clone().unwrap());
                canary.condition = Condition::Ready;
            }
            all.extend(step.actions);
        }
        assert_eq!(breaker.state(), Closed);
        assert!(
            all.iter().all(|a| !untouchable.contains(a.key())),
            "{all:?}"
        );
        let first = all.iter().filter(|a| &*a.key().name == "repo-000");
        assert_eq!(first.filter(|a| is_release(a)).count(), 1);
    }

    #[test]
    fn takes_over_an_open_breaker_from_the_marks() {
        let settings = pinned();
        let quarantined = |at| Condition::Quarantined { at: Some(at) };
        let mut members = host(&[
            (3, quarantined(T0 - minutes(2))),
            (9, FAILING),
            (2, Condition::Ready),
        ]);
        members[1].condition = quarantined(T0 - minutes(3));
        members[2].released_at = Some(T0 - minutes(30)); // an earlier episode's
        let mut breaker = HostBreaker::default();
        let step = breaker.step(&members, T0, &settings);
        assert_eq!((step.transition, step.snapshot.state), (None, Open));
        assert_eq!(step.snapshot.next_probe_at, Some(T0 + minutes(2)));
        assert_eq!(names(&step.actions, is_quarantine).len(), 9);
        apply(&mut members, &step.actions, T0);
        let step = breaker.step(&members, T0 + minutes(2), &settings);
        assert_eq!(names(&step.actions, is_canary), ["repo-001"]);

        // Long past the delay: probes at once.
        let members = host(&[(5, quarantined(T0 - minutes(60)))]);
        let step = HostBreaker::default().step(&members, T0, &settings);
        assert_eq!(step.transition, Some((Open, HalfOpen)));
        assert_eq!(names(&step.actions, is_canary), ["repo-000"]);

        // Nothing quarantined: closed, and a leftover override is acknowledged.
        let members = host(&[(1, Condition::QuarantineOverridden), (3, Condition::Ready)]);
        let step = HostBreaker::default().step(&members, T0, &settings);
        assert_eq!(step.snapshot.state, Closed);
        assert_eq!(step.actions.len(), 1);
        assert!(matches!(
            step.actions[0],
            Action::AcknowledgeOverride { .. }
        ));
    }

    #[test]
    fn takes_over_a_release_or_a_probe_in_progress_from_the_marks() {
        let settings = pinned();
        let quarantined = Condition::Quarantined {
            at: Some(T0 - minutes(20)),
        };
        // A release was under way: resumed on its schedule, not probed again.
        let mut members = host(&[(2, Condition::Ready), (15, quarantined)]);
        members[0].released_at = Some(T0 - minutes(2));
        members[1].released_at = Some(T0 - time::Duration::seconds(10));
        let mut breaker = HostBreaker::default();
        let step = breaker.step(&members, T0, &settings);
        assert_eq!(
            (
                step.transition,
                step.snapshot.state,
                step.snapshot.releasing
            ),
            (None, Closed, true)
        );
        assert!(step.actions.is_empty(), "the last batch was 10s ago");
        let step = breaker.step(&members, T0 + time::Duration::seconds(20), &settings);
        assert_eq!(
            names(&step.actions, is_release).len(),
            4,
            "twice the two out already, as the old leader would have"
        );
        assert!(step.actions.iter().all(|a| !is_canary(a)));

        // A canary was out and not Ready yet: judged on its own release time.
        let mut members = host(&[(1, FAILING), (15, quarantined)]);
        members[0].released_at = Some(T0 - minutes(4));
        let mut breaker = HostBreaker::default();
        let step = breaker.step(&members, T0, &settings);
        assert_eq!(step.snapshot.state, HalfOpen);
        assert_eq!(&*step.snapshot.canary.unwrap().name, "repo-000");
        assert!(step.actions.is_empty());
        let step = breaker.step(&members, T0 + minutes(6), &settings);
        assert_eq!(
            step.probe,
            Some(ProbeOutcome::Failed),
            "10m after its release"
        );
    }

    /// A tiny stand-in for source-controller and the runtime: each GitRepository that is not
    /// quarantined tries the host once a minute (10 s after a release) and gets through with the
    /// host's chance at that time, drawn from a fixed pseudo-random sequence.
    struct Simulation {
        members: Vec<Member>,
        /// The status under the quarantine, shown again (stale) after a release.
        status: Vec<Condition>,
        next_attempt: Vec<OffsetDateTime>,
        seed: u64,
        transitions: Vec<(OffsetDateTime, (BreakerState, BreakerState), Duration)>,
    }

    impl Simulation {
        fn new(size: usize) -> Self {
            Self {
                members: host(&[(size, Condition::NotAttempted)]),
                status: vec![Condition::NotAttempted; size],
                next_attempt: (0..size)
                    .map(|i| T0 + time::Duration::seconds(i as i64))
                    .collect(),
                seed: 0x5eed,
                transitions: Vec::new(),
            }
        }

        fn index_of(&self, key: &ObjectKey) -> usize {
            self.members.iter().position(|m| m.key == *key).unwrap()
        }

        fn draw(&mut self) -> f64 {
            self.seed = self
                .seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.seed >> 11) as f64 / (1u64 << 53) as f64
        }

        fn run(
            &mut self,
            breaker: &mut HostBreaker,
            hours: i64,
            settings: &Settings,
            chance: impl Fn(i64) -> f64,
        ) {
            let mut now = T0;
            while now < T0 + time::Duration::hours(hours) {
                let minute = (now - T0).whole_minutes();
                for i in 0..self.members.len() {
                    if self.members[i].is_quarantined() || self.next_attempt[i] > now {
                        continue;
                    }
                    let ok = self.draw() < chance(minute);
                    self.status[i] = if ok { Condition::Ready } else { FAILING };
                    self.members[i].condition = self.status[i];
                    self.members[i].attempted_at = Some(now);
                    self.next_attempt[i] = now + minutes(1);
                }
                let step = breaker.step(&self.members, now, settings);
                if let Some(transition) = step.transition {
                    self.transitions
                        .push((now, transition, step.snapshot.probe_delay));
                }
                for action in &step.actions {
                    let i = self.index_of(action.key());
                    match action {
                        Action::Quarantine { .. } => {
                            self.members[i].condition = Condition::Quarantined { at: Some(now) };
                        }
                        Action::Release { .. } => {
                            // A new generation: a Ready status from before is not current.
                            self.members[i].condition = match self.status[i] {
                                Condition::Ready => Condition::NotAttempted,
                                stale => stale,
                            };
                            self.members[i].released_at = Some(now);
                            self.next_attempt[i] = now + time::Duration::seconds(10);
                        }
                        Action::AcknowledgeOverride { .. } => unreachable!("nobody overrides"),
                    }
                }
                now += time::Duration::seconds(30);
            }
        }
    }

    #[test]
    fn a_flaky_host_does_not_flap() {
        let mut simulation = Simulation::new(40);
        let mut breaker = HostBreaker::default();
        simulation.run(&mut breaker, 8, &pinned(), |_| 0.3);
        let transitions = &simulation.transitions;
        let mut per_hour = [0; 8];
        for (at, _, _) in transitions {
            per_hour[(*at - T0).whole_hours() as usize] += 1;
        }
        assert!(
            per_hour[1..].iter().all(|&n| n <= 4),
            "{per_hour:?} {transitions:?}"
        );
        assert!(
            per_hour[4..].iter().all(|&n| n >= 2),
            "still probing: {per_hour:?}"
        );
        let delays: Vec<u64> = transitions
            .iter()
            .map(|(_, _, d)| d.as_secs() / 60)
            .collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(delays.last(), Some(&60), "{delays:?}");
        let passed = transitions
            .iter()
            .filter(|(_, t, _)| *t == (HalfOpen, Closed))
            .count();
        assert!(
            passed >= 1,
            "a lucky canary was met, and its release aborted"
        );
        for (i, (at, transition, _)) in transitions.iter().enumerate() {
            if *transition == (HalfOpen, Closed) {
                let (reopened, next, _) = transitions[i + 1];
                assert_eq!(next, (Closed, Open));
                assert!(reopened - *at <= minutes(2), "the release was aborted");
            }
        }
        assert_ne!(breaker.state(), Closed);
    }

    #[test]
    fn a_host_that_recovers_is_fully_released() {
        let mut simulation = Simulation::new(40);
        let mut breaker = HostBreaker::default();
        simulation.run(&mut breaker, 4, &pinned(), |minute| {
            if minute < 90 { 0.0 } else { 1.0 }
        });
        let last = simulation.transitions.last().unwrap();
        assert_eq!(last.1, (HalfOpen, Closed));
        assert!(
            last.0 < T0 + minutes(150),
            "probed within the capped delay: {:?}",
            last.0
        );
        assert!(
            simulation
                .members
                .iter()
                .all(|m| m.condition == Condition::Ready)
        );
        let snapshot = breaker.snapshot(&simulation.members, &pinned());
        assert_eq!(
            (snapshot.state, snapshot.quarantined, snapshot.releasing),
            (Closed, 0, false)
        );
    }

    #[test]
    fn the_window_runs_from_the_first_failure_still_standing() {
        let settings = Settings::default();
        let failing_since = |minute| Condition::TransportFailing {
            since: Some(T0 + minutes(minute)),
        };
        // Four failures, the first of them ten minutes old by the time the fourth comes.
        let members = host(&[
            (2, failing_since(0)),
            (2, failing_since(8)),
            (3, Condition::NotAttempted),
        ]);
        let mut breaker = HostBreaker::default();
        let step = breaker.step(&members, T0 + minutes(9), &settings);
        assert_eq!(step.snapshot.tripping_since, Some(T0));
        assert_eq!(step.snapshot.state, Closed);
        let step = breaker.step(&members, T0 + minutes(10), &settings);
        assert_eq!(step.transition, Some((Closed, Open)));
        assert_eq!(names(&step.actions, is_quarantine).len(), 7);
        // Three failures are not enough however old they are; a failure time in the future
        // (clock skew) counts from when it is seen.
        let mut breaker = HostBreaker::default();
        let step = breaker.step(&members[1..], T0 + minutes(60), &settings);
        assert_eq!(
            (step.snapshot.state, step.snapshot.tripping_since),
            (Closed, None)
        );
        let future = host(&[(4, failing_since(30))]);
        breaker.step(&future, T0 + minutes(20), &settings);
        let step = breaker.step(&future, T0 + minutes(29), &settings);
        assert_eq!(step.snapshot.state, Closed);
        let step = breaker.step(&future, T0 + minutes(30), &settings);
        assert_eq!(step.snapshot.state, Open);
    }

    #[test]
    fn failed_canaries_wait_up_to_ten_minutes_a_flapping_hosts_up_to_an_hour() {
        // Unprobed, so that canaries can fail: a first wait of five minutes doubles to the cap.
        let settings = Settings {
            probe_interval: Duration::from_secs(5 * 60),
            ..Settings::default()
        };
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        let mut now = T0 + minutes(15);
        let mut delays = Vec::new();
        for _ in 0..4 {
            let step = probe(&mut breaker, &mut members, now, FAILING, &settings);
            let next = step.snapshot.next_probe_at.unwrap();
            delays.push((next - now - minutes(1)).whole_minutes());
            now = next;
        }
        assert_eq!(
            delays,
            [10, 10, 10, 10],
            "down: at most --breaker-probe-interval-max"
        );

        // The host answers a probe, then what was released fails again: flapping.
        let step = probe(&mut breaker, &mut members, now, Condition::Ready, &settings);
        assert_eq!(step.transition, Some((HalfOpen, Closed)));
        let mut now = now + minutes(2);
        let mut delays = Vec::new();
        for _ in 0..6 {
            for m in members.iter_mut().filter(|m| !m.is_quarantined()) {
                m.condition = FAILING;
                m.attempted_at = Some(now);
            }
            let step = breaker.step(&members, now, &settings);
            apply(&mut members, &step.actions, now);
            if let Some(next) = step.snapshot.next_probe_at {
                delays.push((next - now).whole_minutes());
                now = next;
                let step = probe(&mut breaker, &mut members, now, FAILING, &settings);
                now = step.snapshot.next_probe_at.unwrap();
            }
        }
        assert_eq!(
            delays.first(),
            Some(&20),
            "flapping: past --breaker-probe-interval-max {delays:?}"
        );
        assert_eq!(breaker.delay(&settings), Duration::from_secs(3600));
    }

    #[test]
    fn a_flaky_host_does_not_flap_with_the_default_settings() {
        let mut simulation = Simulation::new(40);
        let mut breaker = HostBreaker::default();
        simulation.run(&mut breaker, 8, &Settings::default(), |_| 0.3);
        let mut per_hour = [0; 8];
        for (at, _, _) in &simulation.transitions {
            per_hour[(*at - T0).whole_hours() as usize] += 1;
        }
        // Until the host first answers a probe it counts as down and is probed every 10m.
        assert!(per_hour[3..].iter().all(|&n| n <= 4), "{per_hour:?}");
        assert!(
            per_hour[3..].iter().all(|&n| n >= 2),
            "still probing: {per_hour:?}"
        );
    }

    /// The lab's flaky host with fluxgate's own probe, one pass every 30 seconds: a probe a
    /// minute answered with `chance`, and each GitRepository not quarantined tried every
    /// `retry` (10 seconds after a release), a success Ready at once, a failure shown only when
    /// its 5m timeout has run out, as a hanging clone does. Returns the state changes.
    fn probed_flaky_run(
        seed: u64,
        hours: i64,
        settings: &Settings,
        chance: f64,
    ) -> Vec<(OffsetDateTime, (BreakerState, BreakerState))> {
        let (size, retry, timeout) = (40, minutes(2), minutes(5));
        let mut simulation = Simulation::new(size);
        simulation.seed = seed;
        let mut breaker = HostBreaker::default();
        // When each member's attempt under way shows its result, and what it shows.
        let mut pending: Vec<Option<(OffsetDateTime, Condition)>> = vec![None; size];
        let mut transitions = Vec::new();
        let mut report = None;
        let mut now = T0;
        while now < T0 + time::Duration::hours(hours) {
            for (i, attempt) in pending.iter_mut().enumerate() {
                let member = &mut simulation.members[i];
                if let Some((at, condition)) = attempt.filter(|(at, _)| *at <= now) {
                    *attempt = None;
                    if !member.is_quarantined() {
                        member.condition = condition;
                        member.attempted_at = Some(at);
                    }
                }
                let idle = attempt.is_none() && simulation.next_attempt[i] <= now;
                if idle && !simulation.members[i].is_quarantined() {
                    let ok = simulation.draw() < chance;
                    *attempt = Some(if ok {
                        (now, Condition::Ready)
                    } else {
                        (now + timeout, FAILING)
                    });
                    simulation.next_attempt[i] = now + retry;
                }
            }
            if (now - T0).whole_seconds() % 60 == 0 {
                let answered = simulation.draw() < chance;
                report = Some(ProbeReport { at: now, answered });
            }
            let inputs = Inputs {
                check: HostCheck::Probed(report),
                ..Inputs::default()
            };
            let step = breaker.step_checked(&simulation.members, now, settings, inputs);
            transitions.extend(step.transition.map(|t| (now, t)));
            for action in &step.actions {
                let i = simulation.index_of(action.key());
                match action {
                    Action::Quarantine { .. } => {
                        simulation.members[i].condition = Condition::Quarantined { at: Some(now) };
                        pending[i] = None;
                    }
                    Action::Release { .. } => {
                        simulation.members[i].condition = FAILING;
                        simulation.members[i].released_at = Some(now);
                        simulation.next_attempt[i] = now + time::Duration::seconds(10);
                    }
                    Action::AcknowledgeOverride { .. } => unreachable!("nobody overrides"),
                }
            }
            now += time::Duration::seconds(30);
        }
        transitions
    }

    #[test]
    fn a_probed_flaky_host_changes_state_at_most_four_times_an_hour() {
        let settings = Settings::default();
        let mut rates = Vec::new();
        for seed in 1..=40 {
            let transitions = probed_flaky_run(seed, 5, &settings, 0.3);
            let first = transitions.first().expect("a flaky host trips").0;
            let hours = (T0 + time::Duration::hours(5) - first).as_seconds_f64() / 3600.0;
            rates.push(transitions.len() as f64 / hours);
        }
        rates.sort_by(f64::total_cmp);
        eprintln!("state changes per hour from the first opening: {rates:?}");
        assert!(rates.iter().all(|&r| r <= 4.0), "{rates:?}");
    }

    fn probed(at: OffsetDateTime, answered: bool) -> Inputs {
        Inputs {
            check: HostCheck::Probed(Some(ProbeReport { at, answered })),
            ..Inputs::default()
        }
    }

    const NOT_PROBED_YET: Inputs = Inputs {
        check: HostCheck::Probed(None),
        cluster_wide_failure: false,
        release_room: usize::MAX,
    };

    #[test]
    fn no_canary_holds_a_worker_while_the_host_does_not_answer() {
        let settings = Settings::default();
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        // Long past the canary's wait: a probe that hangs (no result yet), then one that finds
        // no answer (a refusal, a timeout, a 429 or 5xx), minute after minute.
        for minute in 11..60 {
            let now = T0 + minutes(minute);
            let inputs = if minute % 2 == 0 {
                probed(now, false)
            } else {
                NOT_PROBED_YET
            };
            let step = breaker.step_checked(&members, now, &settings, inputs);
            assert!(
                step.actions.is_empty(),
                "minute {minute}: {:?}",
                step.actions
            );
            assert_eq!(step.snapshot.state, Open);
            assert!(step.snapshot.wants_probe);
            if minute % 2 == 0 {
                assert_eq!(step.probe, Some(ProbeOutcome::Unanswered));
            }
        }
        // The same result is judged once.
        let now = T0 + minutes(60);
        breaker.step_checked(&members, now, &settings, probed(now, false));
        let again = breaker.step_checked(&members, now, &settings, probed(now, false));
        assert_eq!(again.probe, None);
    }

    #[test]
    fn a_probe_that_never_answers_releases_nothing_however_long() {
        let settings = Settings::default();
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        // Opened at T0 + 10m; no answer for five hours: no worker is ever held by a canary.
        let canaries = canaries_over(&mut breaker, &mut members, 11..=300, i64::MAX, &settings);
        assert!(canaries.is_empty(), "{canaries:?}");
        assert_eq!(breaker.state(), Open);
        // The host returns after all that: found at the next probe, no wait grown meanwhile.
        let canaries = canaries_over(&mut breaker, &mut members, 301..=301, 301, &settings);
        assert_eq!(canaries, [301], "{canaries:?}");
    }

    #[test]
    fn a_return_just_after_a_probe_is_seen_at_the_next_one() {
        let settings = Settings::default();
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        // The canary's wait (one probe period) is over at T0 + 11m; the probe a second before
        // the host's return finds nothing.
        let returned = T0 + minutes(20) + time::Duration::SECOND;
        let step = breaker.step_checked(
            &members,
            T0 + minutes(20),
            &settings,
            probed(T0 + minutes(20), false),
        );
        assert!(step.actions.is_empty());
        // The next probe, one period later, finds it answering: the canary goes out at once.
        let next = T0 + minutes(21);
        let step = breaker.step_checked(&members, next, &settings, probed(next, true));
        assert_eq!(step.probe, Some(ProbeOutcome::Answered));
        assert_eq!(names(&step.actions, is_canary).len(), 1);
        assert_eq!(step.transition, Some((Open, HalfOpen)));
        assert!(
            next - returned <= minutes(1),
            "found within one probe period"
        );
        // An answer older than two periods is no news: it releases nothing.
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        let stale = T0 + minutes(11);
        let step = breaker.step_checked(&members, T0 + minutes(14), &settings, probed(stale, true));
        assert!(step.actions.is_empty(), "{:?}", step.actions);
    }

    /// Runs minute by minute over `run` (minutes after T0) with probes answered from
    /// `answers_from`; each canary fails half a minute after it goes out. Returns the minutes
    /// of the canaries.
    fn canaries_over(
        breaker: &mut HostBreaker,
        members: &mut [Member],
        run: std::ops::RangeInclusive<i64>,
        answers_from: i64,
        settings: &Settings,
    ) -> Vec<i64> {
        let mut canaries = Vec::new();
        for minute in run {
            let now = T0 + minutes(minute);
            let inputs = probed(now, minute >= answers_from);
            let step = breaker.step_checked(members, now, settings, inputs);
            apply(members, &step.actions, now);
            if let Some(canary) = step.actions.iter().find(|a| is_canary(a)) {
                canaries.push(minute);
                let canary = canary.key().clone();
                find(members, &canary).attempted_at = Some(now + time::Duration::seconds(30));
            }
        }
        canaries
    }

    #[test]
    fn a_canary_that_fails_on_an_answer_makes_the_next_wait_a_canary_timeout() {
        let settings = Settings::default();
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        // The host answers every probe, and every clone fails: it flaps.
        let canaries = canaries_over(&mut breaker, &mut members, 11..=200, 0, &settings);
        assert_eq!(
            canaries[0], 11,
            "the first canary on the first answer: {canaries:?}"
        );
        let gaps: Vec<i64> = canaries.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter().all(|&g| g >= 10),
            "at least a canary timeout: {gaps:?}"
        );
        // Steady answers cut a wait short once; after that canary fails too, they no longer do.
        assert!(
            gaps.iter().rev().take(2).all(|&g| g >= 60),
            "up to an hour: {gaps:?}"
        );
        assert!(canaries.len() <= 7, "{canaries:?}");
    }

    #[test]
    fn a_throttled_canary_is_no_return() {
        let settings = pinned();
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        let step = probe(
            &mut breaker,
            &mut members,
            T0 + minutes(15),
            Condition::Throttled,
            &settings,
        );
        assert_eq!(step.probe, Some(ProbeOutcome::Failed));
        assert_eq!(step.snapshot.state, Open);
        assert!(names(&step.actions, is_release).is_empty());
    }

    #[test]
    fn steady_answers_end_a_long_canary_wait() {
        let settings = Settings::default();
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        // Two canaries failed: the next waits longer.
        breaker.probe_delay = Duration::from_secs(3600);
        breaker.phase = Phase::Open {
            episode: T0 + minutes(10),
            next_probe_at: T0 + minutes(80),
        };
        let mut released_at = None;
        for minute in 20..=40 {
            let now = T0 + minutes(minute);
            let step = breaker.step_checked(&members, now, &settings, probed(now, true));
            if !names(&step.actions, is_canary).is_empty() {
                released_at = Some(minute);
                break;
            }
        }
        // Answering every minute from T0 + 20m: the canary goes out once that has lasted
        // --breaker-probe-interval-max (10m), not at T0 + 80m.
        assert_eq!(released_at, Some(30));
    }

    #[test]
    fn a_cluster_wide_failure_quarantines_nothing_and_judgement_resumes_after() {
        let settings = pinned();
        let mut members = host(&[(12, FAILING)]);
        let unjudged = members.clone();
        let mut breaker = HostBreaker::default();
        let hold = Inputs {
            cluster_wide_failure: true,
            ..Inputs::default()
        };
        for minute in [0, 10, 30, 60] {
            let step = breaker.step_checked(&unjudged, T0 + minutes(minute), &settings, hold);
            assert!(step.actions.is_empty());
            assert_eq!(step.snapshot.state, Closed);
        }
        // Held while open too: a host already open quarantines no newcomer meanwhile.
        let mut open = tripped(&mut members, &settings);
        members.push(member(99, FAILING));
        let step = open.step_checked(&members, T0 + minutes(11), &settings, hold);
        assert!(names(&step.actions, is_quarantine).is_empty());
        // The guard clears, and the statuses the egress failure left are still failures: the
        // host is judged on what it does from now on, a full window of it.
        let step = breaker.step_checked(&unjudged, T0 + minutes(61), &settings, Inputs::default());
        assert_eq!(step.snapshot.state, Closed);
        assert!(step.actions.is_empty());
        let step = breaker.step_checked(&unjudged, T0 + minutes(70), &settings, Inputs::default());
        assert_eq!(
            step.snapshot.state, Closed,
            "within the window after the guard cleared"
        );
        let step = breaker.step_checked(&unjudged, T0 + minutes(71), &settings, Inputs::default());
        assert_eq!(
            step.transition,
            Some((Closed, Open)),
            "still failing a window later"
        );
    }

    #[test]
    fn a_release_takes_no_more_than_the_room_left_in_the_shared_budget() {
        let settings = pinned();
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        let now = T0 + minutes(15);
        let room = |release_room| Inputs {
            release_room,
            ..Inputs::default()
        };
        // Other hosts hold the whole budget: even the canary waits.
        let step = breaker.step_checked(&members, now, &settings, room(0));
        assert!(names(&step.actions, is_release).is_empty());
        assert_eq!(step.snapshot.state, Open);
        let step = breaker.step_checked(&members, now, &settings, room(1));
        assert_eq!(names(&step.actions, is_canary).len(), 1);
        apply(&mut members, &step.actions, now);
        assert_eq!(breaker.in_flight(&members), 1, "released, not tried yet");
        // The canary is Ready: the first batch is two, but one is all the room there is.
        let canary = step.actions[0].key().clone();
        let member = find(&mut members, &canary);
        member.condition = Condition::Ready;
        member.attempted_at = Some(now + minutes(1));
        let step = breaker.step_checked(&members, now + minutes(1), &settings, room(1));
        assert_eq!(step.transition, Some((HalfOpen, Closed)));
        assert_eq!(names(&step.actions, is_release).len(), 1);
    }

    #[test]
    fn a_lane_moves_back_only_what_is_ready_there() {
        let settings = Settings {
            lane: true,
            ..pinned()
        };
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        // Probe due, but nothing is Ready in the lane yet: nothing moves back.
        let step = breaker.step(&members, T0 + minutes(15), &settings);
        assert!(
            names(&step.actions, is_release).is_empty(),
            "{:?}",
            step.actions
        );
        assert_eq!(
            step.snapshot.state, Open,
            "nothing in the lane says the host is back"
        );
        // The lane's source-controller got two of them: the first is the canary.
        members[3].ready_in_lane = true;
        members[5].ready_in_lane = true;
        let step = breaker.step(&members, T0 + minutes(16), &settings);
        assert_eq!(names(&step.actions, is_release), ["repo-003"]);
        apply(&mut members, &step.actions, T0 + minutes(16));
        // Back on the main source-controller and Ready there: the other one follows, and only it.
        let canary = find(&mut members, &step.actions[0].key().clone());
        canary.condition = Condition::Ready;
        canary.attempted_at = Some(T0 + minutes(17));
        let step = breaker.step(&members, T0 + minutes(17), &settings);
        assert_eq!(step.transition, Some((HalfOpen, Closed)));
        assert_eq!(names(&step.actions, is_release), ["repo-005"]);
    }

    #[test]
    fn a_lane_stays_open_until_the_host_answers() {
        // The lab's setup fl: fluxgate's probes go unanswered for two hours. In a lane nothing
        // is Ready, so there is no canary, and the host is still down.
        let settings = Settings {
            lane: true,
            ..pinned()
        };
        let mut members = host(&[(12, FAILING)]);
        let mut breaker = tripped(&mut members, &settings);
        let mut at = T0 + minutes(10);
        while at < T0 + minutes(130) {
            at += minutes(1);
            let step = breaker.step_checked(&members, at, &settings, probed(at, false));
            assert_eq!(
                step.snapshot.state, Open,
                "closed at {at} with the host down"
            );
            assert!(step.actions.is_empty(), "{:?}", step.actions);
        }
        // The host answers: with nothing Ready in the lane yet, one GitRepository moves back as
        // the canary, without waiting for the lane's workers.
        at += minutes(5);
        let step = breaker.step_checked(&members, at, &settings, probed(at, true));
        assert_eq!(step.transition, Some((Open, HalfOpen)));
        assert_eq!(names(&step.actions, is_canary), ["repo-000"]);
        apply(&mut members, &step.actions, at);
        // Ready on the main source-controller: the rest follow in batches, Ready in the lane or
        // not.
        let canary = find(&mut members, &step.actions[0].key().clone());
        canary.condition = Condition::Ready;
        canary.attempted_at = Some(at + minutes(1));
        let step = breaker.step(&members, at + minutes(1), &settings);
        assert_eq!(step.transition, Some((HalfOpen, Closed)));
        assert_eq!(names(&step.actions, is_release), ["repo-001", "repo-002"]);
    }

    #[test]
    fn odd_settings_do_not_panic() {
        let members = host(&[(12, FAILING), (2, Condition::Quarantined { at: None })]);
        for settings in [
            Settings {
                min_failing: 0,
                failing_ratio: f64::NAN,
                window: Duration::ZERO,
                probe_interval: Duration::ZERO,
                probe_interval_max: Duration::ZERO,
                flapping_probe_interval_max: Duration::ZERO,
                canary_timeout: Duration::ZERO,
                release_batch: 0,
                release_every: Duration::ZERO,
                max_actions_per_pass: 0,
                lane: false,
            },
            Settings {
                min_failing: usize::MAX,
                failing_ratio: -1.0,
                window: Duration::MAX,
                probe_interval: Duration::MAX,
                probe_interval_max: Duration::from_secs(1),
                flapping_probe_interval_max: Duration::MAX,
                canary_timeout: Duration::MAX,
                release_batch: usize::MAX,
                release_every: Duration::MAX,
                max_actions_per_pass: usize::MAX,
                lane: false,
            },
        ] {
            let mut breaker = HostBreaker::default();
            for hour in 0..3 {
                let step = breaker.step(&members, T0 + time::Duration::hours(hour), &settings);
                assert!(step.actions.len() <= settings.max_actions_per_pass);
                // Taken over as open; either no room to release a canary, or a probe that never
                // comes.
                assert_eq!(step.snapshot.state, Open);
            }
        }
    }
}
