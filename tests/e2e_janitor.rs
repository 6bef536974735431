//! The janitor against a real kube-apiserver: status written through the status subresource,
//! suspend with marks and Events, dry run, restore, and Lease election between two replicas.

mod support;

use std::ops::Not;
use std::time::Duration;

use fluxgate::election::{self, Candidate};
use fluxgate::janitor::{self, JanitorConfig, Removal, Rule, Rules};
use fluxgate::metrics::Metrics;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::e2e::{self, eventually};
use time::OffsetDateTime;

fn ago(hours: i64) -> String {
    fluxgate::policy::rfc3339_seconds(OffsetDateTime::now_utc() - time::Duration::hours(hours))
}

/// A GitRepository that never succeeded, as source-controller leaves it: `FetchFailed` since the
/// first failed fetch, `Ready` re-stamped by the latest attempt (a few minutes ago).
fn failing_status(since_hours: i64) -> Value {
    let latest_attempt =
        fluxgate::policy::rfc3339_seconds(OffsetDateTime::now_utc() - time::Duration::minutes(3));
    json!({
        "observedGeneration": -1,
        "conditions": [
            { "type": "Ready", "status": "False", "reason": "GitOperationFailed",
              "message": "failed to checkout and determine revision: unable to clone 'https://github.com/example/x': context deadline exceeded",
              "lastTransitionTime": latest_attempt, "observedGeneration": 1 },
            { "type": "FetchFailed", "status": "True", "reason": "GitOperationFailed",
              "message": "context deadline exceeded", "lastTransitionTime": ago(since_hours), "observedGeneration": 1 }
        ]
    })
}

fn ready_status(artifact_hours: i64) -> Value {
    json!({
        "observedGeneration": 1,
        "conditions": [{ "type": "Ready", "status": "True", "reason": "Succeeded",
                         "message": "stored artifact for revision 'main@sha1:0123'",
                         "lastTransitionTime": ago(artifact_hours), "observedGeneration": 1 }],
        "artifact": { "path": "gitrepository/x/x/0123.tar.gz", "url": "http://source-controller/x.tar.gz",
                      "revision": "main@sha1:0123", "digest": "sha256:00", "lastUpdateTime": ago(artifact_hours), "size": 1 }
    })
}

async fn create_with_status(
    api: &Api<kube::api::DynamicObject>,
    name: &str,
    labels: Value,
    annotations: Value,
    status: Value,
) {
    let mut object = e2e::gitrepository(name, json!({ "timeout": "5m" }));
    object.metadata.labels = serde_json::from_value(labels).unwrap();
    object.metadata.annotations = serde_json::from_value(annotations).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .expect("status written through the status subresource");
}

async fn suspended(api: &Api<kube::api::DynamicObject>, name: &str) -> bool {
    api.get(name).await.unwrap().data["spec"]["suspend"] == true
}

fn config(namespace: &str, dry_run: bool) -> JanitorConfig {
    JanitorConfig {
        rules: Rules {
            failing: Some(Rule {
                after: Duration::from_secs(24 * 3600),
                removal: Removal::Delete,
            }),
            ..Rules::default()
        },
        dry_run,
        namespaces: vec![namespace.to_owned()],
        max_actions_per_run: 100,
    }
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn archives_by_rule_records_events_and_restores() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let ns = e2e::namespace(&client, "e2e-janitor").await;
    let api = e2e::gitrepositories(&client, &ns);
    create_with_status(
        &api,
        "failing-old",
        json!({}),
        json!({}),
        failing_status(30),
    )
    .await;
    create_with_status(&api, "failing-new", json!({}), json!({}), failing_status(2)).await;
    create_with_status(
        &api,
        "failing-optout",
        json!({}),
        json!({ "fluxgate.io/janitor": "false" }),
        failing_status(30),
    )
    .await;
    create_with_status(
        &api,
        "failing-gitops",
        json!({ "kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system" }),
        json!({}),
        failing_status(48),
    )
    .await;
    create_with_status(
        &api,
        "test-shop",
        json!({}),
        json!({}),
        ready_status(8 * 24),
    )
    .await;
    create_with_status(&api, "shop", json!({}), json!({}), ready_status(8 * 24)).await;

    // Dry run: reports, changes nothing.
    let metrics = Metrics::new();
    let writer = janitor::writer(&client, Some("e2e".into()));
    let summary = janitor::run_once(
        &client,
        &writer,
        &config(&ns, true),
        &metrics.janitor,
        &|| true,
    )
    .await
    .unwrap();
    assert_eq!(summary.examined, 6);
    assert_eq!(summary.matched, 3, "{summary:?}");
    assert_eq!(summary.dry_run, 3);
    for name in ["failing-old", "failing-gitops", "test-shop"] {
        assert!(!suspended(&api, name).await, "dry run changed {name}");
    }

    // For real.
    let summary = janitor::run_once(
        &client,
        &writer,
        &config(&ns, false),
        &metrics.janitor,
        &|| true,
    )
    .await
    .unwrap();
    assert_eq!(summary.done, 3, "{summary:?}");
    assert!(
        api.get_opt("failing-old").await.unwrap().is_none(),
        "deleted by the failing rule"
    );
    let gitops = api.get("failing-gitops").await.unwrap();
    assert_eq!(
        gitops.data["spec"]["suspend"], true,
        "GitOps-managed: suspended instead of deleted"
    );
    let marks = gitops.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        marks.get("fluxgate.io/archived-rule").map(String::as_str),
        Some("failing")
    );
    assert!(
        marks["fluxgate.io/archived-reason"].contains("would re-apply it"),
        "{marks:?}"
    );
    assert_eq!(
        gitops
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("fluxgate.io/archived"))
            .map(String::as_str),
        Some("true")
    );
    // The stale-test rule in the default config suspends.
    assert!(suspended(&api, "test-shop").await);
    for name in ["failing-new", "failing-optout", "shop"] {
        assert!(!suspended(&api, name).await, "{name} should be untouched");
    }

    // Events on the objects acted on.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let found = eventually(Duration::from_secs(10), || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            let reasons: Vec<(String, String)> = list
                .items
                .iter()
                .map(|e| {
                    (
                        e.regarding
                            .as_ref()
                            .and_then(|r| r.name.clone())
                            .unwrap_or_default(),
                        e.reason.clone().unwrap_or_default(),
                    )
                })
                .collect();
            (reasons.len() >= 3).then_some(reasons)
        }
    })
    .await
    .expect("events recorded");
    for expected in [
        ("failing-old", "Deleted"),
        ("failing-gitops", "Archived"),
        ("test-shop", "Archived"),
    ] {
        assert!(
            found
                .iter()
                .any(|(n, r)| n == expected.0 && r == expected.1),
            "missing {expected:?} in {found:?}"
        );
    }

    // A second run finds nothing new: suspended objects are not candidates.
    let again = janitor::run_once(
        &client,
        &writer,
        &config(&ns, false),
        &metrics.janitor,
        &|| true,
    )
    .await
    .unwrap();
    assert_eq!(again.matched, 0, "{again:?}");

    // Restore, as a person does, through the command: one by name, the rest in bulk (a dry run
    // first, which changes nothing).
    let one = e2e::fluxgate_cli(&["restore", &format!("{ns}/test-shop")]).await;
    assert!(
        one.contains(&format!(
            "{ns}/test-shop: restored, lifted the janitor's archive (rule stale_test)"
        )),
        "{one}"
    );
    let archived_left = || async {
        let list = api
            .list(&ListParams::default().labels("fluxgate.io/archived=true"))
            .await
            .unwrap();
        list.items.len()
    };
    let before = archived_left().await;
    assert!(before >= 1, "failing-gitops is still archived");
    let dry = e2e::fluxgate_cli(&["restore", "--archived", "-n", &ns, "--dry-run"]).await;
    assert!(dry.contains("failing-gitops: would restore"), "{dry}");
    assert_eq!(archived_left().await, before, "a dry run changes nothing");
    let bulk = e2e::fluxgate_cli(&["restore", "--archived", "-n", &ns, "--max-wait", "1s"]).await;
    assert!(
        bulk.contains(&format!("restored {before} GitRepositories")),
        "{bulk}"
    );
    assert_eq!(archived_left().await, 0);
    assert!(!suspended(&api, "failing-gitops").await);
    let restored = api.get("test-shop").await.unwrap();
    assert_eq!(restored.data["spec"]["suspend"], false);
    let annotations = restored.metadata.annotations.unwrap_or_default();
    assert!(
        !annotations
            .keys()
            .any(|k| k.starts_with("fluxgate.io/archived")),
        "{annotations:?}"
    );
    assert!(annotations.contains_key("fluxgate.io/restored-at"));
    assert!(annotations.contains_key("reconcile.fluxcd.io/requestedAt"));
    assert!(
        restored
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("fluxgate.io/archived")
            .not()
    );

    let text = metrics.encode();
    assert!(
        text.contains(
            "fluxgate_janitor_actions_total{rule=\"failing\",action=\"delete\",outcome=\"done\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("fluxgate_janitor_actions_total{rule=\"failing\",action=\"suspend\",outcome=\"dry_run\"} 1"),
        "{text}"
    );
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn only_one_of_two_replicas_acts_and_the_other_takes_over() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let ns = e2e::namespace(&client, "e2e-lease").await;
    let lease_ns = e2e::namespace(&client, "e2e-lease-home").await;
    let api = e2e::gitrepositories(&client, &ns);
    for i in 0..4 {
        create_with_status(
            &api,
            &format!("failing-{i}"),
            json!({}),
            json!({}),
            failing_status(30),
        )
        .await;
    }
    let mut config = config(&ns, false);
    config.rules.failing = Some(Rule {
        after: Duration::from_secs(24 * 3600),
        removal: Removal::Suspend,
    });

    let replicas: Vec<(Metrics, tokio::task::JoinHandle<()>)> = ["replica-a", "replica-b"]
        .into_iter()
        .map(|identity| {
            let metrics = Metrics::new();
            let task = tokio::spawn({
                let client = client.clone();
                let config = config.clone();
                let janitor_metrics = metrics.janitor.clone();
                let lease_ns = lease_ns.clone();
                async move {
                    let candidate = Candidate {
                        namespace: lease_ns,
                        lease: "fluxgate-janitor".into(),
                        identity: identity.into(),
                    };
                    let Ok(leadership) = election::join(client.clone(), candidate).await else {
                        return;
                    };
                    let duty = janitor::JanitorDuty {
                        client,
                        config,
                        metrics: janitor_metrics,
                        instance: identity.into(),
                    };
                    let every = Duration::from_secs(1);
                    let _ = election::run_while_leading("janitor", leadership, every, duty).await;
                }
            });
            (metrics, task)
        })
        .collect();

    let done = |m: &Metrics| {
        m.encode()
            .lines()
            .find(|l| l.starts_with("fluxgate_janitor_actions_total{rule=\"failing\",action=\"suspend\",outcome=\"done\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total_done = || replicas.iter().map(|(m, _)| done(m)).sum::<u64>();

    // The API shows an object suspended as soon as the PATCH lands; the janitor counts it only
    // after the response and the Event. Wait for both before asserting exact counts.
    let all_suspended = eventually(Duration::from_secs(60), || {
        let api = api.clone();
        let counted = total_done();
        async move {
            for i in 0..4 {
                if !suspended(&api, &format!("failing-{i}")).await {
                    return None;
                }
            }
            (counted >= 4).then_some(())
        }
    })
    .await;
    assert!(
        all_suspended.is_some(),
        "the leader never archived the repositories (counted {})",
        total_done()
    );

    let leaders: Vec<bool> = replicas
        .iter()
        .map(|(m, _)| m.encode().lines().any(|l| l == "fluxgate_janitor_leader 1"))
        .collect();
    assert_eq!(
        leaders.iter().filter(|l| **l).count(),
        1,
        "exactly one leader: {leaders:?}"
    );
    assert_eq!(total_done(), 4, "each object acted on once");
    let leader_index = leaders.iter().position(|l| *l).unwrap();

    // The leader goes away without releasing (a crash): the other replica takes over once the
    // Lease expires, and handles new work.
    replicas[leader_index].1.abort();
    create_with_status(
        &api,
        "failing-late",
        json!({}),
        json!({}),
        failing_status(30),
    )
    .await;
    let follower = &replicas[1 - leader_index].0;
    let took_over = eventually(Duration::from_secs(60), || {
        let api = api.clone();
        let counted = done(follower);
        async move { (suspended(&api, "failing-late").await && counted >= 1).then_some(()) }
    })
    .await;
    assert!(took_over.is_some(), "the second replica never took over");
    assert!(
        follower
            .encode()
            .lines()
            .any(|l| l == "fluxgate_janitor_leader 1")
    );
    assert_eq!(
        done(follower),
        1,
        "the new leader archived only the new repository"
    );
    assert_eq!(
        total_done(),
        5,
        "no object acted on twice across the handover"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let list = events.list(&ListParams::default()).await.unwrap();
    for i in 0..4 {
        let name = format!("failing-{i}");
        let count = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name.as_str()))
            .count();
        assert_eq!(count, 1, "{name} archived exactly once");
    }
    replicas[1 - leader_index].1.abort();
}
