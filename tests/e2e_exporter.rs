//! The exporter against a real kube-apiserver: statuses written through the status subresource
//! show in the gauges, deletions and recoveries remove series, and after an API server or etcd
//! restart mid-watch the gauges equal a fresh list again. During an API server outage `/readyz`
//! turns the exporter stale while the webhook keeps answering, and both recover after it.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use fluxgate::exporter::{Exporter, ExporterConfig};
use fluxgate::metrics::Metrics;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::e2e::{self, eventually};

fn encode(metrics: &Metrics) -> String {
    metrics.encode()
}

/// The value of one sample line, by its exact name and labels.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn failing(message: &str) -> Value {
    failing_for(message, time::Duration::hours(3))
}

fn failing_for(message: &str, age: time::Duration) -> Value {
    let since = fluxgate::policy::rfc3339_seconds(time::OffsetDateTime::now_utc() - age);
    json!({ "observedGeneration": -1, "conditions": [
        { "type": "Ready", "status": "False", "reason": "GitOperationFailed", "message": message,
          "lastTransitionTime": since, "observedGeneration": 1 }
    ] })
}

fn ready() -> Value {
    let now = fluxgate::policy::rfc3339_seconds(time::OffsetDateTime::now_utc());
    json!({ "observedGeneration": 1, "conditions": [
        { "type": "Ready", "status": "True", "reason": "Succeeded", "message": "stored artifact",
          "lastTransitionTime": now, "observedGeneration": 1 }
    ] })
}

async fn create(api: &Api<DynamicObject>, name: &str, status: Option<Value>) {
    api.create(&PostParams::default(), &e2e::gitrepository(name, json!({})))
        .await
        .unwrap();
    if let Some(status) = status {
        set_status(api, name, status).await;
    }
}

async fn set_status(api: &Api<DynamicObject>, name: &str, status: Value) {
    // Replace the whole status: a merge would keep old conditions' fields around.
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{ "op": "add", "path": "/status", "value": status }]))
                .unwrap(),
        ),
    )
    .await
    .expect("status written through the status subresource");
}

/// Waits (bounded) until `series` has `value`, and returns how long it took.
async fn until(registry: &Metrics, series: &str, value: Option<f64>) -> Duration {
    let started = Instant::now();
    let seen = eventually(Duration::from_secs(20), || {
        let found = sample(&encode(registry), series);
        async move { (found == value).then_some(()) }
    })
    .await;
    assert!(
        seen.is_some(),
        "{series} never became {value:?}:\n{}",
        encode(registry)
    );
    started.elapsed()
}

/// The exporter's stale threshold in this test (the default is 60 s).
const STALE_AFTER: Duration = Duration::from_secs(3);

fn controlplane(action: &str) {
    let script = std::env::var("FLUXGATE_E2E_CONTROLPLANE")
        .expect("FLUXGATE_E2E_CONTROLPLANE from controlplane.sh env");
    let status = Command::new(script).arg(action).status().unwrap();
    assert!(status.success(), "controlplane.sh {action}");
}

/// What the gauges should say, from a fresh list through the same health model.
async fn truth(api: &Api<DynamicObject>) -> (usize, usize, usize, usize) {
    let list = api.list(&ListParams::default()).await.unwrap();
    let objects: Vec<Value> = list
        .items
        .iter()
        .map(|o| serde_json::to_value(o).unwrap())
        .collect();
    let rules = fluxgate::report::Rulebook::default();
    let report =
        fluxgate::report::build(&objects, time::OffsetDateTime::now_utc(), &rules).unwrap();
    (report.total, report.failed, report.ready, report.pending)
}

async fn gauges(registry: &Metrics, ns: &str) -> (usize, usize, usize, usize) {
    let text = encode(registry);
    let state = |s: &str| {
        sample(
            &text,
            &format!("fluxgate_gitrepositories{{namespace=\"{ns}\",state=\"{s}\"}}"),
        )
        .unwrap_or(0.0) as usize
    };
    let total = ["ready", "failed", "pending", "suspended", "progressing"]
        .iter()
        .map(|s| state(s))
        .sum();
    (total, state("failed"), state("ready"), state("pending"))
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn gauges_follow_statuses_and_survive_control_plane_restarts() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let ns = e2e::namespace(&client, "e2e-exporter").await;
    let api = e2e::gitrepositories(&client, &ns);
    create(
        &api,
        "timeout-1",
        Some(failing(
            "unable to clone 'https://github.com/example/x': context deadline exceeded",
        )),
    )
    .await;
    create(
        &api,
        "timeout-2",
        Some(failing("dial tcp 140.82.112.3:443: i/o timeout")),
    )
    .await;
    create(
        &api,
        "tls-1",
        Some(failing("x509: certificate signed by unknown authority")),
    )
    .await;
    create(&api, "fine", Some(ready())).await;
    create(&api, "waiting", None).await;

    let mut registry = Metrics::new();
    let exporter = Exporter::new(
        &mut registry,
        ExporterConfig {
            namespaces: vec![ns.clone()],
            // Short, so that the outage below shows on /readyz within the test's time.
            stale_after: STALE_AFTER,
        },
    );
    let status = exporter.status();
    let task = tokio::spawn(exporter.run(client.clone()));
    let synced = eventually(Duration::from_secs(30), || {
        let status = status.clone();
        async move { status.is_ready().then_some(()) }
    })
    .await;
    assert!(synced.is_some(), "the exporter never synced");

    let text = encode(&registry);
    let failed = |host: &str, reason: &str| {
        format!(
            "fluxgate_gitrepositories_failed{{namespace=\"{ns}\",host=\"{host}\",reason=\"{reason}\"}}"
        )
    };
    assert_eq!(
        sample(&text, &failed("github.com", "timeout")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &failed("github.com", "tls")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("fluxgate_gitrepositories_unobserved{{namespace=\"{ns}\"}}")
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(gauges(&registry, &ns).await, (5, 3, 1, 1));
    assert!(
        sample(
            &text,
            &format!(
                "fluxgate_gitrepositories_oldest_pending_timestamp_seconds{{namespace=\"{ns}\"}}"
            )
        )
        .is_some()
    );
    assert_eq!(sample(&text, "fluxgate_watcher_synced"), Some(1.0));
    assert!(text.contains(&format!("fluxgate_gitrepository_failing_since_timestamp_seconds{{namespace=\"{ns}\",name=\"timeout-1\",host=\"github.com\",reason=\"timeout\"}}")), "{text}");

    // A recovery: the failed series of that class goes, the failing-since series of the object goes.
    let took = {
        set_status(&api, "tls-1", ready()).await;
        until(&registry, &failed("github.com", "tls"), None).await
    };
    assert!(
        took < Duration::from_secs(5),
        "gauge updated after {took:?}"
    );
    assert!(!encode(&registry).contains("name=\"tls-1\""));

    // The waiting repository gets its first condition: the first-reconcile histogram sees it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    set_status(
        &api,
        "waiting",
        failing_for("context deadline exceeded", time::Duration::ZERO),
    )
    .await;
    until(
        &registry,
        "fluxgate_gitrepository_first_reconcile_seconds_count",
        Some(1.0),
    )
    .await;

    // A deletion.
    api.delete("timeout-2", &DeleteParams::default())
        .await
        .unwrap();
    until(&registry, &failed("github.com", "timeout"), Some(2.0)).await; // timeout-1 and waiting
    assert_eq!(gauges(&registry, &ns).await, truth(&api).await);

    // The API server restarts mid-watch; changes made right after must show, and the gauges
    // must equal a fresh list.
    let restarts_before = sample(&encode(&registry), "fluxgate_watcher_restarts_total").unwrap();
    // The webhook does not depend on the API server: it keeps answering throughout the restart.
    let hook = support::TestWebhook::start(
        fluxgate::policy::Policy::default(),
        fluxgate::server::webhook::WebhookLimits::default(),
    )
    .await;
    let restart = tokio::task::spawn_blocking(|| controlplane("restart-apiserver"));
    let review = serde_json::to_vec(&support::gitrepository_review(
        "during-restart",
        "CREATE",
        support::gitrepository("during-restart"),
    ))
    .unwrap();
    let mut answered = 0;
    while !restart.is_finished() && answered < 500 {
        let reply = hook
            .client()
            .post_json(hook.addr(), "/mutate", review.clone())
            .await;
        assert_eq!(
            reply.status, 200,
            "the webhook failed while the API server restarted"
        );
        answered += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    restart.await.unwrap();
    assert!(
        answered >= 3,
        "only {answered} reviews were sent during the restart"
    );
    create(
        &api,
        "after-apiserver-restart",
        Some(failing("i/o timeout")),
    )
    .await;
    let matched = eventually(Duration::from_secs(60), || {
        let api = api.clone();
        let registry = &registry;
        let ns = ns.clone();
        async move { (gauges(registry, &ns).await == truth(&api).await).then_some(()) }
    })
    .await;
    assert!(
        matched.is_some(),
        "gauges {:?} != truth {:?}",
        gauges(&registry, &ns).await,
        truth(&api).await
    );
    let after = encode(&registry);
    assert!(
        sample(&after, "fluxgate_watcher_restarts_total").unwrap() > restarts_before,
        "{after}"
    );

    // etcd restarts: same promise.
    controlplane("restart-etcd");
    api.delete("fine", &DeleteParams::default()).await.unwrap();
    set_status(&api, "timeout-1", ready()).await;
    let matched = eventually(Duration::from_secs(60), || {
        let api = api.clone();
        let registry = &registry;
        let ns = ns.clone();
        async move { (gauges(registry, &ns).await == truth(&api).await).then_some(()) }
    })
    .await;
    assert!(
        matched.is_some(),
        "gauges {:?} != truth {:?}",
        gauges(&registry, &ns).await,
        truth(&api).await
    );
    let synced_again = eventually(Duration::from_secs(60), || {
        let text = encode(&registry);
        async move { (sample(&text, "fluxgate_watcher_synced") == Some(1.0)).then_some(()) }
    })
    .await;
    assert!(synced_again.is_some());
    assert!(status.is_ready());

    // An outage longer than the stale threshold: the exporter reports itself not ready (its
    // gauges may be old), the webhook keeps answering, and both are fine once the API server is
    // back.
    let outage = Instant::now();
    controlplane("stop-apiserver");
    let mut answered = 0;
    let mut went_stale = None;
    while outage.elapsed() < Duration::from_secs(60) {
        let reply = hook
            .client()
            .post_json(hook.addr(), "/mutate", review.clone())
            .await;
        assert_eq!(reply.status, 200, "the webhook failed during the outage");
        answered += 1;
        if !status.is_ready() {
            went_stale = Some(outage.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let went_stale = went_stale.unwrap_or_else(|| {
        panic!(
            "the exporter still reported ready {:?} into the outage",
            outage.elapsed()
        )
    });
    // The threshold counts whole seconds from the first failed watch call.
    assert!(
        went_stale >= STALE_AFTER - Duration::from_secs(1),
        "stale after {went_stale:?}, before the {STALE_AFTER:?} threshold"
    );
    assert!(answered >= 3, "only {answered} reviews during the outage");
    controlplane("start-apiserver");
    create(&api, "after-outage", Some(failing("i/o timeout"))).await;
    let recovered = eventually(Duration::from_secs(60), || {
        let api = api.clone();
        let registry = &registry;
        let ns = ns.clone();
        let status = status.clone();
        async move {
            (status.is_ready() && gauges(registry, &ns).await == truth(&api).await).then_some(())
        }
    })
    .await;
    assert!(
        recovered.is_some(),
        "after the outage: ready {}, gauges {:?}, truth {:?}",
        status.is_ready(),
        gauges(&registry, &ns).await,
        truth(&api).await
    );
    task.abort();
}
