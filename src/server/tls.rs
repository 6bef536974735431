//! The webhook's TLS configuration: TLS 1.2 and 1.3 only, HTTP/2 and HTTP/1.1 by ALPN, and the
//! certificate re-read from disk when it changes.
//!
//! Kubernetes updates Secret volumes by swapping a `..data` symlink, which an inotify watch on the
//! file itself never sees. Re-reading the paths on a short timer follows the symlink every time and
//! costs two small file reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::{OutcomeLabels, TlsMetrics};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path}: {error}")]
    Pem {
        path: PathBuf,
        error: rustls_pki_types::pem::Error,
    },
    #[error("certificate and key do not form a valid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate chain and key as read from disk.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPairPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for KeyPairPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("KeyPairPem")
            .field("cert_bytes", &self.cert.len())
            .finish_non_exhaustive()
    }
}

impl KeyPairPem {
    pub fn read(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|error| TlsError::Read {
                path: path.to_owned(),
                error,
            })
        };
        Ok(Self {
            cert: read(cert_path)?,
            key: read(key_path)?,
        })
    }

    /// A rustls server configuration for this pair; also validates that key matches certificate.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let pem_err = |error| TlsError::Pem {
            path: PathBuf::from("<certificate>"),
            error,
        };
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err)?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: PathBuf::from("<certificate>"),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|error| TlsError::Pem {
            path: PathBuf::from("<key>"),
            error,
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// notAfter of the leaf certificate, in Unix seconds.
    pub fn not_after(&self) -> Option<i64> {
        let leaf = CertificateDer::pem_slice_iter(&self.cert).next()?.ok()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        Some(parsed.validity().not_after.timestamp())
    }
}

/// Serves the certificate at two paths and keeps it current.
#[derive(Clone)]
pub struct ReloadingTls {
    cert_path: PathBuf,
    key_path: PathBuf,
    config: RustlsConfig,
    metrics: TlsMetrics,
    /// The pair being served, so a change between loading and watching is not missed.
    loaded: KeyPairPem,
}

impl ReloadingTls {
    /// Loads the pair once; failing here is fatal, later failures keep the last good pair.
    pub fn load(cert_path: &Path, key_path: &Path, metrics: TlsMetrics) -> Result<Self, TlsError> {
        let pair = KeyPairPem::read(cert_path, key_path)?;
        let config = RustlsConfig::from_config(Arc::new(pair.server_config()?));
        if let Some(not_after) = pair.not_after() {
            metrics.expiry_timestamp.set(not_after);
        }
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            config,
            metrics,
            loaded: pair,
        })
    }

    pub fn rustls_config(&self) -> RustlsConfig {
        self.config.clone()
    }

    /// Polls the files every `interval` and swaps the configuration when their content changes.
    /// New handshakes use the new certificate; established connections keep theirs.
    pub async fn watch(self, interval: Duration) {
        let mut last = Some(self.loaded.clone());
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let current = match KeyPairPem::read(&self.cert_path, &self.key_path) {
                Ok(pair) => pair,
                Err(err) => {
                    // Mid-swap a Secret volume can briefly miss a file; the next tick retries.
                    tracing::debug!(error = %err, "certificate files not readable");
                    continue;
                }
            };
            if last.as_ref() == Some(&current) {
                continue;
            }
            match current.server_config() {
                Ok(config) => {
                    self.config.reload_from_config(Arc::new(config));
                    if let Some(not_after) = current.not_after() {
                        self.metrics.expiry_timestamp.set(not_after);
                    }
                    self.metrics
                        .reloads
                        .get_or_create(&OutcomeLabels { outcome: "success" })
                        .inc();
                    tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                    last = Some(current);
                }
                Err(err) => {
                    // A half-written pair (new cert, old key) is common while files are replaced
                    // one at a time: keep serving the last good one and retry next tick.
                    self.metrics
                        .reloads
                        .get_or_create(&OutcomeLabels { outcome: "error" })
                        .inc();
                    tracing::warn!(error = %err, "new certificate not usable; keeping the previous one");
                    last = Some(current);
                }
            }
        }
    }
}
