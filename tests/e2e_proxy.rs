//! Proxy injection through a real kube-apiserver: a source-controller Pod created in flux-system
//! comes back with the proxy environment; other Pods are never even sent to fluxgate.

mod support;

use fluxgate::policy::proxy::ProxyValue;
use fluxgate::policy::{Policy, ProxyPolicy};
use fluxgate::server::webhook::WebhookLimits;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::TestWebhook;
use support::e2e;

fn pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": app } },
        "spec": {
            "initContainers": [{ "name": "init", "image": "busybox" }],
            "containers": [
                { "name": "manager", "image": "ghcr.io/fluxcd/source-controller:v1.7.0",
                  "env": [{ "name": "RUNTIME_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } }] },
                { "name": "sidecar", "image": "busybox" }
            ]
        }
    }))
    .unwrap()
}

fn env_names(pod: &Pod, container: usize) -> Vec<String> {
    pod.spec.as_ref().unwrap().containers[container]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect()
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn source_controller_pods_get_the_proxy_and_no_other_pod_is_sent() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let policy = Policy {
        proxy: ProxyPolicy {
            https_proxy: Some(ProxyValue::Literal("http://proxy.internal:3128".into())),
            kubernetes_service_ip: Some("10.0.0.1".into()),
            ..ProxyPolicy::default()
        },
        ..Policy::default()
    };
    let hook = TestWebhook::start(policy, WebhookLimits::default()).await;

    let namespaces = Api::<Namespace>::all(client.clone());
    for ns in ["flux-system", "e2e-proxy-elsewhere"] {
        let object: Namespace =
            serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap();
        let _ = namespaces.create(&PostParams::default(), &object).await;
    }
    use base64::Engine as _;
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": { "name": "fluxgate-e2e-proxy" },
        "webhooks": [{
            "name": "pods.fluxgate.io",
            "clientConfig": {
                "url": format!("https://{}/mutate", hook.addr()),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(&hook.bundle.ca_cert_pem),
            },
            "rules": [{ "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                        "operations": ["CREATE"], "scope": "Namespaced" }],
            "namespaceSelector": { "matchExpressions": [
                { "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["flux-system"] }] },
            "objectSelector": { "matchExpressions": [
                { "key": "app", "operator": "In", "values": ["source-controller"] }] },
            "failurePolicy": "Ignore", "sideEffects": "None", "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded", "admissionReviewVersions": ["v1"],
        }],
    }))
    .unwrap();
    let configs = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let _ = configs
        .delete("fluxgate-e2e-proxy", &DeleteParams::default())
        .await;
    configs
        .create(&PostParams::default(), &config)
        .await
        .unwrap();

    let flux = Api::<Pod>::namespaced(client.clone(), "flux-system");
    let suffix = e2e::unique_suffix();
    // The API server's webhook configuration cache takes a moment: retry dry runs until injected.
    let probe = format!("probe-{suffix}");
    let registered = e2e::eventually(std::time::Duration::from_secs(30), || {
        let flux = flux.clone();
        let probe = probe.clone();
        async move {
            let created = flux
                .create(
                    &PostParams {
                        dry_run: true,
                        ..Default::default()
                    },
                    &pod(&probe, "source-controller"),
                )
                .await
                .ok()?;
            env_names(&created, 0)
                .contains(&"HTTPS_PROXY".to_owned())
                .then_some(())
        }
    })
    .await;
    assert!(
        registered.is_some(),
        "kube-apiserver never called the webhook for Pods"
    );
    let before = hook.metrics.encode();

    let created = flux
        .create(
            &PostParams::default(),
            &pod(&format!("source-controller-{suffix}"), "source-controller"),
        )
        .await
        .unwrap();
    assert_eq!(
        env_names(&created, 0),
        [
            "RUNTIME_NAMESPACE",
            "HTTPS_PROXY",
            "https_proxy",
            "NO_PROXY",
            "no_proxy"
        ]
    );
    let no_proxy = created.spec.as_ref().unwrap().containers[0]
        .env
        .as_ref()
        .unwrap()[3]
        .value
        .clone()
        .unwrap();
    assert_eq!(
        no_proxy,
        "localhost,127.0.0.1,::1,.cluster.local.,.cluster.local,.svc,10.0.0.1"
    );
    assert!(
        env_names(&created, 1).is_empty(),
        "only the manager container"
    );
    assert!(
        created
            .spec
            .as_ref()
            .unwrap()
            .init_containers
            .as_ref()
            .unwrap()[0]
            .env
            .is_none()
    );

    // Not sent at all: another app in flux-system, and a source-controller label elsewhere.
    flux.create(
        &PostParams::default(),
        &pod(
            &format!("kustomize-controller-{suffix}"),
            "kustomize-controller",
        ),
    )
    .await
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "e2e-proxy-elsewhere")
        .create(
            &PostParams::default(),
            &pod(&format!("source-controller-{suffix}"), "source-controller"),
        )
        .await
        .unwrap();
    let count = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("fluxgate_admission_requests_total{kind=\"Pod\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let after = hook.metrics.encode();
    assert_eq!(
        count(&after) - count(&before),
        1,
        "only the source-controller Pod was sent:\n{after}"
    );
    assert!(
        after.contains("fluxgate_proxy_injections_total{namespace=\"flux-system\"}"),
        "{after}"
    );
    configs
        .delete("fluxgate-e2e-proxy", &DeleteParams::default())
        .await
        .unwrap();
}
