//! A circuit breaker per Git host: when most GitRepositories of one host fail with transport
//! errors for a while, fluxgate suspends ("quarantines") them so they stop holding
//! source-controller's workers, probes the host now and then with one of them (the canary), and
//! releases them all in batches once the host answers again.
//!
//! This module is the pure core: [`member_of_record`] turns the exporter's record of a
//! GitRepository (the only way a pass or `fluxgate report` reads one) into what the breaker
//! needs, [`HostBreaker::step`] decides, as of the `now` it is given, what to do to one host's
//! GitRepositories. Nothing here reads the clock or talks to the API server: the runtime applies
//! the [`Action`]s through [`crate::marks`], and a new leader rebuilds the breaker's memory from
//! those marks (see [`HostBreaker`]).

pub mod args;
mod machine;
pub mod probe;
pub mod runtime;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::exporter::store::{Record, RecordMarks};
use crate::health::{FailureClass, State};
use crate::uid::Uid;

pub use machine::{Action, BreakerState, HostBreaker, ProbeOutcome, Snapshot, Step};

/// The breaker's thresholds and pacing. The same for every host.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// At least this many GitRepositories must fail with transport errors to trip.
    pub min_failing: usize,
    /// ... and at least this share of the host's GitRepositories.
    pub failing_ratio: f64,
    /// ... continuously for this long.
    pub window: Duration,
    /// fluxgate's own probe period of an open host, and the first wait before a canary (which
    /// goes out only after the host answered); the wait doubles after each failed canary.
    pub probe_interval: Duration,
    /// Cap of the canary wait of a host whose canaries failed; a host that answers every probe
    /// for this long gets its canary whatever its wait.
    pub probe_interval_max: Duration,
    /// Cap of the canary wait of a flapping host (it answered, then its canary or its release
    /// failed), and how long a host must stay closed before a new episode starts again from
    /// `probe_interval`.
    pub flapping_probe_interval_max: Duration,
    /// How long a released canary may take to become Ready before it counts as failed; also
    /// the least wait before a flapping host's next canary.
    pub canary_timeout: Duration,
    /// GitRepositories released together once the host answers again.
    pub release_batch: usize,
    /// The least time between two release batches (0: paced by source-controller alone).
    pub release_every: Duration,
    /// Most changes in one pass over one host.
    pub max_actions_per_pass: usize,
    /// The breaker moves GitRepositories into a host lane instead of suspending them
    /// (`--breaker-lane`), and moves back only those Ready there.
    pub lane: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_failing: 4,
            failing_ratio: 0.5,
            window: Duration::from_secs(10 * 60),
            probe_interval: Duration::from_secs(60),
            probe_interval_max: Duration::from_secs(10 * 60),
            flapping_probe_interval_max: Duration::from_secs(3600),
            canary_timeout: Duration::from_secs(10 * 60),
            release_batch: 20,
            release_every: Duration::ZERO,
            max_actions_per_pass: 100,
            lane: false,
        }
    }
}

/// Which object: `uid` tells a re-created object from the one the breaker acted on.
///
/// A pass holds one per GitRepository of each host it looks at (87 000 in an outage of a large
/// host), so the namespace and name share the exporter's strings instead of copying them, and
/// the uid is held inline ([`Uid`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub uid: Uid,
}

/// What the breaker sees of one GitRepository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Ready for the current generation.
    Ready,
    /// Failed with a timeout, DNS, TLS or connection error: the host's fault. `since`: when the
    /// first failed attempt of its streak began ([`Failure::first_attempt_started`]).
    TransportFailing { since: Option<OffsetDateTime> },
    /// Failed with auth, not found or anything else: the repository's fault, never counted.
    OtherFailing,
    /// The host answered 429, 502 or 503: it is up but asks for fewer attempts. Not a transport
    /// failure (the answer came fast and held no worker), so it never trips a host; but neither
    /// is it a return: a canary or a released batch answered so has not found the host back.
    Throttled,
    /// Pending or progressing: neither Ready nor failed yet.
    NotAttempted,
    /// Suspended by a user or the janitor: never touched.
    SuspendedByOthers,
    /// Suspended by the breaker, since `at` (the quarantine annotation, if readable).
    Quarantined { at: Option<OffsetDateTime> },
    /// Carries the quarantine label but is no longer suspended: someone else released it.
    QuarantineOverridden,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: ObjectKey,
    /// `metadata.resourceVersion` as the exporter's store keeps it: a decimal number, or 0 when
    /// it is not one, which leaves the breaker's write on this object unconditional.
    pub resource_version: u64,
    pub condition: Condition,
    /// Carries `fluxgate.io/breaker: "false"`.
    pub opted_out: bool,
    /// When the breaker last released it.
    pub released_at: Option<OffsetDateTime>,
    /// When the breaker acknowledged that someone else released it.
    pub overridden_at: Option<OffsetDateTime>,
    /// When Ready last changed: a failure is news only if this is not older than the release.
    pub attempted_at: Option<OffsetDateTime>,
    /// Held in the breaker's lane and Ready there: the lane's source-controller reached the host.
    pub ready_in_lane: bool,
}

impl Member {
    pub fn is_quarantined(&self) -> bool {
        matches!(self.condition, Condition::Quarantined { .. })
    }

    /// Released by the breaker, and its Ready condition has not changed since (one second of
    /// slack: condition times have whole seconds).
    pub fn awaits_retry(&self) -> bool {
        self.released_at.is_some_and(|released| {
            self.attempted_at
                .is_none_or(|attempted| released - attempted > time::Duration::SECOND)
        })
    }
}

/// The breaker's view of one GitRepository as the exporter's store keeps it.
pub fn member_of_record(uid: &Uid, record: &Record) -> Member {
    let time = |seconds: i64| {
        (seconds > 0)
            .then(|| OffsetDateTime::from_unix_timestamp(seconds).ok())
            .flatten()
    };
    let unmarked = RecordMarks::default();
    let marks = record.marks.as_deref().unwrap_or(&unmarked);
    let condition = condition(
        record.state,
        Held::of(marks),
        record.class,
        time(record.failing_since)
            .map(|since| since - time::Duration::seconds(record.attempt_seconds.into())),
        time(marks.quarantined_at),
    );
    // Tried again after a transport failure the watch saw: still that failure, dated by it, so
    // that a failure from before a release is not news about the host after it.
    let (condition, attempted_at) = match condition {
        Condition::NotAttempted if marks.transport_failed_at > 0 => (
            Condition::TransportFailing {
                since: time(marks.transport_failed_at - i64::from(record.attempt_seconds)),
            },
            time(marks.transport_failed_at),
        ),
        condition => (condition, time(marks.ready_changed_at)),
    };
    Member {
        key: ObjectKey {
            namespace: record.namespace.clone(),
            name: record.name.clone(),
            uid: uid.clone(),
        },
        resource_version: record.resource_version,
        condition,
        opted_out: marks.opted_out,
        released_at: time(marks.released_at),
        overridden_at: time(marks.overridden_at),
        attempted_at,
        ready_in_lane: marks.laned && record.state == State::Ready,
    }
}

/// How the breaker holds a GitRepository, as its marks say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    No,
    /// The quarantine label: suspended by the breaker (or unsuspended by someone else since).
    Quarantined,
    /// Moved into the breaker's lane: reconciled there, never suspended by the breaker.
    InLane,
    /// Carries the lane mark, but someone removed the shard label: moved back by a person.
    LeftLane,
}

impl Held {
    fn of(marks: &RecordMarks) -> Self {
        match (marks.quarantined, marks.laned) {
            (_, true) if marks.lane_left => Self::LeftLane,
            (_, true) => Self::InLane,
            (true, false) => Self::Quarantined,
            (false, false) => Self::No,
        }
    }
}

/// The one decision of what a GitRepository's state and marks mean to its host's breaker.
fn condition(
    state: State,
    held: Held,
    class: Option<FailureClass>,
    failing_since: Option<OffsetDateTime>,
    quarantined_at: Option<OffsetDateTime>,
) -> Condition {
    if held == Held::LeftLane {
        // Like an unsuspend of a quarantined object: acknowledged, and left alone.
        return Condition::QuarantineOverridden;
    }
    if held == Held::InLane {
        // Held in the lane whatever it shows there, unless someone suspended it.
        return match state {
            State::Suspended | State::Quarantined => Condition::SuspendedByOthers,
            _ => Condition::Quarantined { at: quarantined_at },
        };
    }
    match (state, held == Held::Quarantined) {
        (State::Quarantined | State::Suspended, true) => {
            Condition::Quarantined { at: quarantined_at }
        }
        (State::Suspended | State::Quarantined, false) => Condition::SuspendedByOthers,
        (_, true) => Condition::QuarantineOverridden,
        (State::Ready, false) => Condition::Ready,
        (State::Failed, false) => match class {
            Some(class) if class.is_transport() => Condition::TransportFailing {
                since: failing_since,
            },
            Some(FailureClass::Throttled) => Condition::Throttled,
            _ => Condition::OtherFailing,
        },
        (State::Pending | State::Progressing, false) => Condition::NotAttempted,
    }
}

/// How many of a host's GitRepositories the trip condition looks at, and how many of those fail
/// with transport errors. Opted-out and suspended ones (by anyone) say nothing about the host
/// right now, so they are left out of both numbers; so are the ones source-controller has not
/// tried yet. Counting those made the breaker useless when it matters most: at a
/// source-controller restart 130 GitRepositories wait untried, and with two workers held for a
/// 5m timeout each, 65 failures (half of them) take hours to accumulate (measured in the lab:
/// healthy repositories waited 4.5x longer than with Flux's defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub considered: usize,
    pub transport_failing: usize,
    /// The earliest start of the counted transport failures' current streaks: when the host
    /// stopped answering, as far as the statuses tell.
    pub first_failure_at: Option<OffsetDateTime>,
}

pub fn counts(members: &[Member]) -> Counts {
    let mut counts = Counts::default();
    for member in members.iter().filter(|m| !m.opted_out) {
        match member.condition {
            // Released and not tried since: its failure is from before the release, so it says
            // nothing about the host now. Counting it would trip the breaker again during every
            // batched release, before source-controller got to the released ones.
            Condition::TransportFailing { .. } if member.awaits_retry() => {}
            Condition::TransportFailing { since } => {
                counts.considered += 1;
                counts.transport_failing += 1;
                counts.first_failure_at = match (counts.first_failure_at, since) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Condition::Ready | Condition::OtherFailing | Condition::Throttled => {
                counts.considered += 1;
            }
            Condition::NotAttempted
            | Condition::SuspendedByOthers
            | Condition::Quarantined { .. }
            | Condition::QuarantineOverridden => {}
        }
    }
    counts
}

/// The trip condition at one instant (the breaker also wants it to hold for `window`): at least
/// `min_failing` (and at least one) transport failures, making up at least `failing_ratio` of the
/// considered GitRepositories.
pub fn would_trip(members: &[Member], settings: &Settings) -> bool {
    counts(members).trip(settings)
}

impl Counts {
    /// The trip condition on counts already taken (see [`would_trip`]).
    pub fn trip(&self, settings: &Settings) -> bool {
        self.transport_failing >= settings.min_failing.max(1)
            && self.transport_failing as f64 >= settings.failing_ratio * self.considered as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Health;
    use crate::health::classify;
    use crate::marks::{quarantine, stamps};
    use serde_json::{Value, json};
    use time::macros::datetime;

    fn object(suspend: bool, labels: Value, annotations: Value, status: Value) -> Value {
        json!({
            "metadata": { "name": "app", "namespace": "proj-1", "uid": "u-1", "resourceVersion": "9",
                          "generation": 2, "labels": labels, "annotations": annotations },
            "spec": { "url": "https://github.com/org/app", "suspend": suspend },
            "status": status,
        })
    }

    fn ready(status: &str, message: &str) -> Value {
        json!({ "observedGeneration": 2, "conditions": [{ "type": "Ready", "status": status,
                "reason": "GitOperationFailed", "message": message,
                "lastTransitionTime": "2026-11-27T11:00:00Z" }] })
    }

    /// A classified GitRepository as a pass sees it: through the exporter's store.
    fn member_from(health: &Health) -> Member {
        let store = crate::exporter::Store::default();
        store.apply(0, health, 0);
        let hosts = [std::sync::Arc::<str>::from(health.host.as_str())]
            .into_iter()
            .collect();
        let mut member = None;
        store.visit_hosts(&hosts, |uid, record| {
            member = Some(member_of_record(uid, record))
        });
        member.expect("the store keeps every classified GitRepository")
    }

    fn condition_of(suspend: bool, labels: Value, status: Value) -> Condition {
        member_from(&classify(&object(suspend, labels, json!({}), status)).unwrap()).condition
    }

    #[test]
    fn a_released_canarys_failure_is_remembered_through_its_retry() {
        use crate::exporter::Store;
        let store = Store::default();
        let released = json!({ stamps::RELEASED_AT_ANNOTATION: "2026-11-27T11:30:00Z" });
        let condition = |status: &str, at: &str, message: &str| {
            json!({ "observedGeneration": -1, "conditions": [{ "type": "Ready", "status": status,
                    "reason": "GitOperationFailed", "message": message, "lastTransitionTime": at }] })
        };
        // The member's condition, and whether it still awaits its first attempt since the release.
        let seen = |status: Value| {
            let health = classify(&object(false, json!({}), released.clone(), status)).unwrap();
            store.apply(0, &health, 0);
            let mut seen = None;
            let hosts = [std::sync::Arc::<str>::from("github.com")]
                .into_iter()
                .collect();
            store.visit_hosts(&hosts, |uid, record| {
                let member = member_of_record(uid, record);
                seen = Some((member.condition, member.awaits_retry()));
            });
            seen.unwrap()
        };
        let timeout = "failed to checkout and determine revision: context deadline exceeded";
        let failing_since = |at| Condition::TransportFailing { since: Some(at) };

        // Released with the failure it had before its quarantine; an attempt starts: the old
        // failure is no news about the host.
        // Each failure is dated by the start of its attempt: 60s (the CRD's default timeout,
        // which it ran out of) before it showed.
        let stale = failing_since(datetime!(2026-11-27 11:19 UTC));
        assert_eq!(
            seen(condition("False", "2026-11-27T11:20:00Z", timeout)),
            (stale, true)
        );
        let attempt = condition("Unknown", "2026-11-27T11:30:01Z", "building artifact");
        assert_eq!(seen(attempt), (stale, true));

        // That attempt fails: news. source-controller tries again 750ms later, Ready=Unknown
        // during the attempt, and the failure is still the news.
        let fresh = failing_since(datetime!(2026-11-27 11:34 UTC));
        assert_eq!(
            seen(condition("False", "2026-11-27T11:35:00Z", timeout)),
            (fresh, false)
        );
        let retrying = condition("Unknown", "2026-11-27T11:35:01Z", "building artifact");
        assert_eq!(seen(retrying.clone()), (fresh, false));
        assert_eq!(
            seen(retrying.clone()),
            (fresh, false),
            "on every event of it"
        );
        // Ready forgets it; an attempt after that is just an attempt.
        let mut ready = condition("True", "2026-11-27T11:40:00Z", "stored artifact");
        ready["observedGeneration"] = json!(2);
        assert_eq!(seen(ready), (Condition::Ready, false));
        assert_eq!(seen(retrying).0, Condition::NotAttempted);
    }

    /// A pass dates a host's silence from the start of the first attempt that ran out of its
    /// timeout.
    #[test]
    fn the_trip_window_runs_from_the_first_failed_attempts_start() {
        use crate::exporter::Store;
        let store = Store::default();
        for (i, showed) in ["2026-11-27T11:05:00Z", "2026-11-27T11:10:00Z"]
            .iter()
            .enumerate()
        {
            let mut object = object(
                false,
                json!({}),
                json!({}),
                json!({ "conditions": [{
                "type": "Ready", "status": "False", "reason": "GitOperationFailed",
                "message": "unable to clone: context deadline exceeded", "lastTransitionTime": showed }] }),
            );
            object["metadata"]["uid"] = json!(format!("u-{i}"));
            object["spec"]["timeout"] = json!("5m");
            let health = classify(&object).unwrap();
            store.apply(0, &health, 0);
        }
        let hosts = [std::sync::Arc::<str>::from("github.com")]
            .into_iter()
            .collect();
        let mut stored = Vec::new();
        store.visit_hosts(&hosts, |uid, record| {
            stored.push(member_of_record(uid, record))
        });
        stored.sort_by(|a, b| a.key.uid.cmp(&b.key.uid));
        assert_eq!(stored.len(), 2);
        assert_eq!(
            counts(&stored).first_failure_at,
            Some(datetime!(2026-11-27 11:00 UTC))
        );
    }

    #[test]
    fn untried_members_do_not_dilute_the_trip_ratio() {
        let member = |i: usize, condition| Member {
            key: ObjectKey {
                namespace: "proj".into(),
                name: format!("r{i}").into(),
                uid: format!("u{i}").into(),
            },
            resource_version: 1,
            condition,
            opted_out: false,
            released_at: None,
            overridden_at: None,
            attempted_at: None,
            ready_in_lane: false,
        };
        // A restart: 10 tried and failed, 2 tried and Ready, 118 not tried yet.
        let mut members: Vec<Member> = (0..10)
            .map(|i| member(i, Condition::TransportFailing { since: None }))
            .collect();
        members.extend((10..12).map(|i| member(i, Condition::Ready)));
        members.extend((12..130).map(|i| member(i, Condition::NotAttempted)));
        assert_eq!(
            counts(&members),
            Counts {
                considered: 12,
                transport_failing: 10,
                first_failure_at: None,
            }
        );
        assert!(would_trip(&members, &Settings::default()));
        // Many healthy ones among them still keep it closed.
        members.extend((130..160).map(|i| member(i, Condition::Ready)));
        assert!(!would_trip(&members, &Settings::default()));
    }

    #[test]
    fn released_members_not_retried_yet_do_not_count_towards_a_trip() {
        let failing = Member {
            key: ObjectKey {
                namespace: "proj-1".into(),
                name: "app".into(),
                uid: "u".into(),
            },
            resource_version: 1,
            condition: Condition::TransportFailing { since: None },
            opted_out: false,
            released_at: None,
            overridden_at: None,
            attempted_at: Some(datetime!(2026-11-30 10:00 UTC)),
            ready_in_lane: false,
        };
        assert_eq!(counts(std::slice::from_ref(&failing)).transport_failing, 1);
        let mut released = failing.clone();
        released.released_at = Some(datetime!(2026-11-30 10:05 UTC));
        assert!(released.awaits_retry());
        assert_eq!(counts(&[released.clone()]), Counts::default());
        released.attempted_at = Some(datetime!(2026-11-30 10:06 UTC));
        assert!(
            !released.awaits_retry(),
            "failed again after the release: news"
        );
        assert_eq!(counts(&[released]).transport_failing, 1);
    }

    #[test]
    fn conditions_follow_health_and_marks() {
        let mark = json!({ quarantine::LABEL: "true" });
        let none = json!({});
        let refused = ready(
            "False",
            "dial tcp 140.82.112.3:443: connect: connection refused",
        );
        assert_eq!(
            condition_of(false, none.clone(), ready("True", "")),
            Condition::Ready
        );
        assert_eq!(
            condition_of(false, none.clone(), refused.clone()),
            Condition::TransportFailing {
                since: Some(datetime!(2026-11-27 11:00 UTC))
            }
        );
        for not_the_host in [
            "authentication required",
            "repository not found",
            "disk full",
        ] {
            assert_eq!(
                condition_of(false, none.clone(), ready("False", not_the_host)),
                Condition::OtherFailing,
                "{not_the_host}"
            );
        }
        assert_eq!(
            condition_of(false, none.clone(), json!({})),
            Condition::NotAttempted
        );
        assert_eq!(
            condition_of(false, none.clone(), ready("Unknown", "")),
            Condition::NotAttempted
        );
        assert_eq!(
            condition_of(true, none.clone(), refused.clone()),
            Condition::SuspendedByOthers
        );
        assert_eq!(
            condition_of(true, mark.clone(), refused.clone()),
            Condition::Quarantined { at: None }
        );
        assert_eq!(
            condition_of(false, mark, refused),
            Condition::QuarantineOverridden
        );
    }

    #[test]
    fn marks_are_read_from_annotations() {
        let annotations = json!({
            quarantine::AT_ANNOTATION: "2026-11-27T10:00:00Z",
            stamps::RELEASED_AT_ANNOTATION: "2026-11-27T09:00:00Z",
            stamps::OVERRIDDEN_AT_ANNOTATION: "not a time",
            quarantine::OPT_OUT_ANNOTATION: "False",
        });
        let health = classify(&object(
            true,
            json!({ quarantine::LABEL: "true" }),
            annotations,
            ready("False", "i/o timeout"),
        ))
        .unwrap();
        let member = member_from(&health);
        assert_eq!(
            member.condition,
            Condition::Quarantined {
                at: Some(datetime!(2026-11-27 10:00 UTC))
            }
        );
        assert_eq!(member.released_at, Some(datetime!(2026-11-27 09:00 UTC)));
        assert_eq!(member.overridden_at, None);
        assert_eq!(member.attempted_at, Some(datetime!(2026-11-27 11:00 UTC)));
        assert!(member.opted_out);
        assert_eq!(
            (
                &*member.key.namespace,
                member.key.uid.to_string().as_str(),
                member.resource_version
            ),
            ("proj-1", "u-1", 9)
        );
        let plain = classify(&object(
            false,
            json!({}),
            json!({ quarantine::OPT_OUT_ANNOTATION: "true" }),
            json!({}),
        ));
        assert!(!member_from(&plain.unwrap()).opted_out);
    }

    #[test]
    fn a_lane_held_member_is_held_whatever_it_shows_there() {
        let laned =
            json!({ crate::marks::lane::MOVED_LABEL: "true", crate::flux::SHARD_LABEL: "far" });
        let failing = condition_of(false, laned.clone(), ready("False", "i/o timeout"));
        assert!(
            matches!(failing, Condition::Quarantined { .. }),
            "{failing:?}"
        );
        let ready_there = json!({ "observedGeneration": 2, "conditions": [{ "type": "Ready",
            "status": "True", "reason": "Succeeded", "message": "stored",
            "lastTransitionTime": "2026-11-27T11:00:00Z" }] });
        let health = classify(&object(false, laned.clone(), json!({}), ready_there)).unwrap();
        let member = member_from(&health);
        assert!(member.is_quarantined() && member.ready_in_lane);
        assert_eq!(
            condition_of(true, laned, ready("False", "i/o timeout")),
            Condition::SuspendedByOthers
        );
        // Someone moved it back to the main source-controller: their word, acknowledged.
        let left = json!({ crate::marks::lane::MOVED_LABEL: "true" });
        assert_eq!(
            condition_of(false, left, ready("False", "i/o timeout")),
            Condition::QuarantineOverridden
        );
    }
}
