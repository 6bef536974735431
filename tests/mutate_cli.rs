//! `fluxgate mutate` as a user runs it: the shipped example, every output format, bad input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

const NOW: &str = "2026-11-28T12:00:00Z";

fn fluxgate(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluxgate"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fluxgate runs");
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or_default()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn example_previews_as_json_with_every_change() {
    let out = fluxgate(
        &[
            "mutate",
            "-f",
            "examples/gitrepositories.yaml",
            "--now",
            NOW,
            "-o",
            "json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    for item in items {
        assert_eq!(item["spec"]["suspend"], false, "{item}");
        assert!(item["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"].is_string());
    }
    assert_eq!(items[0]["spec"]["timeout"], "5m");
    assert_eq!(items[1]["spec"]["timeout"], "5m", "60s raised to the floor");
    assert_eq!(
        items[2]["spec"]["timeout"], "10m",
        "a longer timeout is kept"
    );
    assert_eq!(items[2]["apiVersion"], "source.toolkit.fluxcd.io/v1beta2");
    assert_eq!(
        items[0]["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"],
        NOW
    );
    assert_eq!(
        items[3]["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"],
        "2026-11-01T08:00:00Z",
        "an existing request is kept"
    );
    assert_eq!(
        stderr(&out),
        "Warning: proj-1044/project-1044: spec.suspend: true was changed to false by fluxgate: \
         new GitRepositories must reconcile\n"
    );
}

#[test]
fn patch_output_is_one_json_patch_per_object() {
    let out = fluxgate(
        &[
            "mutate",
            "-f",
            "examples/gitrepositories.yaml",
            "--now",
            NOW,
            "-o",
            "patch",
        ],
        None,
    );
    assert!(out.status.success());
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[1],
        json!([
            { "op": "add", "path": "/metadata/annotations/reconcile.fluxcd.io~1requestedAt", "value": NOW },
            { "op": "replace", "path": "/spec/timeout", "value": "5m" },
            { "op": "add", "path": "/spec/suspend", "value": false }
        ])
    );
    assert_eq!(lines[3], json!([]), "a compliant object needs no patch");
}

#[test]
fn yaml_output_quotes_what_yaml_would_misread() {
    let out = fluxgate(&["mutate", "--now", NOW], Some(
        b"apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata:\n  name: a\n  labels:\n    id: \"1042\"\nspec:\n  interval: 1m\n  url: https://github.com/o/a\n",
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("reconcile.fluxcd.io/requestedAt: \"2026-11-28T12:00:00Z\""),
        "{text}"
    );
    assert!(text.contains("id: \"1042\""), "{text}");
}

#[test]
fn policy_flags_change_the_preview() {
    let out = fluxgate(
        &[
            "mutate",
            "-f",
            "examples/gitrepositories.yaml",
            "--now",
            NOW,
            "-o",
            "json",
            "--gitrepository-timeout",
            "2m30s",
            "--timeout-mode",
            "force",
            "--suspend-mode",
            "preserve",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let items = list["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["spec"]["timeout"] == "2m30s"));
    assert_eq!(
        items[2]["spec"]["suspend"], true,
        "preserve keeps an explicit true"
    );
    assert!(stderr(&out).is_empty());
}

#[test]
fn other_kinds_pass_through_untouched() {
    let input =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}}"#;
    let out = fluxgate(&["mutate", "-o", "json", "--now", NOW], Some(input));
    assert!(out.status.success());
    let value: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(value, serde_json::from_slice::<Value>(input).unwrap());
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    for (args, input, message) in [
        (
            vec!["mutate"],
            &b"kind: [\n"[..],
            "standard input: not valid YAML",
        ),
        (
            vec!["mutate"],
            &b"{\"kind\": "[..],
            "document 1 is not valid JSON",
        ),
        (vec!["mutate"], &b"- 1\n- 2\n"[..], "document 1 is a list"),
        (
            vec!["mutate", "-f", "examples/does-not-exist.yaml"],
            &b""[..],
            "reading examples/does-not-exist.yaml",
        ),
        (
            vec!["mutate", "--now", "yesterday"],
            &b""[..],
            "not an RFC 3339 time",
        ),
        (
            vec!["mutate", "--now", NOW],
            &b"apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nspec: 3\n"[..],
            "spec is a number, expected an object",
        ),
    ] {
        let out = fluxgate(&args, Some(input));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn mirror_rules_preview_the_rewrite_and_say_what_they_left() {
    let out = fluxgate(
        &[
            "mutate",
            "-f",
            "examples/gitrepositories.yaml",
            "--now",
            NOW,
            "-o",
            "json",
            "--mirror",
            "https://github.com/=https://gitee.com/acme-mirror/",
            "--mirror",
            "ssh://git@github.com/=ssh://git@gitee.com/acme-mirror/",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let items = list["items"].as_array().unwrap();
    let original = |i: usize| &items[i]["metadata"]["annotations"]["fluxgate.io/original-url"];
    assert_eq!(
        items[0]["spec"]["url"],
        "https://gitee.com/acme-mirror/example-org/project-1042"
    );
    assert_eq!(original(0), "https://github.com/example-org/project-1042");
    // ssh with a deploy key: the key is for github.com, the rule does not carry it.
    assert_eq!(
        items[1]["spec"]["url"],
        "ssh://git@github.com/example-org/project-1043"
    );
    assert!(original(1).is_null());
    // Not under any rule.
    assert_eq!(
        items[2]["spec"]["url"],
        "https://gitee.com/example-org/project-1044.git"
    );
    assert!(original(2).is_null());
    assert_eq!(
        items[3]["spec"]["url"],
        "https://gitee.com/acme-mirror/example-org/project-1045"
    );
    let err = stderr(&out);
    assert!(
        err.contains(
            "Warning: proj-1042/project-1042: spec.url rewritten to the mirror \
             https://gitee.com/acme-mirror/example-org/project-1042 (rule https://github.com/); \
             the original is in fluxgate.io/original-url\n"
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "Warning: proj-1043/project-1043: spec.url left on its host although the mirror rule \
             ssh://git@github.com/ matches: spec.secretRef"
        ),
        "{err}"
    );
}

#[test]
fn bad_mirror_rules_stop_mutate_with_the_reason() {
    for (rules, says) in [
        (
            vec!["https://=https://gitee.com/m/"],
            "has no host: it would match every https URL",
        ),
        (vec!["github.com=gitee.com"], "is not a URL"),
        (
            vec![
                "https://github.com/=https://gitee.com/m/",
                "https://github.com/acme/=https://gitea.internal/acme/",
            ],
            "overlaps",
        ),
    ] {
        let mut args = vec!["mutate", "--now", NOW];
        for rule in &rules {
            args.extend(["--mirror", rule]);
        }
        let out = fluxgate(&args, Some(b""));
        assert!(!out.status.success(), "{rules:?}");
        assert!(stderr(&out).contains(says), "{rules:?}: {}", stderr(&out));
    }
}

/// GitRepositories for the lane tests: one per case, named after it.
const LANE_CASES: &str = r#"
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: { name: https-port-case, namespace: team-a }
spec: { url: "https://GitHub.com:443/example-org/app", interval: 1m }
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: { name: ssh-user, namespace: team-a, labels: { team: a } }
spec: { url: "ssh://git@github.com./example-org/app.git", interval: 1m }
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: own-shard
  namespace: team-a
  labels: { sharding.fluxcd.io/key: mine }
spec: { url: "https://github.com/example-org/app", interval: 1m }
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: opted-out
  namespace: team-a
  annotations: { fluxgate.io/lane: "false" }
spec: { url: "https://github.com/example-org/app", interval: 1m }
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: { name: other-host, namespace: team-a }
spec: { url: "https://gitlab.com/example-org/app", interval: 1m }
"#;

#[test]
fn lane_rules_preview_the_shard_label_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gitrepositories.yaml");
    std::fs::write(&path, LANE_CASES).unwrap();
    let path = path.to_str().unwrap();
    let lanes = ["--lane", "github.com=far", "--lane", "gitee.com=mirrored"];

    let mut args = vec!["mutate", "-f", path, "--now", NOW, "-o", "json"];
    args.extend(lanes);
    let out = fluxgate(&args, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let shards: Vec<(String, Value)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let name = item["metadata"]["name"].as_str().unwrap().to_owned();
            (
                name,
                item["metadata"]["labels"]["sharding.fluxcd.io/key"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shards,
        [
            ("https-port-case".to_owned(), json!("far")),
            ("ssh-user".to_owned(), json!("far")),
            ("own-shard".to_owned(), json!("mine")),
            ("opted-out".to_owned(), Value::Null),
            ("other-host".to_owned(), Value::Null),
        ]
    );
    assert!(stderr(&out).is_empty(), "no warnings: {}", stderr(&out));

    // The patches themselves: the whole map where there is none, one escaped key otherwise.
    let mut args = vec!["mutate", "-f", path, "--now", NOW, "-o", "patch"];
    args.extend(lanes);
    let out = fluxgate(&args, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let patches: Vec<Value> = stdout(&out)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(patches.len(), 5);
    let label_ops = |patch: &Value| -> Vec<Value> {
        patch
            .as_array()
            .unwrap()
            .iter()
            .filter(|op| op["path"].as_str().unwrap().starts_with("/metadata/labels"))
            .cloned()
            .collect()
    };
    assert_eq!(
        label_ops(&patches[0]),
        [json!({ "op": "add", "path": "/metadata/labels",
                 "value": { "sharding.fluxcd.io/key": "far" } })]
    );
    assert_eq!(
        label_ops(&patches[1]),
        [
            json!({ "op": "add", "path": "/metadata/labels/sharding.fluxcd.io~1key",
                 "value": "far" })
        ]
    );
    for patch in &patches[2..] {
        assert!(label_ops(patch).is_empty(), "{patch}");
    }

    // After a mirror rule: judged on the mirror's host.
    let mut args = vec!["mutate", "-f", path, "--now", NOW, "-o", "json"];
    args.extend(lanes);
    args.extend([
        "--mirror",
        "https://github.com/=https://gitee.com/acme-mirror/",
    ]);
    let out = fluxgate(&args, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let first = &list["items"][0];
    assert_eq!(
        first["spec"]["url"],
        "https://gitee.com/acme-mirror/example-org/app"
    );
    assert_eq!(
        first["metadata"]["labels"]["sharding.fluxcd.io/key"],
        "mirrored"
    );
    // ssh is not under the https rule: still github.com's lane.
    assert_eq!(
        list["items"][1]["metadata"]["labels"]["sharding.fluxcd.io/key"],
        "far"
    );
}

#[test]
fn bad_lane_rules_stop_mutate_with_the_reason() {
    for (rules, says) in [
        (vec!["github.com"], "expected HOST=SHARD"),
        (vec!["=far"], "must both be given"),
        (vec!["https://github.com/=far"], "is a URL"),
        (vec!["github.com=-far"], "not a valid label value"),
        (
            vec!["github.com=far", "GitHub.com=near"],
            "already in the lane far",
        ),
    ] {
        let mut args = vec!["mutate", "--now", NOW];
        for rule in &rules {
            args.extend(["--lane", rule]);
        }
        let out = fluxgate(&args, Some(b""));
        assert!(!out.status.success(), "{rules:?}");
        let err = stderr(&out);
        assert!(err.contains(says), "{rules:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
