//! The host circuit breaker against a real kube-apiserver. GitRepository statuses are written
//! through the status subresource the way source-controller writes them; a small task plays the
//! Git host's side (when the host is "up", every GitRepository that is not suspended and not
//! Ready gets a fresh Ready condition, as source-controller would after its next clone).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fluxgate::breaker::args::TripArgs;
use fluxgate::breaker::probe::{Prober, ProberConfig};
use fluxgate::breaker::runtime::{BreakerDuty, Breakers};
use fluxgate::election::Leadership;
use fluxgate::exporter::{Exporter, ExporterConfig};
use fluxgate::flux;
use fluxgate::marks::{lane, quarantine, stamps};
use fluxgate::metrics::Metrics;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt as _;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::e2e::{self, eventually};
use support::githost::{LocalGitHost, Mode};
use time::OffsetDateTime;

const HOST: &str = "github.com";

fn now() -> String {
    fluxgate::policy::rfc3339_seconds(OffsetDateTime::now_utc())
}

/// One failed clone attempt, as source-controller reports a timeout.
fn timeout_status() -> Value {
    json!({
        "observedGeneration": -1,
        "conditions": [
            { "type": "Ready", "status": "False", "reason": "GitOperationFailed",
              "message": "failed to checkout and determine revision: unable to clone 'https://github.com/example/x': context deadline exceeded",
              "lastTransitionTime": now(), "observedGeneration": 1 },
            { "type": "FetchFailed", "status": "True", "reason": "GitOperationFailed",
              "message": "context deadline exceeded", "lastTransitionTime": now(), "observedGeneration": 1 }
        ]
    })
}

fn auth_status() -> Value {
    json!({
        "observedGeneration": -1,
        "conditions": [{ "type": "Ready", "status": "False", "reason": "AuthenticationFailed",
                         "message": "authentication required", "lastTransitionTime": now(),
                         "observedGeneration": 1 }]
    })
}

/// A clone that worked, for the object's current generation (every suspend and release is a
/// new generation, and source-controller records the one it reconciled).
fn ready_status(generation: i64) -> Value {
    json!({
        "observedGeneration": generation,
        "conditions": [{ "type": "Ready", "status": "True", "reason": "Succeeded",
                         "message": "stored artifact for revision 'main@sha1:0123'",
                         "lastTransitionTime": now(), "observedGeneration": generation }],
        "artifact": { "path": "gitrepository/x/x/0123.tar.gz", "url": "http://source-controller/x.tar.gz",
                      "revision": "main@sha1:0123", "digest": "sha256:00", "lastUpdateTime": now(), "size": 1 }
    })
}

async fn create(api: &Api<DynamicObject>, name: &str, status: Option<Value>) {
    let object = e2e::gitrepository(name, json!({ "timeout": "5m" }));
    api.create(&PostParams::default(), &object).await.unwrap();
    if let Some(status) = status {
        write_status(api, name, status).await;
    }
}

async fn write_status(api: &Api<DynamicObject>, name: &str, status: Value) {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .expect("status written through the status subresource");
}

fn is_quarantined(object: &DynamicObject) -> bool {
    object.data["spec"]["suspend"] == true
        && object.labels().get(quarantine::LABEL).map(String::as_str) == Some("true")
}

fn is_ready(object: &DynamicObject) -> bool {
    object.data["status"]["conditions"]
        .as_array()
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn annotation<'a>(object: &'a DynamicObject, key: &str) -> Option<&'a str> {
    object.annotations().get(key).map(String::as_str)
}

/// Waits, `limit` at most, until the namespace has GitRepositories and every one satisfies
/// `each`; returns them.
async fn until_all(
    api: &Api<DynamicObject>,
    limit: Duration,
    each: impl Fn(&DynamicObject) -> bool,
) -> Option<Vec<DynamicObject>> {
    eventually(limit, || async {
        let list = api.list(&ListParams::default()).await.ok()?;
        (!list.items.is_empty() && list.items.iter().all(&each)).then_some(list.items)
    })
    .await
}

fn back_and_ready(object: &DynamicObject) -> bool {
    object.data["spec"]["suspend"] != true && is_ready(object)
}

/// Thresholds for a test: the platform's minutes become seconds.
fn trip_args(release_every: Duration) -> TripArgs {
    TripArgs {
        breaker_min_failing: 5,
        breaker_failing_ratio: 0.5,
        breaker_window: Duration::from_secs(2),
        breaker_probe_interval: Duration::from_secs(2),
        breaker_probe_interval_max: Duration::from_secs(8),
        breaker_flapping_probe_interval_max: Duration::from_secs(8),
        breaker_canary_timeout: Duration::from_secs(30),
        breaker_release_batch: 3,
        breaker_release_every: release_every,
        breaker_max_actions: 100,
        breaker_exclude_hosts: Vec::new(),
    }
}

/// The exporter's watch of `namespace`, and the store the breaker reads.
fn start_exporter(
    client: &kube::Client,
    namespace: &str,
    metrics: &mut Metrics,
) -> (Arc<fluxgate::exporter::Store>, tokio::task::JoinHandle<()>) {
    let exporter = Exporter::new(
        metrics,
        ExporterConfig {
            namespaces: vec![namespace.to_owned()],
            ..ExporterConfig::default()
        },
    );
    let store = exporter.store();
    let client = client.clone();
    let task = tokio::spawn(async move {
        let _ = exporter.run(client).await;
    });
    (store, task)
}

/// The breaker unprobed: these tests play the host through statuses only (its name is not a
/// host on this machine), so a due canary goes out without fluxgate's own probe; the probed
/// breaker has its own tests below, against a Git host on loopback.
fn start_breaker(
    client: &kube::Client,
    store: Arc<fluxgate::exporter::Store>,
    metrics: &Metrics,
    trip: TripArgs,
    identity: &str,
) -> tokio::task::JoinHandle<()> {
    let duty = BreakerDuty {
        client: client.clone(),
        store,
        breakers: Breakers::new(trip, metrics.breaker.clone()),
        instance: identity.to_owned(),
        prober: None,
        probed: Arc::default(),
    };
    let every = Duration::from_millis(500);
    let run =
        fluxgate::election::run_while_leading("breaker", Leadership::fixed(true), every, duty);
    tokio::spawn(async move {
        let _ = run.await;
    })
}

/// Plays the Git host: while `up`, every GitRepository of `namespace` that is not suspended
/// and not Ready is made Ready, as source-controller does after a clone that works.
fn play_host(
    api: Api<DynamicObject>,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Bounded: at most ten minutes of 300 ms rounds, and the test stops it sooner.
        for _ in 0..2000 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if up.load(Ordering::Relaxed)
                && let Ok(list) = api.list(&ListParams::default()).await
            {
                for object in list.items {
                    if object.data["spec"]["suspend"] != true && !is_ready(&object) {
                        let name = object.metadata.name.clone().unwrap_or_default();
                        let generation = object.metadata.generation.unwrap_or(1);
                        write_status(&api, &name, ready_status(generation)).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

fn metric(metrics: &Metrics, line_prefix: &str) -> Option<f64> {
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn state_is(metrics: &Metrics, state: &str) -> bool {
    let line = format!("fluxgate_host_breaker_state{{host=\"{HOST}\",state=\"{state}\"}}");
    metric(metrics, &line) == Some(1.0)
}

async fn event_reasons(client: &kube::Client, namespace: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    events
        .list(&ListParams::default())
        .await
        .map(|l| l.items.into_iter().filter_map(|e| e.reason).collect())
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn trips_quarantines_probes_closes_and_releases_in_batches() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let ns = e2e::namespace(&client, "breaker").await;
    let api = e2e::gitrepositories(&client, &ns);
    for i in 0..10 {
        create(&api, &format!("far-{i}"), Some(timeout_status())).await;
    }
    for i in 0..2 {
        create(&api, &format!("healthy-{i}"), Some(ready_status(1))).await;
    }
    create(&api, "wrong-password", Some(auth_status())).await;

    let _ = tracing_subscriber::fmt()
        .with_env_filter("fluxgate=info")
        .with_test_writer()
        .try_init();
    let mut metrics = Metrics::new();
    let (store, exporter) = start_exporter(&client, &ns, &mut metrics);
    let breaker = start_breaker(
        &client,
        store,
        &metrics,
        trip_args(Duration::from_secs(1)),
        "e2e-a",
    );

    // Tripped: every transport failure quarantined, with its marks; Ready and auth untouched.
    let quarantined = eventually(Duration::from_secs(30), || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            let far: Vec<_> = list
                .items
                .iter()
                .filter(|o| o.name_any().starts_with("far-"))
                .collect();
            far.iter()
                .all(|o| is_quarantined(o))
                .then(|| list.items.clone())
        }
    })
    .await
    .expect("the ten failing GitRepositories quarantined");
    for object in &quarantined {
        let name = object.name_any();
        if name.starts_with("far-") {
            assert_eq!(
                annotation(object, quarantine::HOST_ANNOTATION),
                Some(HOST),
                "{name}"
            );
            assert!(
                annotation(object, quarantine::AT_ANNOTATION).is_some(),
                "{name}"
            );
            assert!(
                annotation(object, quarantine::REASON_ANNOTATION).is_some(),
                "{name}"
            );
        } else {
            assert_ne!(
                object.data["spec"]["suspend"], true,
                "{name} must not be touched"
            );
            assert!(object.labels().get(quarantine::LABEL).is_none(), "{name}");
        }
    }
    assert!(state_is(&metrics, "open") || state_is(&metrics, "half_open"));

    // A GitRepository of the open host created now is quarantined before any attempt.
    create(&api, "far-new", None).await;
    let new_quarantined = eventually(Duration::from_secs(10), || {
        let api = api.clone();
        async move { is_quarantined(&api.get("far-new").await.ok()?).then_some(()) }
    })
    .await;
    assert!(
        new_quarantined.is_some(),
        "a new GitRepository of an open host is quarantined within seconds"
    );

    // The probe: one canary released (unsuspended, unmarked, reconcile requested).
    let canary = eventually(Duration::from_secs(20), || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            let released: Vec<_> = list
                .items
                .into_iter()
                .filter(|o| annotation(o, stamps::RELEASED_AT_ANNOTATION).is_some())
                .collect();
            (released.len() == 1)
                .then(|| released.into_iter().next())
                .flatten()
        }
    })
    .await
    .expect("one canary released after the probe interval");
    assert_ne!(canary.data["spec"]["suspend"], true);
    assert!(canary.labels().get(quarantine::LABEL).is_none());
    assert!(annotation(&canary, flux::REQUESTED_AT_ANNOTATION).is_some());
    assert!(state_is(&metrics, "half_open"));

    // The host answers again: the canary becomes Ready, the breaker closes and releases the
    // rest in batches growing to three (twice what is out, at most three), one a second.
    let up = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let host = play_host(api.clone(), up, stop.clone());
    let released = eventually(Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            let far: Vec<_> = list
                .items
                .iter()
                .filter(|o| o.name_any().starts_with("far-"))
                .collect();
            far.iter()
                .all(|o| {
                    o.data["spec"]["suspend"] != true && o.labels().get(quarantine::LABEL).is_none()
                })
                .then(|| far.into_iter().cloned().collect::<Vec<_>>())
        }
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "every quarantined GitRepository released once the host answers\n{}",
            metrics.encode()
        )
    });
    assert!(state_is(&metrics, "closed"));
    let mut stamps: Vec<&str> = released
        .iter()
        .filter_map(|o| annotation(o, stamps::RELEASED_AT_ANNOTATION))
        .collect();
    assert_eq!(stamps.len(), 11, "the canary, the nine others and far-new");
    stamps.sort_unstable();
    stamps.dedup();
    assert!(
        stamps.len() >= 4,
        "ten releases after the canary in batches of two, then three, span at least four seconds: {stamps:?}"
    );
    let all_ready = eventually(Duration::from_secs(20), || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .filter(|o| o.name_any() != "wrong-password")
                .all(is_ready)
                .then_some(())
        }
    })
    .await;
    assert!(
        all_ready.is_some(),
        "every GitRepository of the host Ready with no manual step"
    );

    for transition in [
        "from=\"closed\",to=\"open\"",
        "from=\"open\",to=\"half_open\"",
        "from=\"half_open\",to=\"closed\"",
    ] {
        let line =
            format!("fluxgate_host_breaker_transitions_total{{host=\"{HOST}\",{transition}}}");
        assert_eq!(
            metric(&metrics, &line),
            Some(1.0),
            "{line}\n{}",
            metrics.encode()
        );
    }
    let reasons = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let reasons = event_reasons(&client, &ns).await;
            (reasons.iter().filter(|r| *r == "Quarantined").count() >= 11
                && reasons.iter().any(|r| r == "Probing")
                && reasons.iter().filter(|r| *r == "Released").count() >= 10)
                .then_some(reasons)
        }
    })
    .await;
    assert!(
        reasons.is_some(),
        "an Event for every quarantine and release"
    );

    stop.store(true, Ordering::Relaxed);
    let _ = host.await;
    breaker.abort();
    exporter.abort();
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn leaves_another_writers_unsuspend_and_a_new_leader_finishes_the_release() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let ns = e2e::namespace(&client, "breaker-takeover").await;
    let api = e2e::gitrepositories(&client, &ns);
    for i in 0..9 {
        create(&api, &format!("far-{i}"), Some(timeout_status())).await;
    }
    let mut metrics_a = Metrics::new();
    let (store_a, exporter_a) = start_exporter(&client, &ns, &mut metrics_a);
    // Slow batches (one every 4 s), so a replica can die between two of them.
    let trip = trip_args(Duration::from_secs(4));
    let replica_a = start_breaker(&client, store_a, &metrics_a, trip.clone(), "e2e-a");

    let all_quarantined = until_all(&api, Duration::from_secs(30), is_quarantined).await;
    assert_eq!(
        all_quarantined.map(|q| q.len()),
        Some(9),
        "all nine quarantined"
    );

    // Someone else (a user, or kustomize-controller correcting drift) unsuspends one.
    api.patch(
        "far-0",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "suspend": false } })),
    )
    .await
    .unwrap();
    let acknowledged = eventually(Duration::from_secs(15), || {
        let api = api.clone();
        async move {
            let object = api.get("far-0").await.ok()?;
            annotation(&object, stamps::OVERRIDDEN_AT_ANNOTATION)
                .is_some()
                .then_some(object)
        }
    })
    .await
    .expect("the override acknowledged");
    assert!(acknowledged.labels().get(quarantine::LABEL).is_none());
    // It keeps failing, and is left alone: never suspended again while the host is down.
    write_status(&api, "far-0", timeout_status()).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_ne!(
            api.get("far-0").await.unwrap().data["spec"]["suspend"],
            true
        );
    }
    let acknowledge =
        "fluxgate_host_breaker_actions_total{action=\"acknowledge_override\",outcome=\"done\"}";
    assert!(metric(&metrics_a, acknowledge).is_some_and(|n| n >= 1.0));
    assert!(
        event_reasons(&client, &ns)
            .await
            .iter()
            .any(|r| r == "QuarantineOverridden")
    );

    // The host returns; replica A closes and starts releasing, then dies between batches.
    let up = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let host = play_host(api.clone(), up, stop.clone());
    let released_by_a = eventually(Duration::from_secs(40), || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            let released = list
                .items
                .iter()
                .filter(|o| o.name_any() != "far-0")
                .filter(|o| annotation(o, stamps::RELEASED_AT_ANNOTATION).is_some())
                .count();
            // The canary and the first batch (two: twice the canary).
            (released >= 3).then_some(released)
        }
    })
    .await
    .expect("replica A released the canary and a first batch");
    replica_a.abort();
    exporter_a.abort();
    let still_quarantined = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|o| is_quarantined(o))
        .count();
    assert!(
        still_quarantined > 0,
        "replica A must die mid-release ({released_by_a} released)"
    );

    // Replica B starts with no memory and takes over from the marks.
    let mut metrics_b = Metrics::new();
    let (store_b, exporter_b) = start_exporter(&client, &ns, &mut metrics_b);
    let replica_b = start_breaker(&client, store_b, &metrics_b, trip, "e2e-b");
    let done = until_all(&api, Duration::from_secs(60), back_and_ready).await;
    assert!(
        done.is_some(),
        "replica B released the rest and every GitRepository is Ready"
    );
    let release_by_b = "fluxgate_host_breaker_actions_total{action=\"release\",outcome=\"done\"}";
    assert!(
        metric(&metrics_b, release_by_b).is_some_and(|n| n >= 1.0),
        "{}",
        metrics_b.encode()
    );
    let quarantine_by_b =
        "fluxgate_host_breaker_actions_total{action=\"quarantine\",outcome=\"done\"}";
    assert_eq!(
        metric(&metrics_b, quarantine_by_b),
        None,
        "B re-quarantined nothing"
    );

    stop.store(true, Ordering::Relaxed);
    let _ = host.await;
    replica_b.abort();
    exporter_b.abort();
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn a_persons_restore_wins_over_an_open_breaker() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let ns = e2e::namespace(&client, "breaker-restore").await;
    let api = e2e::gitrepositories(&client, &ns);
    for i in 0..8 {
        create(&api, &format!("far-{i}"), Some(timeout_status())).await;
    }
    let mut metrics = Metrics::new();
    let (store, exporter) = start_exporter(&client, &ns, &mut metrics);
    // No probe while the test runs: the breaker stays open, as it would through a long outage.
    let trip = TripArgs {
        breaker_probe_interval: Duration::from_secs(600),
        breaker_probe_interval_max: Duration::from_secs(600),
        ..trip_args(Duration::from_secs(1))
    };
    let breaker = start_breaker(&client, store, &metrics, trip, "e2e-restore");
    let quarantined = |api: Api<DynamicObject>| async move {
        let list = api.list(&ListParams::default()).await.ok()?;
        Some(
            list.items
                .into_iter()
                .filter(is_quarantined)
                .map(|o| o.name_any())
                .collect::<Vec<_>>(),
        )
    };
    let all = until_all(&api, Duration::from_secs(30), is_quarantined).await;
    assert_eq!(all.map(|q| q.len()), Some(8), "all eight quarantined");

    // One by name, as the Quarantined Event suggests.
    let one = e2e::fluxgate_cli(&["restore", &format!("{ns}/far-0")]).await;
    assert!(
        one.contains("lifted the circuit breaker's quarantine for github.com"),
        "{one}"
    );
    // A dry run of the bulk restore lists the other seven and changes nothing.
    let dry = e2e::fluxgate_cli(&[
        "restore",
        "--quarantined",
        "--host",
        "GitHub.com",
        "-n",
        &ns,
        "--dry-run",
    ])
    .await;
    assert_eq!(
        dry.lines()
            .filter(|l| l.contains(": would restore"))
            .count(),
        7,
        "{dry}"
    );
    assert_eq!(
        quarantined(api.clone()).await.unwrap().len(),
        7,
        "a dry run changes nothing"
    );
    // Another host's filter matches none of them.
    let other = e2e::fluxgate_cli(&[
        "restore",
        "--quarantined",
        "--host",
        "gitlab.com",
        "-n",
        &ns,
    ])
    .await;
    assert!(other.contains("nothing to restore"), "{other}");
    let bulk = e2e::fluxgate_cli(&[
        "restore",
        "--quarantined",
        "--host",
        "github.com",
        "-n",
        &ns,
        "--in-flight",
        "3",
        "--max-wait",
        "1s",
    ])
    .await;
    assert!(bulk.contains("restored 7 GitRepositories"), "{bulk}");

    // The host keeps failing and new failure statuses arrive: the breaker, still open, leaves
    // every restored GitRepository running for the rest of the episode.
    for i in 0..8 {
        write_status(&api, &format!("far-{i}"), timeout_status()).await;
    }
    for round in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let list = api.list(&ListParams::default()).await.unwrap();
        for object in &list.items {
            assert_ne!(
                object.data["spec"]["suspend"],
                true,
                "{} suspended again (round {round})",
                object.name_any()
            );
            assert!(annotation(object, stamps::OVERRIDDEN_AT_ANNOTATION).is_some());
            assert!(annotation(object, stamps::RESTORED_AT_ANNOTATION).is_some());
        }
        if round == 6 {
            for i in 0..8 {
                write_status(&api, &format!("far-{i}"), timeout_status()).await;
            }
        }
    }
    assert!(
        state_is(&metrics, "open"),
        "the host is still judged down\n{}",
        metrics.encode()
    );
    let restored_events = event_reasons(&client, &ns)
        .await
        .iter()
        .filter(|r| *r == "Restored")
        .count();
    assert_eq!(restored_events, 8, "an Event for every restore");
    let quarantine_by_breaker =
        "fluxgate_host_breaker_actions_total{action=\"quarantine\",outcome=\"done\"}";
    assert_eq!(
        metric(&metrics, quarantine_by_breaker),
        Some(8.0),
        "nothing quarantined twice"
    );

    breaker.abort();
    exporter.abort();
}

/// The breaker as `serve` runs it: fluxgate probes each open host itself before any canary.
fn start_probed_breaker(
    client: &kube::Client,
    store: Arc<fluxgate::exporter::Store>,
    metrics: &Metrics,
    trip: TripArgs,
) -> tokio::task::JoinHandle<()> {
    start_probed_breaker_in(client, store, metrics, trip, None)
}

/// The probed breaker, moving a tripped host's GitRepositories into `lane` if one is given.
fn start_probed_breaker_in(
    client: &kube::Client,
    store: Arc<fluxgate::exporter::Store>,
    metrics: &Metrics,
    trip: TripArgs,
    lane: Option<&str>,
) -> tokio::task::JoinHandle<()> {
    let prober = Prober::new(ProberConfig {
        timeout: Duration::from_secs(1),
        concurrency: 4,
        ..ProberConfig::default()
    })
    .expect("a prober");
    let breakers = Breakers::new(trip, metrics.breaker.clone()).in_lane(lane.map(str::to_owned));
    let duty = BreakerDuty::probed(
        client.clone(),
        store,
        breakers,
        "e2e-probed".to_owned(),
        prober,
    );
    let every = Duration::from_millis(500);
    let run =
        fluxgate::election::run_while_leading("breaker", Leadership::fixed(true), every, duty);
    tokio::spawn(async move {
        let _ = run.await;
    })
}

fn probed_trip() -> TripArgs {
    TripArgs {
        breaker_probe_interval: Duration::from_secs(1),
        breaker_probe_interval_max: Duration::from_secs(8),
        // A host that flaps here (a canary failing after an answer) waits past the test.
        breaker_flapping_probe_interval_max: Duration::from_secs(600),
        breaker_release_every: Duration::ZERO,
        ..trip_args(Duration::ZERO)
    }
}

async fn create_for(api: &Api<DynamicObject>, name: &str, url: &str, status: Value) {
    let mut object = e2e::gitrepository(name, json!({ "timeout": "5m" }));
    object.data["spec"]["url"] = json!(url);
    api.create(&PostParams::default(), &object).await.unwrap();
    write_status(api, name, status).await;
}

fn refused_status(url: &str) -> Value {
    json!({
        "observedGeneration": -1,
        "conditions": [{ "type": "Ready", "status": "False", "reason": "GitOperationFailed",
            "message": format!("failed to checkout and determine revision: unable to clone '{url}': dial tcp: connect: connection refused"),
            "lastTransitionTime": now(), "observedGeneration": 1 }]
    })
}

async fn released_count(api: &Api<DynamicObject>) -> usize {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|o| annotation(o, stamps::RELEASED_AT_ANNOTATION).is_some())
        .count()
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn releases_nothing_until_the_host_answers_fluxgates_own_probe() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let ns = e2e::namespace(&client, "breaker-probe").await;
    let api = e2e::gitrepositories(&client, &ns);
    let git = LocalGitHost::start().await;
    let host = git.addr.ip().to_string();
    for i in 0..8 {
        let url = git.url(&format!("org/app-{i}"));
        create_for(&api, &format!("far-{i}"), &url, timeout_status()).await;
    }
    let mut metrics = Metrics::new();
    let (store, exporter) = start_exporter(&client, &ns, &mut metrics);
    let breaker = start_probed_breaker(&client, store, &metrics, probed_trip());
    let all = until_all(&api, Duration::from_secs(30), is_quarantined).await;
    assert!(all.is_some(), "all eight quarantined");

    // Refused, then a tarpit, then 429: a probe a second, and not one GitRepository released.
    let unanswered =
        format!("fluxgate_host_breaker_probes_total{{host=\"{host}\",outcome=\"unanswered\"}}");
    for mode in [Mode::Refuse, Mode::Hang, Mode::Throttle] {
        git.set(mode);
        let seen_before = git.requests().len();
        let probes_before = metric(&metrics, &unanswered).unwrap_or(0.0);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(released_count(&api).await, 0, "{mode:?}: nothing released");
        let probes = metric(&metrics, &unanswered).unwrap_or(0.0) - probes_before;
        assert!(
            (2.0..=7.0).contains(&probes),
            "{mode:?}: about one probe a second, saw {probes}"
        );
        let seen = git.requests().len() - seen_before;
        if mode == Mode::Refuse {
            assert_eq!(seen, 0, "a refused connection carries no request");
        } else {
            assert!(
                (2..=7).contains(&seen),
                "{mode:?}: at most one probe a period, saw {seen}"
            );
        }
    }
    let state_of = |state: &str| {
        let line = format!("fluxgate_host_breaker_state{{host=\"{host}\",state=\"{state}\"}}");
        metric(&metrics, &line) == Some(1.0)
    };
    assert!(state_of("open"), "{}", metrics.encode());
    let probe = git.requests().pop().unwrap();
    assert!(
        probe.starts_with("GET /org/app-") && probe.contains("/info/refs?service=git-upload-pack"),
        "the smart-HTTP discovery request: {probe}"
    );

    // The host answers: a canary goes out within a probe period or two.
    git.set(Mode::Answer);
    let canary = eventually(Duration::from_secs(10), || {
        let api = api.clone();
        async move { (released_count(&api).await == 1).then_some(()) }
    })
    .await;
    assert!(
        canary.is_some(),
        "one canary once the host answered\n{}",
        metrics.encode()
    );
    // source-controller (played here) clones it and the rest: all released and Ready.
    let up = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let player = play_host(api.clone(), up, stop.clone());
    let done = until_all(&api, Duration::from_secs(60), back_and_ready).await;
    assert!(
        done.is_some(),
        "every GitRepository back and Ready\n{}",
        metrics.encode()
    );
    assert!(state_of("closed"), "{}", metrics.encode());
    stop.store(true, Ordering::Relaxed);
    let _ = player.await;
    breaker.abort();
    exporter.abort();
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn an_egress_failure_across_hosts_quarantines_nothing() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let ns = e2e::namespace(&client, "breaker-egress").await;
    let api = e2e::gitrepositories(&client, &ns);
    // Four hosts, all on loopback (127.0.0.2-5); port 9 is closed, so a probe is refused.
    let hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"];
    let url = |h: &str, i: usize| format!("http://{h}:9/org/app-{i}");
    for host in hosts {
        for i in 0..3 {
            create_for(
                &api,
                &format!("{}-{i}", host.replace('.', "-")),
                &url(host, i),
                ready_status(1),
            )
            .await;
        }
    }
    let mut metrics = Metrics::new();
    let (store, exporter) = start_exporter(&client, &ns, &mut metrics);
    let trip = TripArgs {
        breaker_min_failing: 2,
        ..probed_trip()
    };
    let breaker = start_probed_breaker(&client, store, &metrics, trip);
    let guard = "fluxgate_breaker_cluster_wide_failure ";
    let set_all = |ready: bool| {
        let api = api.clone();
        async move {
            for host in hosts {
                for i in 0..3 {
                    let status = if ready {
                        ready_status(1)
                    } else {
                        refused_status(&url(host, i))
                    };
                    write_status(&api, &format!("{}-{i}", host.replace('.', "-")), status).await;
                }
            }
        }
    };

    // The cluster's egress fails: every host at once.
    set_all(false).await;
    let on = eventually(Duration::from_secs(10), || {
        let metrics = &metrics;
        async move { (metric(metrics, guard) == Some(1.0)).then_some(()) }
    })
    .await;
    assert!(on.is_some(), "the guard is on\n{}", metrics.encode());
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let list = api.list(&ListParams::default()).await.unwrap();
        assert!(
            list.items.iter().all(|o| o.data["spec"]["suspend"] != true),
            "nothing suspended"
        );
    }
    assert!(
        !metrics.encode().contains("to=\"open\""),
        "no breaker opened\n{}",
        metrics.encode()
    );

    // It recovers: the guard goes off and there is nothing to undo.
    set_all(true).await;
    let off = eventually(Duration::from_secs(10), || {
        let metrics = &metrics;
        async move { (metric(metrics, guard) == Some(0.0)).then_some(()) }
    })
    .await;
    assert!(off.is_some(), "the guard is off again");
    let list = api.list(&ListParams::default()).await.unwrap();
    for object in &list.items {
        assert!(
            !object
                .labels()
                .keys()
                .chain(object.annotations().keys())
                .any(|k| k.starts_with("fluxgate.io/")),
            "no fluxgate mark on {}",
            object.name_any()
        );
    }

    // One host failing among healthy ones is its own outage: it trips.
    for i in 0..3 {
        write_status(
            &api,
            &format!("127-0-0-2-{i}"),
            refused_status(&url(hosts[0], i)),
        )
        .await;
    }
    let tripped = eventually(Duration::from_secs(15), || {
        let api = api.clone();
        async move {
            let list = api.list(&ListParams::default()).await.ok()?;
            let quarantined: Vec<_> = list
                .items
                .iter()
                .filter(|o| is_quarantined(o))
                .map(|o| o.name_any())
                .collect();
            (quarantined.len() == 3 && quarantined.iter().all(|n| n.starts_with("127-0-0-2-")))
                .then_some(())
        }
    })
    .await;
    assert!(
        tripped.is_some(),
        "the one failing host is quarantined\n{}",
        metrics.encode()
    );
    assert_eq!(metric(&metrics, guard), Some(0.0));
    breaker.abort();
    exporter.abort();
}

fn in_lane(object: &DynamicObject, shard: &str) -> bool {
    object.labels().get(flux::SHARD_LABEL).map(String::as_str) == Some(shard)
        && object.labels().get(lane::MOVED_LABEL).map(String::as_str) == Some("true")
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn a_dead_hosts_gitrepositories_move_to_its_lane_and_back_once_it_answers() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let ns = e2e::namespace(&client, "breaker-lane").await;
    let api = e2e::gitrepositories(&client, &ns);
    let git = LocalGitHost::start().await;
    git.set(Mode::Hang);
    for i in 0..6 {
        let url = git.url(&format!("org/app-{i}"));
        create_for(&api, &format!("far-{i}"), &url, timeout_status()).await;
    }
    let mut metrics = Metrics::new();
    let (store, exporter) = start_exporter(&client, &ns, &mut metrics);
    let breaker = start_probed_breaker_in(&client, store, &metrics, probed_trip(), Some("far"));

    // Tripped: every one moved into the lane, none suspended.
    let moved = until_all(&api, Duration::from_secs(30), |o| in_lane(o, "far"))
        .await
        .expect("all six moved into the lane");
    for object in &moved {
        assert_ne!(
            object.data["spec"]["suspend"],
            true,
            "{} suspended",
            object.name_any()
        );
        assert_eq!(
            annotation(object, lane::HOST_ANNOTATION),
            Some(&*git.addr.ip().to_string())
        );
    }
    // A new GitRepository of the host goes to the lane at once, before any attempt.
    let mut object = e2e::gitrepository("far-new", json!({ "timeout": "5m" }));
    object.data["spec"]["url"] = json!(git.url("org/app-new"));
    api.create(&PostParams::default(), &object).await.unwrap();
    let new_moved = eventually(Duration::from_secs(10), || {
        let api = api.clone();
        async move { in_lane(&api.get("far-new").await.ok()?, "far").then_some(()) }
    })
    .await;
    assert!(
        new_moved.is_some(),
        "a new GitRepository of the host joins the lane"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        released_count(&api).await,
        0,
        "nothing moves back while the host hangs"
    );

    // The host answers; the lane's source-controller (played here) gets them Ready; they move
    // back to the main one.
    git.set(Mode::Answer);
    let up = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let player = play_host(api.clone(), up, stop.clone());
    let back = until_all(&api, Duration::from_secs(60), |o| {
        !o.labels().contains_key(flux::SHARD_LABEL)
            && !o.labels().contains_key(lane::MOVED_LABEL)
            && is_ready(o)
    })
    .await;
    assert!(
        back.is_some(),
        "every GitRepository back on the main source-controller\n{}",
        metrics.encode()
    );
    let reasons = event_reasons(&client, &ns).await;
    assert!(
        reasons.iter().filter(|r| *r == "MovedToLane").count() >= 7,
        "{reasons:?}"
    );
    assert!(
        reasons.iter().filter(|r| *r == "MovedBack").count() >= 7,
        "{reasons:?}"
    );
    assert!(!reasons.iter().any(|r| r == "Quarantined"), "{reasons:?}");
    stop.store(true, Ordering::Relaxed);
    let _ = player.await;
    breaker.abort();
    exporter.abort();
}
