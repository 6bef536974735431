//! The exporter's metric families, encoded from the store at scrape time: the gauges from the
//! counts the store keeps, and the per-object failing-since family in chunks.

use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::store::{FailingSeries, Store};
use crate::metrics::{CHUNK_BYTES, ChunkedFamily, write_descriptor, write_labels};

/// Full name of the per-object family, which is not in the registry (so carries its prefix).
pub const FAILING_SINCE_FAMILY: &str = "fluxgate_gitrepository_failing_since_timestamp_seconds";
pub(crate) const FAILING_SINCE_HELP: &str = "When each failed GitRepository started failing (the earlier of \
     its Ready and FetchFailed conditions' lastTransitionTime).";

/// The per-object family, one series per failed GitRepository: at 100k objects it is 90 % of
/// a scrape. It is encoded here rather than through the registry so that a scrape sends it in
/// chunks made as the client reads, instead of building the whole text (18 MB at 100k) first.
#[derive(Debug, Clone)]
pub struct FailingSinceFamily(pub Arc<Store>);

impl ChunkedFamily for FailingSinceFamily {
    fn chunks(&self) -> Box<dyn Iterator<Item = Bytes> + Send> {
        Box::new(FailingSinceChunks {
            series: self.0.failing_since().into_iter(),
            header: true,
        })
    }
}

struct FailingSinceChunks {
    series: std::vec::IntoIter<FailingSeries>,
    header: bool,
}

impl Iterator for FailingSinceChunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let mut out = Vec::with_capacity(CHUNK_BYTES + 512);
        if std::mem::take(&mut self.header) {
            write_descriptor(&mut out, FAILING_SINCE_FAMILY, FAILING_SINCE_HELP, "gauge");
        }
        for s in self.series.by_ref() {
            out.extend_from_slice(FAILING_SINCE_FAMILY.as_bytes());
            write_labels(
                &mut out,
                &[
                    ("namespace", &s.namespace),
                    ("name", &s.name),
                    ("host", &s.host),
                    ("reason", s.class.as_str()),
                ],
            );
            out.push(b' ');
            out.extend_from_slice(itoa::Buffer::new().format(s.since).as_bytes());
            out.push(b'\n');
            if out.len() >= CHUNK_BYTES {
                break;
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

/// Encodes the store as the exporter's metric families.
#[derive(Debug, Clone)]
pub struct StoreCollector(pub Arc<Store>);

pub(crate) fn gauge_family<L: prometheus_client::encoding::EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (L, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let store = &self.0;
        let agg = store.aggregate();

        gauge_family(
            &mut encoder,
            "gitrepositories",
            "GitRepositories by namespace and state (ready, failed, pending, suspended, quarantined, progressing).",
            agg.by_state
                .iter()
                .map(|((ns, state), n)| ([("namespace", &**ns), ("state", state.as_str())], *n)),
        )?;
        gauge_family(
            &mut encoder,
            "gitrepositories_failed",
            "Failed GitRepositories (Ready=False, not suspended) by namespace, Git host and failure class.",
            agg.failed.iter().map(|((ns, host, class), n)| {
                (
                    [
                        ("namespace", &**ns),
                        ("host", &**host),
                        ("reason", class.as_str()),
                    ],
                    *n,
                )
            }),
        )?;
        gauge_family(
            &mut encoder,
            "gitrepositories_quarantined",
            "GitRepositories the host circuit breaker suspended until their host answers again, by namespace and Git host.",
            agg.quarantined
                .iter()
                .map(|((ns, host), n)| ([("namespace", &**ns), ("host", &**host)], *n)),
        )?;
        gauge_family(
            &mut encoder,
            "lane_gitrepositories",
            "GitRepositories in a host lane (Flux's sharding.fluxcd.io/key label, served by that lane's source-controller), by lane and state.",
            agg.by_lane
                .iter()
                .map(|((lane, state), n)| ([("lane", &**lane), ("state", state.as_str())], *n)),
        )?;
        gauge_family(
            &mut encoder,
            "lane_oldest_pending_timestamp_seconds",
            "Creation time of the oldest GitRepository without any status condition in a host lane (waiting for that lane's source-controller), by lane.",
            agg.lane_oldest_pending
                .iter()
                .map(|(lane, t)| ([("lane", &**lane)], *t)),
        )?;
        gauge_family(
            &mut encoder,
            "gitrepositories_unobserved",
            "GitRepositories whose observedGeneration is missing, -1 or behind their generation.",
            agg.unobserved
                .iter()
                .map(|(ns, n)| ([("namespace", &**ns)], *n)),
        )?;
        gauge_family(
            &mut encoder,
            "gitrepositories_oldest_pending_timestamp_seconds",
            "Creation time of the oldest GitRepository without any status condition, outside host lanes, by namespace.",
            agg.oldest_pending
                .iter()
                .map(|(ns, t)| ([("namespace", &**ns)], *t)),
        )?;
        let plain = |encoder: &mut DescriptorEncoder,
                     name: &str,
                     help: &str,
                     kind: MetricType,
                     value: i64| {
            let metric = encoder.encode_descriptor(name, help, None, kind)?;
            match kind {
                MetricType::Counter => prometheus_client::metrics::counter::ConstCounter::new(
                    u64::try_from(value).unwrap_or(0),
                )
                .encode(metric),
                _ => ConstGauge::new(value).encode(metric),
            }
        };
        plain(
            &mut encoder,
            "watcher_objects",
            "GitRepositories in the exporter's cache.",
            MetricType::Gauge,
            agg.objects,
        )?;
        plain(
            &mut encoder,
            "watcher_synced",
            "1 when the initial list is in and the watch is healthy, 0 while it fails or re-lists.",
            MetricType::Gauge,
            i64::from(store.is_synced()),
        )?;
        plain(
            &mut encoder,
            "watcher_last_event_timestamp_seconds",
            "When the watcher last received an event or completed a list.",
            MetricType::Gauge,
            store.last_event(),
        )?;
        plain(
            &mut encoder,
            "watcher_restarts",
            "Times the GitRepository watch failed and was re-established with a fresh list.",
            MetricType::Counter,
            store.restarts(),
        )?;
        Ok(())
    }
}
