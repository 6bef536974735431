//! `fluxgate report` as a user runs it, on the shipped incident snapshot and on bad input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn fluxgate(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluxgate"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // The process may exit before reading everything; that is not what these tests check.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    child.wait_with_output().unwrap()
}

const EXAMPLE: [&str; 5] = [
    "report",
    "-f",
    "examples/gitrepositories-incident.json",
    "--now",
    "2026-11-28T12:00:00Z",
];

fn example_json() -> Value {
    let out = fluxgate(&[&EXAMPLE[..], &["-o", "json"]].concat(), b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `report` judges by the janitor flags it is given, the same flags as `serve` and `cleanup`.
#[test]
fn the_janitor_candidates_follow_the_configured_rules() {
    let with = |extra: &[&str]| {
        let out = fluxgate(&[&EXAMPLE[..], &["-o", "json"], extra].concat(), b"");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let count = |report: &Value, rule: &str| {
        report["janitor_candidates"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["rule"] == rule)
            .count()
    };
    let defaults = with(&[]);
    let shorter = with(&["--failing-for", "6h", "--stale-test-for", "off"]);
    assert!(
        count(&shorter, "failing") > count(&defaults, "failing"),
        "a 6h threshold must match more than 24h"
    );
    assert_eq!(count(&shorter, "stale_test"), 0);
    assert_eq!(
        shorter["janitor_rules"],
        "rules: failing > 6h (suspend), stale test rule off; never in flux-system"
    );
    let deleting = with(&["--failing-action", "delete"]);
    assert!(
        deleting["janitor_candidates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["rule"] == "failing" && c["action"] == "delete")
    );
}

#[test]
fn the_incident_snapshot_in_json() {
    let report = example_json();
    for (field, expected) in [
        ("total", 130),
        ("failed", 113),
        ("unobserved", 46),
        ("pending", 5),
        ("suspended", 3),
        ("ready", 8),
        ("progressing", 1),
    ] {
        assert_eq!(report[field], expected, "{field}");
    }
    assert_eq!(report["now"], "2026-11-28T12:00:00Z");
    assert_eq!(
        report["failed_by_host_reason"],
        json!([
            { "host": "github.com", "reason": "timeout", "count": 96 },
            { "host": "ssh://github.com", "reason": "auth", "count": 5 },
            { "host": "ssh://github.com", "reason": "not_found", "count": 5 },
            { "host": "git.corp.example", "reason": "dns", "count": 4 },
            { "host": "gitlab.internal.example", "reason": "tls", "count": 3 },
        ])
    );
    assert_eq!(
        report["failed_by_namespace"][0],
        json!({ "namespace": "proj-checkout", "count": 7 })
    );
    assert_eq!(report["namespaces"].as_object().unwrap().len(), 31);
    assert_eq!(
        report["namespaces"]["proj-webshop"],
        json!({ "total": 8, "ready": 0, "failed": 7, "pending": 1, "suspended": 0, "quarantined": 0, "progressing": 0,
                "unobserved": 4, "oldest_pending": "2026-11-28T10:29:00Z" })
    );
    // The per-namespace numbers add up to the totals.
    let namespaces = report["namespaces"].as_object().unwrap();
    for field in [
        "total",
        "ready",
        "failed",
        "pending",
        "suspended",
        "progressing",
        "unobserved",
    ] {
        let sum: u64 = namespaces
            .values()
            .map(|n| n[field].as_u64().unwrap())
            .sum();
        assert_eq!(json!(sum), report[field], "{field}");
    }
    let series: u64 = report["failed_by_namespace_host_reason"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .sum();
    assert_eq!(series, 113);

    let longest = report["longest_failing"].as_array().unwrap();
    assert_eq!(longest.len(), 10);
    assert_eq!(
        longest[0],
        json!({ "namespace": "proj-vault", "name": "vault-worker", "host": "github.com",
                "reason": "timeout", "ready_reason": "GitOperationFailed",
                "since": "2026-10-28T18:07:28Z", "failing_seconds": 2656352, "age_seconds": 2656500 })
    );
    assert_eq!(report["pending_repositories"].as_array().unwrap().len(), 5);
    let candidates = report["janitor_candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 96);
    let stale: Vec<&str> = candidates
        .iter()
        .filter(|c| c["rule"] == "stale_test")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(stale, ["test-dataplane", "tmp-edge", "demo-onboarding"]);
    assert!(
        candidates.iter().all(|c| c["namespace"] != "flux-system"),
        "flux-system is excluded"
    );
}

#[test]
fn the_incident_snapshot_as_a_table() {
    let out = fluxgate(&EXAMPLE, b"");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(
            "GitRepositories: 130 total, 113 failed (87%), 8 ready, 5 pending, 3 suspended, 1 progressing\n\
             Unobserved (observedGeneration missing, -1 or behind): 46\n\
             As of 2026-11-28T12:00:00Z\n"
        ),
        "{text}"
    );
    for line in [
        "  HOST                     REASON     COUNT\n",
        "  github.com               timeout    96\n",
        "  git.corp.example         dns        4\n",
        "  gitlab.internal.example  tls        3\n",
        "  NAMESPACE      FAILED  TOTAL  UNOBSERVED  PENDING\n",
        "  proj-webshop   7       8      4           1\n",
        "  ... and 19 more namespaces with 56 failed\n",
        "  proj-vault/vault-worker           github.com               timeout    30d          30d  2026-10-28T18:07:28Z\n",
        "  proj-docs/docs-app               18m      2026-11-28T11:42:00Z\n",
        "Janitor candidates (rules: failing > 24h (suspend), test/demo/tmp names without a new artifact for 7d (suspend); never in flux-system): 96 (93 failing, 3 stale_test)\n",
        "  ... and 76 more (-o json lists them all)\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        !text.contains('\x1b'),
        "no colours or other escape sequences"
    );
    assert!(
        text.lines().all(|l| l == l.trim_end()),
        "no trailing blanks"
    );
}

#[test]
fn stdin_and_file_give_the_same_report() {
    let file = fluxgate(&[&EXAMPLE[..], &["-o", "json"]].concat(), b"");
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/gitrepositories-incident.json"),
    )
    .unwrap();
    let stdin = fluxgate(
        &[
            "report",
            "-f",
            "-",
            "--now",
            "2026-11-28T12:00:00Z",
            "-o",
            "json",
        ],
        &bytes,
    );
    assert!(stdin.status.success());
    assert_eq!(file.stdout, stdin.stdout);
}

#[test]
fn bad_input_is_a_clear_error() {
    for (input, message) in [
        (&b"{\"kind\": \"List\", \"items\": [ "[..], "not valid JSON"),
        (
            &b"{\"kind\": \"List\", \"items\": [{\"a\": 1}"[..],
            "not valid JSON",
        ),
        (
            &b"{\"kind\": \"Kustomization\", \"metadata\": {\"name\": \"x\"}}"[..],
            "item 1 (Kustomization) is not a GitRepository",
        ),
        (
            &b"{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [{\"kind\": \"Secret\"}]}"[..],
            "item 1 (Secret) is not a GitRepository",
        ),
        (
            &b"{\"foo\": 1}"[..],
            "item 1 (no kind, and no metadata.name and spec) is not a GitRepository",
        ),
        (&b"[1]"[..], "document 1 is a list"),
        (&b"\"GitRepository\""[..], "document 1 is a string"),
        (&b""[..], "standard input is empty"),
        (&b"  \n\n"[..], "standard input is empty"),
        (&b"\xff\xfe{}"[..], "not UTF-8"),
    ] {
        let out = fluxgate(&["report", "-o", "json"], input);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{input:?}: {err}");
        assert!(out.stdout.is_empty(), "no partial report");
        assert!(err.contains(message), "{input:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let missing = fluxgate(&["report", "-f", "/nonexistent/gitrepositories.json"], b"");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/gitrepositories.json"));
    let bad_now = fluxgate(&["report", "--now", "yesterday"], b"{}");
    assert_ne!(bad_now.status.code(), Some(0));
}

#[test]
fn an_empty_list_is_an_empty_cluster() {
    let out = fluxgate(
        &["report", "-o", "json"],
        br#"{"apiVersion": "v1", "items": [], "kind": "List", "metadata": {"resourceVersion": ""}}"#,
    );
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["total"].clone(), report["failed"].clone()),
        (json!(0), json!(0))
    );
}
