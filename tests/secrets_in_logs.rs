//! No secret reaches fluxgate's logs: a real `fluxgate serve` run with proxy credentials on its
//! command line and in its environment, at debug level, handling the requests that touch them;
//! then its whole log is searched for the secrets.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{TlsClient, install_crypto};

const PROXY_PASSWORD: &str = "S3cretProxyPass-7f3a";
const ENV_PASSWORD: &str = "EnvOnlyPass-91c2";

#[tokio::test]
async fn proxy_credentials_and_keys_never_reach_the_logs() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let bundle =
        fluxgate::certs::generate(&support::loopback_names(), time::OffsetDateTime::now_utc())
            .unwrap();
    fluxgate::certs::write_dir(dir.path(), &bundle).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluxgate"))
        .args([
            "serve",
            "--no-exporter",
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ])
        .args([
            "--webhook-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .arg(format!(
            "--https-proxy=http://proxyuser:{PROXY_PASSWORD}@proxy.internal:3128"
        ))
        .args(["--shutdown-delay", "0s", "--drain-timeout", "2s"])
        .arg("--tls-cert-file")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.path().join("tls.key"))
        .env(
            "FLUXGATE_HTTP_PROXY",
            format!("http://envuser:{ENV_PASSWORD}@proxy.internal:3128"),
        )
        .env("KUBERNETES_SERVICE_HOST", "10.0.0.1")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Read the log as it comes; the webhook's address is in it.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let mut addr = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while addr.is_none() && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains("webhook serving HTTPS") {
                let value: serde_json::Value = serde_json::from_str(&line).unwrap();
                addr = value["fields"]["addr"].as_str().map(|a| a.parse().unwrap());
            }
            log.push(line);
        }
    }
    let addr: std::net::SocketAddr =
        addr.unwrap_or_else(|| panic!("no address in the log:\n{}", log.join("\n")));

    // A source-controller Pod (its patch carries the credentials), and a broken request.
    let client = TlsClient::trusting(&bundle.ca_cert_pem);
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "pod-1", "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "namespace": "flux-system", "operation": "CREATE",
            "object": { "metadata": { "labels": { "app": "source-controller" } },
                        "spec": { "containers": [{ "name": "manager" }] } }
        }
    });
    let reply = client
        .post_json(addr, "/mutate", serde_json::to_vec(&review).unwrap())
        .await;
    assert_eq!(reply.status, 200);
    let patch = support::decode_patch(&reply.json()).to_string();
    assert!(
        patch.contains(PROXY_PASSWORD),
        "the injected value itself carries the URL"
    );
    let broken = client
        .post_json(
            addr,
            "/mutate",
            format!("{{\"password\": \"{PROXY_PASSWORD}\"").into_bytes(),
        )
        .await;
    assert_eq!(broken.status, 400);

    // Stop it and collect the rest of the log.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    reader.join().unwrap();
    log.extend(rx.try_iter());
    let log = log.join("\n");

    assert!(
        log.contains("proxy injection enabled"),
        "the proxy configuration is logged:\n{log}"
    );
    assert!(
        log.contains("http://***@proxy.internal:3128"),
        "with credentials redacted:\n{log}"
    );
    assert!(
        log.contains("\"message\":\"patched\""),
        "at debug level, requests are logged:\n{log}"
    );
    for secret in [PROXY_PASSWORD, ENV_PASSWORD, "proxyuser:", "envuser:"] {
        assert!(
            !log.contains(secret),
            "{secret:?} leaked into the log:\n{log}"
        );
    }
    let key_body: Vec<&str> = bundle
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for line in key_body {
        assert!(!log.contains(line), "private key material in the log");
    }

    // `--help` shows the variables' names, never their values.
    let help = Command::new(env!("CARGO_BIN_EXE_fluxgate"))
        .args(["serve", "--help"])
        .env(
            "FLUXGATE_HTTPS_PROXY",
            format!("http://u:{ENV_PASSWORD}@p:1"),
        )
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("FLUXGATE_HTTPS_PROXY"));
    assert!(!help.contains(ENV_PASSWORD), "{help}");
}
