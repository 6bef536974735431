//! What fluxgate's admission policy adds to a GitRepository create, end to end through a real
//! kube-apiserver: N creates through the webhook, N through the same policy rendered as a
//! MutatingAdmissionPolicy (`fluxgate admission-policy`), and N with neither, interleaved in rounds
//! so machine noise hits all three alike. Prints percentiles of each and the differences.
//!
//!   eval "$(tests/e2e/controlplane.sh env)"
//!   cargo run --release --example apiserver_latency -- 300
//!
//! The webhook runs in this process on 127.0.0.1 and is registered by URL for one namespace; the
//! policy's binding selects another; the third has neither.

use std::time::{Duration, Instant};

use base64::Engine as _;
use fluxgate::metrics::Metrics;
use fluxgate::policy::Policy;
use fluxgate::policy::native::{self, NativeOptions};
use fluxgate::server::{self, ConnectionLimits, tls::ReloadingTls, webhook};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn create_batch(
    api: &Api<DynamicObject>,
    prefix: &str,
    count: usize,
    out: &mut Vec<Duration>,
) -> anyhow::Result<()> {
    for i in 0..count {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": { "name": format!("{prefix}-{i}") },
            "spec": { "url": "https://github.com/example/app", "interval": "1m" },
        }))?;
        let started = Instant::now();
        api.create(&PostParams::default(), &object).await?;
        out.push(started.elapsed());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let total: usize = std::env::args().nth(1).map_or(Ok(200), |n| n.parse())?;
    let client = kube::Client::try_default().await?;

    let dir = std::env::temp_dir().join(format!("fluxgate-latency-{}", std::process::id()));
    let names = fluxgate::certs::ServingNames {
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse()?],
    };
    let bundle = fluxgate::certs::generate(&names, time::OffsetDateTime::now_utc())?;
    fluxgate::certs::write_dir(&dir, &bundle)?;
    let metrics = std::sync::Arc::new(Metrics::new());
    let tls = ReloadingTls::load(
        &dir.join("tls.crt"),
        &dir.join("tls.key"),
        metrics.tls.clone(),
    )?;
    let router = webhook::router(
        webhook::WebhookState::new(Policy::default(), metrics.clone()),
        Default::default(),
    );
    let hook = server::spawn_tls(
        "127.0.0.1:0".parse()?,
        tls.rustls_config(),
        router,
        ConnectionLimits::default(),
    )
    .await?;

    let suffix = std::process::id();
    let namespaces = Api::<Namespace>::all(client.clone());
    let (with_ns, native_ns, without_ns) = (
        format!("latency-with-{suffix}"),
        format!("latency-native-{suffix}"),
        format!("latency-without-{suffix}"),
    );
    for ns in [&with_ns, &native_ns, &without_ns] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({ "metadata": { "name": ns } }))?,
            )
            .await?;
    }
    let config: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": { "name": format!("fluxgate-latency-{suffix}") },
        "webhooks": [{
            "name": "gitrepositories.fluxgate.io",
            "clientConfig": { "url": format!("https://{}/mutate", hook.addr),
                              "caBundle": base64::engine::general_purpose::STANDARD.encode(&bundle.ca_cert_pem) },
            "rules": [{ "apiGroups": ["source.toolkit.fluxcd.io"], "apiVersions": ["*"], "resources": ["gitrepositories"],
                        "operations": ["CREATE"], "scope": "Namespaced" }],
            "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": with_ns } },
            "failurePolicy": "Ignore", "sideEffects": "None", "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded", "admissionReviewVersions": ["v1"],
        }],
    }))?;
    let configs = Api::<MutatingWebhookConfiguration>::all(client.clone());
    configs.create(&PostParams::default(), &config).await?;

    // The same policy, rendered, under names of this run's own and bound to one namespace.
    let admission = |kind: &str, plural: &str| {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind),
            plural,
        );
        Api::<DynamicObject>::all_with(client.clone(), &resource)
    };
    let policies = admission("MutatingAdmissionPolicy", "mutatingadmissionpolicies");
    let bindings = admission(
        "MutatingAdmissionPolicyBinding",
        "mutatingadmissionpolicybindings",
    );
    let policy_name = format!("fluxgate-latency-{suffix}");
    for mut object in native::render(&Policy::default(), &NativeOptions::default())?.objects {
        object["metadata"]["name"] = json!(policy_name);
        if object["kind"] == "MutatingAdmissionPolicy" {
            policies
                .create(&PostParams::default(), &serde_json::from_value(object)?)
                .await?;
        } else {
            object["spec"]["policyName"] = json!(policy_name);
            object["spec"]["matchResources"] = json!({ "namespaceSelector": {
                "matchLabels": { "kubernetes.io/metadata.name": native_ns } } });
            bindings
                .create(&PostParams::default(), &serde_json::from_value(object)?)
                .await?;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "GitRepository"),
        "gitrepositories",
    );
    let with_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &with_ns, &resource);
    let native_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &native_ns, &resource);
    let without_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &without_ns, &resource);
    // Warm every path (connections, caches) before measuring.
    let mut warmup = Vec::new();
    create_batch(&with_api, "warm", 20, &mut warmup).await?;
    create_batch(&native_api, "warm", 20, &mut warmup).await?;
    create_batch(&without_api, "warm", 20, &mut warmup).await?;
    for (api, path) in [
        (&with_api, "the webhook"),
        (&native_api, "the native policy"),
    ] {
        let check = api.get("warm-19").await?;
        anyhow::ensure!(
            check.data["spec"]["timeout"] == "5m",
            "{path} did not mutate"
        );
    }

    let (mut with, mut native, mut without) = (Vec::new(), Vec::new(), Vec::new());
    let rounds = 10;
    for round in 0..rounds {
        let n = total / rounds;
        create_batch(&with_api, &format!("r{round}"), n, &mut with).await?;
        create_batch(&native_api, &format!("r{round}"), n, &mut native).await?;
        create_batch(&without_api, &format!("r{round}"), n, &mut without).await?;
    }
    with.sort();
    native.sort();
    without.sort();
    println!(
        "GitRepository create through kube-apiserver, {} each, {rounds} interleaved rounds",
        with.len()
    );
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9}",
        "", "p50", "p90", "p99", "max"
    );
    for (label, samples) in [
        ("webhook", &with),
        ("native policy", &native),
        ("neither", &without),
    ] {
        println!(
            "{label:<22} {:>9.2?} {:>9.2?} {:>9.2?} {:>9.2?}",
            percentile(samples, 0.5),
            percentile(samples, 0.9),
            percentile(samples, 0.99),
            samples[samples.len() - 1]
        );
    }
    let delta = |samples: &[Duration], p| {
        percentile(samples, p).as_secs_f64() * 1000.0
            - percentile(&without, p).as_secs_f64() * 1000.0
    };
    for (label, samples) in [("webhook", &with), ("native policy", &native)] {
        println!(
            "added by the {label:<14} p50 {:+.2} ms, p90 {:+.2} ms, p99 {:+.2} ms",
            delta(samples, 0.5),
            delta(samples, 0.9),
            delta(samples, 0.99)
        );
    }

    configs
        .delete(
            &format!("fluxgate-latency-{suffix}"),
            &DeleteParams::default(),
        )
        .await?;
    bindings
        .delete(&policy_name, &DeleteParams::default())
        .await?;
    policies
        .delete(&policy_name, &DeleteParams::default())
        .await?;
    hook.shutdown(Duration::from_secs(1)).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
