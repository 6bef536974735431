//! `fluxgate admission-policy` as a user runs it: the committed default in deploy/, the flags
//! shared with `serve`, and clear errors for bad input.

use std::process::{Command, Output};

use serde_json::Value;

fn fluxgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fluxgate"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .envs(env.iter().copied());
    command.output().expect("fluxgate runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    fluxgate::manifests::parse_documents(yaml).expect("YAML documents")
}

#[test]
fn the_committed_default_is_the_renderers_default() {
    let out = fluxgate(&["admission-policy"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let committed =
        std::fs::read_to_string("deploy/native-admission/mutatingadmissionpolicy.yaml").unwrap();
    assert_eq!(
        documents(&committed),
        documents(&stdout(&out)),
        "deploy/native-admission/mutatingadmissionpolicy.yaml is out of date: re-render it \
         (its header says how)"
    );
}

#[test]
fn flags_and_environment_are_those_of_serve() {
    let by_flags = fluxgate(
        &[
            "admission-policy",
            "--gitrepository-timeout",
            "10m",
            "--timeout-mode",
            "force",
            "--https-proxy",
            "secret:git-proxy/url",
            "--kubernetes-service-ip",
            "10.96.0.1",
            "-o",
            "json",
        ],
        &[],
    );
    let by_env = fluxgate(
        &["admission-policy", "-o", "json"],
        &[
            ("FLUXGATE_GITREPOSITORY_TIMEOUT", "10m"),
            ("FLUXGATE_TIMEOUT_MODE", "force"),
            ("FLUXGATE_HTTPS_PROXY", "secret:git-proxy/url"),
            ("FLUXGATE_KUBERNETES_SERVICE_IP", "10.96.0.1"),
        ],
    );
    assert!(by_flags.status.success(), "{}", stderr(&by_flags));
    assert_eq!(stdout(&by_flags), stdout(&by_env));
    let list: Value = serde_json::from_str(&stdout(&by_flags)).unwrap();
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "fluxgate-gitrepositories",
            "fluxgate-gitrepositories",
            "fluxgate-source-controller-proxy",
            "fluxgate-source-controller-proxy"
        ]
    );
    let text = stdout(&by_flags);
    assert!(text.contains("variables.timeoutMillis == 600000"), "{text}");
    assert!(text.contains("'secretKeyRef'"), "{text}");
}

#[test]
fn bad_input_is_a_clear_error() {
    for (args, expected) in [
        (
            vec!["admission-policy", "--gitrepository-timeout", "1h"],
            "expected numbers with units ms, s or m",
        ),
        (
            vec!["admission-policy", "--gitrepository-timeout", "200000000m"],
            "too large",
        ),
        (
            vec![
                "admission-policy",
                "--https-proxy",
                "proxy.internal:3128",
                "--kubernetes-service-ip",
                "10.96.0.1",
            ],
            "--https-proxy \"proxy.internal:3128\" is not a proxy URL",
        ),
        (
            vec![
                "admission-policy",
                "--https-proxy",
                "http://user:hunter2@proxy:port",
                "--kubernetes-service-ip",
                "10.96.0.1",
            ],
            "the port is not a number",
        ),
        (
            vec!["admission-policy", "--https-proxy", "http://proxy:3128"],
            "a proxy needs --kubernetes-service-ip",
        ),
        (
            vec![
                "admission-policy",
                "--http-proxy",
                "http://proxy:3128",
                "--kubernetes-service-ip",
                "kubernetes",
            ],
            "--kubernetes-service-ip \"kubernetes\" is not an IP address",
        ),
    ] {
        let out = fluxgate(&args, &[]);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stdout(&out).is_empty(), "{args:?} printed manifests");
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(
            !err.contains("hunter2"),
            "{args:?} printed a credential: {err}"
        );
    }
}

#[test]
fn a_literal_proxy_with_credentials_renders_with_a_warning() {
    let out = fluxgate(
        &[
            "admission-policy",
            "--https-proxy",
            "http://user:hunter2@proxy:3128",
            "--kubernetes-service-ip",
            "10.96.0.1",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("Warning: --https-proxy carries credentials"));
    assert!(!stderr(&out).contains("hunter2"));
    assert_eq!(documents(&stdout(&out)).len(), 4);
}

/// Mirror rules exist only in the webhook: the native policy refuses them rather than doing
/// less than the webhook it would replace.
#[test]
fn mirror_rules_are_refused_rather_than_silently_left_out() {
    let out = fluxgate(
        &[
            "admission-policy",
            "--mirror",
            "https://github.com/=https://gitee.com/acme-mirror/",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("--mirror rules are applied by the webhook only"),
        "{}",
        stderr(&out)
    );
}

/// Lanes exist only in the webhook too, and the refusal says why.
#[test]
fn lane_rules_are_refused_with_the_reason() {
    let out = fluxgate(&["admission-policy", "--lane", "github.com=far"], &[]);
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--lane is applied by the webhook only") && err.contains("scp-like"),
        "{err}"
    );
    // Without --lane the same command renders.
    let out = fluxgate(&["admission-policy"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}
