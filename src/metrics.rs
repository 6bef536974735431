//! The metric registry and the families the webhook and janitor update. Every name is prefixed
//! `fluxgate_`; the exporter registers its own GitRepository families here too.
//!
//! A scrape is served as a sequence of chunks ([`Metrics::exposition`]): the registry's families
//! first, then the [`ChunkedFamily`]s, whose text is made as the client reads it, so a family with
//! a series per object never sits in memory whole. [`Metrics::exposition_as`] gives the same
//! chunks in the format a scrape negotiated ([`crate::exposition_format`]).

use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, OnceLock};

use crate::exposition_format::{Format, to_prometheus_text};

/// Target size of one chunk of a [`ChunkedFamily`].
pub const CHUNK_BYTES: usize = 64 * 1024;

/// A family too large to encode in one buffer. Its full name (with the `fluxgate_` prefix) must
/// not be registered in the registry too.
pub trait ChunkedFamily: Send + Sync + std::fmt::Debug {
    /// The family's OpenMetrics text (descriptor first) in chunks of about [`CHUNK_BYTES`],
    /// each encoded when it is pulled. A family may take its series when its first chunk is
    /// pulled rather than now, so that a scrape holds one family's copy at a time.
    fn chunks(&self) -> Box<dyn Iterator<Item = Bytes> + Send>;
}

/// Writes a family's `# HELP` and `# TYPE` lines as prometheus-client does.
pub fn write_descriptor(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    for part in [
        "# HELP ",
        name,
        " ",
        help,
        "\n# TYPE ",
        name,
        " ",
        kind,
        "\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
}

/// Writes `{key="value",...}`, escaping values as OpenMetrics requires (backslash, double
/// quote, newline).
pub fn write_labels(out: &mut Vec<u8>, labels: &[(&str, &str)]) {
    out.push(b'{');
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"=\"");
        if value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
            for b in value.bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    _ => out.push(b),
                }
            }
        } else {
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'"');
    }
    out.push(b'}');
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub kind: &'static str,
    pub operation: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JanitorActionLabels {
    pub rule: &'static str,
    pub action: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: &'static str,
}

fn admission_duration_histogram() -> Histogram {
    // Admission must stay far below the webhook's timeout; resolution matters below 10 ms.
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    ])
}

/// Webhook request counters and latency.
#[derive(Debug, Clone)]
pub struct AdmissionMetrics {
    pub requests: Family<AdmissionLabels, Counter>,
    pub duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    resolved: Arc<Resolved>,
}

impl Default for AdmissionMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(admission_duration_histogram),
            resolved: Arc::default(),
        }
    }
}

/// A label value from a small closed set, with its position in that set: each combination's
/// series then sits in an array slot, and counting a review costs an atomic add instead of
/// hashing its labels under the family's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelSlot {
    pub index: usize,
    pub value: &'static str,
}

impl LabelSlot {
    pub const fn new(index: usize, value: &'static str) -> Self {
        Self { index, value }
    }
}

/// `kind`: GitRepository, Pod, other.
pub const KIND_SLOTS: usize = 3;
/// `operation`: CREATE, UPDATE, DELETE, CONNECT, other.
pub const OPERATION_SLOTS: usize = 5;
/// `outcome`: the four review outcomes and `invalid`.
pub const OUTCOME_SLOTS: usize = 5;

const KIND_OTHER: LabelSlot = LabelSlot::new(2, "other");
const OPERATION_OTHER: LabelSlot = LabelSlot::new(4, "other");
const OUTCOME_INVALID: LabelSlot = LabelSlot::new(4, "invalid");

/// Each label set's counter and histogram, taken from its family on first use and kept. Series
/// still appear on first use only, as with `get_or_create`.
#[derive(Debug)]
struct Resolved {
    requests: [OnceLock<Counter>; KIND_SLOTS * OPERATION_SLOTS * OUTCOME_SLOTS],
    duration: [OnceLock<Histogram>; KIND_SLOTS],
}

impl Default for Resolved {
    fn default() -> Self {
        Self {
            requests: [const { OnceLock::new() }; KIND_SLOTS * OPERATION_SLOTS * OUTCOME_SLOTS],
            duration: [const { OnceLock::new() }; KIND_SLOTS],
        }
    }
}

impl AdmissionMetrics {
    /// Counts one answered review.
    pub fn count_review(&self, kind: LabelSlot, operation: LabelSlot, outcome: LabelSlot) {
        let labels = || AdmissionLabels {
            kind: kind.value,
            operation: operation.value,
            outcome: outcome.value,
        };
        let fits = kind.index < KIND_SLOTS
            && operation.index < OPERATION_SLOTS
            && outcome.index < OUTCOME_SLOTS;
        let index =
            (kind.index * OPERATION_SLOTS + operation.index) * OUTCOME_SLOTS + outcome.index;
        match self.resolved.requests.get(index).filter(|_| fits) {
            Some(cell) => cell
                .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                .inc(),
            None => self.requests.get_or_create(&labels()).inc(),
        };
    }

    /// Counts one request that could not be answered with a review (415, 413, 400).
    pub fn count_invalid(&self) {
        self.count_review(KIND_OTHER, OPERATION_OTHER, OUTCOME_INVALID);
    }

    /// Records the time taken to answer one review.
    pub fn observe_duration(&self, kind: LabelSlot, seconds: f64) {
        let histogram = || {
            self.duration
                .get_or_create(&KindLabels { kind: kind.value })
                .clone()
        };
        match self.resolved.duration.get(kind.index) {
            Some(cell) => cell.get_or_init(histogram).observe(seconds),
            None => histogram().observe(seconds),
        }
    }
}

/// The serving certificate.
#[derive(Debug, Clone, Default)]
pub struct TlsMetrics {
    pub expiry_timestamp: Gauge<i64, AtomicI64>,
    pub reloads: Family<OutcomeLabels, Counter>,
}

/// Proxy environment injected into source-controller Pods.
#[derive(Debug, Clone, Default)]
pub struct ProxyMetrics {
    pub injections: Family<NamespaceLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorRuleLabels {
    /// The rule's normalised `FROM` prefix.
    pub rule: String,
}

/// GitRepositories sent to a mirror on creation.
#[derive(Debug, Clone, Default)]
pub struct MirrorMetrics {
    pub rewrites: Family<MirrorRuleLabels, Counter>,
}

impl MirrorMetrics {
    /// Starts each configured rule's series at 0, so a rule that never matched is visible too.
    pub fn declare(&self, rule: &str) {
        self.rewrites
            .get_or_create(&MirrorRuleLabels {
                rule: rule.to_owned(),
            })
            .inc_by(0);
    }

    pub fn count_rewrite(&self, rule: &str) {
        self.rewrites
            .get_or_create(&MirrorRuleLabels {
                rule: rule.to_owned(),
            })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneShardLabels {
    /// The lane's shard: the value of `sharding.fluxcd.io/key`.
    pub shard: String,
}

/// GitRepositories put in a host lane on creation.
#[derive(Debug, Clone, Default)]
pub struct LaneMetrics {
    pub assignments: Family<LaneShardLabels, Counter>,
}

impl LaneMetrics {
    /// Starts each configured shard's series at 0, so a lane nothing went to is visible too.
    pub fn declare(&self, shard: &str) {
        self.assignments
            .get_or_create(&LaneShardLabels {
                shard: shard.to_owned(),
            })
            .inc_by(0);
    }

    pub fn count_assignment(&self, shard: &str) {
        self.assignments
            .get_or_create(&LaneShardLabels {
                shard: shard.to_owned(),
            })
            .inc();
    }
}

/// The janitor's actions and leadership.
#[derive(Debug, Clone, Default)]
pub struct JanitorMetrics {
    pub actions: Family<JanitorActionLabels, Counter>,
    pub leader: Gauge,
    pub candidates: Family<RuleLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostStateLabels {
    pub host: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostTransitionLabels {
    pub host: String,
    pub from: &'static str,
    pub to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerActionLabels {
    pub action: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostOutcomeLabels {
    pub host: String,
    pub outcome: &'static str,
}

fn pass_duration_histogram() -> Histogram {
    Histogram::new([0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
}

/// The host circuit breaker, published by the replica that runs it (the Lease holder).
#[derive(Debug, Clone)]
pub struct BreakerMetrics {
    /// 1 for each host's current state, 0 for the others.
    pub state: Family<HostStateLabels, Gauge>,
    pub transitions: Family<HostTransitionLabels, Counter>,
    pub actions: Family<BreakerActionLabels, Counter>,
    pub probes: Family<HostOutcomeLabels, Counter>,
    pub pass_duration: Histogram,
    /// With `--breaker=false`: GitRepositories still quarantined, which nobody releases.
    pub quarantined_without_breaker: Gauge,
    /// 1 while transport failures span several hosts at once (the cluster's egress, DNS or
    /// proxy): the breaker quarantines nothing meanwhile.
    pub cluster_wide_failure: Gauge,
}

impl Default for BreakerMetrics {
    fn default() -> Self {
        Self {
            state: Family::default(),
            transitions: Family::default(),
            actions: Family::default(),
            probes: Family::default(),
            pass_duration: pass_duration_histogram(),
            quarantined_without_breaker: Gauge::default(),
            cluster_wide_failure: Gauge::default(),
        }
    }
}

/// All of fluxgate's metrics. Built once at startup, then shared read-only (the families inside
/// are internally synchronised).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    chunked: Vec<Arc<dyn ChunkedFamily>>,
    pub admission: AdmissionMetrics,
    pub tls: TlsMetrics,
    pub proxy: ProxyMetrics,
    pub mirror: MirrorMetrics,
    pub lane: LaneMetrics,
    pub janitor: JanitorMetrics,
    pub breaker: BreakerMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fluxgate");
        let admission = AdmissionMetrics::default();
        let tls = TlsMetrics::default();
        let proxy = ProxyMetrics::default();
        let mirror = MirrorMetrics::default();
        let lane = LaneMetrics::default();
        let janitor = JanitorMetrics::default();
        let breaker = BreakerMetrics::default();

        registry.register(
            "build",
            "fluxgate build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "admission_requests",
            "Admission reviews answered, by object kind, operation and outcome",
            admission.requests.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission review, from body received to response encoded",
            admission.duration.clone(),
        );
        registry.register(
            "webhook_certificate_expiry_timestamp_seconds",
            "Expiry (notAfter) of the serving certificate, in Unix seconds",
            tls.expiry_timestamp.clone(),
        );
        registry.register(
            "webhook_certificate_reloads",
            "Serving certificate reloads from disk, by outcome",
            tls.reloads.clone(),
        );
        registry.register(
            "proxy_injections",
            "source-controller Pods given proxy environment, by namespace",
            proxy.injections.clone(),
        );
        registry.register(
            "mirror_rewrites",
            "New GitRepositories whose spec.url a mirror rule rewrote, by rule (dry runs not counted)",
            mirror.rewrites.clone(),
        );
        registry.register(
            "lane_assignments",
            "New GitRepositories given a host lane's sharding label, by shard (dry runs not counted)",
            lane.assignments.clone(),
        );
        registry.register(
            "janitor_actions",
            "Janitor actions on GitRepositories, by rule, action and outcome",
            janitor.actions.clone(),
        );
        registry.register(
            "janitor_leader",
            "Whether this replica holds the janitor Lease (1) or not (0)",
            janitor.leader.clone(),
        );
        registry.register(
            "janitor_candidates",
            "GitRepositories matching a janitor rule at its last run",
            janitor.candidates.clone(),
        );

        registry.register(
            "host_breaker_state",
            "Each Git host's circuit breaker: 1 for its current state (closed, open, half_open), 0 for the others",
            breaker.state.clone(),
        );
        registry.register(
            "host_breaker_transitions",
            "Changes of a host's circuit breaker state, by host and from/to state",
            breaker.transitions.clone(),
        );
        registry.register(
            "host_breaker_actions",
            "The breaker's changes to GitRepositories (quarantine, release, acknowledge_override), by outcome",
            breaker.actions.clone(),
        );
        registry.register(
            "host_breaker_probes",
            "Probes of a quarantined host with one canary GitRepository, by host and outcome",
            breaker.probes.clone(),
        );
        registry.register(
            "host_breaker_pass_duration_seconds",
            "Time one breaker pass takes to decide, from the exporter's records (writes not included)",
            breaker.pass_duration.clone(),
        );
        registry.register(
            "quarantined_without_breaker",
            "GitRepositories still quarantined while this fluxgate runs with --breaker=false: nobody releases them until `fluxgate restore --quarantined`",
            breaker.quarantined_without_breaker.clone(),
        );
        registry.register(
            "breaker_cluster_wide_failure",
            "1 while transport failures span several Git hosts at once, including hosts that answered just before (the cluster's own egress, DNS or proxy is failing): the breaker quarantines nothing meanwhile; 0 otherwise",
            breaker.cluster_wide_failure.clone(),
        );

        Self {
            registry,
            chunked: Vec::new(),
            admission,
            tls,
            proxy,
            mirror,
            lane,
            janitor,
            breaker,
        }
    }

    /// The registry, for components that register their own families before serving starts.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Adds a family encoded in chunks after the registry's families.
    pub fn register_chunked(&mut self, family: Arc<dyn ChunkedFamily>) {
        self.chunked.push(family);
    }

    /// A scrape's OpenMetrics text as chunks: the registry's families (encoded now), each chunked
    /// family (encoded as its chunks are pulled), then `# EOF`.
    pub fn exposition(&self) -> impl Iterator<Item = Bytes> + Send + use<> {
        let chunked: Vec<_> = self.chunked.iter().map(|f| f.chunks()).collect();
        let mut head = String::with_capacity(16 * 1024);
        // Encoding into a String only fails if a collector reports an error; what was written
        // up to then is still served.
        if let Err(err) =
            prometheus_client::encoding::text::encode_registry(&mut head, &self.registry)
        {
            tracing::warn!(error = %err, "encoding metrics failed");
        }
        std::iter::once(Bytes::from(head))
            .chain(chunked.into_iter().flatten())
            .chain(std::iter::once(Bytes::from_static(b"# EOF\n")))
    }

    /// [`exposition`](Self::exposition) in `format`: OpenMetrics as it is, the Prometheus text
    /// format converted chunk by chunk as they are pulled.
    pub fn exposition_as(&self, format: Format) -> Box<dyn Iterator<Item = Bytes> + Send> {
        if format.is_openmetrics() {
            Box::new(self.exposition())
        } else {
            Box::new(to_prometheus_text(self.exposition()))
        }
    }

    /// The whole OpenMetrics exposition in one string, for tests and tools; `/metrics` streams
    /// [`exposition`](Self::exposition) instead.
    pub fn encode(&self) -> String {
        self.encode_as(Format::OpenMetricsV1)
    }

    /// The whole exposition in `format` in one string, for tests and tools.
    pub fn encode_as(&self, format: Format) -> String {
        let mut out = Vec::new();
        for chunk in self.exposition_as(format) {
            out.extend_from_slice(&chunk);
        }
        // Every chunk is UTF-8 text made from `str`s.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable() {
        let metrics = Metrics::new();
        metrics
            .admission
            .requests
            .get_or_create(&AdmissionLabels {
                kind: "GitRepository",
                operation: "CREATE",
                outcome: "patched",
            })
            .inc();
        metrics
            .admission
            .duration
            .get_or_create(&KindLabels {
                kind: "GitRepository",
            })
            .observe(0.001);
        metrics
            .tls
            .reloads
            .get_or_create(&OutcomeLabels { outcome: "success" })
            .inc();
        metrics
            .proxy
            .injections
            .get_or_create(&NamespaceLabels {
                namespace: "flux-system".into(),
            })
            .inc();
        metrics
            .janitor
            .actions
            .get_or_create(&JanitorActionLabels {
                rule: "failing",
                action: "suspend",
                outcome: "done",
            })
            .inc();
        metrics.mirror.declare("ssh://git@github.com/");
        metrics.mirror.count_rewrite("https://github.com/");
        metrics.lane.declare("slow");
        metrics.lane.count_assignment("far");
        let pod = LabelSlot::new(1, "Pod");
        let update = LabelSlot::new(1, "UPDATE");
        let skipped = LabelSlot::new(2, "skipped");
        metrics.admission.count_review(pod, update, skipped);
        metrics.admission.count_review(pod, update, skipped);
        metrics.admission.count_invalid();
        metrics
            .admission
            .observe_duration(LabelSlot::new(0, "GitRepository"), 0.01);
        let text = metrics.encode();
        for line in [
            "fluxgate_admission_requests_total{kind=\"Pod\",operation=\"UPDATE\",outcome=\"skipped\"} 2",
            "fluxgate_admission_requests_total{kind=\"other\",operation=\"other\",outcome=\"invalid\"} 1",
            "fluxgate_admission_duration_seconds_count{kind=\"GitRepository\"} 2",
            "fluxgate_build_info{version=\"",
            "fluxgate_admission_requests_total{kind=\"GitRepository\",operation=\"CREATE\",outcome=\"patched\"} 1",
            "fluxgate_admission_duration_seconds_bucket{le=\"0.001\",kind=\"GitRepository\"} 1",
            "fluxgate_webhook_certificate_expiry_timestamp_seconds 0",
            "fluxgate_webhook_certificate_reloads_total{outcome=\"success\"} 1",
            "fluxgate_proxy_injections_total{namespace=\"flux-system\"} 1",
            "fluxgate_janitor_actions_total{rule=\"failing\",action=\"suspend\",outcome=\"done\"} 1",
            "fluxgate_janitor_leader 0",
            "fluxgate_mirror_rewrites_total{rule=\"https://github.com/\"} 1",
            "fluxgate_mirror_rewrites_total{rule=\"ssh://git@github.com/\"} 0",
            "fluxgate_lane_assignments_total{shard=\"far\"} 1",
            "fluxgate_lane_assignments_total{shard=\"slow\"} 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
