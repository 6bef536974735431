//! A host answering 429, 502 or 503 shows as the failure class `throttled` in `fluxgate report`
//! and in `fluxgate_gitrepositories_failed`, and does not trip the host's breaker where the same
//! number of hanging clones would.

use std::io::Write;
use std::process::{Command, Stdio};

use fluxgate::exporter::{Exporter, ExporterConfig};
use fluxgate::health::classify;
use fluxgate::metrics::Metrics;
use serde_json::{Value, json};

const NOW: &str = "2026-11-28T12:00:00Z";

fn throttled(status: u16) -> String {
    format!(
        "failed to checkout and determine revision: unable to clone 'https://github.com/o/app': \
         unexpected client error: unexpected requesting \
         \"https://github.com/o/app/info/refs?service=git-upload-pack\" status code: {status}"
    )
}

const HANGING: &str = "failed to checkout and determine revision: unable to clone \
    'https://github.com/o/app': dial tcp 140.82.112.3:443: i/o timeout";

/// Five failing GitRepositories on github.com, with the given Ready messages in turn.
fn repositories(messages: &[&str]) -> Vec<Value> {
    (0..5)
        .map(|i| {
            json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": { "name": format!("app-{i}"), "namespace": "proj", "uid": format!("u{i}"),
                              "generation": 1, "creationTimestamp": "2026-11-28T09:00:00Z" },
                "spec": { "url": format!("https://github.com/o/app-{i}"), "interval": "1m", "timeout": "60s" },
                "status": { "observedGeneration": -1, "conditions": [{
                    "type": "Ready", "status": "False", "reason": "GitOperationFailed",
                    "message": messages[i % messages.len()],
                    "lastTransitionTime": "2026-11-28T10:00:00Z" }] }
            })
        })
        .collect()
}

fn report(items: Vec<Value>) -> Value {
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": items });
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluxgate"))
        .args(["report", "--now", NOW, "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(list.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn report_counts_throttling_and_does_not_trip_the_breaker_on_it() {
    let (m429, m502, m503) = (throttled(429), throttled(502), throttled(503));
    let throttled_report = report(repositories(&[&m429, &m502, &m503]));
    assert_eq!(
        throttled_report["failed_by_host_reason"],
        json!([{ "host": "github.com", "reason": "throttled", "count": 5 }])
    );
    assert_eq!(throttled_report["breaker_hosts"], json!([]));

    // The same five hanging instead: transport failures, and the breaker would trip.
    let hanging_report = report(repositories(&[HANGING]));
    assert_eq!(
        hanging_report["failed_by_host_reason"],
        json!([{ "host": "github.com", "reason": "timeout", "count": 5 }])
    );
    let hosts = hanging_report["breaker_hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["host"], "github.com");
}

#[test]
fn the_exporter_labels_throttling() {
    let mut metrics = Metrics::new();
    let exporter = Exporter::new(&mut metrics, ExporterConfig::default());
    let store = exporter.store();
    store.relist_start(0);
    let (m429, m500) = (throttled(429), throttled(500));
    for object in repositories(&[&m429, &m429, &m500]) {
        store.relist_apply(0, &classify(&object).unwrap());
    }
    store.relist_done(0, true, 0);
    let text = metrics.encode();
    for series in [
        "fluxgate_gitrepositories_failed{namespace=\"proj\",host=\"github.com\",reason=\"throttled\"} 4",
        "fluxgate_gitrepositories_failed{namespace=\"proj\",host=\"github.com\",reason=\"other\"} 1",
    ] {
        assert!(
            text.lines().any(|line| line == series),
            "{series} missing from:\n{text}"
        );
    }
}
