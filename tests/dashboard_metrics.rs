//! Every `fluxgate_*` series the shipped dashboard and alert rules query is one a running fluxgate
//! really exports: the registry is built as `serve` builds it, every family gets a sample, and
//! the names are read from the encoded `/metrics` text, not from a list kept by hand.

use std::collections::BTreeSet;

use fluxgate::exporter::{Exporter, ExporterConfig};
use fluxgate::health::classify;
use fluxgate::metrics::{
    AdmissionLabels, JanitorActionLabels, KindLabels, Metrics, NamespaceLabels, OutcomeLabels,
    RuleLabels,
};
use serde_json::json;

fn exported_series() -> BTreeSet<String> {
    let mut metrics = Metrics::new();
    let exporter = Exporter::new(&mut metrics, ExporterConfig::default());
    let store = exporter.store();
    store.relist_start(0);
    for (name, status) in [
        (
            "failing",
            json!({ "conditions": [{ "type": "Ready", "status": "False", "reason": "GitOperationFailed",
                                             "message": "i/o timeout", "lastTransitionTime": "2026-11-28T10:00:00Z" }] }),
        ),
        ("waiting", json!({ "observedGeneration": -1 })),
    ] {
        let object = json!({
            "metadata": { "name": name, "namespace": "proj", "uid": name, "creationTimestamp": "2026-11-28T09:00:00Z" },
            "spec": { "url": "https://github.com/o/r" },
            "status": status,
        });
        store.relist_apply(0, &classify(&object).unwrap());
    }
    store.relist_done(0, true, 0);
    store.first_reconcile().observe(1.0);
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
    metrics
        .janitor
        .candidates
        .get_or_create(&RuleLabels { rule: "failing" })
        .set(1);
    metrics
        .encode()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn referenced(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap();
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("fluxgate_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |e| start + e);
        if before_ok {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn dashboard_and_rules_use_only_exported_series() {
    let exported = exported_series();
    assert!(
        exported.contains("fluxgate_gitrepositories_failed"),
        "{exported:?}"
    );
    for path in ["dashboards/fluxgate.json", "alerts/fluxgate-rules.yaml"] {
        let used = referenced(path);
        assert!(!used.is_empty(), "{path} queries no fluxgate series");
        let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{path} queries series fluxgate does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
}
