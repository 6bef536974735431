//! A registry as a running `fluxgate serve` fills it: the exporter holding the shipped incident
//! snapshot (130 GitRepositories, most of them failing), the webhook's and the janitor's
//! families with samples. Shared by `tests/metrics_negotiation.rs` and
//! `examples/exposition.rs` (which `tests/monitoring/check.sh` feeds to promtool).

use std::path::Path;

use fluxgate::exporter::{Exporter, ExporterConfig, Folder};
use fluxgate::metrics::{
    JanitorActionLabels, LabelSlot, Metrics, NamespaceLabels, OutcomeLabels, RuleLabels,
};
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use serde_json::Value;

/// When the snapshot was taken.
pub const SNAPSHOT_NOW: i64 = 1_795_867_200; // 2026-11-28T12:00:00Z

pub fn incident_snapshot() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gitrepositories-incident.json");
    let list: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    list["items"].as_array().unwrap().clone()
}

/// Every family fluxgate registers, each with samples.
pub fn full_metrics() -> Metrics {
    let mut metrics = Metrics::new();
    let exporter = Exporter::new(&mut metrics, ExporterConfig::default());
    let mut folder = Folder::new(exporter.store(), 1);
    folder.fold(0, Event::Init, SNAPSHOT_NOW);
    for object in incident_snapshot() {
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        folder.fold(0, Event::InitApply(object), SNAPSHOT_NOW);
    }
    assert!(folder.fold(0, Event::InitDone, SNAPSHOT_NOW));
    exporter.store().first_reconcile().observe(42.0);

    // The webhook, through the calls its handler makes.
    let (git, pod) = (LabelSlot::new(0, "GitRepository"), LabelSlot::new(1, "Pod"));
    let (create, update) = (LabelSlot::new(0, "CREATE"), LabelSlot::new(1, "UPDATE"));
    let (patched, skipped) = (LabelSlot::new(0, "patched"), LabelSlot::new(2, "skipped"));
    metrics.admission.count_review(git, create, patched);
    metrics.admission.count_review(pod, update, skipped);
    metrics.admission.count_invalid();
    metrics.admission.observe_duration(git, 0.0004);
    metrics.admission.observe_duration(pod, 0.00002);
    metrics.tls.expiry_timestamp.set(SNAPSHOT_NOW + 90 * 86_400);
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

    // The janitor.
    metrics.janitor.leader.set(1);
    for (rule, action, outcome, n) in [
        ("failing", "suspend", "done", 3),
        ("failing", "suspend", "dry_run", 1),
        ("stale_test", "delete", "error", 1),
    ] {
        metrics
            .janitor
            .actions
            .get_or_create(&JanitorActionLabels {
                rule,
                action,
                outcome,
            })
            .inc_by(n);
    }
    metrics
        .janitor
        .candidates
        .get_or_create(&RuleLabels { rule: "failing" })
        .set(4);
    metrics
}
