//! Host lanes with a real kube-apiserver and Flux's real GitRepository CRD: a GitRepository on a
//! lane's host is stored with `sharding.fluxcd.io/key`, so the API server's own label selectors
//! (the ones a lane's source-controller and the main one watch with) split the objects as meant.
//! Run by `tests/e2e/run.sh`; ignored by a plain `cargo test`.

mod support;

use std::collections::BTreeMap;

use fluxgate::policy::{GitRepositoryPolicy, LaneRule, LaneRules, MirrorRule, MirrorRules, Policy};
use fluxgate::server::webhook::WebhookLimits;
use kube::Api;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::TestWebhook;
use support::e2e;

const SHARD_LABEL: &str = "sharding.fluxcd.io/key";
/// What a lane's source-controller watches (`--watch-label-selector`).
const LANE_SELECTOR: &str = "sharding.fluxcd.io/key=far";
/// What the main source-controller watches once lanes exist.
const MAIN_SELECTOR: &str = "!sharding.fluxcd.io/key";

fn policy() -> Policy {
    let lanes = ["github.com=far", "gitee.com=mirrored"]
        .iter()
        .map(|r| LaneRule::parse(r).unwrap())
        .collect();
    let mirror =
        MirrorRule::parse("https://github.com/mirrored-org/=https://gitee.com/m/").unwrap();
    Policy {
        gitrepository: GitRepositoryPolicy {
            mirror: MirrorRules::new(vec![mirror], Vec::new()).unwrap(),
            lanes: LaneRules::new(lanes).unwrap(),
            ..GitRepositoryPolicy::default()
        },
        ..Policy::default()
    }
}

fn shard(object: &DynamicObject) -> Option<&str> {
    object
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SHARD_LABEL))
        .map(String::as_str)
}

fn named(name: &str, url: &str) -> DynamicObject {
    e2e::gitrepository(name, json!({ "url": url }))
}

async fn names(api: &Api<DynamicObject>, selector: &str) -> Vec<String> {
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap();
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn lane_hosts_are_stored_with_the_shard_label_and_split_by_the_selectors() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let hook = TestWebhook::start(policy(), WebhookLimits::default()).await;
    let namespace = e2e::namespace(&client, "e2e-lane").await;
    let config_name = format!("fluxgate-e2e-{namespace}");
    let configs = e2e::register_webhook(
        &client,
        &config_name,
        &format!("https://{}/mutate", hook.addr()),
        &hook.bundle.ca_cert_pem,
        &namespace,
        5,
    )
    .await;
    let api = e2e::gitrepositories(&client, &namespace);
    let probe = named("registration-probe", "https://github.com/example/probe");
    assert!(
        e2e::dry_run_until(&api, &probe, |o| shard(o) == Some("far")).await,
        "kube-apiserver never called the webhook"
    );

    let create = |object: DynamicObject| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &object)
                .await
                .expect("create accepted: the labelled object is valid")
        }
    };
    // Every URL form the CRD accepts, on the lane's host: labelled.
    for (name, url) in [
        ("https-case-port", "https://GitHub.com:443/example/app"),
        ("ssh-user", "ssh://git@github.com/example/app.git"),
    ] {
        let created = create(named(name, url)).await;
        assert_eq!(shard(&created), Some("far"), "{name}");
    }
    // The creator's own shard, an opt-out and another host: as written.
    let mut own = named("own-shard", "https://github.com/example/app");
    own.metadata.labels = Some(BTreeMap::from([(
        SHARD_LABEL.to_owned(),
        "mine".to_owned(),
    )]));
    assert_eq!(shard(&create(own).await), Some("mine"));
    let mut opted_out = named("opted-out", "https://github.com/example/app");
    opted_out.metadata.annotations = Some(BTreeMap::from([(
        "fluxgate.io/lane".to_owned(),
        "disabled".to_owned(),
    )]));
    assert_eq!(shard(&create(opted_out).await), None);
    assert_eq!(
        shard(&create(named("other-host", "https://gitlab.com/example/app")).await),
        None
    );
    // Mirrored off the lane's host: the mirror's lane.
    let mirrored = create(named("mirrored", "https://github.com/mirrored-org/app")).await;
    assert_eq!(mirrored.data["spec"]["url"], "https://gitee.com/m/app");
    assert_eq!(shard(&mirrored), Some("mirrored"));

    // What each source-controller would list: the lane its own, the main one the rest.
    assert_eq!(
        names(&api, LANE_SELECTOR).await,
        ["https-case-port", "ssh-user"]
    );
    assert_eq!(
        names(&api, MAIN_SELECTOR).await,
        ["opted-out", "other-host"]
    );

    // UPDATE is never labelled: moving a repository to the lane's host later is the owner's call.
    let moved = api
        .patch(
            "other-host",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "url": "https://github.com/example/app" } })),
        )
        .await
        .unwrap();
    assert_eq!(shard(&moved), None);

    let metrics = hook.metrics.encode();
    for line in [
        "fluxgate_lane_assignments_total{shard=\"far\"} 2",
        "fluxgate_lane_assignments_total{shard=\"mirrored\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    configs
        .delete(&config_name, &Default::default())
        .await
        .unwrap();
}

/// What a Flux Kustomization does to a GitRepository it applies: server-side apply, then again
/// on every reconciliation. The label fluxgate added on create ends up owned by no field
/// manager, so applying the same manifest again leaves it.
#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn a_server_side_apply_of_the_same_manifest_keeps_the_lane() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let hook = TestWebhook::start(policy(), WebhookLimits::default()).await;
    let namespace = e2e::namespace(&client, "e2e-lane-apply").await;
    let config_name = format!("fluxgate-e2e-{namespace}");
    let configs = e2e::register_webhook(
        &client,
        &config_name,
        &format!("https://{}/mutate", hook.addr()),
        &hook.bundle.ca_cert_pem,
        &namespace,
        5,
    )
    .await;
    let api = e2e::gitrepositories(&client, &namespace);
    let probe = named("registration-probe", "https://github.com/example/probe");
    assert!(
        e2e::dry_run_until(&api, &probe, |o| shard(o) == Some("far")).await,
        "kube-apiserver never called the webhook"
    );

    let manifest = json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {
            "name": "applied",
            "labels": { "kustomize.toolkit.fluxcd.io/name": "apps" },
        },
        "spec": { "url": "https://github.com/example/applied", "interval": "1m" },
    });
    let apply = PatchParams::apply("kustomize-controller").force();
    let created = api
        .patch("applied", &apply, &Patch::Apply(&manifest))
        .await
        .unwrap();
    assert_eq!(shard(&created), Some("far"), "labelled on the create");
    let again = api
        .patch("applied", &apply, &Patch::Apply(&manifest))
        .await
        .unwrap();
    assert_eq!(shard(&again), Some("far"), "kept by the second apply");
    // Kept because no field manager owns it: the applier's next manifest cannot take it away.
    let owners: Vec<&str> = again
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| {
            entry.fields_v1.as_ref().is_some_and(|f| {
                f.0["f:metadata"]["f:labels"]
                    .get("f:sharding.fluxcd.io/key")
                    .is_some()
            })
        })
        .filter_map(|entry| entry.manager.as_deref())
        .collect();
    assert!(owners.is_empty(), "owned by {owners:?}");
    // A third apply (kustomize-controller's next reconciliation) changes nothing more.
    let third = api
        .patch("applied", &apply, &Patch::Apply(&manifest))
        .await
        .unwrap();
    assert_eq!(shard(&third), Some("far"));
    assert_eq!(
        third.metadata.resource_version, again.metadata.resource_version,
        "the third apply wrote something"
    );
    configs
        .delete(&config_name, &Default::default())
        .await
        .unwrap();
}
