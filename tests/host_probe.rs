//! The host probe against servers each test makes on loopback: Git-like HTTP answers, HTTPS with
//! trusted and untrusted certificates, SSH banners, silent and junk servers, and an HTTP proxy
//! (CONNECT and absolute-form) that records what reaches it. Nothing leaves the machine: names
//! other than loopback addresses only ever reach the test's proxy, or are pinned to 127.0.0.1.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fluxgate::breaker::probe::{Prober, ProberConfig, ProxyRoutes, Target, Verdict};
use fluxgate::certs::{self, ServingNames};
use fluxgate::policy::ProxyPolicy;
use fluxgate::policy::proxy::ProxyValue;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a test's server waits for a request, and how long it holds a connection it never
/// answers; every test ends long before.
const SERVER_PATIENCE: Duration = Duration::from_secs(30);
/// Room for a slow, shared machine on top of a probe's timeout.
const SLACK: Duration = Duration::from_secs(5);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

type Seen = Arc<Mutex<Vec<String>>>;

/// A loopback server: what it was sent (each request head) and how many connections it took.
struct Server {
    addr: SocketAddr,
    seen: Seen,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve<F, Fut>(handler: F) -> Server
where
    F: Fn(TcpStream, Seen) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let connections = Arc::new(AtomicUsize::new(0));
    let (task_seen, task_connections) = (seen.clone(), connections.clone());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            task_connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(handler(stream, task_seen.clone()));
        }
    });
    Server {
        addr,
        seen,
        connections,
        task,
    }
}

/// Reads a request head (up to the blank line, 16 KiB at most) and records it.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, seen: &Seen) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
            match stream.read(&mut byte).await {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(SERVER_PATIENCE, read).await;
    let head = String::from_utf8_lossy(&head).into_owned();
    seen.lock().unwrap().push(head.clone());
    head
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, seen: Seen, reply: &[u8]) {
    read_head(&mut stream, &seen).await;
    let _ = stream.write_all(reply).await;
    let _ = stream.shutdown().await;
}

fn status_reply(status: u16) -> Vec<u8> {
    let content_type = if status == 200 {
        "application/x-git-upload-pack-advertisement"
    } else {
        "text/plain"
    };
    let body = if status == 200 {
        "001e# service=git-upload-pack\n0000"
    } else {
        "no"
    };
    format!(
        "HTTP/1.1 {status} Whatever\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn git_http(status: u16) -> Server {
    serve(move |stream, seen| async move { answer(stream, seen, &status_reply(status)).await })
        .await
}

/// Accepts and never says a word.
async fn silent() -> Server {
    serve(|stream, _| async move {
        tokio::time::sleep(SERVER_PATIENCE).await;
        drop(stream);
    })
    .await
}

/// Sends `bytes` right after the connect, then holds the connection.
async fn speaks_first(bytes: &'static [u8]) -> Server {
    serve(move |mut stream, _| async move {
        let _ = stream.write_all(bytes).await;
        tokio::time::sleep(SERVER_PATIENCE).await;
    })
    .await
}

/// A TLS server with the given certificate that answers every request `status`.
async fn git_https(cert_pem: String, key_pem: String, status: u16) -> Server {
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    serve(move |stream, seen| {
        let acceptor = acceptor.clone();
        async move {
            if let Ok(Ok(tls)) =
                tokio::time::timeout(SERVER_PATIENCE, acceptor.accept(stream)).await
            {
                answer(tls, seen, &status_reply(status)).await;
            }
        }
    })
    .await
}

/// An HTTP proxy: CONNECT is tunnelled to `upstream` (whatever host was asked for), or refused
/// with 502 when there is none; an absolute-form request is answered 401 by the proxy itself.
async fn proxy(upstream: Option<SocketAddr>) -> Server {
    serve(move |mut client, seen| async move {
        let head = read_head(&mut client, &seen).await;
        if !head.starts_with("CONNECT ") {
            let _ = client.write_all(&status_reply(401)).await;
            return;
        }
        let Some(upstream) = upstream else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
            return;
        };
        let Ok(mut server) = TcpStream::connect(upstream).await else {
            return;
        };
        let _ = client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await;
        let relay = tokio::io::copy_bidirectional(&mut client, &mut server);
        let _ = tokio::time::timeout(SERVER_PATIENCE, relay).await;
    })
    .await
}

fn prober(timeout: Duration) -> Prober {
    Prober::new(ProberConfig {
        timeout,
        ..ProberConfig::default()
    })
    .unwrap()
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

fn ca_der(ca_pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()
}

#[tokio::test]
async fn http_statuses_below_500_are_answers_and_429_502_503_throttling() {
    let probe = prober(Duration::from_secs(5));
    for (status, expected) in [
        (200, Verdict::Answered { status: Some(200) }),
        (401, Verdict::Answered { status: Some(401) }),
        (404, Verdict::Answered { status: Some(404) }),
        (429, Verdict::Throttled { status: 429 }),
        (502, Verdict::Throttled { status: 502 }),
        (503, Verdict::Throttled { status: 503 }),
        (500, Verdict::ServerError { status: 500 }),
    ] {
        let server = git_http(status).await;
        let verdict = probe.probe_url(&url(&server, "/org/app.git")).await;
        assert_eq!(verdict, expected, "{status}");
        assert_eq!(verdict.answered(), status < 500 && status != 429);
        let seen = server.seen();
        assert_eq!(seen.len(), 1, "{status}: one request");
        assert!(
            seen[0].starts_with("GET /org/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
    }
}

#[tokio::test]
async fn no_credentials_reach_the_host() {
    let server = git_http(401).await;
    let with_userinfo = format!("http://deploy:s3cret-token@{}/org/app.git/", server.addr);
    let verdict = prober(Duration::from_secs(5))
        .probe_url(&with_userinfo)
        .await;
    assert!(verdict.answered(), "{verdict:?}");
    let head = &server.seen()[0];
    assert!(
        head.starts_with("GET /org/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        !head.contains("s3cret") && !head.contains("deploy"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("authorization:"),
        "{head}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout_within_the_bound() {
    let server = silent().await;
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    let verdict = prober(timeout).probe_url(&url(&server, "/org/app")).await;
    let elapsed = started.elapsed();
    assert_eq!(verdict, Verdict::Timeout);
    assert!(!verdict.answered());
    assert!(
        elapsed >= timeout - Duration::from_millis(50),
        "{elapsed:?}: gave up early"
    );
    assert!(elapsed < timeout + SLACK, "{elapsed:?}");
}

#[tokio::test]
async fn the_body_is_not_waited_for() {
    // Headers and a little of a large body, then nothing: the status is the answer.
    let server = serve(|mut stream, seen| async move {
        read_head(&mut stream, &seen).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n001e# service=git-upload-pack\n")
            .await;
        tokio::time::sleep(SERVER_PATIENCE).await;
    })
    .await;
    let timeout = Duration::from_secs(3);
    let started = Instant::now();
    let verdict = prober(timeout).probe_url(&url(&server, "/o/r")).await;
    assert_eq!(verdict, Verdict::Answered { status: Some(200) });
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let probe = prober(Duration::from_secs(5));
    let http = probe.probe_url(&format!("http://{addr}/o/r")).await;
    assert_eq!(http, Verdict::Refused);
    let ssh = probe
        .probe_url(&format!("ssh://git@127.0.0.1:{}/o/r", addr.port()))
        .await;
    assert_eq!(ssh, Verdict::Refused);
    assert_eq!(ssh.reason(), "refused");
}

#[tokio::test]
async fn something_that_does_not_speak_http_is_a_protocol_failure() {
    let server = serve(|mut stream, seen| async move {
        read_head(&mut stream, &seen).await;
        let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        tokio::time::sleep(SERVER_PATIENCE).await;
    })
    .await;
    let verdict = prober(Duration::from_secs(5))
        .probe_url(&url(&server, "/o/r"))
        .await;
    assert_eq!(verdict, Verdict::Protocol);
}

#[tokio::test]
async fn https_needs_a_trusted_certificate() {
    let now = time::OffsetDateTime::now_utc();
    let names = ServingNames {
        dns: vec!["localhost".into()],
        ips: vec![LOOPBACK],
    };
    let bundle = certs::generate(&names, now).unwrap();
    let server = git_https(bundle.cert_pem.clone(), bundle.key_pem.clone(), 200).await;
    let repo = format!("https://127.0.0.1:{}/org/app", server.addr.port());

    let untrusting = prober(Duration::from_secs(5));
    let verdict = untrusting.probe_url(&repo).await;
    assert_eq!(verdict, Verdict::Tls);
    assert!(!verdict.answered());
    assert!(server.seen().is_empty(), "no request without a handshake");

    let trusting = Prober::new(ProberConfig {
        timeout: Duration::from_secs(5),
        extra_roots: vec![ca_der(&bundle.ca_cert_pem)],
        ..ProberConfig::default()
    })
    .unwrap();
    assert_eq!(
        trusting.probe_url(&repo).await,
        Verdict::Answered { status: Some(200) }
    );
    assert!(
        server.seen()[0].starts_with("GET /org/app/info/refs?service=git-upload-pack HTTP/1.1"),
        "{:?}",
        server.seen()
    );
}

#[tokio::test]
async fn ssh_answers_with_its_identification_line() {
    let probe = prober(Duration::from_secs(5));
    let plain = speaks_first(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    let verdict = probe
        .probe_url(&format!(
            "ssh://git@127.0.0.1:{}/org/app.git",
            plain.addr.port()
        ))
        .await;
    assert_eq!(verdict, Verdict::Answered { status: None });

    // Other lines may come first (RFC 4253 4.2); scp-like URLs take port 22, so use ssh://.
    let chatty = speaks_first(b"authorised use only\r\nSSH-2.0-babeld-2f5f0a4c\r\n").await;
    let verdict = probe
        .probe_url(&format!("ssh://127.0.0.1:{}/org/app", chatty.addr.port()))
        .await;
    assert!(verdict.answered(), "{verdict:?}");
}

#[tokio::test]
async fn ssh_that_accepts_but_never_identifies_is_not_an_answer() {
    let timeout = Duration::from_millis(500);
    let probe = prober(timeout);
    let tarpit = silent().await;
    let started = Instant::now();
    let verdict = probe
        .probe_url(&format!("ssh://git@127.0.0.1:{}/o/r", tarpit.addr.port()))
        .await;
    assert_eq!(verdict, Verdict::Timeout);
    assert!(started.elapsed() < timeout + SLACK);
    assert_eq!(
        tarpit.connections.load(Ordering::SeqCst),
        1,
        "it did connect"
    );

    let junk = speaks_first(b"\x00\x01\x02\x03 not ssh").await;
    let verdict = probe
        .probe_url(&format!("ssh://git@127.0.0.1:{}/o/r", junk.addr.port()))
        .await;
    assert_eq!(verdict, Verdict::Protocol);

    let hangs_up = serve(|stream, _| async move { drop(stream) }).await;
    let verdict = probe
        .probe_url(&format!("ssh://git@127.0.0.1:{}/o/r", hangs_up.addr.port()))
        .await;
    assert_eq!(verdict, Verdict::Connection);
}

#[tokio::test]
async fn http_goes_through_the_proxy_unless_no_proxy_names_the_host() {
    let git = git_http(401).await;
    let http_proxy = proxy(None).await;
    let port = git.addr.port();
    // Not resolvable, and never resolved: only the proxy sees the name.
    let repo = format!("http://deploy:s3cret@git.example.test:{port}/org/app.git");

    let proxied = Prober::new(ProberConfig {
        timeout: Duration::from_secs(5),
        proxy: ProxyRoutes::new(
            None,
            Some(&format!("http://{}", http_proxy.addr)),
            "localhost,.svc",
        )
        .unwrap(),
        ..ProberConfig::default()
    })
    .unwrap();
    assert_eq!(
        proxied.probe_url(&repo).await,
        Verdict::Answered { status: Some(401) }
    );
    let seen = http_proxy.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].starts_with(&format!(
            "GET http://git.example.test:{port}/org/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\n"
        )),
        "{}",
        seen[0]
    );
    assert!(!seen[0].contains("s3cret"), "{}", seen[0]);
    assert!(git.seen().is_empty());

    // The same name in NO_PROXY (as fluxgate composes it for source-controller): direct.
    let policy = ProxyPolicy {
        http_proxy: Some(ProxyValue::Literal(format!("http://{}", http_proxy.addr))),
        no_proxy: vec!["example.test".into()],
        ..ProxyPolicy::default()
    };
    let direct = Prober::new(ProberConfig {
        timeout: Duration::from_secs(5),
        proxy: ProxyRoutes::from_policy(&policy).unwrap(),
        static_hosts: vec![("git.example.test".into(), LOOPBACK)],
        ..ProberConfig::default()
    })
    .unwrap();
    assert_eq!(
        direct.probe_url(&repo).await,
        Verdict::Answered { status: Some(401) }
    );
    assert_eq!(http_proxy.seen().len(), 1, "the proxy saw nothing more");
    assert_eq!(git.seen().len(), 1);
    assert!(!git.seen()[0].contains("s3cret"));
}

#[tokio::test]
async fn https_tunnels_through_the_proxy_with_connect() {
    let now = time::OffsetDateTime::now_utc();
    let names = ServingNames {
        dns: vec!["git.example.test".into()],
        ips: Vec::new(),
    };
    let bundle = certs::generate(&names, now).unwrap();
    let git = git_https(bundle.cert_pem.clone(), bundle.key_pem.clone(), 404).await;
    let tunnel = proxy(Some(git.addr)).await;
    let probe = Prober::new(ProberConfig {
        timeout: Duration::from_secs(5),
        proxy: ProxyRoutes::new(Some(&tunnel.addr.to_string()), None, "localhost").unwrap(),
        extra_roots: vec![ca_der(&bundle.ca_cert_pem)],
        ..ProberConfig::default()
    })
    .unwrap();
    let verdict = probe
        .probe_url("https://token:s3cret@git.example.test/org/app")
        .await;
    assert_eq!(verdict, Verdict::Answered { status: Some(404) });
    let connect = &tunnel.seen()[0];
    assert!(
        connect.starts_with("CONNECT git.example.test:443 HTTP/1.1\r\n"),
        "{connect}"
    );
    assert!(!connect.contains("s3cret"), "{connect}");
    let request = &git.seen()[0];
    assert!(
        request.starts_with("GET /org/app/info/refs?service=git-upload-pack HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        !request.contains("s3cret") && !request.to_ascii_lowercase().contains("authorization:")
    );
}

#[tokio::test]
async fn a_proxy_that_fails_is_the_proxys_failure() {
    let refusing = proxy(None).await;
    let probe = Prober::new(ProberConfig {
        timeout: Duration::from_secs(5),
        proxy: ProxyRoutes::new(Some(&format!("http://{}", refusing.addr)), None, "").unwrap(),
        ..ProberConfig::default()
    })
    .unwrap();
    // The proxy answers CONNECT with 502: the host was not reached.
    assert_eq!(
        probe.probe_url("https://git.example.test/o/r").await,
        Verdict::Proxy
    );
    assert_eq!(refusing.seen().len(), 1);

    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let gone = listener.local_addr().unwrap();
    drop(listener);
    let unreachable = Prober::new(ProberConfig {
        timeout: Duration::from_secs(5),
        proxy: ProxyRoutes::new(Some(&format!("http://{gone}")), None, "").unwrap(),
        ..ProberConfig::default()
    })
    .unwrap();
    assert_eq!(
        unreachable.probe_url("https://git.example.test/o/r").await,
        Verdict::Proxy
    );
}

#[tokio::test]
async fn ssh_never_takes_the_http_proxy() {
    let banner = speaks_first(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    let http_proxy = proxy(None).await;
    let address = format!("http://{}", http_proxy.addr);
    let probe = Prober::new(ProberConfig {
        timeout: Duration::from_secs(5),
        proxy: ProxyRoutes::new(Some(&address), Some(&address), "").unwrap(),
        static_hosts: vec![("git.example.test".into(), LOOPBACK)],
        ..ProberConfig::default()
    })
    .unwrap();
    let verdict = probe
        .probe_url(&format!(
            "ssh://git@git.example.test:{}/o/r",
            banner.addr.port()
        ))
        .await;
    assert!(verdict.answered(), "{verdict:?}");
    assert!(http_proxy.seen().is_empty());
}

#[tokio::test]
async fn one_probe_per_host_and_at_most_the_concurrency_at_once() {
    let up = git_http(200).await;
    let down = silent().await;
    let probe = Prober::new(ProberConfig {
        timeout: Duration::from_millis(400),
        concurrency: 1,
        ..ProberConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let verdicts = probe
        .probe_hosts([
            ("up", url(&up, "/a")),
            ("down", url(&down, "/b")),
            ("up", url(&up, "/c")),
            ("bad", "not a url".to_owned()),
        ])
        .await;
    let elapsed = started.elapsed();
    assert_eq!(
        verdicts,
        [
            ("up", Verdict::Answered { status: Some(200) }),
            ("down", Verdict::Timeout),
            ("bad", Verdict::InvalidUrl),
        ]
    );
    assert_eq!(up.connections.load(Ordering::SeqCst), 1, "one per host");
    assert_eq!(down.connections.load(Ordering::SeqCst), 1);
    assert!(
        elapsed < Duration::from_millis(400) * 2 + SLACK,
        "{elapsed:?}"
    );

    // Four hosts that never answer, two at a time: two rounds of the timeout.
    let tarpits = [
        silent().await,
        silent().await,
        silent().await,
        silent().await,
    ];
    let probe = Prober::new(ProberConfig {
        timeout: Duration::from_millis(300),
        concurrency: 2,
        ..ProberConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let verdicts = probe
        .probe_hosts(tarpits.iter().enumerate().map(|(i, t)| (i, url(t, "/r"))))
        .await;
    let elapsed = started.elapsed();
    assert!(verdicts.iter().all(|(_, v)| *v == Verdict::Timeout));
    assert!(
        elapsed >= Duration::from_millis(550),
        "{elapsed:?}: more than two at once"
    );
    assert!(elapsed < Duration::from_millis(600) + SLACK, "{elapsed:?}");
}

#[tokio::test]
async fn targets_print_without_credentials() {
    let target = Target::parse("https://user:s3cret@git.example.test/org/app.git/").unwrap();
    assert_eq!(
        target.to_string(),
        "https://git.example.test/org/app.git/info/refs?service=git-upload-pack"
    );
}
