//! Faults under load against the real `fluxgate serve --no-exporter` binary on loopback: SIGTERM
//! while requests flow, and certificate rotation (a Kubernetes-style `..data` symlink swap to a
//! pair from a new CA) while requests flow. The load generator is a few keep-alive clients in this
//! test, bounded in requests and time; every request it sends is counted, and none may fail.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fluxgate::certs::{self, CertBundle};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use support::{gitrepository, gitrepository_review, install_crypto, loopback_names};

const SHUTDOWN_DELAY: Duration = Duration::from_millis(1500);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Hard bounds on any load run, whatever happens.
const MAX_REQUESTS_PER_CLIENT: u64 = 50_000;
const MAX_LOAD_TIME: Duration = Duration::from_secs(30);

/// A certificate directory laid out as the kubelet lays out a Secret volume: the files are
/// symlinks through `..data`, which points at a timestamped directory and is swapped atomically.
struct SecretVolume {
    dir: tempfile::TempDir,
    generation: u32,
}

impl SecretVolume {
    fn new(bundle: &CertBundle) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut volume = Self { dir, generation: 0 };
        volume.swap_to(bundle);
        for name in ["tls.crt", "tls.key", "ca.crt"] {
            std::os::unix::fs::symlink(
                Path::new("..data").join(name),
                volume.dir.path().join(name),
            )
            .unwrap();
        }
        volume
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the pair into a new timestamped directory and renames a fresh `..data` symlink
    /// over the old one, as the kubelet's atomic writer does.
    fn swap_to(&mut self, bundle: &CertBundle) {
        self.generation += 1;
        let root = self.dir.path();
        let data = format!(
            "..2026_11_28_10_00_{:02}.{}",
            self.generation,
            1000 + self.generation
        );
        std::fs::create_dir(root.join(&data)).unwrap();
        std::fs::write(root.join(&data).join("tls.crt"), &bundle.cert_pem).unwrap();
        std::fs::write(root.join(&data).join("tls.key"), &bundle.key_pem).unwrap();
        std::fs::write(root.join(&data).join("ca.crt"), &bundle.ca_cert_pem).unwrap();
        let tmp = root.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp).unwrap();
        let old = std::fs::read_link(root.join("..data")).ok();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
        if let Some(old) = old {
            std::fs::remove_dir_all(root.join(old)).unwrap();
        }
    }

    /// Rewrites the files in place one after the other, leaving a mismatched pair in between:
    /// what a careless copy into a hostPath does.
    fn rewrite_in_place(&self, bundle: &CertBundle, gap: Duration) {
        std::fs::write(self.path("tls.crt"), &bundle.cert_pem).unwrap();
        std::thread::sleep(gap);
        std::fs::write(self.path("tls.key"), &bundle.key_pem).unwrap();
    }
}

/// The `fluxgate serve` process and the addresses it announced.
struct Served {
    child: Child,
    webhook: SocketAddr,
    ops: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    fn start(volume: &SecretVolume, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fluxgate"))
            .env_clear()
            .args(["--log-format", "json", "serve", "--no-exporter"])
            .args([
                "--webhook-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .arg("--tls-cert-file")
            .arg(volume.path("tls.crt"))
            .arg("--tls-key-file")
            .arg(volume.path("tls.key"))
            .args([
                "--shutdown-delay",
                &format!("{}ms", SHUTDOWN_DELAY.as_millis()),
            ])
            .args(["--drain-timeout", &format!("{}s", DRAIN_TIMEOUT.as_secs())])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fluxgate starts");
        // Keep reading stderr for the whole run, or a full pipe would stall the server.
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                        let message = entry["fields"]["message"].as_str().unwrap_or("");
                        if let Some(addr) = entry["fields"]["addr"].as_str() {
                            let _ = tx.send((message.to_owned(), addr.parse().unwrap()));
                        }
                        if message != "patched" {
                            log.lock().unwrap().push(line);
                        }
                    } else {
                        log.lock().unwrap().push(line);
                    }
                }
            }
        });
        let (mut webhook, mut ops) = (None, None);
        while webhook.is_none() || ops.is_none() {
            let (message, addr) = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("fluxgate never announced its addresses: {:?}", log));
            match message.as_str() {
                "webhook serving HTTPS" => webhook = Some(addr),
                "metrics and health serving HTTP" => ops = Some(addr),
                _ => {}
            }
        }
        let served = Self {
            child,
            webhook: webhook.unwrap(),
            ops: ops.unwrap(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while served.get("/readyz").0 != 200 {
            assert!(Instant::now() < deadline, "never ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        served
    }

    /// GET on the plain-HTTP operations port: (status, body); status 0 when unreachable.
    fn get(&self, path: &str) -> (u16, String) {
        let Ok(mut tcp) = StdTcpStream::connect_timeout(&self.ops, Duration::from_secs(1)) else {
            return (0, String::new());
        };
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        if tcp.write_all(request.as_bytes()).is_err() {
            return (0, String::new());
        }
        let mut text = String::new();
        let _ = tcp.read_to_string(&mut text);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`; kills it (by pid) if it does not.
    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn client_config(cas: &[&str]) -> Arc<rustls::ClientConfig> {
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// What the load generator saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    failures: Mutex<Vec<String>>,
    /// (when, leaf certificate) for every handshake.
    handshakes: Mutex<Vec<(Instant, Vec<u8>)>>,
    /// Set when clients must send no new request (readiness went false, or the run is over).
    stop: AtomicBool,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut failures = self.failures.lock().unwrap();
        if failures.len() < 20 {
            failures.push(what);
        }
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One client: a keep-alive connection (HTTP/1.1 or HTTP/2 as `alpn` says) carrying up to
/// `per_connection` requests, then a new one, until told to stop.
async fn client(
    id: usize,
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    h2: bool,
    per_connection: u64,
    tally: Arc<Tally>,
) {
    let started = Instant::now();
    let mut sent = 0u64;
    let mut config = (*config).clone();
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    'connections: while !tally.stop.load(Ordering::SeqCst)
        && sent < MAX_REQUESTS_PER_CLIENT
        && started.elapsed() < MAX_LOAD_TIME
    {
        let tls = match tokio::net::TcpStream::connect(addr).await {
            Ok(tcp) => {
                match connector
                    .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                    .await
                {
                    Ok(tls) => tls,
                    Err(e) => {
                        tally.fail(format!("client {id}: handshake: {e}"));
                        break;
                    }
                }
            }
            Err(e) => {
                tally.fail(format!("client {id}: connect: {e}"));
                break;
            }
        };
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        tally
            .handshakes
            .lock()
            .unwrap()
            .push((Instant::now(), leaf));
        let io = TokioIo::new(tls);
        let mut sender = if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            Sender::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Sender::H1(sender)
        };
        for _ in 0..per_connection {
            // Like an endpoints controller: no new request once the replica is not ready.
            if tally.stop.load(Ordering::SeqCst) {
                break 'connections;
            }
            sent += 1;
            let uid = format!("c{id}-{sent}");
            let body =
                serde_json::to_vec(&gitrepository_review(&uid, "CREATE", gitrepository("load")))
                    .unwrap();
            let request = hyper::Request::post("/mutate")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let response = match &mut sender {
                Sender::H1(s) => s.send_request(request).await,
                Sender::H2(s) => s.send_request(request).await,
            };
            match response {
                Ok(response) => {
                    let status = response.status();
                    match response.into_body().collect().await {
                        Ok(body) => {
                            let body = body.to_bytes();
                            let answered =
                                serde_json::from_slice::<Value>(&body)
                                    .ok()
                                    .is_some_and(|v| {
                                        v["response"]["uid"] == uid.as_str()
                                            && v["response"]["allowed"] == true
                                    });
                            if status == 200 && answered {
                                tally.ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                tally.fail(format!("{uid}: {status}"));
                            }
                        }
                        Err(e) => tally.fail(format!("{uid}: body: {e}")),
                    }
                }
                Err(e) => {
                    tally.fail(format!("{uid}: {e}"));
                    break 'connections;
                }
            }
        }
    }
}

/// Starts the clients: three over HTTP/1.1 and one over HTTP/2, each reconnecting every
/// `per_connection` requests so that handshakes keep happening.
fn start_load(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    per_connection: u64,
    tally: &Arc<Tally>,
) -> tokio::task::JoinSet<()> {
    let mut clients = tokio::task::JoinSet::new();
    for id in 0..4 {
        clients.spawn(client(
            id,
            addr,
            config.clone(),
            id == 3,
            per_connection,
            tally.clone(),
        ));
    }
    clients
}

async fn join_all(mut clients: tokio::task::JoinSet<()>) {
    tokio::time::timeout(MAX_LOAD_TIME + Duration::from_secs(10), async {
        while let Some(result) = clients.join_next().await {
            result.unwrap();
        }
    })
    .await
    .expect("clients stop by themselves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_without_failed_requests() {
    let bundle = certs::generate(&loopback_names(), time::OffsetDateTime::now_utc()).unwrap();
    let volume = SecretVolume::new(&bundle);
    let mut served = Served::start(&volume, &[]);
    let addr = served.webhook;
    let config = client_config(&[&bundle.ca_cert_pem]);
    let tally = Arc::new(Tally::default());
    let clients = start_load(addr, config.clone(), 200, &tally);

    // A request still sending its body when the listener closes: it must be answered too.
    let (mut body_tx, body_rx) =
        futures::channel::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(1);
    let slow_body = serde_json::to_vec(&gitrepository_review(
        "slow",
        "CREATE",
        gitrepository("slow"),
    ))
    .unwrap();
    let (first_half, second_half) = slow_body.split_at(slow_body.len() / 2);
    let (first_half, second_half) = (
        Bytes::copy_from_slice(first_half),
        Bytes::copy_from_slice(second_half),
    );
    let slow = tokio::spawn({
        let client = support::TlsClient::trusting(&bundle.ca_cert_pem);
        async move {
            client
                .send_streaming(addr, http_body_util::StreamBody::new(body_rx))
                .await
        }
    });
    use futures::SinkExt;
    body_tx
        .send(Ok(hyper::body::Frame::data(first_half)))
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = tally.ok.load(Ordering::Relaxed);
    assert!(before > 50, "load is flowing: {before} requests");
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0);

    let sigterm = Instant::now();
    served.terminate();

    // Readiness turns false first, while the webhook still accepts.
    let not_ready = tokio::task::spawn_blocking({
        let ops = served.ops;
        move || {
            let probe = Served::probe(ops);
            loop {
                let (status, body) = probe("/readyz");
                if status == 503 {
                    return (Instant::now(), body);
                }
                assert!(
                    sigterm.elapsed() < SHUTDOWN_DELAY,
                    "readiness still {status} after {:?}",
                    sigterm.elapsed()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    })
    .await
    .unwrap();
    tally.stop.store(true, Ordering::SeqCst);
    let (not_ready_at, reason) = not_ready;
    assert_eq!(reason, "shutting down\n");
    let readiness_after = not_ready_at - sigterm;
    join_all(clients).await;
    let stopped_sending = sigterm.elapsed();

    // Still accepting new connections during the delay: a late request is answered.
    assert!(
        sigterm.elapsed() < SHUTDOWN_DELAY,
        "{:?}",
        sigterm.elapsed()
    );
    let late = support::TlsClient::trusting(&bundle.ca_cert_pem)
        .post_json(
            addr,
            "/mutate",
            serde_json::to_vec(&gitrepository_review(
                "late",
                "CREATE",
                gitrepository("late"),
            ))
            .unwrap(),
        )
        .await;
    assert_eq!(late.status, 200);

    // Finish the slow request after the listener has closed.
    tokio::time::sleep(
        (SHUTDOWN_DELAY + Duration::from_millis(300)).saturating_sub(sigterm.elapsed()),
    )
    .await;
    let refused = tokio::net::TcpStream::connect(addr).await.is_err();
    body_tx
        .send(Ok(hyper::body::Frame::data(second_half)))
        .await
        .unwrap();
    drop(body_tx);
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status, 200, "{}", slow.text());
    assert_eq!(slow.json()["response"]["uid"], "slow");

    let status = tokio::task::spawn_blocking(move || {
        let status = served.wait(SHUTDOWN_DELAY + DRAIN_TIMEOUT + Duration::from_secs(5));
        (status, served)
    })
    .await
    .unwrap();
    let exited_after = sigterm.elapsed();
    let (status, served) = status;
    let log = served.log_text();
    assert_eq!(status.map(|s| s.code()), Some(Some(0)), "{log}");
    assert!(
        exited_after < SHUTDOWN_DELAY + DRAIN_TIMEOUT,
        "exit after {exited_after:?}"
    );
    assert!(
        refused,
        "the webhook listener was still open after the delay"
    );
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("\"message\":\"drained\""), "{log}");

    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    eprintln!(
        "SIGTERM: {ok} requests answered, {failed} failed; readiness 503 after {readiness_after:?}, \
         clients stopped after {stopped_sending:?}, exit 0 after {exited_after:?} \
         (delay {SHUTDOWN_DELAY:?}, drain {DRAIN_TIMEOUT:?})"
    );
    assert_eq!(failed, 0, "{:?}", tally.failures.lock().unwrap());
    assert!(readiness_after < Duration::from_millis(500));
}

impl Served {
    /// A readiness probe usable from a blocking thread, without borrowing the process.
    fn probe(ops: SocketAddr) -> impl Fn(&str) -> (u16, String) {
        move |path| {
            let Ok(mut tcp) = StdTcpStream::connect_timeout(&ops, Duration::from_secs(1)) else {
                return (0, String::new());
            };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
            let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
            if tcp.write_all(request.as_bytes()).is_err() {
                return (0, String::new());
            }
            let mut text = String::new();
            let _ = tcp.read_to_string(&mut text);
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (
                status,
                text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned(),
            )
        }
    }
}

fn leaf_der(bundle: &CertBundle) -> Vec<u8> {
    rustls_pki_types::CertificateDer::pem_slice_iter(bundle.cert_pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

async fn handshake_leaf(addr: SocketAddr, cas: &[&str]) -> Result<Vec<u8>, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(client_config(cas))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await?;
    Ok(tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_has_no_failed_requests() {
    let now = time::OffsetDateTime::now_utc();
    let old = certs::generate(&loopback_names(), now).unwrap();
    let new = certs::generate(&loopback_names(), now).unwrap();
    let third = certs::generate(&loopback_names(), now).unwrap();
    assert_ne!(old.ca_cert_pem, new.ca_cert_pem);
    let mut volume = SecretVolume::new(&old);
    let mut served = Served::start(&volume, &["--tls-reload-interval", "200ms"]);
    let addr = served.webhook;

    // Like kube-apiserver with a caBundle that holds both CAs during a rotation.
    let config = client_config(&[&old.ca_cert_pem, &new.ca_cert_pem, &third.ca_cert_pem]);
    let tally = Arc::new(Tally::default());
    let clients = start_load(addr, config, 20, &tally);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(tally.ok.load(Ordering::Relaxed) > 20);

    // Atomic swap to a pair from a new CA.
    let swapped = Instant::now();
    tokio::task::block_in_place(|| volume.swap_to(&new));
    let mut first_new = None;
    while swapped.elapsed() < Duration::from_secs(5) {
        if let Ok(leaf) = handshake_leaf(addr, &[&new.ca_cert_pem]).await {
            assert_eq!(leaf, leaf_der(&new));
            first_new = Some(swapped.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let picked_up = first_new.expect("the new certificate was never served");
    let cutover = Instant::now();
    let err = handshake_leaf(addr, &[&old.ca_cert_pem]).await.unwrap_err();
    // Both CAs carry the same name, so the chain builds and the signature check fails.
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // A careless in-place rewrite (certificate first, key 600 ms later): the mismatched pair is
    // refused and the last good one kept, then the complete pair is served.
    let rewritten = Instant::now();
    tokio::task::block_in_place(|| volume.rewrite_in_place(&third, Duration::from_millis(600)));
    let mut third_at = None;
    while rewritten.elapsed() < Duration::from_secs(5) {
        if let Ok(leaf) = handshake_leaf(addr, &[&third.ca_cert_pem]).await {
            assert_eq!(leaf, leaf_der(&third));
            third_at = Some(Instant::now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let third_at = third_at.expect("the rewritten pair was never served");
    tokio::time::sleep(Duration::from_millis(500)).await;

    tally.stop.store(true, Ordering::SeqCst);
    join_all(clients).await;
    let (_, metrics) = served.get("/metrics");
    served.terminate();
    let status = tokio::task::block_in_place(|| served.wait(Duration::from_secs(15)));
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "{}",
        served.log_text()
    );

    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let handshakes = tally.handshakes.lock().unwrap();
    let (old_leaf, new_leaf, third_leaf) = (leaf_der(&old), leaf_der(&new), leaf_der(&third));
    let count = |leaf: &Vec<u8>| handshakes.iter().filter(|(_, l)| l == leaf).count();
    // After the cutover no handshake presents the old certificate; after the rewrite, the third.
    let stale_after_cutover = handshakes
        .iter()
        .filter(|(at, leaf)| *at > cutover && *leaf == old_leaf)
        .count();
    let stale_after_rewrite = handshakes
        .iter()
        .filter(|(at, leaf)| *at > third_at && *leaf != third_leaf)
        .count();
    eprintln!(
        "rotation: {ok} requests answered, {failed} failed; {} handshakes (old {}, new {}, third {}); \
         new certificate served {picked_up:?} after the swap",
        handshakes.len(),
        count(&old_leaf),
        count(&new_leaf),
        count(&third_leaf),
    );
    assert_eq!(failed, 0, "{:?}", tally.failures.lock().unwrap());
    assert!(count(&old_leaf) > 0 && count(&new_leaf) > 0 && count(&third_leaf) > 0);
    assert_eq!(stale_after_cutover, 0);
    assert_eq!(stale_after_rewrite, 0);
    assert!(picked_up < Duration::from_secs(2), "{picked_up:?}");
    // Two good reloads; the half-written pair was refused once (then the retry tick saw it whole).
    assert!(
        metrics.contains("fluxgate_webhook_certificate_reloads_total{outcome=\"success\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fluxgate_webhook_certificate_reloads_total{outcome=\"error\"} 1"),
        "{metrics}"
    );
    let expiry = certs::not_after(&third.cert_pem).unwrap();
    assert!(metrics.contains(&format!(
        "fluxgate_webhook_certificate_expiry_timestamp_seconds {expiry}"
    )));
}
