//! The serving certificate's flags: static files, or an in-cluster bootstrap that creates them.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::bootstrap::BootstrapConfig;
use crate::duration::parse_flag;

/// Where the webhook's certificate comes from and how it is kept current.
#[derive(Debug, Clone, Args)]
pub struct CertArgs {
    /// PEM certificate chain served by the webhook; re-read when it changes.
    #[arg(
        long,
        env = "FLUXGATE_TLS_CERT_FILE",
        default_value = "/tmp/fluxgate-certs/tls.crt"
    )]
    pub tls_cert_file: PathBuf,

    /// PEM private key of the certificate.
    #[arg(
        long,
        env = "FLUXGATE_TLS_KEY_FILE",
        default_value = "/tmp/fluxgate-certs/tls.key"
    )]
    pub tls_key_file: PathBuf,

    /// How often the certificate files are checked for changes.
    #[arg(long, env = "FLUXGATE_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_flag)]
    pub tls_reload_interval: Duration,

    /// Create the certificate in-cluster (CA in a Secret, caBundle patched into the webhook
    /// configuration) and write it to --tls-cert-file/--tls-key-file.
    #[arg(long, env = "FLUXGATE_CERT_BOOTSTRAP", default_value_t = false, action = clap::ArgAction::Set)]
    pub cert_bootstrap: bool,

    /// Secret holding the bootstrapped CA and serving pair.
    #[arg(long, env = "FLUXGATE_CERT_SECRET", default_value = "fluxgate-tls")]
    pub cert_secret: String,

    /// MutatingWebhookConfiguration whose caBundle the bootstrap maintains.
    #[arg(long, env = "FLUXGATE_WEBHOOK_CONFIG", default_value = "fluxgate")]
    pub webhook_config: String,

    /// Service the webhook configuration calls (names in the serving certificate).
    #[arg(long, env = "FLUXGATE_SERVICE_NAME", default_value = "fluxgate")]
    pub service_name: String,

    /// Renew the bootstrapped serving certificate when less than this is left.
    #[arg(long, env = "FLUXGATE_CERT_RENEW_BEFORE", default_value = "30days", value_parser = parse_flag)]
    pub cert_renew_before: Duration,

    /// How often the bootstrap re-checks the Secret and caBundle.
    #[arg(long, env = "FLUXGATE_CERT_CHECK_INTERVAL", default_value = "1h", value_parser = parse_flag)]
    pub cert_check_interval: Duration,
}

impl CertArgs {
    /// The bootstrap's settings, for fluxgate running in `namespace`.
    pub fn bootstrap(&self, namespace: &str) -> BootstrapConfig {
        BootstrapConfig {
            namespace: namespace.to_owned(),
            secret_name: self.cert_secret.clone(),
            webhook_config_name: self.webhook_config.clone(),
            service_name: self.service_name.clone(),
            cert_path: self.tls_cert_file.clone(),
            key_path: self.tls_key_file.clone(),
            renew_before: self.cert_renew_before,
        }
    }
}
