//! The exporter's heap at 100 000 GitRepositories, part by part: the store after a list, one
//! host-breaker pass, one `/metrics` scrape, and a pass and a scrape at once (as just after a
//! sync, when the watch's last event wakes the breaker and Prometheus scrapes). Bytes are counted
//! by a global allocator that wraps the system's, so the figures are live heap, not RSS: what
//! the allocator keeps on top of them is measured on a real API server by
//! `tests/load/exporter/run.sh` with `BENCH_BREAKER=1`.
//!
//! The population follows that run's (`examples/populate.rs`): 70 % of the GitRepositories on
//! github.com, 80 % failing, 5 % never reconciled, SIZE/10 namespaces, gitlab.com and
//! git.corp.example.com excluded from the breaker. Two layouts of github.com: failing (the pass
//! that trips it) and held open (its failing ones quarantined, as `BENCH_PREQUARANTINED=1`).
//!
//!   cargo bench --bench memory [-- SIZE]

use std::sync::Arc;

use fluxgate::breaker::args::TripArgs;
use fluxgate::breaker::runtime::Breakers;
use fluxgate::exporter::store::Store;
use fluxgate::exporter::{Exporter, ExporterConfig};
use fluxgate::health::classify;
use fluxgate::metrics::{BreakerMetrics, Metrics};
use serde_json::{Value, json};
use time::OffsetDateTime;

#[path = "support/counting_allocator.rs"]
mod counting_allocator;
use counting_allocator::{Counting, live};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: f64 = 1024.0 * 1024.0;

/// What `work` returns, and the most it added to the live heap at any moment, in MiB.
fn peak_of<T>(work: impl FnOnce() -> T) -> (T, f64) {
    let (out, bytes) = counting_allocator::peak_of(work);
    (out, bytes as f64 / MIB)
}

fn live_mib() -> f64 {
    live() as f64 / MIB
}

/// splitmix64, as the population tool spreads hosts and states.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn host_of(i: u64) -> &'static str {
    match (mix(i) >> 16) % 10 {
        0..=6 => "github.com",
        7 | 8 => "gitlab.com",
        _ => "git.corp.example.com",
    }
}

/// One GitRepository of the population; github.com's failing ones quarantined when `held_open`.
fn object(i: u64, namespaces: u64, held_open: bool) -> Value {
    let host = host_of(i);
    let url = format!("https://{host}/example-org/project-{i:06}");
    let bucket = mix(i) % 100;
    let since = "2026-12-01T10:00:00Z";
    let (status, transport) = if bucket < 5 {
        (Value::Null, true)
    } else if bucket < 85 {
        let (reason, message, transport) = match (mix(i) >> 24) % 10 {
            0..=5 => ("GitOperationFailed", "context deadline exceeded", true),
            6 | 7 => (
                "GitOperationFailed",
                "dial tcp: lookup host: i/o timeout",
                true,
            ),
            _ => ("AuthenticationFailed", "authentication required", false),
        };
        let message = format!(
            "failed to checkout and determine revision: unable to clone '{url}': {message}"
        );
        let status = json!({ "observedGeneration": -1, "conditions": [{
            "type": "Ready", "status": "False", "reason": reason, "message": message,
            "observedGeneration": 1, "lastTransitionTime": since }] });
        (status, transport)
    } else {
        let status = json!({ "observedGeneration": 1, "conditions": [{
            "type": "Ready", "status": "True", "reason": "Succeeded", "message": "stored artifact",
            "observedGeneration": 1, "lastTransitionTime": since }] });
        (status, false)
    };
    let mut object = json!({
        "metadata": { "name": format!("project-{i:06}"), "namespace": format!("tenant-{:05}", i % namespaces),
                      "uid": format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", mix(i) as u32, mix(i) >> 48,
                                     mix(i ^ 1) & 0xfff, mix(i ^ 2) & 0xfff, mix(i ^ 3) & 0xffff_ffff_ffff),
                      "resourceVersion": (1_000_000 + i).to_string(), "generation": 1,
                      "creationTimestamp": "2026-11-01T10:00:00Z", "labels": {}, "annotations": {} },
        "spec": { "url": url, "interval": "5m", "timeout": "5m", "suspend": false },
        "status": status,
    });
    if held_open && host == "github.com" && transport {
        object["metadata"]["labels"]["fluxgate.io/quarantined"] = json!("true");
        let annotations = &mut object["metadata"]["annotations"];
        annotations["fluxgate.io/quarantined-host"] = json!(host);
        annotations["fluxgate.io/quarantined-at"] = json!("2026-12-06T10:00:00Z");
        object["spec"]["suspend"] = json!(true);
    }
    object
}

fn populated(size: u64, held_open: bool) -> (Metrics, Arc<Store>) {
    let mut metrics = Metrics::new();
    let exporter = Exporter::new(&mut metrics, ExporterConfig::default());
    let store = exporter.store();
    let namespaces = (size / 10).max(1);
    store.relist_start(0);
    for i in 0..size {
        if let Ok(health) = classify(&object(i, namespaces, held_open)) {
            store.relist_apply(0, &health);
        }
    }
    store.relist_done(0, true, OffsetDateTime::now_utc().unix_timestamp());
    (metrics, store)
}

fn breakers() -> Breakers {
    let trip = TripArgs {
        breaker_exclude_hosts: vec!["gitlab.com".into(), "git.corp.example.com".into()],
        ..TripArgs::default()
    };
    Breakers::new(trip, BreakerMetrics::default())
}

fn scrape(metrics: &Metrics) -> usize {
    metrics.exposition().map(|chunk| chunk.len()).sum()
}

fn measure(size: u64, held_open: bool) {
    let layout = if held_open { "held open" } else { "failing" };
    let base = live_mib();
    let (metrics, store) = populated(size, held_open);
    let settled = live_mib() - base;
    let now = OffsetDateTime::now_utc();
    let mut breakers = breakers();
    let (plan, pass_peak) = peak_of(|| breakers.plan(&store, now));
    let actions = plan.actions.len();
    drop(plan);
    let (bytes, scrape_peak) = peak_of(|| scrape(&metrics));
    // A later pass (the breaker now has state) and a scrape, on two threads at once.
    let ((), both_peak) = peak_of(|| {
        std::thread::scope(|s| {
            s.spawn(|| scrape(&metrics));
            s.spawn(|| drop(breakers.plan(&store, now)));
        });
    });
    println!(
        "{size} GitRepositories, github.com {layout}: store {settled:.1} MiB; \
         pass +{pass_peak:.1} MiB ({actions} actions); scrape +{scrape_peak:.1} MiB \
         ({:.1} MiB sent); pass and scrape at once +{both_peak:.1} MiB",
        bytes as f64 / MIB,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a number among the arguments is the size.
    let size = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    measure(size, false);
    measure(size, true);
}
