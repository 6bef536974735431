//! In-cluster certificate bootstrap: the CA and serving pair live in a Secret in fluxgate's
//! namespace, every replica writes them to its local directory and serves them, and the CA goes
//! into the MutatingWebhookConfiguration's `caBundle`. The serving certificate is renewed (by
//! the same CA, so the `caBundle` does not change) when it nears expiry.
//!
//! Two replicas may start at once: creating the Secret is first-writer-wins (the loser reads the
//! winner's), and renewals use the Secret's resourceVersion so only one renewal lands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use json_patch::{AddOperation, PatchOperation, TestOperation};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use time::OffsetDateTime;

use super::{CertBundle, CertError, ServingNames};

const CA_CERT_KEY: &str = "ca.crt";
const CA_KEY_KEY: &str = "ca.key";
const TLS_CERT_KEY: &str = "tls.crt";
const TLS_KEY_KEY: &str = "tls.key";

#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    pub namespace: String,
    pub secret_name: String,
    pub webhook_config_name: String,
    pub service_name: String,
    /// Where the serving pair is written for the server to load (an emptyDir in a Pod); `ca.crt`
    /// goes beside the certificate.
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Renew the serving certificate when less than this is left.
    pub renew_before: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("Secret {0} is missing {1}")]
    IncompleteSecret(String, &'static str),
    #[error("gave up after repeated write conflicts on Secret {0}")]
    Conflicts(String),
}

fn bundle_from_secret(secret: &Secret) -> Result<CertBundle, BootstrapError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let data = secret.data.as_ref();
    let get = |key: &'static str| {
        data.and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .ok_or_else(|| BootstrapError::IncompleteSecret(name.clone(), key))
    };
    Ok(CertBundle {
        ca_cert_pem: get(CA_CERT_KEY)?,
        ca_key_pem: get(CA_KEY_KEY)?,
        cert_pem: get(TLS_CERT_KEY)?,
        key_pem: get(TLS_KEY_KEY)?,
    })
}

fn secret_data(bundle: &CertBundle) -> BTreeMap<String, ByteString> {
    [
        (CA_CERT_KEY, &bundle.ca_cert_pem),
        (CA_KEY_KEY, &bundle.ca_key_pem),
        (TLS_CERT_KEY, &bundle.cert_pem),
        (TLS_KEY_KEY, &bundle.key_pem),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), ByteString(v.clone().into_bytes())))
    .collect()
}

fn needs_renewal(bundle: &CertBundle, now: OffsetDateTime, renew_before: Duration) -> bool {
    match super::not_after(&bundle.cert_pem) {
        Some(not_after) => {
            not_after - now.unix_timestamp()
                < i64::try_from(renew_before.as_secs()).unwrap_or(i64::MAX)
        }
        None => true,
    }
}

/// Makes sure the Secret holds a current pair, writes it to `out_dir` and the CA into the webhook
/// configuration. Returns the bundle in use.
pub async fn ensure(
    client: &kube::Client,
    config: &BootstrapConfig,
) -> Result<CertBundle, BootstrapError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let names = ServingNames::for_service(&config.service_name, &config.namespace);
    let mut bundle = None;
    for _attempt in 0..5 {
        let now = OffsetDateTime::now_utc();
        match secrets.get_opt(&config.secret_name).await? {
            None => {
                let fresh = super::generate(&names, now)?;
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(config.secret_name.clone()),
                        namespace: Some(config.namespace.clone()),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".to_owned(),
                            "fluxgate".to_owned(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".to_owned()),
                    data: Some(secret_data(&fresh)),
                    ..Secret::default()
                };
                match secrets.create(&PostParams::default(), &secret).await {
                    Ok(_) => {
                        tracing::info!(secret = %config.secret_name, "created webhook certificate Secret");
                        bundle = Some(fresh);
                        break;
                    }
                    // Another replica won the race: use its pair.
                    Err(kube::Error::Api(status)) if status.is_already_exists() => continue,
                    Err(err) => return Err(err.into()),
                }
            }
            Some(existing) => {
                let current = match bundle_from_secret(&existing) {
                    Ok(current) if !needs_renewal(&current, now, config.renew_before) => {
                        bundle = Some(current);
                        break;
                    }
                    Ok(current) => current,
                    Err(err) => {
                        tracing::warn!(error = %err, "certificate Secret unusable; regenerating it");
                        super::generate(&names, now)?
                    }
                };
                // Renew the serving pair with the same CA so the caBundle stays valid for
                // replicas still serving the old pair.
                let (cert_pem, key_pem) =
                    super::issue_serving(&current.ca_cert_pem, &current.ca_key_pem, &names, now)?;
                let renewed = CertBundle {
                    cert_pem,
                    key_pem,
                    ..current
                };
                let mut updated = existing.clone();
                updated.data = Some(secret_data(&renewed));
                match secrets
                    .replace(&config.secret_name, &PostParams::default(), &updated)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(secret = %config.secret_name, "renewed webhook serving certificate");
                        bundle = Some(renewed);
                        break;
                    }
                    Err(kube::Error::Api(status)) if status.is_conflict() => continue,
                    Err(err) => return Err(err.into()),
                }
            }
        }
    }
    let bundle = bundle.ok_or_else(|| BootstrapError::Conflicts(config.secret_name.clone()))?;
    write_local(config, &bundle)?;
    patch_ca_bundle(client, config, &bundle.ca_cert_pem).await?;
    Ok(bundle)
}

fn write_local(config: &BootstrapConfig, bundle: &CertBundle) -> Result<(), BootstrapError> {
    let ca_path = config
        .cert_path
        .parent()
        .map_or_else(|| PathBuf::from("ca.crt"), |dir| dir.join("ca.crt"));
    // Key first: the TLS reloader only swaps when both files form a valid pair, and it polls.
    for (path, content, mode) in [
        (&config.key_path, &bundle.key_pem, 0o600),
        (&config.cert_path, &bundle.cert_pem, 0o644),
        (&ca_path, &bundle.ca_cert_pem, 0o644),
    ] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|error| CertError::Write {
                path: dir.to_owned(),
                error,
            })?;
        }
        let current = std::fs::read(path).ok();
        if current.as_deref() != Some(content.as_bytes()) {
            super::write_atomically(path, content.as_bytes(), mode).map_err(|error| {
                CertError::Write {
                    path: path.clone(),
                    error,
                }
            })?;
        }
    }
    Ok(())
}

/// Sets `caBundle` on every webhook of the configuration that points at fluxgate's Service.
async fn patch_ca_bundle(
    client: &kube::Client,
    config: &BootstrapConfig,
    ca_pem: &str,
) -> Result<(), BootstrapError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let current = api.get(&config.webhook_config_name).await?;
    let wanted = ByteString(ca_pem.as_bytes().to_vec());
    let mut ops = Vec::new();
    for (index, webhook) in current.webhooks.iter().flatten().enumerate() {
        let ours = webhook
            .client_config
            .service
            .as_ref()
            .is_some_and(|s| s.name == config.service_name && s.namespace == config.namespace);
        if ours && webhook.client_config.ca_bundle.as_ref() != Some(&wanted) {
            // Guard each index with a test of the name, so a concurrent reorder fails the patch
            // instead of writing the bundle into someone else's webhook.
            let webhook_path = ["webhooks".to_owned(), index.to_string()];
            let path = |tail: &[&str]| {
                let tokens = webhook_path
                    .iter()
                    .map(String::as_str)
                    .chain(tail.iter().copied());
                jsonptr::PointerBuf::from_tokens(tokens.map(jsonptr::Token::new))
            };
            ops.push(PatchOperation::Test(TestOperation {
                path: path(&["name"]),
                value: webhook.name.clone().into(),
            }));
            ops.push(PatchOperation::Add(AddOperation {
                path: path(&["clientConfig", "caBundle"]),
                value: base64::engine::general_purpose::STANDARD
                    .encode(ca_pem)
                    .into(),
            }));
        }
    }
    if ops.is_empty() {
        return Ok(());
    }
    let patch = json_patch::Patch(ops);
    api.patch(
        &config.webhook_config_name,
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    tracing::info!(webhook_config = %config.webhook_config_name, "caBundle updated");
    Ok(())
}

/// Re-runs [`ensure`] every `interval`: picks up a pair renewed by another replica, renews when
/// due, and repairs a `caBundle` that something reset.
pub async fn keep_current(client: kube::Client, config: BootstrapConfig, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if let Err(err) = ensure(&client, &config).await {
            tracing::warn!(error = %err, "certificate bootstrap check failed; retrying next interval");
        }
    }
}
