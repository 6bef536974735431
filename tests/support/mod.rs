//! Shared test fixtures: a fluxgate webhook on a loopback port with a freshly generated CA, and a
//! TLS client that trusts only that CA.
#![allow(dead_code)]

pub mod e2e;
pub mod exposition;
pub mod githost;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluxgate::certs::{self, CertBundle, ServingNames};
use fluxgate::metrics::Metrics;
use fluxgate::policy::Policy;
use fluxgate::server::{self, ConnectionLimits, RunningServer, tls::ReloadingTls, webhook};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn loopback_names() -> ServingNames {
    ServingNames {
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().unwrap()],
    }
}

pub struct TestWebhook {
    pub server: RunningServer,
    pub bundle: CertBundle,
    pub metrics: Arc<Metrics>,
    pub dir: tempfile::TempDir,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub tls: ReloadingTls,
}

impl TestWebhook {
    pub async fn start(policy: Policy, limits: webhook::WebhookLimits) -> Self {
        Self::start_with(policy, limits, ConnectionLimits::default()).await
    }

    pub async fn start_with(
        policy: Policy,
        limits: webhook::WebhookLimits,
        connection: ConnectionLimits,
    ) -> Self {
        install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let bundle = certs::generate(&loopback_names(), time::OffsetDateTime::now_utc()).unwrap();
        certs::write_dir(dir.path(), &bundle).unwrap();
        let cert_path = dir.path().join("tls.crt");
        let key_path = dir.path().join("tls.key");
        let metrics = Arc::new(Metrics::new());
        let tls = ReloadingTls::load(&cert_path, &key_path, metrics.tls.clone()).unwrap();
        let state = webhook::WebhookState::new(policy, metrics.clone());
        let router = webhook::router(state, limits);
        let server = server::spawn_tls(
            "127.0.0.1:0".parse().unwrap(),
            tls.rustls_config(),
            router,
            connection,
        )
        .await
        .unwrap();
        Self {
            server,
            bundle,
            metrics,
            dir,
            cert_path,
            key_path,
            tls,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    pub fn client(&self) -> TlsClient {
        TlsClient::trusting(&self.bundle.ca_cert_pem)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// A TLS client that trusts exactly one CA and speaks HTTP/1.1 or HTTP/2 over one connection.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
}

pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TlsClient {
    pub fn trusting(ca_pem: &str) -> Self {
        Self::with_versions(ca_pem, &[&rustls::version::TLS13, &rustls::version::TLS12])
    }

    pub fn with_versions(
        ca_pem: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Self {
        install_crypto();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_protocol_versions(versions)
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            config: Arc::new(config),
        }
    }

    async fn connect(
        &self,
        addr: SocketAddr,
        protocol: Protocol,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![match protocol {
            Protocol::Http1 => b"http/1.1".to_vec(),
            Protocol::Http2 => b"h2".to_vec(),
        }];
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = ServerName::IpAddress(addr.ip().into());
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    }

    /// The certificate chain the server presents on a fresh handshake.
    pub async fn peer_certificate(&self, addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let stream = self.connect(addr, Protocol::Http1).await?;
        let (_, session) = stream.get_ref();
        Ok(session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default())
    }

    pub async fn send<B>(
        &self,
        addr: SocketAddr,
        protocol: Protocol,
        request: hyper::Request<B>,
    ) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>>
    where
        B: hyper::body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = self.connect(addr, protocol).await?;
        let io = TokioIo::new(stream);
        let response = match protocol {
            Protocol::Http1 => {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(conn);
                sender.send_request(request).await?
            }
            Protocol::Http2 => {
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                sender.send_request(request).await?
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
            .await??
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// POSTs a body that the caller feeds frame by frame.
    pub async fn send_streaming<B>(
        &self,
        addr: SocketAddr,
        body: B,
    ) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>>
    where
        B: hyper::body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request = hyper::Request::post("/mutate")
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        self.send(addr, Protocol::Http1, request).await
    }

    pub async fn post_json(&self, addr: SocketAddr, path: &str, body: Vec<u8>) -> Reply {
        let request = hyper::Request::post(path)
            .header("host", addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.send(addr, Protocol::Http1, request).await.unwrap()
    }
}

/// An AdmissionReview as kube-apiserver sends it for a GitRepository CREATE.
pub fn gitrepository_review(uid: &str, operation: &str, object: Value) -> Value {
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": { "group": "source.toolkit.fluxcd.io", "version": "v1", "kind": "GitRepository" },
            "resource": { "group": "source.toolkit.fluxcd.io", "version": "v1", "resource": "gitrepositories" },
            "requestKind": { "group": "source.toolkit.fluxcd.io", "version": "v1", "kind": "GitRepository" },
            "requestResource": { "group": "source.toolkit.fluxcd.io", "version": "v1", "resource": "gitrepositories" },
            "name": object.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "namespace": object.pointer("/metadata/namespace").cloned().unwrap_or(Value::Null),
            "operation": operation,
            "userInfo": {
                "username": "system:serviceaccount:platform:project-creator",
                "uid": "0f0b1b63-5f4b-4f0e-9b5e-1a8c7b1f9a11",
                "groups": ["system:serviceaccounts", "system:authenticated"]
            },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": { "kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl-create" }
        }
    })
}

pub fn gitrepository(name: &str) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {
            "name": name,
            "namespace": "proj-42",
            "creationTimestamp": null,
            "labels": { "platform.example.com/project": "42" }
        },
        "spec": {
            "interval": "1m0s",
            "ref": { "branch": "main" },
            "timeout": "60s",
            "url": "https://github.com/example/project-42"
        }
    })
}

pub fn decode_patch(response: &Value) -> Value {
    use base64::Engine as _;
    let encoded = response["response"]["patch"]
        .as_str()
        .expect("patch is a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}
