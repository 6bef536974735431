//! `deploy/` against a real kube-apiserver: it applies (server-side dry run), and its RBAC is
//! exactly what fluxgate uses: fluxgate's own code runs impersonating the ServiceAccount, every
//! grant is exercised, and what is not granted is refused.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use fluxgate::certs::bootstrap::{self, BootstrapConfig};
use fluxgate::janitor::{self, JanitorConfig, Rules};
use fluxgate::metrics::Metrics;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::e2e::{self, eventually};

const SERVICE_ACCOUNT: &str = "system:serviceaccount:fluxgate:fluxgate";

fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let kubectl = std::env::var("FLUXGATE_E2E_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let kubeconfig = std::env::var(e2e::KUBECONFIG_ENV).unwrap();
    let mut child = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The base rendered by kustomize, as objects.
fn rendered_base() -> Vec<Value> {
    let (ok, out, err) = kubectl(&["kustomize", "deploy/"], None);
    assert!(ok, "kustomize deploy/: {err}");
    fluxgate::manifests::parse_documents(&out).unwrap()
}

/// (apiGroup, resource, verb, resourceName or "*") for every rule of fluxgate's roles.
fn granted(objects: &[Value]) -> BTreeSet<(String, String, String, String)> {
    let mut grants = BTreeSet::new();
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or("");
        if kind != "ClusterRole" && kind != "Role" {
            continue;
        }
        if object["metadata"]["name"] == "fluxgate-janitor-delete" {
            continue; // opt-in, not bound in the base
        }
        for rule in object["rules"].as_array().into_iter().flatten() {
            let strings = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let names = strings("resourceNames");
            let names = if names.is_empty() {
                vec!["*".to_owned()]
            } else {
                names
            };
            for group in strings("apiGroups") {
                for resource in strings("resources") {
                    for verb in strings("verbs") {
                        for name in &names {
                            grants.insert((
                                group.clone(),
                                resource.clone(),
                                verb.clone(),
                                name.clone(),
                            ));
                        }
                    }
                }
            }
        }
    }
    grants
}

/// Requests the API server audited as made by the ServiceAccount and allowed.
fn audited_requests() -> Option<BTreeSet<(String, String, String, String)>> {
    let dir = std::env::var("FLUXGATE_E2E_DIR").ok()?;
    let text = std::fs::read_to_string(format!("{dir}/logs/audit.log")).ok()?;
    let mut used = BTreeSet::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if event["impersonatedUser"]["username"] != SERVICE_ACCOUNT {
            continue;
        }
        let code = event["responseStatus"]["code"].as_u64().unwrap_or(0);
        if !(200..300).contains(&code) {
            continue;
        }
        let object = &event["objectRef"];
        used.insert((
            object["apiGroup"].as_str().unwrap_or("").to_owned(),
            object["resource"].as_str().unwrap_or("").to_owned(),
            event["verb"].as_str().unwrap_or("").to_owned(),
            object["name"].as_str().unwrap_or("*").to_owned(),
        ));
    }
    Some(used)
}

fn is_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn deploy_applies_and_its_rbac_is_exactly_what_fluxgate_uses() {
    let Some(admin) = e2e::client().await else {
        return;
    };
    let objects = rendered_base();

    // The namespace must exist for a server-side dry run of the objects inside it.
    let (ok, _, err) = kubectl(&["apply", "-f", "deploy/namespace.yaml"], None);
    assert!(ok, "{err}");
    let (ok, out, err) = kubectl(&["apply", "--dry-run=server", "-k", "deploy/"], None);
    assert!(ok, "server-side dry run of deploy/ failed: {err}");
    assert!(out.contains("deployment.apps/fluxgate"), "{out}");
    assert!(
        out.contains("mutatingwebhookconfiguration.admissionregistration.k8s.io/fluxgate"),
        "{out}"
    );

    // Apply the identity and RBAC for real, and the webhook configuration with selectors that match
    // nothing (there is no fluxgate Service here, and other tests must not be slowed by it).
    let mut to_apply = Vec::new();
    for object in &objects {
        let kind = object["kind"].as_str().unwrap_or("");
        let mut object = object.clone();
        match kind {
            "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding" => {}
            "MutatingWebhookConfiguration" => {
                for webhook in object["webhooks"].as_array_mut().unwrap() {
                    webhook["namespaceSelector"] =
                        json!({ "matchLabels": { "fluxgate-e2e": "never" } });
                }
            }
            _ => continue,
        }
        to_apply.push(serde_json::to_string(&object).unwrap());
    }
    let (ok, _, err) = kubectl(&["apply", "-f", "-"], Some(&to_apply.join("\n")));
    assert!(ok, "{err}");

    let Some(sa) = e2e::client_as(Some(SERVICE_ACCOUNT)).await else {
        return;
    };

    // 1. Certificate bootstrap: create the Secret, patch the caBundle, then renew (update).
    let dir = tempfile::tempdir().unwrap();
    let mut config = BootstrapConfig {
        namespace: "fluxgate".into(),
        secret_name: "fluxgate-tls".into(),
        webhook_config_name: "fluxgate".into(),
        service_name: "fluxgate".into(),
        cert_path: dir.path().join("tls.crt"),
        key_path: dir.path().join("tls.key"),
        renew_before: Duration::from_secs(30 * 86_400),
    };
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), "fluxgate");
    let _ = secrets
        .delete("fluxgate-tls", &DeleteParams::default())
        .await;
    let first = bootstrap::ensure(&sa, &config)
        .await
        .expect("bootstrap as the ServiceAccount");
    let again = bootstrap::ensure(&sa, &config).await.unwrap();
    assert_eq!(first, again, "a second replica reuses the Secret");
    let webhook_config = Api::<
        k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
    >::all(admin.clone())
    .get("fluxgate")
    .await
    .unwrap();
    for webhook in webhook_config.webhooks.unwrap() {
        assert_eq!(
            webhook.client_config.ca_bundle.unwrap().0,
            first.ca_cert_pem.as_bytes(),
            "{} has the CA",
            webhook.name
        );
    }
    config.renew_before = Duration::from_secs(2 * 365 * 86_400);
    let renewed = bootstrap::ensure(&sa, &config).await.unwrap();
    assert_ne!(
        renewed.cert_pem, first.cert_pem,
        "serving certificate renewed"
    );
    assert_eq!(
        renewed.ca_cert_pem, first.ca_cert_pem,
        "same CA, so the caBundle stays valid"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
        renewed.cert_pem
    );

    // 2. Exporter: list and watch GitRepositories cluster-wide until synced.
    let mut registry = fluxgate::metrics::Metrics::new();
    let exporter = fluxgate::exporter::Exporter::new(&mut registry, Default::default());
    let status = exporter.status();
    let exporter_task = tokio::spawn(exporter.run(sa.clone()));
    let synced = eventually(Duration::from_secs(30), || {
        let status = status.clone();
        async move { status.is_ready().then_some(()) }
    })
    .await;
    assert!(
        synced.is_some(),
        "the exporter never synced as the ServiceAccount"
    );
    exporter_task.abort();

    // 3. Janitor: suspend a long-failing repository (patch + Event), and hold the Lease.
    let ns = e2e::namespace(&admin, "e2e-rbac").await;
    let repos = e2e::gitrepositories(&admin, &ns);
    repos
        .create(
            &PostParams::default(),
            &e2e::gitrepository("failing", json!({})),
        )
        .await
        .unwrap();
    let since = fluxgate::policy::rfc3339_seconds(
        time::OffsetDateTime::now_utc() - time::Duration::days(2),
    );
    repos
        .patch_status(
            "failing",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "conditions": [{
                "type": "Ready", "status": "False", "reason": "GitOperationFailed",
                "message": "context deadline exceeded", "lastTransitionTime": since, "observedGeneration": 1
            }] } })),
        )
        .await
        .unwrap();
    let metrics = Metrics::new();
    let janitor_config = JanitorConfig {
        rules: Rules::default(),
        dry_run: false,
        namespaces: vec![],
        max_actions_per_run: 10,
    };
    let writer = janitor::writer(&sa, Some("e2e-rbac".into()));
    let summary = janitor::run_once(&sa, &writer, &janitor_config, &metrics.janitor, &|| true)
        .await
        .expect("janitor as the ServiceAccount");
    assert!(summary.done >= 1, "{summary:?}");
    assert_eq!(summary.errors, 0, "{summary:?}");
    assert_eq!(
        repos.get("failing").await.unwrap().data["spec"]["suspend"],
        true
    );
    let candidate = fluxgate::election::Candidate {
        namespace: "fluxgate".into(),
        lease: "fluxgate-janitor".into(),
        identity: "e2e-rbac".into(),
    };
    let leadership = fluxgate::election::join(sa.clone(), candidate)
        .await
        .expect("joining the election as the ServiceAccount");
    let duty = janitor::JanitorDuty {
        client: sa.clone(),
        config: JanitorConfig {
            namespaces: vec![ns.clone()],
            ..janitor_config.clone()
        },
        metrics: metrics.janitor.clone(),
        instance: "e2e-rbac".into(),
    };
    let lease_task = tokio::spawn(fluxgate::election::run_while_leading(
        "janitor",
        leadership,
        Duration::from_secs(3600),
        duty,
    ));
    let leading = eventually(Duration::from_secs(30), || {
        let text = metrics.encode();
        async move {
            text.lines()
                .any(|l| l == "fluxgate_janitor_leader 1")
                .then_some(())
        }
    })
    .await;
    assert!(
        leading.is_some(),
        "never got the Lease as the ServiceAccount"
    );
    lease_task.abort();

    // 4. NO_PROXY discovery: the kubernetes Service in default.
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(sa.clone(), "default");
    assert!(
        services
            .get("kubernetes")
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .is_some()
    );

    // What is not granted is refused.
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), "default")
            .list(&ListParams::default())
            .await
    ));
    assert!(is_forbidden(
        Api::<Secret>::all(sa.clone())
            .list(&ListParams::default())
            .await
    ));
    assert!(is_forbidden(
        Api::<Secret>::namespaced(sa.clone(), "fluxgate")
            .list(&ListParams::default())
            .await
    ));
    assert!(is_forbidden(
        e2e::gitrepositories(&sa, &ns)
            .delete("failing", &DeleteParams::default())
            .await
    ));
    assert!(is_forbidden(
        Api::<DynamicObject>::namespaced_with(
            sa.clone(),
            "default",
            &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&())
        )
        .list(&ListParams::default())
        .await
    ));

    // Every grant was exercised: compare with what the API server audited for the ServiceAccount.
    let grants = granted(&objects);
    let used = eventually(Duration::from_secs(10), || async {
        let used = audited_requests()?;
        let missing: Vec<_> = grants.iter().filter(|g| !used_covers(&used, g)).collect();
        missing.is_empty().then_some(used)
    })
    .await;
    let Some(used) = used else {
        let used =
            audited_requests().expect("the control plane writes an audit log (logs/audit.log)");
        let missing: Vec<_> = grants.iter().filter(|g| !used_covers(&used, g)).collect();
        panic!("granted but never used by fluxgate: {missing:?}\nused: {used:?}");
    };
    // And nothing fluxgate did fell outside the grants (it would have been refused above anyway).
    for request in &used {
        assert!(
            grants.iter().any(|g| g.0 == request.0
                && g.1 == request.1
                && g.2 == request.2
                && (g.3 == "*" || g.3 == request.3)),
            "allowed but not granted by deploy/: {request:?}"
        );
    }
    Api::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>::all(
        admin.clone(),
    )
    .delete("fluxgate", &DeleteParams::default())
    .await
    .unwrap();
}

/// A grant is used when a request matched it (a named grant by that name; `create` has no name
/// before the object exists, so it is audited without one).
fn used_covers(
    used: &BTreeSet<(String, String, String, String)>,
    grant: &(String, String, String, String),
) -> bool {
    used.iter().any(|u| {
        u.0 == grant.0 && u.1 == grant.1 && u.2 == grant.2 && (grant.3 == "*" || u.3 == grant.3)
    })
}
