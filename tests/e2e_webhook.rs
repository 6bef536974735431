//! The webhook called by a real kube-apiserver, with Flux's real GitRepository CRD.
//! Run by `tests/e2e/run.sh`; ignored by a plain `cargo test`.

mod support;

use std::time::{Duration, Instant};

use fluxgate::policy::Policy;
use fluxgate::server::webhook::WebhookLimits;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::TestWebhook;
use support::e2e;

const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

fn spec(object: &kube::api::DynamicObject) -> &Value {
    &object.data["spec"]
}

/// Waits until the API server's webhook configuration cache has picked up the registration, by
/// dry-running creates until one comes back patched.
async fn wait_until_registered(api: &kube::Api<kube::api::DynamicObject>) {
    let probe = e2e::gitrepository("registration-probe", json!({}));
    let registered = e2e::dry_run_until(api, &probe, |created| {
        created.data["spec"]["timeout"] == "5m"
    })
    .await;
    assert!(registered, "kube-apiserver never called the webhook");
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn created_gitrepositories_come_back_patched_and_updates_do_not() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let hook = TestWebhook::start(Policy::default(), WebhookLimits::default()).await;
    let namespace = e2e::namespace(&client, "e2e-webhook").await;
    let config_name = format!("fluxgate-e2e-{namespace}");
    let url = format!("https://{}/mutate", hook.addr());
    let configs = e2e::register_webhook(
        &client,
        &config_name,
        &url,
        &hook.bundle.ca_cert_pem,
        &namespace,
        5,
    )
    .await;
    let api = e2e::gitrepositories(&client, &namespace);
    wait_until_registered(&api).await;

    // A plain create, as the platform does it: the CRD default timeout (60s) is raised.
    let created = api
        .create(
            &PostParams::default(),
            &e2e::gitrepository("project-1", json!({})),
        )
        .await
        .expect("create accepted: the patched object is valid against the real CRD schema");
    assert_eq!(spec(&created)["timeout"], "5m");
    assert_eq!(spec(&created)["suspend"], false);
    let stamp = created
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REQUESTED_AT))
        .cloned();
    let stamp = stamp.expect("requestedAt annotation set");
    time::OffsetDateTime::parse(&stamp, &time::format_description::well_known::Rfc3339)
        .expect("requestedAt is RFC 3339");

    // Read back from storage, not just the create response.
    let stored = api.get("project-1").await.unwrap();
    assert_eq!(spec(&stored)["timeout"], "5m");

    // Suspended on create: un-suspended, and kubectl would show the warning.
    let suspended = api
        .create(
            &PostParams::default(),
            &e2e::gitrepository("project-2", json!({ "suspend": true, "timeout": "10m" })),
        )
        .await
        .unwrap();
    assert_eq!(spec(&suspended)["suspend"], false);
    assert_eq!(
        spec(&suspended)["timeout"],
        "10m",
        "a longer timeout is kept"
    );

    // UPDATE is not mutated: a user may shorten the timeout or suspend later.
    let updated = api
        .patch(
            "project-1",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "timeout": "30s", "suspend": true } })),
        )
        .await
        .unwrap();
    assert_eq!(spec(&updated)["timeout"], "30s");
    assert_eq!(spec(&updated)["suspend"], true);
    assert_eq!(
        updated
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REQUESTED_AT)),
        Some(&stamp)
    );

    // A dry-run create is patched in the response and not stored.
    let dry = api
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &e2e::gitrepository("project-3", json!({})),
        )
        .await
        .unwrap();
    assert_eq!(spec(&dry)["timeout"], "5m");
    assert!(
        api.get_opt("project-3").await.unwrap().is_none(),
        "dry run stored nothing"
    );

    let metrics = hook.metrics.encode();
    assert!(
        metrics.contains("fluxgate_admission_requests_total{kind=\"GitRepository\",operation=\"CREATE\",outcome=\"patched\"}"),
        "{metrics}"
    );
    configs
        .delete(&config_name, &Default::default())
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn with_fluxgate_down_creates_still_succeed_within_the_timeout() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let hook = TestWebhook::start(Policy::default(), WebhookLimits::default()).await;
    let namespace = e2e::namespace(&client, "e2e-down").await;
    let config_name = format!("fluxgate-e2e-{namespace}");
    let url = format!("https://{}/mutate", hook.addr());
    let timeout_seconds = 3;
    let configs = e2e::register_webhook(
        &client,
        &config_name,
        &url,
        &hook.bundle.ca_cert_pem,
        &namespace,
        timeout_seconds,
    )
    .await;
    let api = e2e::gitrepositories(&client, &namespace);
    wait_until_registered(&api).await;

    hook.server.shutdown(Duration::from_secs(1)).await.unwrap();

    let started = Instant::now();
    let created = api
        .create(
            &PostParams::default(),
            &e2e::gitrepository("while-down", json!({})),
        )
        .await
        .expect("failurePolicy Ignore admits the object");
    let took = started.elapsed();
    assert_eq!(
        spec(&created)["timeout"],
        "60s",
        "admitted unpatched (CRD default)"
    );
    assert!(
        took < Duration::from_secs(timeout_seconds as u64 + 2),
        "create took {took:?}, longer than the webhook timeout"
    );
    configs
        .delete(&config_name, &Default::default())
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn a_hanging_webhook_costs_at_most_its_timeout() {
    let Some(client) = e2e::client().await else {
        return;
    };
    // A TCP listener that accepts and never answers: the worst case for the API server.
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tarpit.local_addr().unwrap();
    let namespace = e2e::namespace(&client, "e2e-hang").await;
    let config_name = format!("fluxgate-e2e-{namespace}");
    let ca = fluxgate::certs::generate(&support::loopback_names(), time::OffsetDateTime::now_utc())
        .unwrap();
    let configs = e2e::register_webhook(
        &client,
        &config_name,
        &format!("https://{addr}/mutate"),
        &ca.ca_cert_pem,
        &namespace,
        2,
    )
    .await;
    // Give the API server's configuration cache time to see the registration.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let api = e2e::gitrepositories(&client, &namespace);
    let started = Instant::now();
    let created = api
        .create(
            &PostParams::default(),
            &e2e::gitrepository("hang", json!({})),
        )
        .await
        .expect("admitted under failurePolicy Ignore");
    assert_eq!(spec(&created)["timeout"], "60s");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
    drop(tarpit);
    configs
        .delete(&config_name, &Default::default())
        .await
        .unwrap();
}
