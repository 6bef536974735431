//! Access to the real control plane started by `tests/e2e/controlplane.sh up`.
//!
//! Every end-to-end test is `#[ignore]`d with the reason, so a plain `cargo test` lists it as
//! ignored rather than passed; `tests/e2e/run.sh` starts the control plane and runs them with
//! `--include-ignored`. A test run without a control plane fails, saying why: it never passes
//! without having run.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

pub const KUBECONFIG_ENV: &str = "FLUXGATE_E2E_KUBECONFIG";

/// A client for the test control plane. `Option` only so callers read as before; without a
/// control plane this fails the test.
pub async fn client() -> Option<kube::Client> {
    client_as(None).await
}

/// A client that impersonates `user` (e.g. a ServiceAccount), authorised by the API server's RBAC.
pub async fn client_as(user: Option<&str>) -> Option<kube::Client> {
    super::install_crypto();
    let Ok(path) = std::env::var(KUBECONFIG_ENV) else {
        panic!(
            "{KUBECONFIG_ENV} is not set, so there is no control plane to test against: run \
             tests/e2e/run.sh (it starts one; it needs Go)"
        );
    };
    let kubeconfig = Kubeconfig::read_from(&path).expect("readable kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("usable kubeconfig");
    if let Some(user) = user {
        config.auth_info.impersonate = Some(user.to_owned());
    }
    Some(kube::Client::try_from(config).expect("client"))
}

pub fn gitrepository_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "GitRepository"),
        "gitrepositories",
    )
}

pub fn gitrepositories(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &gitrepository_resource())
}

/// A namespace of the test's own, so tests never see each other's objects.
pub async fn namespace(client: &kube::Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}", unique_suffix());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    name
}

pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{:x}{:x}",
        nanos % 0xfffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn gitrepository(name: &str, spec_extra: Value) -> DynamicObject {
    let mut spec = json!({ "url": format!("https://github.com/example/{name}"), "interval": "1m" });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

/// Registers fluxgate's webhook by URL (there is no kube-proxy in the test control plane), for
/// GitRepository CREATEs in `namespace` only, exactly as `deploy/` registers it otherwise.
pub async fn register_webhook(
    client: &kube::Client,
    name: &str,
    url: &str,
    ca_pem: &str,
    namespace: &str,
    timeout_seconds: i32,
) -> Api<MutatingWebhookConfiguration> {
    use base64::Engine as _;
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": { "name": name },
        "webhooks": [{
            "name": "gitrepositories.fluxgate.io",
            "clientConfig": {
                "url": url,
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem),
            },
            "rules": [{
                "apiGroups": ["source.toolkit.fluxcd.io"],
                "apiVersions": ["*"],
                "resources": ["gitrepositories"],
                "operations": ["CREATE"],
                "scope": "Namespaced",
            }],
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": namespace } },
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "timeoutSeconds": timeout_seconds,
            "reinvocationPolicy": "IfNeeded",
            "matchPolicy": "Equivalent",
            "admissionReviewVersions": ["v1"],
        }],
    }))
    .unwrap();
    let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
    api.create(&PostParams::default(), &config)
        .await
        .expect("webhook configuration created");
    api
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Dry-runs creates of `probe` until the stored answer satisfies `admitted`, within 30 s: the API
/// server's admission configuration cache takes a moment to pick up a new webhook or policy.
/// Returns whether it did.
pub async fn dry_run_until<K>(api: &Api<K>, probe: &K, admitted: impl Fn(&K) -> bool) -> bool
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually(Duration::from_secs(30), || {
        let api = api.clone();
        let probe = probe.clone();
        let dry_run = dry_run.clone();
        let admitted = &admitted;
        async move {
            let created = api.create(&dry_run, &probe).await.ok()?;
            admitted(&created).then_some(())
        }
    })
    .await
    .is_some()
}

/// Runs the `fluxgate` binary as a person would, with the test control plane's kubeconfig, and
/// returns its standard output; fails the test, with both outputs, when the command fails.
pub async fn fluxgate_cli(args: &[&str]) -> String {
    let path = std::env::var(KUBECONFIG_ENV).expect("the control plane's kubeconfig");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_fluxgate"))
        .args(args)
        .env("KUBECONFIG", path)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("fluxgate finished within two minutes")
        .expect("fluxgate started");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "fluxgate {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
