//! Mirror rules with a real kube-apiserver and Flux's real GitRepository CRD: a rewritten object
//! is stored with the mirror's URL and the original in `fluxgate.io/original-url`, and is valid
//! against the CRD's schema. Run by `tests/e2e/run.sh`; ignored by a plain `cargo test`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use fluxgate::policy::{GitRepositoryPolicy, MirrorRule, MirrorRules, Policy};
use fluxgate::server::webhook::WebhookLimits;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use support::TestWebhook;
use support::e2e::{self, eventually};

const ORIGINAL_URL: &str = "fluxgate.io/original-url";

fn policy() -> Policy {
    let rules = [
        "https://github.com/=https://gitee.com/acme-mirror/",
        "ssh://git@github.com/=ssh://git@gitea.internal:2222/mirror/;credentials=carry",
    ]
    .iter()
    .map(|r| MirrorRule::parse(r).unwrap())
    .collect();
    Policy {
        gitrepository: GitRepositoryPolicy {
            mirror: MirrorRules::new(rules, Vec::new()).unwrap(),
            ..GitRepositoryPolicy::default()
        },
        ..Policy::default()
    }
}

fn url(object: &DynamicObject) -> &str {
    object.data["spec"]["url"].as_str().unwrap_or("")
}

fn original(object: &DynamicObject) -> Option<&str> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ORIGINAL_URL))
        .map(String::as_str)
}

fn annotated(mut object: DynamicObject, key: &str, value: &str) -> DynamicObject {
    object.metadata.annotations = Some(BTreeMap::from([(key.to_owned(), value.to_owned())]));
    object
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn created_gitrepositories_are_stored_with_the_mirror_url_and_the_original() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let hook = TestWebhook::start(policy(), WebhookLimits::default()).await;
    let namespace = e2e::namespace(&client, "e2e-mirror").await;
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
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let probe = e2e::gitrepository("registration-probe", json!({}));
    let registered = eventually(Duration::from_secs(30), || {
        let (api, probe, dry_run) = (api.clone(), probe.clone(), dry_run.clone());
        async move {
            let created = api.create(&dry_run, &probe).await.ok()?;
            original(&created).is_some().then_some(())
        }
    })
    .await;
    assert!(
        registered.is_some(),
        "kube-apiserver never called the webhook"
    );

    // https: the CRD accepts the mirror URL, and storage holds it with the original.
    let created = api
        .create(
            &PostParams::default(),
            &e2e::gitrepository("project-1", json!({})),
        )
        .await
        .expect("create accepted: the rewritten object is valid against the real CRD");
    assert_eq!(
        url(&created),
        "https://gitee.com/acme-mirror/example/project-1"
    );
    let stored = api.get("project-1").await.unwrap();
    assert_eq!(
        url(&stored),
        "https://gitee.com/acme-mirror/example/project-1"
    );
    assert_eq!(
        original(&stored),
        Some("https://github.com/example/project-1")
    );
    assert_eq!(
        stored.data["spec"]["timeout"], "5m",
        "the other changes still apply"
    );

    // ssh with a deploy key, under a rule that carries credentials: the port stays explicit.
    let ssh = api
        .create(
            &PostParams::default(),
            &e2e::gitrepository(
                "project-2",
                json!({ "url": "ssh://git@github.com/example/project-2.git",
                        "secretRef": { "name": "deploy-key" } }),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        url(&ssh),
        "ssh://git@gitea.internal:2222/mirror/example/project-2.git"
    );
    assert_eq!(ssh.data["spec"]["secretRef"]["name"], "deploy-key");

    // https with a token Secret (the rule does not carry it), and an opted-out object: as written.
    for object in [
        e2e::gitrepository(
            "project-3",
            json!({ "secretRef": { "name": "github-token" } }),
        ),
        annotated(
            e2e::gitrepository("project-4", json!({})),
            "fluxgate.io/mirror",
            "false",
        ),
    ] {
        let name = object.metadata.name.clone().unwrap();
        let created = api.create(&PostParams::default(), &object).await.unwrap();
        assert_eq!(url(&created), format!("https://github.com/example/{name}"));
        assert_eq!(original(&created), None);
    }

    // Undo: put the original back and drop the mark; UPDATE is never rewritten.
    let restored = api
        .patch(
            "project-1",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    { "op": "replace", "path": "/spec/url",
                      "value": "https://github.com/example/project-1" },
                    { "op": "remove", "path": "/metadata/annotations/fluxgate.io~1original-url" },
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(url(&restored), "https://github.com/example/project-1");
    assert_eq!(original(&restored), None);

    let metrics = hook.metrics.encode();
    for line in [
        "fluxgate_mirror_rewrites_total{rule=\"https://github.com/\"} 1",
        "fluxgate_mirror_rewrites_total{rule=\"ssh://git@github.com/\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    configs
        .delete(&config_name, &Default::default())
        .await
        .unwrap();
}
