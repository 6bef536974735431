//! Hostile and broken input at the HTTP and TLS level, against the real webhook server on
//! loopback. Every case asserts the exact outcome: the status and the key text of the body, or
//! what happens to the connection (which TLS alert, closed when, with or without close_notify).

mod support;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fluxgate::policy::Policy;
use fluxgate::server::ConnectionLimits;
use fluxgate::server::webhook::WebhookLimits;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Short limits so the timeout cases finish quickly; the body limit is small so the at-limit
/// bodies are cheap to build.
const BODY_LIMIT: usize = 256 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);
const HEADER_TIMEOUT: Duration = Duration::from_millis(1000);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1000);

async fn hostile_webhook() -> TestWebhook {
    TestWebhook::start_with(
        Policy::default(),
        WebhookLimits {
            max_body_bytes: BODY_LIMIT,
            request_timeout: REQUEST_TIMEOUT,
        },
        ConnectionLimits {
            handshake_timeout: HANDSHAKE_TIMEOUT,
            header_read_timeout: HEADER_TIMEOUT,
            ..ConnectionLimits::default()
        },
    )
    .await
}

fn review(uid: &str) -> Value {
    gitrepository_review(uid, "CREATE", gitrepository("hostile"))
}

fn bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

/// A review padded with trailing whitespace (valid JSON) to exactly `len` bytes.
fn review_of_len(len: usize) -> Vec<u8> {
    let mut body = bytes(&review("at-limit"));
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

async fn post(
    client: &TlsClient,
    addr: SocketAddr,
    protocol: Protocol,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut request = hyper::Request::post("/mutate");
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    client.send(addr, protocol, request).await.unwrap()
}

/// One row of the matrix: a body (or request) and the exact answer it must get.
struct Case {
    name: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// The whole body for errors; a substring for 200s (checked further by the caller).
    text: &'static str,
}

fn case(name: &'static str, body: impl Into<Vec<u8>>, status: u16, text: &'static str) -> Case {
    Case {
        name,
        content_type: Some("application/json"),
        body: body.into(),
        status,
        text,
    }
}

fn body_cases() -> Vec<Case> {
    let mut unknown = review("unknown-fields");
    unknown["future"] = json!({ "nested": [1, { "x": null }] });
    unknown["request"]["newField"] = json!("v2");
    unknown["request"]["object"]["spec"]["notYetInvented"] = json!(true);
    let mut no_object = review("no-object");
    no_object["request"]
        .as_object_mut()
        .unwrap()
        .remove("object");
    let mut big = review("big-string");
    big["request"]["object"]["metadata"]["labels"]["big"] = json!("x".repeat(BODY_LIMIT - 4096));
    let mut deep_object = review("deep");
    deep_object["request"]["object"]["spec"]["deep"] = json!("PLACEHOLDER");
    let deep_object = serde_json::to_string(&deep_object).unwrap().replace(
        "\"PLACEHOLDER\"",
        &format!("{}{}", "[".repeat(200), "]".repeat(200)),
    );

    vec![
        case("malformed JSON", &b"{\"kind\": \"AdmissionReview\","[..], 400,
             "request body is not a JSON AdmissionReview: EOF while parsing a value at line 1 column 27\n"),
        case("empty body", Vec::new(), 400,
             "request body is not a JSON AdmissionReview: EOF while parsing a value at line 1 column 0\n"),
        case("not UTF-8", &b"\xff\xfe{}"[..], 400,
             "request body is not a JSON AdmissionReview: expected value at line 1 column 1\n"),
        case("JSON string", &b"\"AdmissionReview\""[..], 400,
             "request body is not a JSON AdmissionReview: invalid type: string \"AdmissionReview\", expected struct ReviewIn at line 1 column 17\n"),
        case("JSON number", &b"42"[..], 400,
             "request body is not a JSON AdmissionReview: invalid type: integer `42`, expected struct ReviewIn at line 1 column 2\n"),
        case("a Pod, not a review", &br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#[..], 400,
             "unsupported AdmissionReview \"v1\"/\"Pod\": only admission.k8s.io/v1 AdmissionReview is served\n"),
        case("AdmissionReview v1beta1", bytes(&json!({"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"b1"}})), 400,
             "unsupported AdmissionReview \"admission.k8s.io/v1beta1\"/\"AdmissionReview\": only admission.k8s.io/v1 AdmissionReview is served\n"),
        case("missing request", &br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#[..], 400,
             "AdmissionReview has no request\n"),
        case("request is null", &br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#[..], 400,
             "AdmissionReview has no request\n"),
        case("missing uid", &br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#[..], 400,
             "AdmissionReview request has no uid\n"),
        case("uid of the wrong type", &br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#[..], 400,
             "request body is not a JSON AdmissionReview: invalid type: integer `7`, expected a string at line 1 column 79\n"),
        case("request.kind of the wrong type", &br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"k","kind":"GitRepository"}}"#[..], 400,
             "request body is not a JSON AdmissionReview: invalid type: string \"GitRepository\", expected struct GroupVersionKind at line 1 column 104\n"),
        case("object nested 200 levels", deep_object, 400,
             "request body is not a JSON AdmissionReview: recursion limit exceeded at line 1 column 1127\n"),
        case("100000 nested arrays as the body", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)), 400,
             "request body is not a JSON AdmissionReview: invalid type: sequence, expected a string at line 1 column 1\n"),
        case("100000 nested arrays as the object",
             format!(r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"d","object":{}{}}}}}"#,
                     "[".repeat(100_000), "]".repeat(100_000)), 400,
             "request body is not a JSON AdmissionReview: recursion limit exceeded at line 1 column 217\n"),
        case("missing object on CREATE", bytes(&no_object), 200, "\"uid\":\"no-object\",\"allowed\":true}"),
        case("unknown fields", bytes(&unknown), 200, "\"patchType\":\"JSONPatch\""),
        case("huge string within the limit", bytes(&big), 200, "\"patchType\":\"JSONPatch\""),
        case("body exactly at the limit", review_of_len(BODY_LIMIT), 200, "\"patchType\":\"JSONPatch\""),
        case("body 1 byte over the limit", review_of_len(BODY_LIMIT + 1), 413,
             "Failed to buffer the request body: length limit exceeded"),
        Case { content_type: None, ..case("no content type", bytes(&review("ct")), 415, "expected Content-Type: application/json\n") },
        Case { content_type: Some("text/plain"), ..case("text/plain", bytes(&review("ct")), 415, "expected Content-Type: application/json\n") },
        Case { content_type: Some("application/yaml"), ..case("application/yaml", bytes(&review("ct")), 415, "expected Content-Type: application/json\n") },
        Case { content_type: Some("application/jsonx"), ..case("application/jsonx", bytes(&review("ct")), 415, "expected Content-Type: application/json\n") },
        Case { content_type: Some("Application/JSON; charset=utf-8"), ..case("JSON with parameters, any case", bytes(&review("ct")), 200, "\"patchType\":\"JSONPatch\"") },
    ]
}

#[tokio::test]
async fn bodies_get_exact_answers_over_http1_and_http2() {
    let hook = hostile_webhook().await;
    let client = hook.client();
    let cases = body_cases();
    for protocol in [Protocol::Http1, Protocol::Http2] {
        for case in &cases {
            let reply = post(
                &client,
                hook.addr(),
                protocol,
                case.content_type,
                case.body.clone(),
            )
            .await;
            let what = format!("{} over {protocol:?}", case.name);
            assert_eq!(reply.status, case.status, "{what}: {}", reply.text());
            if case.status == 200 {
                assert!(reply.text().contains(case.text), "{what}: {}", reply.text());
                assert_eq!(reply.json()["response"]["allowed"], true, "{what}");
            } else {
                assert_eq!(reply.text(), case.text, "{what}");
            }
        }
    }
    // Every refusal was counted as invalid: 20 per protocol.
    let refused = cases.iter().filter(|c| c.status != 200).count();
    assert_eq!(refused, 20);
    let metrics = hook.metrics.encode();
    assert!(
        metrics.contains(&format!(
            "fluxgate_admission_requests_total{{kind=\"other\",operation=\"other\",outcome=\"invalid\"}} {}",
            refused * 2
        )),
        "{metrics}"
    );
}

/// The limit also holds for a body without a declared length (chunked, or HTTP/2 DATA frames),
/// counted as it streams in.
#[tokio::test]
async fn body_limit_holds_without_content_length() {
    let hook = hostile_webhook().await;
    let client = hook.client();
    for protocol in [Protocol::Http1, Protocol::Http2] {
        for (len, status) in [(BODY_LIMIT, 200), (BODY_LIMIT + 1, 413)] {
            let body = review_of_len(len);
            let chunks: Vec<Result<hyper::body::Frame<Bytes>, std::io::Error>> = body
                .chunks(16 * 1024)
                .map(|c| Ok(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            let request = hyper::Request::post("/mutate")
                .header("content-type", "application/json")
                .body(http_body_util::StreamBody::new(futures::stream::iter(
                    chunks,
                )))
                .unwrap();
            let reply = client.send(hook.addr(), protocol, request).await.unwrap();
            assert_eq!(reply.status, status, "{len} bytes over {protocol:?}");
            if status == 413 {
                assert_eq!(
                    reply.text(),
                    "Failed to buffer the request body: length limit exceeded"
                );
            }
        }
    }
}

/// Echoed values in error answers are cut short, so a large body cannot make a large log line or
/// a large answer.
#[tokio::test]
async fn errors_do_not_echo_large_values() {
    let hook = hostile_webhook().await;
    let client = hook.client();
    let huge = "A".repeat(BODY_LIMIT - 1024);
    for body in [
        json!({ "apiVersion": huge, "kind": "AdmissionReview", "request": { "uid": "u" } }),
        json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": { "uid": "u", "dryRun": huge } }),
        json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": { "uid": "u", "kind": huge } }),
    ] {
        let reply = post(
            &client,
            hook.addr(),
            Protocol::Http1,
            Some("application/json"),
            bytes(&body),
        )
        .await;
        assert_eq!(reply.status, 400, "{}", &reply.text()[..200]);
        assert!(reply.body.len() <= 512, "{} bytes", reply.body.len());
        assert!(reply.text().contains("AAAA"), "{}", reply.text());
        assert!(reply.text().contains("…"), "{}", reply.text());
    }
}

#[tokio::test]
async fn wrong_methods_and_paths() {
    let hook = hostile_webhook().await;
    let client = hook.client();
    let cases: &[(&str, &str, u16, Option<&str>)] = &[
        ("GET", "/mutate", 405, Some("POST")),
        ("PUT", "/mutate", 405, Some("POST")),
        ("DELETE", "/mutate", 405, Some("POST")),
        ("PATCH", "/mutate", 405, Some("POST")),
        ("OPTIONS", "/mutate", 405, Some("POST")),
        ("POST", "/validate", 404, None),
        ("POST", "/mutate/", 404, None),
        ("POST", "/MUTATE", 404, None),
        ("POST", "/", 404, None),
        ("GET", "/metrics", 404, None),
        ("GET", "/healthz", 404, None),
        ("POST", "/mutate/../mutate", 404, None),
    ];
    for protocol in [Protocol::Http1, Protocol::Http2] {
        for (method, path, status, allow) in cases {
            let request = hyper::Request::builder()
                .method(*method)
                .uri(*path)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(bytes(&review("m")))))
                .unwrap();
            let reply = client.send(hook.addr(), protocol, request).await.unwrap();
            assert_eq!(reply.status, *status, "{method} {path} {protocol:?}");
            assert!(reply.body.is_empty(), "{method} {path}: {}", reply.text());
            assert_eq!(
                reply.headers.get("allow").map(|v| v.to_str().unwrap()),
                *allow,
                "{method} {path}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connection-level behaviour
// ---------------------------------------------------------------------------------------------

fn tls_config(hook: &TestWebhook, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(hook.bundle.ca_cert_pem.as_bytes())
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn tls_connect(hook: &TestWebhook, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(hook.addr()).await?;
    tokio_rustls::TlsConnector::from(tls_config(hook, alpn))
        .connect(ServerName::IpAddress(hook.addr().ip().into()), tcp)
        .await
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// An orderly end of stream: EOF on a raw socket, or close_notify then EOF over TLS.
    Closed,
    /// Over TLS, EOF without close_notify (or a reset): the server dropped the connection.
    Dropped,
    /// Still open when the test stopped waiting.
    StillOpen,
}

/// Reads until the connection ends or `limit` passes; returns what was read, how it ended, and
/// when.
async fn read_to_end<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> (Vec<u8>, End, Duration) {
    let started = Instant::now();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let remaining = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(remaining, stream.read(&mut buf)).await {
            Err(_) => return (data, End::StillOpen, started.elapsed()),
            Ok(Ok(0)) => return (data, End::Closed, started.elapsed()),
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                return (data, End::Dropped, started.elapsed());
            }
            Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => {
                return (data, End::Dropped, started.elapsed());
            }
            Ok(Err(e)) => panic!("unexpected read error: {e}"),
        }
    }
}

fn assert_closed_near(what: &str, end: &End, elapsed: Duration, timeout: Duration) {
    assert_ne!(*end, End::StillOpen, "{what}: still open after {elapsed:?}");
    assert!(
        elapsed >= timeout.mul_f32(0.8) && elapsed <= timeout * 3,
        "{what}: closed after {elapsed:?}, timeout {timeout:?}"
    );
}

/// Headers sent one byte every 100 ms, never finished: the connection is dropped at the header
/// timeout with no answer, however busy the client keeps it.
#[tokio::test]
async fn slowloris_headers_are_cut_off_at_the_header_timeout() {
    let hook = hostile_webhook().await;
    let mut tls = tls_connect(&hook, &[b"http/1.1"]).await.unwrap();
    let started = Instant::now();
    tls.write_all(b"POST /mutate HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let drip = b"x-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut dripped = 0;
    let mut write_failed = false;
    for byte in drip {
        if started.elapsed() > HEADER_TIMEOUT * 3 {
            break;
        }
        if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
            write_failed = true;
            break;
        }
        dripped += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Stop dripping once the server has hung up.
        let mut probe = [0u8; 1];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), tls.read(&mut probe)).await {
            assert!(
                !matches!(r, Ok(n) if n > 0),
                "the server answered a half request"
            );
            break;
        }
    }
    let (data, end, _) = read_to_end(&mut tls, HEADER_TIMEOUT * 2).await;
    let elapsed = started.elapsed();
    assert!(data.is_empty(), "{}", String::from_utf8_lossy(&data));
    assert_eq!(
        end,
        End::Dropped,
        "after {dripped} bytes, write failed: {write_failed}"
    );
    assert_closed_near("slowloris", &end, elapsed, HEADER_TIMEOUT);
}

/// An idle connection that never sends a request is dropped at the header timeout.
#[tokio::test]
async fn idle_connection_is_dropped_at_the_header_timeout() {
    let hook = hostile_webhook().await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut tls = tls_connect(&hook, &[alpn]).await.unwrap();
        let (data, end, elapsed) = read_to_end(&mut tls, HEADER_TIMEOUT * 4).await;
        let what = String::from_utf8_lossy(alpn);
        // Nothing is sent before the client speaks, not even HTTP/2 SETTINGS.
        assert!(data.is_empty(), "{what}");
        assert_eq!(end, End::Dropped, "{what}");
        assert_closed_near(&what, &end, elapsed, HEADER_TIMEOUT);
    }
}

/// Slow headers on the second request of a keep-alive connection: hyper's own header timeout.
#[tokio::test]
async fn slow_headers_on_a_kept_alive_connection_are_cut_off() {
    let hook = hostile_webhook().await;
    let mut tls = tls_connect(&hook, &[b"http/1.1"]).await.unwrap();
    let body = bytes(&review("keep-alive"));
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body).await.unwrap();
    let mut first = vec![0u8; 64 * 1024];
    let n = tls.read(&mut first).await.unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));

    let started = Instant::now();
    tls.write_all(b"POST /mutate HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (data, end, _) = read_to_end(&mut tls, HEADER_TIMEOUT * 4).await;
    let elapsed = started.elapsed();
    // No answer to the stalled request: the connection is dropped.
    assert!(data.is_empty(), "{}", String::from_utf8_lossy(&data));
    assert_eq!(end, End::Dropped);
    assert_closed_near("second request", &end, elapsed, HEADER_TIMEOUT);
}

/// A body that arrives too slowly gets 408 at the request timeout.
#[tokio::test]
async fn slow_body_gets_408_at_the_request_timeout() {
    let hook = hostile_webhook().await;
    for alpn in ["http/1.1", "h2"] {
        let client = hook.client();
        let (mut tx, rx) =
            futures::channel::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(1);
        let body = http_body_util::StreamBody::new(rx);
        let protocol = if alpn == "h2" {
            Protocol::Http2
        } else {
            Protocol::Http1
        };
        let started = Instant::now();
        let request = hyper::Request::post("/mutate")
            .header("content-type", "application/json")
            .header("content-length", "100000")
            .body(body)
            .unwrap();
        let reply = tokio::spawn({
            let client = client.clone();
            let addr = hook.addr();
            async move { client.send(addr, protocol, request).await }
        });
        use futures::SinkExt;
        // One byte every 200 ms: far too slow for 100000 bytes.
        let drip = tokio::spawn(async move {
            for _ in 0..50 {
                if tx
                    .send(Ok(hyper::body::Frame::data(Bytes::from_static(b" "))))
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        let reply = tokio::time::timeout(REQUEST_TIMEOUT * 4, reply)
            .await
            .expect("answered")
            .unwrap()
            .unwrap();
        let elapsed = started.elapsed();
        drip.abort();
        assert_eq!(reply.status, 408, "{alpn}: {}", reply.text());
        assert!(reply.body.is_empty(), "{alpn}: {}", reply.text());
        assert!(
            elapsed >= REQUEST_TIMEOUT && elapsed < REQUEST_TIMEOUT * 3,
            "{alpn}: {elapsed:?}"
        );
    }
    assert!(hook.metrics.encode().contains("fluxgate_build_info"));
}

/// A TCP connection that never starts a handshake is dropped at the handshake timeout.
#[tokio::test]
async fn silent_tcp_connection_is_dropped_at_the_handshake_timeout() {
    let hook = hostile_webhook().await;
    let mut tcp = TcpStream::connect(hook.addr()).await.unwrap();
    let (data, end, elapsed) = read_to_end(&mut tcp, HANDSHAKE_TIMEOUT * 4).await;
    assert!(data.is_empty());
    assert_eq!(end, End::Closed);
    assert_closed_near("silent TCP", &end, elapsed, HANDSHAKE_TIMEOUT);

    // A ClientHello cut in half: same.
    let mut tcp = TcpStream::connect(hook.addr()).await.unwrap();
    tcp.write_all(&client_hello(0x0303, 0x0303, true)[..40])
        .await
        .unwrap();
    let (data, end, elapsed) = read_to_end(&mut tcp, HANDSHAKE_TIMEOUT * 4).await;
    assert!(data.is_empty());
    assert_eq!(end, End::Closed);
    assert_closed_near("half ClientHello", &end, elapsed, HANDSHAKE_TIMEOUT);
}

/// A raw ClientHello: record version, hello version, and (for TLS 1.2) the extensions a modern
/// client sends, with ECDHE (ECDSA and RSA) and plain RSA suites.
fn client_hello(record_version: u16, hello_version: u16, modern: bool) -> Vec<u8> {
    let mut hello = Vec::new();
    hello.extend_from_slice(&hello_version.to_be_bytes());
    hello.extend_from_slice(&[0x5a; 32]); // random
    hello.push(0); // session id
    let suites: &[u16] = &[0xc02b, 0xc02f, 0xc030, 0xc013, 0x002f, 0x0035];
    hello.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        hello.extend_from_slice(&s.to_be_bytes());
    }
    hello.extend_from_slice(&[1, 0]); // compression: null
    let mut ext = Vec::new();
    if modern {
        // supported_groups: x25519, secp256r1
        ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
        // ec_point_formats: uncompressed
        ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
        // signature_algorithms: rsa_pss_rsae_sha256, ecdsa_secp256r1_sha256, rsa_pkcs1_sha256
        ext.extend_from_slice(&[
            0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x08, 0x04, 0x04, 0x03, 0x04, 0x01,
        ]);
    }
    hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hello.extend_from_slice(&ext);

    let mut handshake = vec![1u8]; // ClientHello
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16];
    record.extend_from_slice(&record_version.to_be_bytes());
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Sends `bytes` on a fresh TCP connection and returns what the server wrote before closing.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> (Vec<u8>, End) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let (data, end, _) = read_to_end(&mut tcp, Duration::from_secs(5)).await;
    (data, end)
}

/// A TLS alert record: content type 21, then level and description.
fn alert(data: &[u8]) -> Option<(u8, u8)> {
    match data {
        [0x15, 0x03, _, 0x00, 0x02, level, description] => Some((*level, *description)),
        _ => None,
    }
}

const FATAL: u8 = 2;
const HANDSHAKE_FAILURE: u8 = 40;
const DECODE_ERROR: u8 = 50;
const PROTOCOL_VERSION: u8 = 70;
const NO_APPLICATION_PROTOCOL: u8 = 120;

/// TLS 1.0 and 1.1 are refused before any certificate is sent. A hello as those versions really
/// send it (no signature_algorithms extension, which TLS 1.2 introduced) gets handshake_failure;
/// one that carries the extension gets protocol_version.
#[tokio::test]
async fn tls10_and_tls11_offers_are_refused_with_an_alert() {
    let hook = hostile_webhook().await;
    for (name, version) in [
        ("TLS 1.0", 0x0301u16),
        ("TLS 1.1", 0x0302),
        ("SSL 3.0", 0x0300),
    ] {
        let (data, end) = raw_exchange(hook.addr(), &client_hello(0x0301, version, false)).await;
        assert_eq!(
            alert(&data),
            Some((FATAL, HANDSHAKE_FAILURE)),
            "{name}: {data:02x?}"
        );
        assert_eq!(end, End::Closed, "{name}");
        let (data, end) = raw_exchange(hook.addr(), &client_hello(0x0301, version, true)).await;
        assert_eq!(
            alert(&data),
            Some((FATAL, PROTOCOL_VERSION)),
            "{name} with TLS 1.2 extensions: {data:02x?}"
        );
        assert_eq!(end, End::Closed, "{name}");
    }
    // The same hello as TLS 1.2 is answered with a ServerHello: the refusal is the version alone.
    let (data, _) = raw_exchange(hook.addr(), &client_hello(0x0301, 0x0303, true)).await;
    assert_eq!(data.first(), Some(&0x16), "{data:02x?}");
    assert_eq!(data.get(5), Some(&0x02), "ServerHello");

    // A TLS 1.2 hello offering only suites rustls never enables: handshake_failure.
    let mut weak = client_hello(0x0301, 0x0303, true);
    let suites_at = 5 + 4 + 2 + 32 + 1 + 2;
    for (i, s) in [0x000au16, 0x0005, 0x0004, 0x002f, 0x0035, 0x003c]
        .iter()
        .enumerate()
    {
        weak[suites_at + 2 * i..suites_at + 2 * i + 2].copy_from_slice(&s.to_be_bytes());
    }
    let (data, _) = raw_exchange(hook.addr(), &weak).await;
    assert_eq!(
        alert(&data),
        Some((FATAL, HANDSHAKE_FAILURE)),
        "{data:02x?}"
    );
}

/// The same refusal as seen by OpenSSL's own client, when it is installed.
#[tokio::test]
async fn openssl_tls10_and_tls11_clients_are_refused() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        panic!(
            "openssl is not installed: install it (tests/all.sh and .ci/run do) to run this test"
        );
    }
    let hook = hostile_webhook().await;
    for flag in ["-tls1", "-tls1_1"] {
        let addr = hook.addr().to_string();
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new("openssl")
                .args(["s_client", "-connect", &addr, flag])
                // OpenSSL 3 disables these versions at its default security level.
                .args(["-cipher", "DEFAULT@SECLEVEL=0"])
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flag}");
        // OpenSSL's TLS 1.0/1.1 hello has no signature_algorithms: handshake_failure (40).
        assert!(
            stderr.contains("alert handshake failure") && stderr.contains("SSL alert number 40"),
            "{flag}: {stderr}"
        );
    }
}

#[tokio::test]
async fn plain_http_and_garbage_get_a_decode_error_alert_and_no_http() {
    let hook = hostile_webhook().await;
    let garbage: Vec<u8> = (0u32..512)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "plain HTTP/1.1",
            b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}".to_vec(),
        ),
        ("plain GET", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        ("HTTP/2 prior knowledge", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("garbage", garbage),
        ("zeros", vec![0u8; 64]),
        (
            "handshake record with a bad length",
            vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00],
        ),
        (
            "SSLv2-style hello",
            vec![0x80, 0x2e, 0x01, 0x00, 0x02, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10],
        ),
    ];
    for (name, bytes) in cases {
        let (data, end) = raw_exchange(hook.addr(), &bytes).await;
        assert!(!data.starts_with(b"HTTP/"), "{name}: got an HTTP answer");
        assert_eq!(
            alert(&data),
            Some((FATAL, DECODE_ERROR)),
            "{name}: {data:02x?}"
        );
        // Then the server closes the socket.
        assert_eq!(end, End::Closed, "{name}");
    }
    // Still serving.
    let reply = hook
        .client()
        .post_json(hook.addr(), "/mutate", bytes(&review("after")))
        .await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn unknown_alpn_gets_no_application_protocol() {
    let hook = hostile_webhook().await;
    let err = tls_connect(&hook, &[b"spdy/3", b"h3"]).await.unwrap_err();
    assert!(err.to_string().contains("NoApplicationProtocol"), "{err}");
    // A client offering no ALPN at all is served (HTTP/1.1 by default).
    let mut tls = tls_connect(&hook, &[]).await.unwrap();
    let body = bytes(&review("no-alpn"));
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body).await.unwrap();
    let (data, end, _) = read_to_end(&mut tls, Duration::from_secs(5)).await;
    assert!(data.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(end, End::Closed);
    let _ = NO_APPLICATION_PROTOCOL;
}

/// Reads one HTTP/2 frame: (type, flags, stream, payload).
async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok((head[3], head[4], stream_id, payload))
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The server announces its stream limit, and 1000 concurrent requests on one HTTP/2 connection
/// are all answered.
#[tokio::test]
async fn http2_many_concurrent_streams() {
    let hook = hostile_webhook().await;

    let mut tls = tls_connect(&hook, &[b"h2"]).await.unwrap();
    tls.write_all(PREFACE).await.unwrap();
    tls.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    let (kind, _, _, payload) = read_frame(&mut tls).await.unwrap();
    assert_eq!(kind, 0x4, "SETTINGS first");
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    assert!(
        settings.contains(&(0x3, ConnectionLimits::default().max_concurrent_streams)),
        "SETTINGS_MAX_CONCURRENT_STREAMS in {settings:?}"
    );
    drop(tls);

    let tls = tls_connect(&hook, &[b"h2"]).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let mut sender = sender.clone();
        tasks.spawn(async move {
            let request = hyper::Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(bytes(&review(&format!("s-{i}"))))))
                .unwrap();
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            use http_body_util::BodyExt;
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((i, status, body))
        });
    }
    let mut ok = 0;
    while let Some(result) = tokio::time::timeout(Duration::from_secs(120), tasks.join_next())
        .await
        .expect("bounded")
    {
        let (i, status, body) = result.unwrap().unwrap();
        assert_eq!(status, 200);
        let out: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(out["response"]["uid"], format!("s-{i}"));
        ok += 1;
    }
    assert_eq!(ok, 1000);
    eprintln!("1000 streams in {:?}", started.elapsed());
}

/// Streams opened and reset at once, over and over (the "rapid reset" pattern): the server stays
/// up and answers on a new connection.
#[tokio::test]
async fn http2_rapid_reset_does_not_take_the_server_down() {
    let hook = hostile_webhook().await;
    let mut tls = tls_connect(&hook, &[b"h2"]).await.unwrap();
    tls.write_all(PREFACE).await.unwrap();
    tls.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    // HPACK: :method POST (static 3), :scheme https (static 7), :path /mutate (literal, name 4),
    // :authority x (literal, name 1).
    let mut headers = vec![0x83, 0x87, 0x04, 7];
    headers.extend_from_slice(b"/mutate");
    headers.extend_from_slice(&[0x01, 1, b'x']);
    let mut burst = Vec::new();
    for i in 0..5000u32 {
        let id = 2 * i + 1;
        burst.extend_from_slice(&frame(0x1, 0x4, id, &headers)); // HEADERS, END_HEADERS
        burst.extend_from_slice(&frame(0x3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
    }
    let started = Instant::now();
    let _ = tls.write_all(&burst).await;
    let mut goaway = None;
    while started.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(Duration::from_secs(5), read_frame(&mut tls)).await {
            Ok(Ok((0x7, _, _, payload))) => {
                goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    eprintln!(
        "rapid reset: GOAWAY {goaway:?} after {:?}",
        started.elapsed()
    );
    // ENHANCE_YOUR_CALM
    assert_eq!(goaway, Some(0xb));
    let reply = hook
        .client()
        .post_json(hook.addr(), "/mutate", bytes(&review("after-reset")))
        .await;
    assert_eq!(reply.status, 200);
}
