//! `fluxgate report` as a user runs it, on the shipped incident snapshot and on bad input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

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
    pipe.write_all(stdin).unwrap();
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

#[test]
fn the_incident_snapshot_in_json() {
    let out = fluxgate(&[&EXAMPLE[..], &["-o", "json"]].concat(), b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (field, expected) in [
        ("total", 130),
        ("failed", 113),
        ("unobserved", 45),
        ("pending", 5),
        ("suspended", 3),
        ("ready", 9),
        ("progressing", 0),
    ] {
        assert_eq!(report[field], expected, "{field}");
    }
    assert_eq!(report["failed_by_host_reason"][0]["host"], "github.com");
    assert_eq!(report["failed_by_host_reason"][0]["reason"], "timeout");
    assert_eq!(report["failed_by_host_reason"][0]["count"], 100);
    assert_eq!(report["longest_failing"].as_array().unwrap().len(), 10);
    assert_eq!(report["pending_repositories"].as_array().unwrap().len(), 5);
    let candidates = report["janitor_candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 102);
    assert_eq!(
        candidates
            .iter()
            .filter(|c| c["rule"] == "stale_test")
            .count(),
        1
    );
}

#[test]
fn the_incident_snapshot_as_a_table() {
    let out = fluxgate(&EXAMPLE, b"");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(
            "GitRepositories: 130 total, 113 failed (87%), 9 ready, 5 pending, 3 suspended, 0 progressing\n\
             Unobserved (observedGeneration missing, -1 or behind): 45\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  github.com        timeout    100\n"),
        "{text}"
    );
    assert!(
        text.contains("  git.corp.example  dns        4\n"),
        "{text}"
    );
    assert!(text.contains("Janitor candidates (default rules: failing > 24h, test/demo/tmp names without a new artifact for 7d): 102\n"), "{text}");
    assert!(
        text.contains("  ... and 82 more (-o json lists them all)\n"),
        "{text}"
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    for (input, message) in [
        (&b"{\"kind\": \"List\", \"items\": [ "[..], "not valid JSON"),
        (
            &b"{\"kind\": \"Kustomization\", \"metadata\": {\"name\": \"x\"}}"[..],
            "item 1 (Kustomization) is not a GitRepository",
        ),
        (&b"[1]"[..], "document 1 is a list"),
    ] {
        let out = fluxgate(&["report"], input);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(message), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let empty = fluxgate(&["report", "-o", "json"], b"");
    assert!(empty.status.success(), "an empty input is an empty cluster");
    let report: Value = serde_json::from_slice(&empty.stdout).unwrap();
    assert_eq!(report["total"], 0);
}
