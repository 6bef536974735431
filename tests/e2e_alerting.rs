//! The whole notification path on real parts: fluxgate's exporter watching the real control plane,
//! Debian's Prometheus scraping it with the shipped rules, Debian's Alertmanager with the shipped
//! example route, and a local webhook receiver. 50 failing GitRepositories do not alert, 51 do,
//! and the alert resolves when they recover.
//!
//! Only the rules' `for:` durations and Alertmanager's grouping waits are shortened (in temporary
//! copies) so the test takes seconds, not minutes; the expressions, labels, annotations and routes
//! are the shipped ones. `promtool test rules` covers the `for:` timing itself.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use fluxgate::exporter::{Exporter, ExporterConfig};
use fluxgate::metrics::Metrics;
use fluxgate::server::{self, ConnectionLimits, ops};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::e2e::{self, eventually};

/// A child process killed when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary(candidates: &[&'static str]) -> Option<&'static str> {
    candidates.iter().copied().find(|p| Path::new(p).exists())
}

async fn http_get_json(url: &str) -> Option<Value> {
    let url = url.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sf", "--max-time", "5", &url])
            .output()
    })
    .await
    .ok()?
    .ok()?;
    serde_json::from_slice(&output.stdout).ok()
}

fn failing_status() -> Value {
    let since = fluxgate::policy::rfc3339_seconds(
        time::OffsetDateTime::now_utc() - time::Duration::hours(2),
    );
    json!({ "observedGeneration": -1, "conditions": [
        { "type": "Ready", "status": "False", "reason": "GitOperationFailed",
          "message": "unable to clone 'https://github.com/example/x': context deadline exceeded",
          "lastTransitionTime": since, "observedGeneration": 1 }
    ] })
}

fn ready_status() -> Value {
    let now = fluxgate::policy::rfc3339_seconds(time::OffsetDateTime::now_utc());
    json!({ "observedGeneration": 1, "conditions": [
        { "type": "Ready", "status": "True", "reason": "Succeeded", "message": "stored artifact",
          "lastTransitionTime": now, "observedGeneration": 1 }
    ] })
}

async fn set_status(api: &kube::Api<kube::api::DynamicObject>, name: &str, status: Value) {
    let patch: json_patch::Patch =
        serde_json::from_value(json!([{ "op": "add", "path": "/status", "value": status }]))
            .unwrap();
    api.patch_status(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
        .unwrap();
}

/// Notifications received from Alertmanager: (alertname, status).
fn received(log: &Mutex<Vec<Value>>) -> Vec<(String, String, String)> {
    log.lock()
        .unwrap()
        .iter()
        .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                a["status"].as_str().unwrap_or("").to_owned(),
                a["annotations"]["summary"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
#[ignore = "end-to-end: needs the control plane, run by tests/e2e/run.sh"]
async fn fifty_one_failures_reach_the_receiver_and_resolve() {
    let Some(client) = e2e::client().await else {
        return;
    };
    let (Some(prometheus), Some(alertmanager)) = (
        binary(&["/usr/bin/prometheus"]),
        binary(&["/usr/bin/prometheus-alertmanager", "/usr/bin/alertmanager"]),
    ) else {
        panic!(
            "Prometheus and Alertmanager from Debian's packages are needed (apt-get install prometheus prometheus-alertmanager)"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));

    // 50 failing GitRepositories in a namespace of the test's own.
    let ns = e2e::namespace(&client, "e2e-alerting").await;
    let api = e2e::gitrepositories(&client, &ns);
    for i in 0..51 {
        let name = format!("project-{i:03}");
        api.create(
            &PostParams::default(),
            &e2e::gitrepository(&name, json!({})),
        )
        .await
        .unwrap();
        if i < 50 {
            set_status(&api, &name, failing_status()).await;
        }
    }

    // fluxgate's exporter and its metrics endpoint.
    let mut metrics = Metrics::new();
    let exporter = Exporter::new(
        &mut metrics,
        ExporterConfig {
            namespaces: vec![ns.clone()],
            ..ExporterConfig::default()
        },
    );
    let readiness = ops::Readiness::new(false);
    readiness.set_exporter(exporter.status());
    let exporter_task = tokio::spawn(exporter.run(client.clone()));
    let metrics_server = server::spawn_plain(
        "127.0.0.1:0".parse().unwrap(),
        ops::router(Arc::new(metrics), readiness),
        ConnectionLimits::default(),
    )
    .await
    .unwrap();

    // The webhook receiver Alertmanager delivers to.
    let notifications: Arc<Mutex<Vec<Value>>> = Arc::default();
    let receiver = axum::Router::new().route(
        "/alerts",
        post({
            let notifications = notifications.clone();
            move |Json(body): Json<Value>| {
                let notifications = notifications.clone();
                async move {
                    notifications.lock().unwrap().push(body);
                    "ok"
                }
            }
        }),
    );
    let receiver_server = server::spawn_plain(
        "127.0.0.1:0".parse().unwrap(),
        receiver,
        ConnectionLimits::default(),
    )
    .await
    .unwrap();

    // Alertmanager with the shipped example, pointed at the receiver, grouping waits shortened.
    let am_config = std::fs::read_to_string(repo.join("alerts/alertmanager-example.yaml"))
        .unwrap()
        .replace(
            "http://127.0.0.1:9095/alerts",
            &format!("http://{}/alerts", receiver_server.addr),
        )
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_interval: 5m", "group_interval: 1s");
    std::fs::write(dir.path().join("alertmanager.yml"), am_config).unwrap();
    let am_port = free_port();
    let _alertmanager = Process(
        Command::new(alertmanager)
            .arg(format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            // No gossip listener: nothing but loopback HTTP.
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("alertmanager.log")).unwrap())
            .spawn()
            .expect("alertmanager starts"),
    );

    // Prometheus with the shipped rules (only `for:` shortened), scraping fluxgate as job="fluxgate".
    let rules = std::fs::read_to_string(repo.join("alerts/fluxgate-rules.yaml")).unwrap();
    let rules: String = rules
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 3s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files: [{rules}]\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n\
         scrape_configs:\n  - job_name: fluxgate\n    static_configs:\n      - targets: ['{target}']\n",
        rules = dir.path().join("rules.yaml").display(),
        target = metrics_server.addr,
    );
    std::fs::write(dir.path().join("prometheus.yml"), prom_config).unwrap();
    let prom_port = free_port();
    let _prometheus = Process(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts"),
    );
    let prom: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let logs = || {
        format!(
            "prometheus.log:\n{}\nalertmanager.log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default(),
            std::fs::read_to_string(dir.path().join("alertmanager.log")).unwrap_or_default()
        )
    };

    // Prometheus sees 50 failures through the rule's own expression...
    let query = format!(
        "http://{prom}/api/v1/query?query=sum(max%20by%20(namespace,host,reason)(fluxgate_gitrepositories_failed))"
    );
    let value_is = |want: &'static str| {
        let query = query.clone();
        async move {
            let body = http_get_json(&query).await?;
            (body["data"]["result"][0]["value"][1] == want).then_some(())
        }
    };
    assert!(
        eventually(Duration::from_secs(90), || value_is("50"))
            .await
            .is_some(),
        "Prometheus never saw 50 failures\n{}",
        logs()
    );
    // ...and with 50 the alert is not even pending, well past its (shortened) `for:`.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let alerts = http_get_json(&format!("http://{prom}/api/v1/alerts"))
        .await
        .unwrap();
    let active: Vec<&str> = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    assert!(
        !active.contains(&"FluxGitRepositoriesFailing"),
        "{active:?}"
    );
    assert!(
        !received(&notifications)
            .iter()
            .any(|(name, _, _)| name == "FluxGitRepositoriesFailing"),
        "{:?}",
        received(&notifications)
    );

    // The 51st failure: the alert fires and Alertmanager delivers it to the receiver.
    set_status(&api, "project-050", failing_status()).await;
    let fired = eventually(Duration::from_secs(90), || {
        let got = received(&notifications);
        async move {
            got.into_iter().find(|(name, status, _)| {
                name == "FluxGitRepositoriesFailing" && status == "firing"
            })
        }
    })
    .await;
    let (_, _, summary) = fired.unwrap_or_else(|| {
        panic!(
            "no firing notification: {:?}\n{}",
            received(&notifications),
            logs()
        )
    });
    assert_eq!(summary, "51 GitRepositories are failing (more than 50)");

    // Two recover: back to 49, the alert resolves and the receiver hears it.
    set_status(&api, "project-000", ready_status()).await;
    set_status(&api, "project-001", ready_status()).await;
    let resolved = eventually(Duration::from_secs(90), || {
        let got = received(&notifications);
        async move {
            got.into_iter().find(|(name, status, _)| {
                name == "FluxGitRepositoriesFailing" && status == "resolved"
            })
        }
    })
    .await;
    assert!(
        resolved.is_some(),
        "no resolved notification: {:?}\n{}",
        received(&notifications),
        logs()
    );

    exporter_task.abort();
    metrics_server
        .shutdown(Duration::from_secs(1))
        .await
        .unwrap();
    receiver_server
        .shutdown(Duration::from_secs(1))
        .await
        .unwrap();
}
