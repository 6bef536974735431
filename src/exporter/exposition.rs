//! The exporter's metric families, encoded from the store at scrape time: the gauges from the
//! counts the store keeps (and the watcher's own), then the per-object failing-since family.
//!
//! Both are [`ChunkedFamily`]s. Each takes its copy from the store only when the scrape reaches
//! it, and writes its text a chunk at a time as the client reads. At 100k GitRepositories a
//! scrape then holds one copy and one chunk at a time (some 5 MB), where building the gauges' text
//! whole while the per-object copy was already taken held 20 MB: what the exporter's memory
//! target could not afford next to a breaker pass.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::store::{Aggregate, FailingSeries, Store};
use crate::metrics::{CHUNK_BYTES, ChunkedFamily, write_descriptor, write_labels};

/// Full name of the per-object family.
pub const FAILING_SINCE_FAMILY: &str = "fluxgate_gitrepository_failing_since_timestamp_seconds";
pub(crate) const FAILING_SINCE_HELP: &str = "When each failed GitRepository started failing (the earlier of \
     its Ready and FetchFailed conditions' lastTransitionTime).";

/// The per-object family, one series per failed GitRepository: at 100k objects it is most of a
/// scrape.
#[derive(Debug, Clone)]
pub struct FailingSinceFamily(pub Arc<Store>);

impl ChunkedFamily for FailingSinceFamily {
    fn chunks(&self) -> Box<dyn Iterator<Item = Bytes> + Send> {
        let store = self.0.clone();
        Box::new(Chunks::new(move || {
            vec![FamilyText::gauge(
                FAILING_SINCE_FAMILY,
                FAILING_SINCE_HELP,
                store.failing_since().into_iter().map(|s| {
                    let since = s.since;
                    (s, since)
                }),
                |s: &FailingSeries| {
                    [
                        ("namespace", &*s.namespace),
                        ("name", &*s.name),
                        ("host", &*s.host),
                        ("reason", s.class.as_str()),
                    ]
                },
            )]
        }))
    }
}

/// The gauges the store counts, by namespace, host and lane, and the watcher's health.
#[derive(Debug, Clone)]
pub struct StoreFamilies(pub Arc<Store>);

impl ChunkedFamily for StoreFamilies {
    fn chunks(&self) -> Box<dyn Iterator<Item = Bytes> + Send> {
        let store = self.0.clone();
        Box::new(Chunks::new(move || store_families(&store)))
    }
}

fn store_families(store: &Store) -> Vec<FamilyText> {
    let Aggregate {
        by_state,
        failed,
        unobserved,
        oldest_pending,
        quarantined,
        by_lane,
        lane_oldest_pending,
        objects,
    } = store.aggregate();
    vec![
        FamilyText::gauge(
            "fluxgate_gitrepositories",
            "GitRepositories by namespace and state (ready, failed, pending, suspended, quarantined, progressing).",
            by_state,
            |(ns, state)| [("namespace", &**ns), ("state", state.as_str())],
        ),
        FamilyText::gauge(
            "fluxgate_gitrepositories_failed",
            "Failed GitRepositories (Ready=False, not suspended) by namespace, Git host and failure class.",
            failed,
            |(ns, host, class)| {
                [
                    ("namespace", &**ns),
                    ("host", &**host),
                    ("reason", class.as_str()),
                ]
            },
        ),
        FamilyText::gauge(
            "fluxgate_gitrepositories_quarantined",
            "GitRepositories the host circuit breaker suspended until their host answers again, by namespace and Git host.",
            quarantined,
            |(ns, host)| [("namespace", &**ns), ("host", &**host)],
        ),
        FamilyText::gauge(
            "fluxgate_lane_gitrepositories",
            "GitRepositories in a host lane (Flux's sharding.fluxcd.io/key label, served by that lane's source-controller), by lane and state.",
            by_lane,
            |(lane, state)| [("lane", &**lane), ("state", state.as_str())],
        ),
        FamilyText::gauge(
            "fluxgate_lane_oldest_pending_timestamp_seconds",
            "Creation time of the oldest GitRepository without any status condition in a host lane (waiting for that lane's source-controller), by lane.",
            lane_oldest_pending,
            |lane| [("lane", &**lane)],
        ),
        FamilyText::gauge(
            "fluxgate_gitrepositories_unobserved",
            "GitRepositories whose observedGeneration is missing, -1 or behind their generation.",
            unobserved,
            |ns| [("namespace", &**ns)],
        ),
        FamilyText::gauge(
            "fluxgate_gitrepositories_oldest_pending_timestamp_seconds",
            "Creation time of the oldest GitRepository without any status condition, outside host lanes, by namespace.",
            oldest_pending,
            |ns| [("namespace", &**ns)],
        ),
        FamilyText::single(
            "fluxgate_watcher_objects",
            "GitRepositories in the exporter's cache.",
            Kind::Gauge,
            objects,
        ),
        FamilyText::single(
            "fluxgate_watcher_synced",
            "1 when the initial list is in and the watch is healthy, 0 while it fails or re-lists.",
            Kind::Gauge,
            i64::from(store.is_synced()),
        ),
        FamilyText::single(
            "fluxgate_watcher_last_event_timestamp_seconds",
            "When the watcher last received an event or completed a list.",
            Kind::Gauge,
            store.last_event(),
        ),
        FamilyText::single(
            "fluxgate_watcher_restarts",
            "Times the GitRepository watch failed and was re-established with a fresh list.",
            Kind::Counter,
            store.restarts().max(0),
        ),
    ]
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// One family's OpenMetrics text: its descriptor, then its series a line at a time, written as
/// prometheus-client writes them.
struct FamilyText {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    next_line: NextLine,
}

/// Writes a family's next series' line; false once none is left.
type NextLine = Box<dyn FnMut(&mut Vec<u8>) -> bool + Send>;

impl FamilyText {
    /// A gauge with a series per item of `series`, labelled by `labels`.
    fn gauge<K: Send + 'static, const N: usize>(
        name: &'static str,
        help: &'static str,
        series: impl IntoIterator<Item = (K, i64), IntoIter: Send + 'static>,
        labels: for<'a> fn(&'a K) -> [(&'static str, &'a str); N],
    ) -> Self {
        let mut series = series.into_iter();
        Self {
            name,
            help,
            kind: Kind::Gauge,
            next_line: Box::new(move |out| {
                let Some((key, value)) = series.next() else {
                    return false;
                };
                write_line(out, name, &labels(&key), value);
                true
            }),
        }
    }

    /// A family of one series without labels.
    fn single(name: &'static str, help: &'static str, kind: Kind, value: i64) -> Self {
        let mut value = Some(value);
        Self {
            name,
            help,
            kind,
            next_line: Box::new(move |out| {
                let Some(value) = value.take() else {
                    return false;
                };
                match kind {
                    Kind::Gauge => write_line(out, name, &[], value),
                    Kind::Counter => {
                        // OpenMetrics names a counter's sample `<family>_total`.
                        out.extend_from_slice(name.as_bytes());
                        write_line(out, "_total", &[], value);
                    }
                }
                true
            }),
        }
    }
}

fn write_line(out: &mut Vec<u8>, name: &str, labels: &[(&str, &str)], value: i64) {
    out.extend_from_slice(name.as_bytes());
    if !labels.is_empty() {
        write_labels(out, labels);
    }
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    out.push(b'\n');
}

/// Families' text in chunks of about [`CHUNK_BYTES`]; the families are taken (`take`) when the
/// first chunk is pulled, not when the scrape starts.
struct Chunks<F> {
    take: Option<F>,
    families: VecDeque<FamilyText>,
    /// The front family's descriptor is written.
    described: bool,
}

impl<F> Chunks<F> {
    fn new(take: F) -> Self {
        Self {
            take: Some(take),
            families: VecDeque::new(),
            described: false,
        }
    }
}

impl<F: FnOnce() -> Vec<FamilyText>> Iterator for Chunks<F> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if let Some(take) = self.take.take() {
            self.families = take().into();
        }
        let mut out = Vec::with_capacity(CHUNK_BYTES + 512);
        while let Some(family) = self.families.front_mut() {
            if !std::mem::replace(&mut self.described, true) {
                let kind = match family.kind {
                    Kind::Gauge => "gauge",
                    Kind::Counter => "counter",
                };
                write_descriptor(&mut out, family.name, family.help, kind);
            }
            while out.len() < CHUNK_BYTES {
                if !(family.next_line)(&mut out) {
                    // Done: its copy of the store goes now.
                    self.families.pop_front();
                    self.described = false;
                    break;
                }
            }
            if out.len() >= CHUNK_BYTES {
                break;
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}
