//! The webhook over real TLS on loopback, spoken to the way kube-apiserver speaks to it.

mod support;

use std::time::Duration;

use bytes::Bytes;
use fluxgate::certs::{self, ServingNames};
use fluxgate::policy::Policy;
use fluxgate::server::{self, ops, webhook::WebhookLimits};
use http_body_util::Full;
use serde_json::{Value, json};
use support::*;

fn review_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

#[tokio::test]
async fn create_is_patched_over_http1_and_http2() {
    let hook = TestWebhook::start(Policy::default(), WebhookLimits::default()).await;
    let client = hook.client();
    for (i, protocol) in [Protocol::Http1, Protocol::Http2].into_iter().enumerate() {
        let uid = format!("e1f3a2d4-0000-4000-8000-00000000000{i}");
        let body = review_bytes(&gitrepository_review(&uid, "CREATE", gitrepository("web")));
        // kube-apiserver appends the webhook timeout as a query parameter.
        let request = hyper::Request::post("/mutate?timeout=5s")
            .header("content-type", "application/json")
            .header("accept", "application/json, */*")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let reply = client.send(hook.addr(), protocol, request).await.unwrap();
        assert_eq!(reply.status, 200, "{protocol:?}: {}", reply.text());
        assert_eq!(reply.headers["content-type"], "application/json");
        let out = reply.json();
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(out["response"]["uid"], uid);
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        let patch = decode_patch(&out);
        let ops = patch.as_array().unwrap();
        assert_eq!(ops.len(), 3, "{patch}");
        assert_eq!(
            ops[1],
            json!({ "op": "replace", "path": "/spec/timeout", "value": "5m" })
        );
        assert_eq!(
            ops[2],
            json!({ "op": "add", "path": "/spec/suspend", "value": false })
        );
        assert_eq!(ops[0]["path"], "/metadata/annotations");
    }
    let metrics = hook.metrics.encode();
    assert!(
        metrics.contains(
            "fluxgate_admission_requests_total{kind=\"GitRepository\",operation=\"CREATE\",outcome=\"patched\"} 2"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn update_and_other_kinds_pass_without_patch() {
    let hook = TestWebhook::start(Policy::default(), WebhookLimits::default()).await;
    let client = hook.client();
    let reply = client
        .post_json(
            hook.addr(),
            "/mutate",
            review_bytes(&gitrepository_review(
                "u-update",
                "UPDATE",
                gitrepository("web"),
            )),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": { "uid": "u-update", "allowed": true } })
    );

    let mut deployment =
        gitrepository_review("u-deploy", "CREATE", json!({ "kind": "Deployment" }));
    deployment["request"]["kind"] =
        json!({ "group": "apps", "version": "v1", "kind": "Deployment" });
    let reply = client
        .post_json(hook.addr(), "/mutate", review_bytes(&deployment))
        .await;
    assert_eq!(reply.status, 200);
    assert!(reply.json()["response"].get("patch").is_none());
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_are_counted() {
    let limits = WebhookLimits {
        max_body_bytes: 64 * 1024,
        ..WebhookLimits::default()
    };
    let hook = TestWebhook::start(Policy::default(), limits).await;
    let client = hook.client();
    let addr = hook.addr();

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", b"{\"kind\": \"AdmissionReview\",".to_vec(), 400, "not a JSON AdmissionReview"),
        ("empty body", Vec::new(), 400, "not a JSON AdmissionReview"),
        ("a Pod, not a review", br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec(), 400, "unsupported AdmissionReview"),
        ("review without request", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), 400, "has no request"),
        ("request without uid", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#.to_vec(), 400, "has no uid"),
        ("v1beta1 review", br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#.to_vec(), 400, "only admission.k8s.io/v1"),
        ("oversized body", vec![b' '; 64 * 1024 + 1], 413, ""),
    ];
    for (name, body, status, message) in &cases {
        let reply = client.post_json(addr, "/mutate", body.clone()).await;
        assert_eq!(reply.status, *status, "{name}: {}", reply.text());
        assert!(reply.text().contains(message), "{name}: {}", reply.text());
    }

    // A review fluxgate can answer but not act on: allowed unchanged, counted as an error.
    let mut no_object = gitrepository_review("u-no-object", "CREATE", Value::Null);
    no_object["request"]
        .as_object_mut()
        .unwrap()
        .remove("object");
    let reply = client
        .post_json(addr, "/mutate", review_bytes(&no_object))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["response"]["allowed"], true);
    assert_eq!(reply.json()["response"]["uid"], "u-no-object");

    let wrong_type = hyper::Request::post("/mutate")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let reply = client
        .send(addr, Protocol::Http1, wrong_type)
        .await
        .unwrap();
    assert_eq!(reply.status, 415);

    let get = hyper::Request::get("/mutate")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        client
            .send(addr, Protocol::Http1, get)
            .await
            .unwrap()
            .status,
        405
    );
    let elsewhere = hyper::Request::post("/validate")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(
        client
            .send(addr, Protocol::Http1, elsewhere)
            .await
            .unwrap()
            .status,
        404
    );

    let metrics = hook.metrics.encode();
    // 7 unanswerable bodies + the wrong content type.
    assert!(
        metrics.contains("fluxgate_admission_requests_total{kind=\"other\",operation=\"other\",outcome=\"invalid\"} 8"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fluxgate_admission_requests_total{kind=\"GitRepository\",operation=\"CREATE\",outcome=\"error\"} 1"),
        "{metrics}"
    );

    // The server is still healthy after all of that.
    let reply = client
        .post_json(
            addr,
            "/mutate",
            review_bytes(&gitrepository_review("u-ok", "CREATE", gitrepository("ok"))),
        )
        .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused_and_plain_http_gets_nothing() {
    let hook = TestWebhook::start(Policy::default(), WebhookLimits::default()).await;
    let other = certs::generate(&loopback_names(), time::OffsetDateTime::now_utc()).unwrap();
    let stranger = TlsClient::trusting(&other.ca_cert_pem);
    let err = stranger.peer_certificate(hook.addr()).await.unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    // Plain HTTP on the TLS port: the server answers with no HTTP response at all.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(hook.addr()).await.unwrap();
    tcp.write_all(b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/"),
        "got an HTTP answer over plain TCP"
    );
}

#[tokio::test]
async fn only_tls12_and_tls13_are_offered() {
    let hook = TestWebhook::start(Policy::default(), WebhookLimits::default()).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let client = TlsClient::with_versions(&hook.bundle.ca_cert_pem, &[version]);
        let reply = client
            .post_json(
                hook.addr(),
                "/mutate",
                review_bytes(&gitrepository_review("v", "CREATE", gitrepository("v"))),
            )
            .await;
        assert_eq!(reply.status, 200, "{version:?}");
    }
}

#[tokio::test]
async fn certificate_rotation_is_picked_up_without_restart() {
    let hook = TestWebhook::start(Policy::default(), WebhookLimits::default()).await;
    let first = hook.client().peer_certificate(hook.addr()).await.unwrap();
    tokio::spawn(hook.tls.clone().watch(Duration::from_millis(50)));

    let rotated = certs::generate(
        &ServingNames { ..loopback_names() },
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    // Kubernetes swaps a `..data` symlink; emulate it so the paths stay the same.
    let dir = hook.dir.path();
    let new_data = dir.join("..data_new");
    std::fs::create_dir(&new_data).unwrap();
    std::fs::write(new_data.join("tls.crt"), &rotated.cert_pem).unwrap();
    std::fs::write(new_data.join("tls.key"), &rotated.key_pem).unwrap();
    std::fs::remove_file(&hook.cert_path).unwrap();
    std::fs::remove_file(&hook.key_path).unwrap();
    std::os::unix::fs::symlink(new_data.join("tls.crt"), &hook.cert_path).unwrap();
    std::os::unix::fs::symlink(new_data.join("tls.key"), &hook.key_path).unwrap();

    let new_client = TlsClient::trusting(&rotated.ca_cert_pem);
    let mut served = None;
    for _ in 0..100 {
        if let Ok(cert) = new_client.peer_certificate(hook.addr()).await {
            served = Some(cert);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served = served.expect("the rotated certificate was never served");
    assert_ne!(served, first);
    assert!(
        hook.metrics
            .encode()
            .contains("fluxgate_webhook_certificate_reloads_total{outcome=\"success\"} 1")
    );
    let expiry = certs::not_after(&rotated.cert_pem).unwrap();
    assert!(hook.metrics.encode().contains(&format!(
        "fluxgate_webhook_certificate_expiry_timestamp_seconds {expiry}"
    )));
}

#[tokio::test]
async fn shutdown_turns_readiness_off_and_drains_in_flight_requests() {
    let hook = TestWebhook::start(Policy::default(), WebhookLimits::default()).await;
    let addr = hook.addr();
    let readiness = ops::Readiness::new(true);
    readiness.set_webhook_listening();
    assert!(readiness.check().is_ok());

    // Start a request whose body arrives slowly, so it is in flight when shutdown begins.
    let client = hook.client();
    let (mut body_tx, body_rx) =
        futures::channel::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(1);
    let body = http_body_util::StreamBody::new(body_rx);
    let full = review_bytes(&gitrepository_review(
        "u-inflight",
        "CREATE",
        gitrepository("slow"),
    ));
    let (first_half, second_half) = full.split_at(full.len() / 2);
    let (first_half, second_half) = (
        Bytes::copy_from_slice(first_half),
        Bytes::copy_from_slice(second_half),
    );
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.send_streaming(addr, body).await }
    });
    use futures::SinkExt;
    body_tx
        .send(Ok(hyper::body::Frame::data(first_half)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (signal_tx, signal_rx) = tokio::sync::oneshot::channel::<()>();
    let drain = tokio::spawn({
        let readiness = readiness.clone();
        async move {
            server::drain_on(
                async {
                    let _ = signal_rx.await;
                },
                &readiness,
                Duration::from_millis(200),
                Duration::from_secs(10),
                vec![hook.server],
            )
            .await
        }
    });
    signal_tx.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(readiness.check(), Err("shutting down"));

    // Finish the in-flight request after shutdown has begun: it must still be answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    body_tx
        .send(Ok(hyper::body::Frame::data(second_half)))
        .await
        .unwrap();
    drop(body_tx);
    let reply = in_flight.await.unwrap().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["response"]["uid"], "u-inflight");
    drain.await.unwrap().unwrap();

    // New connections are refused once drained.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

fn mirror_policy() -> Policy {
    use fluxgate::policy::{GitRepositoryPolicy, MirrorRule, MirrorRules};
    let rules =
        vec![MirrorRule::parse("https://github.com/=https://gitee.com/acme-mirror/").unwrap()];
    Policy {
        gitrepository: GitRepositoryPolicy {
            mirror: MirrorRules::new(rules, vec!["platform".to_owned()]).unwrap(),
            ..GitRepositoryPolicy::default()
        },
        ..Policy::default()
    }
}

#[tokio::test]
async fn a_mirror_rewrite_is_patched_warned_and_counted_per_rule() {
    let hook = TestWebhook::start(mirror_policy(), WebhookLimits::default()).await;
    let client = hook.client();
    let addr = hook.addr();
    let post = |review: Value| {
        let client = client.clone();
        async move {
            let reply = client
                .post_json(addr, "/mutate", review_bytes(&review))
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.json()
        }
    };
    let url_ops = |out: &Value| -> Vec<Value> {
        match out["response"].get("patch") {
            Some(_) => decode_patch(out)
                .as_array()
                .unwrap()
                .iter()
                .filter(|op| op["path"] == "/spec/url")
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    };

    let out = post(gitrepository_review("m-1", "CREATE", gitrepository("web"))).await;
    let patch = decode_patch(&out);
    let mut object = gitrepository("web");
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    json_patch::patch(&mut object, &patch).unwrap();
    assert_eq!(
        object["spec"]["url"],
        "https://gitee.com/acme-mirror/example/project-42"
    );
    assert_eq!(
        object["metadata"]["annotations"]["fluxgate.io/original-url"],
        "https://github.com/example/project-42"
    );
    let warnings = out["response"]["warnings"].as_array().unwrap();
    assert_eq!(
        warnings,
        &[json!(
            "spec.url rewritten to the mirror https://gitee.com/acme-mirror/example/project-42 \
             (rule https://github.com/); the original is in fluxgate.io/original-url"
        )]
    );

    // Re-invoked on the patched object: no second rewrite.
    let again = post(gitrepository_review("m-2", "CREATE", object.clone())).await;
    assert!(url_ops(&again).is_empty(), "{again}");

    // Opted out, excluded namespace, UPDATE, dry run.
    let mut opted_out = gitrepository("opt");
    opted_out["metadata"]["annotations"] = json!({ "fluxgate.io/mirror": "false" });
    let out = post(gitrepository_review("m-3", "CREATE", opted_out)).await;
    assert!(url_ops(&out).is_empty(), "{out}");
    assert!(out["response"].get("warnings").is_none());
    let mut excluded = gitrepository("excluded");
    excluded["metadata"]["namespace"] = json!("platform");
    let out = post(gitrepository_review("m-4", "CREATE", excluded)).await;
    assert!(url_ops(&out).is_empty(), "{out}");
    let out = post(gitrepository_review("m-5", "UPDATE", gitrepository("web"))).await;
    assert!(out["response"].get("patch").is_none(), "{out}");
    let mut dry = gitrepository_review("m-6", "CREATE", gitrepository("dry"));
    dry["request"]["dryRun"] = json!(true);
    let out = post(dry).await;
    assert_eq!(url_ops(&out).len(), 1, "a dry run shows the same patch");

    // A secretRef stays on its host, and says so.
    let mut private = gitrepository("private");
    private["spec"]["secretRef"] = json!({ "name": "github-token" });
    let out = post(gitrepository_review("m-7", "CREATE", private)).await;
    assert!(url_ops(&out).is_empty(), "{out}");
    let warning = out["response"]["warnings"][0].as_str().unwrap();
    assert!(warning.contains("spec.secretRef"), "{warning}");

    let metrics = hook.metrics.encode();
    assert!(
        metrics.contains("fluxgate_mirror_rewrites_total{rule=\"https://github.com/\"} 1"),
        "one rewrite counted (not the re-invocation, not the dry run): {metrics}"
    );
}

#[tokio::test]
async fn a_lane_assignment_is_patched_and_counted_per_shard_once() {
    use fluxgate::policy::{GitRepositoryPolicy, LaneRule, LaneRules};
    let lanes = LaneRules::new(vec![LaneRule::parse("github.com=far").unwrap()]).unwrap();
    let policy = Policy {
        gitrepository: GitRepositoryPolicy {
            lanes,
            ..GitRepositoryPolicy::default()
        },
        ..Policy::default()
    };
    let hook = TestWebhook::start(policy, WebhookLimits::default()).await;
    let client = hook.client();
    let addr = hook.addr();
    let post = |review: Value| {
        let client = client.clone();
        async move {
            let reply = client
                .post_json(addr, "/mutate", review_bytes(&review))
                .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            reply.json()
        }
    };
    let label_ops = |out: &Value| -> Vec<Value> {
        match out["response"].get("patch") {
            Some(_) => decode_patch(out)
                .as_array()
                .unwrap()
                .iter()
                .filter(|op| op["path"].as_str().unwrap().starts_with("/metadata/labels"))
                .cloned()
                .collect(),
            None => Vec::new(),
        }
    };

    let out = post(gitrepository_review("l-1", "CREATE", gitrepository("web"))).await;
    assert_eq!(
        label_ops(&out),
        [
            json!({ "op": "add", "path": "/metadata/labels/sharding.fluxcd.io~1key",
                 "value": "far" })
        ]
    );
    assert!(out["response"].get("warnings").is_none(), "{out}");
    let mut object = gitrepository("web");
    let patch: json_patch::Patch = serde_json::from_value(decode_patch(&out)).unwrap();
    json_patch::patch(&mut object, &patch).unwrap();

    // Re-invoked on its own output, an UPDATE, a dry run: one assignment counted in all.
    let again = post(gitrepository_review("l-2", "CREATE", object)).await;
    assert!(label_ops(&again).is_empty(), "{again}");
    let out = post(gitrepository_review("l-3", "UPDATE", gitrepository("web"))).await;
    assert!(out["response"].get("patch").is_none(), "{out}");
    let mut dry = gitrepository_review("l-4", "CREATE", gitrepository("dry"));
    dry["request"]["dryRun"] = json!(true);
    assert_eq!(
        label_ops(&post(dry).await).len(),
        1,
        "a dry run shows the same patch"
    );

    let metrics = hook.metrics.encode();
    assert!(
        metrics.contains("fluxgate_lane_assignments_total{shard=\"far\"} 1"),
        "{metrics}"
    );
}
