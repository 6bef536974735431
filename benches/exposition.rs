//! Time to answer one `/metrics` scrape from the exporter's store, at the sizes of the exporter
//! load test (`tests/load/exporter/run.sh`): 80 % of the GitRepositories failing, each with its
//! own failing-since series, SIZE/10 namespaces. Records are built once; only the scrape is
//! timed. Both formats: OpenMetrics (what Prometheus asks for) and the Prometheus text format
//! converted from it.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fluxgate::exporter::{Exporter, ExporterConfig};
use fluxgate::exposition_format::Format;
use fluxgate::health::classify;
use fluxgate::metrics::Metrics;
use serde_json::json;

fn populated(size: usize) -> Metrics {
    let mut metrics = Metrics::new();
    let exporter = Exporter::new(&mut metrics, ExporterConfig::default());
    let store = exporter.store();
    store.relist_start(0);
    for i in 0..size {
        let failing = i % 5 != 0;
        let status = if failing {
            json!({ "observedGeneration": 1, "conditions": [{
                "type": "Ready", "status": "False", "reason": "GitOperationFailed",
                "message": "failed to checkout and determine revision: unable to clone 'https://github.com/acme/app': context deadline exceeded",
                "lastTransitionTime": "2026-11-28T10:01:00Z" }] })
        } else {
            json!({ "observedGeneration": 1, "conditions": [{
                "type": "Ready", "status": "True", "reason": "Succeeded", "message": "stored artifact",
                "lastTransitionTime": "2026-11-28T10:00:30Z" }] })
        };
        let object = json!({
            "metadata": { "name": format!("project-{i:06}"), "namespace": format!("tenant-{:05}", i % (size / 10)),
                          "uid": format!("uid-{i}"), "generation": 1,
                          "creationTimestamp": "2026-11-28T10:00:00Z" },
            "spec": { "url": format!("https://github.com/acme/project-{i}"), "interval": "1m" },
            "status": status,
        });
        store.relist_apply(0, &classify(&object).unwrap());
    }
    store.relist_done(0, true, 1_795_000_000);
    assert_eq!(store.len(), size);
    metrics
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("scrape");
    group.sample_size(10);
    for size in [1_000usize, 10_000, 100_000] {
        let metrics = Arc::new(populated(size));
        group.bench_with_input(
            BenchmarkId::new("exposition", size),
            &metrics,
            |b, metrics| {
                // As `/metrics` sends it: chunk by chunk, never joined.
                b.iter(|| {
                    metrics
                        .exposition()
                        .map(|chunk| black_box(chunk).len())
                        .sum::<usize>()
                })
            },
        );
        // The same for scrapers of the Prometheus text format: converted as it streams.
        group.bench_with_input(
            BenchmarkId::new("exposition_text_format", size),
            &metrics,
            |b, metrics| {
                b.iter(|| {
                    metrics
                        .exposition_as(Format::PrometheusText)
                        .map(|chunk| black_box(chunk).len())
                        .sum::<usize>()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
