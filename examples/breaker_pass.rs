//! What one host-circuit-breaker pass costs at the exporter's largest size: the time to decide
//! (no API calls are made here; a pass's writes are its actions) and the memory it allocates, in
//! three situations of 100 000 GitRepositories over 10 000 namespaces:
//!
//! - `no outage`: every GitRepository Ready;
//! - `outage, closed`: 87 % failing with timeouts on one host for 6 minutes, the breaker counting
//!   its window (every pass builds that host's 87 000 members);
//! - `outage, tripping`: the same failures, but for 20 minutes: the breaker opens on its first
//!   pass and quarantines 100 a pass (the actions are not applied here, so every pass picks 100
//!   of the 87 000);
//! - `outage, open`: the same 87 % quarantined, the breaker waiting for its next probe.
//!
//! Also the store's bytes per record for the breaker's marks.
//!
//!   cargo run --release --example breaker_pass [SIZE] [PASSES]

use std::time::{Duration, Instant};

use fluxgate::breaker::args::TripArgs;
use fluxgate::breaker::runtime::Breakers;
use fluxgate::exporter::store::Record;
use fluxgate::exporter::{Exporter, ExporterConfig, Store};
use fluxgate::health::classify;
use fluxgate::metrics::Metrics;
use serde_json::json;
use time::OffsetDateTime;

#[path = "../benches/support/counting_allocator.rs"]
mod counting_allocator;

/// Counts live bytes and their peak, to see what a pass allocates on top of the store.
#[global_allocator]
static ALLOCATOR: counting_allocator::Counting = counting_allocator::Counting;

#[derive(Clone, Copy, PartialEq)]
enum Situation {
    NoOutage,
    OutageClosed,
    OutageTripping,
    OutageOpen,
}

fn populated(size: usize, situation: Situation, store: &Store) {
    store.relist_start(0);
    let namespaces = (size / 10).max(1);
    for i in 0..size {
        let far = i % 100 < 87;
        let failing = far && situation != Situation::NoOutage;
        let quarantined = failing && situation == Situation::OutageOpen;
        // Failing since 6 minutes before the passes (within the 10m window), or 20 (past it).
        let failing_since = if situation == Situation::OutageClosed {
            "2026-11-28T10:15:00Z"
        } else {
            "2026-11-28T10:01:00Z"
        };
        let status = if failing {
            json!({ "observedGeneration": -1, "conditions": [{
                "type": "Ready", "status": "False", "reason": "GitOperationFailed",
                "message": "failed to checkout and determine revision: unable to clone 'https://github.com/acme/app': context deadline exceeded",
                "lastTransitionTime": failing_since }] })
        } else {
            json!({ "observedGeneration": 1, "conditions": [{
                "type": "Ready", "status": "True", "reason": "Succeeded", "message": "stored artifact",
                "lastTransitionTime": "2026-11-28T10:00:30Z" }] })
        };
        let host = if far {
            "github.com"
        } else {
            "git.platform.example"
        };
        let mut object = json!({
            "metadata": { "name": format!("project-{i:06}"), "namespace": format!("tenant-{:05}", i % namespaces),
                          "uid": format!("{i:08x}-0000-4000-8000-{i:012x}"), "generation": 1, "resourceVersion": format!("{}", 1000 + i),
                          "creationTimestamp": "2026-11-28T10:00:00Z" },
            "spec": { "url": format!("https://{host}/acme/project-{i}"), "interval": "1m", "suspend": quarantined },
            "status": status,
        });
        if quarantined {
            object["metadata"]["labels"] = json!({ "fluxgate.io/quarantined": "true" });
            object["metadata"]["annotations"] = json!({
                "fluxgate.io/quarantined-host": "github.com",
                "fluxgate.io/quarantined-at": "2026-11-28T10:20:00Z" });
        }
        store.relist_apply(0, &classify(&object).expect("an object"));
    }
    store.relist_done(0, true, 1_795_000_000);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let passes: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    println!(
        "Record: {} bytes (marks boxed separately, only for marked objects)",
        std::mem::size_of::<Record>()
    );
    println!("size {size}, {passes} passes each; a pass decides, it does not write");
    println!(
        "| situation | pass (median) | pass (max) | actions per pass | allocated at peak during a pass |"
    );
    println!("|---|---|---|---|---|");
    for (situation, name) in [
        (Situation::NoOutage, "no outage"),
        (
            Situation::OutageClosed,
            "outage, closed (counting its window)",
        ),
        (
            Situation::OutageTripping,
            "outage, tripping (quarantining 100 a pass)",
        ),
        (Situation::OutageOpen, "outage, open (waiting for a probe)"),
    ] {
        let mut metrics = Metrics::new();
        let exporter = Exporter::new(&mut metrics, ExporterConfig::default());
        let store = exporter.store();
        populated(size, situation, &store);
        let trip = TripArgs {
            breaker_min_failing: 4,
            breaker_failing_ratio: 0.5,
            breaker_window: Duration::from_secs(600),
            breaker_probe_interval: Duration::from_secs(300),
            breaker_probe_interval_max: Duration::from_secs(600),
            breaker_flapping_probe_interval_max: Duration::from_secs(3600),
            breaker_canary_timeout: Duration::from_secs(600),
            breaker_release_batch: 20,
            breaker_release_every: Duration::from_secs(30),
            breaker_max_actions: 100,
            breaker_exclude_hosts: Vec::new(),
        };
        let mut breakers = Breakers::new(trip, metrics.breaker.clone());
        // A minute after the quarantines above: the next probe is four minutes away.
        let now: OffsetDateTime = time::macros::datetime!(2026-11-28 10:21 UTC);
        let mut times = Vec::new();
        let mut actions = 0;
        let mut peak_extra = 0;
        for pass in 0..passes {
            let started = Instant::now();
            let (plan, extra) = counting_allocator::peak_of(|| {
                breakers.plan(&store, now + time::Duration::seconds(i64::from(pass)))
            });
            times.push(started.elapsed());
            actions = actions.max(plan.actions.len());
            peak_extra = peak_extra.max(extra);
            drop(plan);
        }
        times.sort();
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {actions} | {:.1} MiB |",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0,
            peak_extra as f64 / (1024.0 * 1024.0),
        );
    }
}
