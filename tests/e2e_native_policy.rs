//! The rendered MutatingAdmissionPolicy against the webhook, on a real kube-apiserver with Flux's
//! real GitRepository CRD: the same manifests created once through each, compared field by field;
//! generated specs compared with `gitrepository::plan`. Run by `tests/e2e/run.sh` (e.g.
//! `tests/e2e/run.sh native`); ignored by a plain `cargo test`. The create latency of each path:
//! `examples/apiserver_latency.rs`.

mod support;

use std::time::{Duration, Instant};

use fluxgate::policy::native::{self, NativeOptions};
use fluxgate::policy::proxy::ProxyValue;
use fluxgate::policy::{
    GitRepositoryPolicy, Policy, ProxyPolicy, SuspendMode, TimeoutMode, gitrepository,
};
use fluxgate::server::webhook::WebhookLimits;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};
use support::TestWebhook;
use support::e2e;

const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

fn admission_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind),
        plural,
    )
}

/// The rendered policies and bindings, applied under names of this test's own and bound to one
/// namespace only, so that nothing else in the shared control plane is mutated by them (and a
/// test that fails half-way leaves nothing that matters). Deleted by [`NativePolicy::remove`].
struct NativePolicy {
    policies: Api<DynamicObject>,
    bindings: Api<DynamicObject>,
    names: Vec<String>,
}

impl NativePolicy {
    async fn apply(client: &kube::Client, policy: &Policy, namespace: &str) -> Self {
        let rendered = native::render(policy, &NativeOptions::default()).expect("policy renders");
        let policies = Api::all_with(
            client.clone(),
            &admission_resource("MutatingAdmissionPolicy", "mutatingadmissionpolicies"),
        );
        let bindings = Api::all_with(
            client.clone(),
            &admission_resource(
                "MutatingAdmissionPolicyBinding",
                "mutatingadmissionpolicybindings",
            ),
        );
        let mut names = Vec::new();
        for mut object in rendered.objects {
            let name = format!(
                "{}-{namespace}",
                object["metadata"]["name"].as_str().unwrap()
            );
            object["metadata"]["name"] = json!(name);
            let api = if object["kind"] == "MutatingAdmissionPolicy" {
                names.push(name.clone());
                &policies
            } else {
                let policy_name = object["spec"]["policyName"].as_str().unwrap().to_owned();
                object["spec"]["policyName"] = json!(format!("{policy_name}-{namespace}"));
                object["spec"]["matchResources"] = json!({ "namespaceSelector": {
                    "matchLabels": { "kubernetes.io/metadata.name": namespace } } });
                &bindings
            };
            let object: DynamicObject = serde_json::from_value(object).unwrap();
            let _ = api.delete(&name, &DeleteParams::default()).await;
            api.create(&PostParams::default(), &object)
                .await
                .unwrap_or_else(|e| panic!("{name} accepted by the API server: {e}"));
        }
        Self {
            policies,
            bindings,
            names,
        }
    }

    async fn remove(self) {
        for name in &self.names {
            self.bindings
                .delete(name, &DeleteParams::default())
                .await
                .expect("binding deleted");
            self.policies
                .delete(name, &DeleteParams::default())
                .await
                .expect("policy deleted");
        }
    }
}

/// Waits until the API server applies a freshly created policy or webhook in `namespace`: dry-run
/// creates of a repository with the CRD's default timeout until one comes back changed.
async fn wait_until_gitrepositories_mutated(client: &kube::Client, namespace: &str) {
    let api = e2e::gitrepositories(client, namespace);
    let probe = e2e::gitrepository("registration-probe", json!({}));
    let mutated = e2e::dry_run_until(&api, &probe, |created| {
        created.data["spec"]["suspend"] == false
    })
    .await;
    assert!(mutated, "GitRepositories in {namespace} never mutated");
}

async fn register_webhook_for(
    client: &kube::Client,
    hook: &TestWebhook,
    namespace: &str,
) -> (Api<MutatingWebhookConfiguration>, String) {
    let name = format!("fluxgate-e2e-{namespace}");
    let configs = e2e::register_webhook(
        client,
        &name,
        &format!("https://{}/mutate", hook.addr()),
        &hook.bundle.ca_cert_pem,
        namespace,
        5,
    )
    .await;
    (configs, name)
}

/// The manifests of the webhook's own tests, and every form of `spec.timeout` and `spec.suspend`
/// the webhook's policy tells apart, as far as the API server lets each reach admission.
fn manifest_specs() -> Vec<(&'static str, Value)> {
    vec![
        // e2e_webhook.rs: a plain create (the CRD's 60s default), and a suspended one.
        ("plain", json!({})),
        (
            "suspended-long",
            json!({ "suspend": true, "timeout": "10m" }),
        ),
        ("shorter", json!({ "timeout": "4m59s", "suspend": false })),
        ("sub-ms-shorter", json!({ "timeout": "299.9999999s" })),
        ("equal-other-spelling", json!({ "timeout": "300s" })),
        ("equal", json!({ "timeout": "5m" })),
        ("fraction-longer", json!({ "timeout": "7.5m" })),
        ("millis", json!({ "timeout": "500ms" })),
        ("ninety-seconds", json!({ "timeout": "1.5m" })),
        ("summed", json!({ "timeout": "2m2m2m" })),
        (
            "leading-zeros",
            json!({ "timeout": "0000000000000000000000006m" }),
        ),
        ("go-limit", json!({ "timeout": "153722867m" })),
        // The longest timeout fluxgate reads (64 characters), and one longer.
        (
            "longest",
            json!({ "timeout": format!("{}1m", "0".repeat(62)) }),
        ),
        ("too-long", json!({ "timeout": "1m".repeat(33) })),
        ("past-go-limit", json!({ "timeout": "153722868m" })),
        (
            "past-go-limit-ns",
            json!({ "timeout": "9223372036.854775808s" }),
        ),
        // Values the CRD's pattern refuses still reach mutating admission (validation comes after).
        ("hours", json!({ "timeout": "1h" })),
        ("words", json!({ "timeout": "soon" })),
        ("empty", json!({ "timeout": "" })),
        ("negative", json!({ "timeout": "-5m" })),
        ("no-int-part", json!({ "timeout": ".5m" })),
        // Wrong JSON types reach it too.
        ("int-timeout", json!({ "timeout": 30 })),
        ("float-timeout", json!({ "timeout": 1.5 })),
        ("bool-timeout", json!({ "timeout": true })),
        ("null-timeout", json!({ "timeout": null })),
        ("suspend-false", json!({ "suspend": false })),
        ("suspend-string", json!({ "suspend": "yes" })),
        ("suspend-int", json!({ "suspend": 1 })),
        ("suspend-null", json!({ "suspend": null })),
    ]
}

fn repository(name: &str, spec: &Value, annotations: Option<Value>) -> DynamicObject {
    let mut object = e2e::gitrepository(name, spec.clone());
    if let Some(annotations) = annotations {
        object.metadata.annotations = serde_json::from_value(annotations).unwrap();
    }
    object
}

/// One create: the stored object, or the API server's refusal (code and reason).
type Outcome = Result<DynamicObject, (u16, String)>;

async fn create(api: &Api<DynamicObject>, object: &DynamicObject, dry_run: bool) -> Outcome {
    let params = PostParams {
        dry_run,
        ..Default::default()
    };
    match api.create(&params, object).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) => Err((status.code, status.reason.clone())),
        Err(other) => panic!("create {:?}: {other}", object.metadata.name),
    }
}

/// The manifests under every name, plus one that already asks for a reconcile and one with no
/// spec at all (which both paths complete into a spec the schema then refuses).
fn all_manifests() -> Vec<DynamicObject> {
    let mut objects: Vec<DynamicObject> = manifest_specs()
        .iter()
        .map(|(name, spec)| repository(name, spec, None))
        .collect();
    objects.push(repository(
        "requested-by-hand",
        &json!({}),
        Some(json!({ REQUESTED_AT: "by-hand", "team": "a" })),
    ));
    let mut spec_less = repository("no-spec", &json!({}), None);
    spec_less.data.as_object_mut().unwrap().remove("spec");
    objects.push(spec_less);
    objects
}

/// The parts of a stored GitRepository the policy owns, plus everything else in the spec and the
/// annotations, with the one documented difference taken out: requestedAt, which the webhook
/// stamps with the admission time and the native policy (no clock in CEL) does not write.
fn owned_view(outcome: &Outcome) -> Value {
    match outcome {
        Ok(object) => {
            let mut annotations = object.metadata.annotations.clone().unwrap_or_default();
            if annotations.get(REQUESTED_AT).map(String::as_str) != Some("by-hand") {
                annotations.remove(REQUESTED_AT);
            }
            json!({ "spec": object.data["spec"], "annotations": annotations })
        }
        Err((code, reason)) => json!({ "refused": code, "reason": reason }),
    }
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn webhook_and_native_policy_store_the_same_gitrepositories() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let configurations = [
        Policy::default(),
        Policy {
            gitrepository: GitRepositoryPolicy {
                timeout: "90s".parse().unwrap(),
                timeout_mode: TimeoutMode::Force,
                suspend_mode: SuspendMode::Preserve,
                ..GitRepositoryPolicy::default()
            },
            ..Policy::default()
        },
    ];
    for policy in configurations {
        let label = format!("{:?}", policy.gitrepository);
        let through_webhook = e2e::namespace(&client, "e2e-native-wh").await;
        let through_policy = e2e::namespace(&client, "e2e-native-map").await;

        // Once through the webhook.
        let hook = TestWebhook::start(policy.clone(), WebhookLimits::default()).await;
        let (configs, config_name) = register_webhook_for(&client, &hook, &through_webhook).await;
        wait_until_gitrepositories_mutated(&client, &through_webhook).await;
        let webhook_api = e2e::gitrepositories(&client, &through_webhook);
        let mut by_webhook = Vec::new();
        for object in all_manifests() {
            by_webhook.push(create(&webhook_api, &object, false).await);
        }
        configs
            .delete(&config_name, &DeleteParams::default())
            .await
            .unwrap();
        hook.server.shutdown(Duration::from_secs(1)).await.unwrap();

        // Once through the rendered policy, with no webhook registered at all.
        let native = NativePolicy::apply(&client, &policy, &through_policy).await;
        wait_until_gitrepositories_mutated(&client, &through_policy).await;
        let policy_api = e2e::gitrepositories(&client, &through_policy);
        let mut by_policy = Vec::new();
        for object in all_manifests() {
            by_policy.push(create(&policy_api, &object, false).await);
        }

        for ((object, webhook), native_outcome) in
            all_manifests().iter().zip(&by_webhook).zip(&by_policy)
        {
            let name = object.metadata.name.as_deref().unwrap();
            assert_eq!(
                owned_view(webhook),
                owned_view(native_outcome),
                "{label}: {name} differs between the webhook (left) and the native policy (right)"
            );
            if let (Ok(webhook), Ok(native_object)) = (webhook, native_outcome) {
                let annotations = |o: &DynamicObject| {
                    o.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(REQUESTED_AT))
                        .cloned()
                };
                if name == "requested-by-hand" {
                    assert_eq!(annotations(native_object).as_deref(), Some("by-hand"));
                } else {
                    assert!(annotations(webhook).is_some(), "{name}: webhook stamps");
                    assert_eq!(annotations(native_object), None, "{name}: no clock in CEL");
                }
            }
        }
        // Every manifest but the spec-less one is admitted by both.
        let refused: Vec<&str> = all_manifests()
            .iter()
            .zip(&by_policy)
            .filter(|(_, o)| o.is_err())
            .map(|(m, _)| m.metadata.name.clone().unwrap())
            .map(|n| if n == "no-spec" { "no-spec" } else { "other" })
            .collect();
        assert_eq!(refused, ["no-spec"], "{label}");
        let plain = by_policy[0].as_ref().unwrap();
        assert_eq!(
            plain.data["spec"]["timeout"],
            json!(policy.gitrepository.timeout.to_string())
        );

        // UPDATE is untouched by both: shorten the timeout and suspend after creation.
        for (api, name) in [(&webhook_api, "plain"), (&policy_api, "plain")] {
            let updated = api
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "spec": { "timeout": "30s", "suspend": true } })),
                )
                .await
                .unwrap();
            assert_eq!(updated.data["spec"]["timeout"], "30s", "{label}");
            assert_eq!(updated.data["spec"]["suspend"], true, "{label}");
        }
        native.remove().await;
    }
}

fn pod(name: &str, app: &str, containers: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": app } },
        "spec": {
            "initContainers": [{ "name": "init", "image": "busybox" }],
            "containers": containers,
        }
    }))
    .unwrap()
}

/// Source-controller-like Pods: the shapes the proxy policy tells apart.
fn pods() -> Vec<Pod> {
    let runtime_ns = json!({ "name": "RUNTIME_NAMESPACE",
        "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } });
    vec![
        pod(
            "with-env",
            "source-controller",
            json!([
                { "name": "manager", "image": "sc", "env": [runtime_ns] },
                { "name": "sidecar", "image": "busybox" },
            ]),
        ),
        pod(
            "no-env",
            "source-controller",
            json!([{ "name": "manager", "image": "sc" }]),
        ),
        pod(
            "own-proxy",
            "source-controller",
            json!([{ "name": "manager", "image": "sc", "env": [
                { "name": "HTTPS_PROXY", "value": "http://own:8080" },
                { "name": "https_proxy", "valueFrom": { "secretKeyRef": { "name": "p", "key": "url" } } },
                { "name": "no_proxy", "value": "example.com" },
            ] }]),
        ),
        pod(
            "already-injected",
            "source-controller",
            json!([{ "name": "manager", "image": "sc", "env": [
                { "name": "HTTPS_PROXY", "value": "http://proxy.internal:3128" },
                { "name": "NO_PROXY", "value": "stale" },
            ] }]),
        ),
        pod(
            "sidecar-first",
            "source-controller",
            json!([
                { "name": "sidecar", "image": "busybox", "env": [{ "name": "A", "value": "1" }] },
                { "name": "manager", "image": "sc", "env": [] },
            ]),
        ),
        pod(
            "other-app",
            "kustomize-controller",
            json!([{ "name": "manager", "image": "kc" }]),
        ),
    ]
}

fn containers_view(pod: &Pod) -> Value {
    let spec = pod.spec.as_ref().unwrap();
    json!({ "containers": spec.containers, "initContainers": spec.init_containers })
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn webhook_and_native_policy_give_source_controller_pods_the_same_env() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let namespaces = Api::<Namespace>::all(client.clone());
    for (round, (https, http, override_existing, containers)) in [
        ("http://proxy.internal:3128", None, false, vec!["manager"]),
        (
            "secret:proxy-credentials/https",
            Some("http://proxy.internal:3128"),
            true,
            // An init container named here still gets nothing.
            vec!["manager", "sidecar", "init"],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let suffix = e2e::unique_suffix();
        let through_webhook = format!("e2e-native-pods-wh-{suffix}");
        let through_policy = format!("e2e-native-pods-map-{suffix}");
        for ns in [&through_webhook, &through_policy] {
            let object: Namespace =
                serde_json::from_value(json!({ "metadata": { "name": ns } })).unwrap();
            namespaces
                .create(&PostParams::default(), &object)
                .await
                .unwrap();
        }
        // One policy for both paths: each path is registered for its own namespace only.
        let policy = Policy {
            proxy: ProxyPolicy {
                https_proxy: Some(ProxyValue::parse(https).unwrap()),
                http_proxy: http.map(|h| ProxyValue::parse(h).unwrap()),
                no_proxy: vec!["git.internal.example".into()],
                cluster_cidrs: vec!["10.0.0.0/24".into()],
                kubernetes_service_ip: Some("10.0.0.1".into()),
                namespaces: vec![through_webhook.clone(), through_policy.clone()],
                containers: containers.iter().map(|c| (*c).to_owned()).collect(),
                override_existing,
                ..ProxyPolicy::default()
            },
            ..Policy::default()
        };

        let hook = TestWebhook::start(policy.clone(), WebhookLimits::default()).await;
        let configs = Api::<MutatingWebhookConfiguration>::all(client.clone());
        let config_name = format!("fluxgate-e2e-{through_webhook}");
        use base64::Engine as _;
        let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": { "name": config_name },
            "webhooks": [{
                "name": "pods.fluxgate.io",
                "clientConfig": {
                    "url": format!("https://{}/mutate", hook.addr()),
                    "caBundle": base64::engine::general_purpose::STANDARD.encode(&hook.bundle.ca_cert_pem),
                },
                "rules": [{ "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                            "operations": ["CREATE"], "scope": "Namespaced" }],
                "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": through_webhook } },
                "objectSelector": { "matchLabels": { "app": "source-controller" } },
                "failurePolicy": "Ignore", "sideEffects": "None", "timeoutSeconds": 5,
                "reinvocationPolicy": "IfNeeded", "admissionReviewVersions": ["v1"],
            }],
        }))
        .unwrap();
        configs
            .create(&PostParams::default(), &config)
            .await
            .unwrap();
        wait_until_pods_injected(&client, &through_webhook).await;
        let mut by_webhook = Vec::new();
        let webhook_pods = Api::<Pod>::namespaced(client.clone(), &through_webhook);
        for pod in pods() {
            by_webhook.push(webhook_pods.create(&PostParams::default(), &pod).await);
        }
        configs
            .delete(&config_name, &DeleteParams::default())
            .await
            .unwrap();
        hook.server.shutdown(Duration::from_secs(1)).await.unwrap();

        let native = NativePolicy::apply(&client, &policy, &through_policy).await;
        wait_until_pods_injected(&client, &through_policy).await;
        let policy_pods = Api::<Pod>::namespaced(client.clone(), &through_policy);
        let mut by_policy = Vec::new();
        for pod in pods() {
            by_policy.push(policy_pods.create(&PostParams::default(), &pod).await);
        }

        for ((pod, webhook), native_outcome) in pods().iter().zip(&by_webhook).zip(&by_policy) {
            let name = pod.metadata.name.as_deref().unwrap();
            let webhook = webhook
                .as_ref()
                .unwrap_or_else(|e| panic!("{name} via the webhook: {e}"));
            let native_pod = native_outcome
                .as_ref()
                .unwrap_or_else(|e| panic!("{name} via the native policy: {e}"));
            assert_eq!(
                containers_view(webhook),
                containers_view(native_pod),
                "round {round}: Pod {name} differs between the webhook (left) and the native \
                 policy (right)"
            );
        }
        // And the webhook's policy, run offline, agrees with both on one of them.
        let injected = containers_view(by_policy[1].as_ref().unwrap());
        let env = &injected["containers"][0]["env"];
        let no_proxy = policy.proxy.no_proxy_value();
        assert!(
            env.as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "no_proxy" && e["value"] == no_proxy.as_str()),
            "{env}"
        );
        native.remove().await;
    }
}

async fn wait_until_pods_injected(client: &kube::Client, namespace: &str) {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let probe = pod(
        "probe",
        "source-controller",
        json!([{ "name": "manager", "image": "sc" }]),
    );
    let injected = e2e::dry_run_until(&api, &probe, |created| {
        created
            .spec
            .as_ref()
            .is_some_and(|spec| spec.containers[0].env.is_some())
    })
    .await;
    assert!(injected, "Pods in {namespace} never injected");
}

// --- generated specs against gitrepository::plan ----------------------------------------------

/// A `spec.timeout` as a user might write one, near the configured value or not, valid for the
/// CRD or not, or of another JSON type; `None` leaves it out.
fn timeout_strategy() -> impl Strategy<Value = Option<Value>> {
    use proptest::prelude::*;
    let valid =
        proptest::string::string_regex("(0{0,3}[0-9]{1,4}(\\.[0-9]{1,11})?(ms|s|m)){1,3}").unwrap();
    let near =
        (0u64..1_000_000, prop::sample::select(vec!["ms", "s", "m"])).prop_map(|(n, unit)| {
            match unit {
                "ms" => format!("{}ms", 80_000 + n % 300_000),
                "s" => format!("{}.{:03}s", 80 + n % 300, n % 1000),
                _ => format!("{}.{}m", 1 + n % 6, n % 10_000),
            }
        });
    let huge = proptest::string::string_regex("[1-9][0-9]{7,21}(ms|s|m)").unwrap();
    let invalid = prop::sample::select(vec![
        "1h", "5", "", "-5m", " 5m", "5m ", "1.m", ".5m", "5M", "1us", "1ns", "1d", "1.2.3s",
        "five", "5m\n", "٣m",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        3 => valid.prop_map(|s| Some(json!(s))),
        3 => near.prop_map(|s| Some(json!(s))),
        1 => huge.prop_map(|s| Some(json!(s))),
        2 => invalid.prop_map(|s| Some(json!(s))),
        1 => prop_oneof![
            any::<i32>().prop_map(|n| json!(n)),
            (0.0f64..1000.0).prop_map(|f| json!(f)),
            any::<bool>().prop_map(|b| json!(b)),
            Just(Value::Null),
        ]
        .prop_map(Some),
        1 => Just(None),
    ]
}

fn suspend_strategy() -> impl Strategy<Value = Option<Value>> {
    use proptest::prelude::*;
    prop_oneof![
        Just(None),
        Just(Some(json!(true))),
        Just(Some(json!(false))),
        Just(Some(Value::Null)),
        Just(Some(json!("yes"))),
        Just(Some(json!(1))),
    ]
}

/// What mutating admission sees of a spec: the API server has already applied the CRD's default
/// (`timeout: 60s` for a missing or null timeout) and dropped a null `suspend`.
fn as_admitted(spec: &Value) -> Value {
    let mut spec = spec.clone();
    let map = spec.as_object_mut().unwrap();
    if map.get("timeout").is_none_or(Value::is_null) {
        map.insert("timeout".into(), json!("60s"));
    }
    if map.get("suspend").is_some_and(Value::is_null) {
        map.remove("suspend");
    }
    spec
}

fn cases_per_policy() -> usize {
    std::env::var("FLUXGATE_E2E_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn native_policy_agrees_with_plan_on_generated_specs() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let seed: u64 = std::env::var("FLUXGATE_E2E_PROPERTY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    let cases = cases_per_policy();
    eprintln!("property: seed {seed} (FLUXGATE_E2E_PROPERTY_SEED), {cases} cases per policy");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = (timeout_strategy(), suspend_strategy());
    let policies = [
        GitRepositoryPolicy::default(),
        GitRepositoryPolicy {
            timeout: "90s".parse().unwrap(),
            timeout_mode: TimeoutMode::Force,
            suspend_mode: SuspendMode::Preserve,
            ..GitRepositoryPolicy::default()
        },
        GitRepositoryPolicy {
            timeout: "1m30.5s".parse().unwrap(),
            timeout_mode: TimeoutMode::Floor,
            suspend_mode: SuspendMode::Preserve,
            ..GitRepositoryPolicy::default()
        },
    ];
    let started = Instant::now();
    let mut checked = 0;
    for gitrepository in policies {
        let policy = Policy {
            gitrepository: gitrepository.clone(),
            ..Policy::default()
        };
        let namespace = e2e::namespace(&client, "e2e-native-prop").await;
        let native = NativePolicy::apply(&client, &policy, &namespace).await;
        wait_until_gitrepositories_mutated(&client, &namespace).await;
        let api = e2e::gitrepositories(&client, &namespace);
        for case in 0..cases {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "property run over its time budget"
            );
            let (timeout, suspend) = strategy.new_tree(&mut runner).unwrap().current();
            let mut spec = json!({ "url": "https://github.com/example/p", "interval": "1m" });
            if let Some(t) = &timeout {
                spec["timeout"] = t.clone();
            }
            if let Some(s) = &suspend {
                spec["suspend"] = s.clone();
            }
            let object = repository(&format!("case-{case}"), &spec, None);
            let admitted = as_admitted(&spec);
            let mut expected = json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": { "name": "x" }, "spec": admitted,
            });
            let mutation = gitrepository::plan_object(
                &expected,
                None,
                &gitrepository,
                time::OffsetDateTime::UNIX_EPOCH,
            )
            .unwrap();
            json_patch::patch(&mut expected, &mutation.patch).unwrap();
            let got = create(&api, &object, true).await;
            let got = got.unwrap_or_else(|refusal| {
                panic!(
                    "seed {seed}, {gitrepository:?}: spec {spec} refused {refusal:?}; plan gives \
                     {}",
                    expected["spec"]
                )
            });
            for field in ["timeout", "suspend"] {
                assert_eq!(
                    got.data["spec"][field], expected["spec"][field],
                    "seed {seed}, {gitrepository:?}: spec {spec}: {field} differs from plan"
                );
            }
            checked += 1;
        }
        native.remove().await;
    }
    eprintln!(
        "property: {checked} generated specs agreed with plan in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

// --- deploy/native-admission -----------------------------------------------------------------

fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write as _;
    let kubectl = std::env::var("FLUXGATE_E2E_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let kubeconfig = std::env::var(e2e::KUBECONFIG_ENV).unwrap();
    let mut child = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .unwrap();
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The component as a cluster would get it: the base with deploy/native-admission, rendered by
/// kubectl's kustomize and applied as a server-side dry run, so kube-apiserver compiles the
/// committed policy's CEL and validates every object.
#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn the_native_admission_component_applies_and_its_cel_compiles() {
    let Some(_client) = e2e::client().await else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("native-admission-")
        .tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/target"))
        .unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         resources: [../../deploy]\ncomponents: [../../deploy/native-admission]\n",
    )
    .unwrap();
    let (ok, rendered, err) = kubectl(&["kustomize", dir.path().to_str().unwrap()], None);
    assert!(ok, "kustomize: {err}");
    // The namespace must exist for a server-side dry run of the objects inside it.
    let (ok, _, err) = kubectl(&["apply", "-f", "deploy/namespace.yaml"], None);
    assert!(ok, "{err}");
    let (ok, out, err) = kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&rendered));
    assert!(ok, "server-side dry run failed: {err}");
    assert!(
        out.contains(
            "mutatingadmissionpolicy.admissionregistration.k8s.io/fluxgate-gitrepositories"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "mutatingadmissionpolicybinding.admissionregistration.k8s.io/fluxgate-gitrepositories"
        ),
        "{out}"
    );
    assert!(!out.contains("mutatingwebhookconfiguration"), "{out}");
    assert!(out.contains("deployment.apps/fluxgate"), "{out}");
}
