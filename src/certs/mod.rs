//! Certificates for the webhook: a private CA and a serving certificate it signs.
//!
//! Used by `fluxgate certs` (static files for local and plain setups) and by the in-cluster
//! bootstrap in [`bootstrap`], which keeps the pair in a Secret and the CA in the webhook
//! configuration's `caBundle`.

pub mod args;
pub mod bootstrap;

pub use args::CertArgs;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// Validity of a generated CA: long, because replacing it means updating every `caBundle`.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Validity of a serving certificate: renewed by the bootstrap well before it ends.
pub const SERVING_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{0:?} is not a usable DNS name")]
    DnsName(String),
    #[error("no DNS name or IP address given for the serving certificate")]
    NoNames,
    #[error("writing {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// A CA and the serving certificate it issued, all PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertBundle {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBundle").finish_non_exhaustive()
    }
}

/// Names the serving certificate is valid for.
#[derive(Debug, Clone, Default)]
pub struct ServingNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ServingNames {
    /// The names kube-apiserver uses for a webhook Service: `svc.ns.svc` (and longer forms).
    pub fn for_service(service: &str, namespace: &str) -> Self {
        Self {
            dns: vec![
                format!("{service}.{namespace}.svc"),
                format!("{service}.{namespace}.svc.cluster.local"),
                format!("{service}.{namespace}"),
                service.to_owned(),
            ],
            ips: Vec::new(),
        }
    }
}

fn validity(params: &mut CertificateParams, now: OffsetDateTime, lifetime: Duration) {
    // Tolerate clock skew between fluxgate and the API server.
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + lifetime;
}

/// A new self-signed CA.
pub fn generate_ca(now: OffsetDateTime) -> Result<(String, String), CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "fluxgate webhook CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, now, CA_VALIDITY);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A serving certificate for `names`, signed by the CA given as PEM.
pub fn issue_serving(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    names: &ServingNames,
    now: OffsetDateTime,
) -> Result<(String, String), CertError> {
    if names.dns.is_empty() && names.ips.is_empty() {
        return Err(CertError::NoNames);
    }
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names
            .dns
            .first()
            .cloned()
            .unwrap_or_else(|| names.ips[0].to_string()),
    );
    params.distinguished_name = dn;
    for name in &names.dns {
        if !is_dns_name(name) {
            return Err(CertError::DnsName(name.clone()));
        }
        let dns = name
            .as_str()
            .try_into()
            .map_err(|_| CertError::DnsName(name.clone()))?;
        params.subject_alt_names.push(SanType::DnsName(dns));
    }
    for ip in &names.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, SERVING_VALIDITY);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// RFC 1123 host names, optionally with a leading `*.` wildcard label.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A new CA and a serving certificate for `names`.
pub fn generate(names: &ServingNames, now: OffsetDateTime) -> Result<CertBundle, CertError> {
    let (ca_cert_pem, ca_key_pem) = generate_ca(now)?;
    let (cert_pem, key_pem) = issue_serving(&ca_cert_pem, &ca_key_pem, names, now)?;
    Ok(CertBundle {
        ca_cert_pem,
        ca_key_pem,
        cert_pem,
        key_pem,
    })
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, creating it. The CA key is
/// not written: static setups re-run `fluxgate certs` to rotate.
pub fn write_dir(dir: &Path, bundle: &CertBundle) -> Result<Vec<PathBuf>, CertError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |error| CertError::Write { path, error }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    let files = [
        ("ca.crt", &bundle.ca_cert_pem, 0o644),
        ("tls.crt", &bundle.cert_pem, 0o644),
        ("tls.key", &bundle.key_pem, 0o600),
    ];
    let mut written = Vec::new();
    for (name, content, mode) in files {
        let path = dir.join(name);
        write_atomically(&path, content.as_bytes(), mode).map_err(err(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes through a temporary file and a rename, so a reader never sees half a PEM file.
pub fn write_atomically(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("fluxgate")
    ));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    std::fs::rename(&tmp, path)
}

/// notAfter of the first certificate in a PEM string, in Unix seconds.
pub fn not_after(cert_pem: &str) -> Option<i64> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::tls::KeyPairPem;

    #[test]
    fn generated_pair_is_a_valid_rustls_config_and_expires_as_planned() {
        let now = OffsetDateTime::now_utc();
        let names = ServingNames {
            dns: vec!["fluxgate.fluxgate.svc".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
        };
        let bundle = generate(&names, now).unwrap();
        let pair = KeyPairPem {
            cert: bundle.cert_pem.clone().into_bytes(),
            key: bundle.key_pem.clone().into_bytes(),
        };
        pair.server_config().expect("usable by rustls");
        let expected = (now + SERVING_VALIDITY).unix_timestamp();
        assert!((not_after(&bundle.cert_pem).unwrap() - expected).abs() <= 1);
        let ca_expected = (now + CA_VALIDITY).unix_timestamp();
        assert!((not_after(&bundle.ca_cert_pem).unwrap() - ca_expected).abs() <= 1);
    }

    #[test]
    fn serving_certificate_names_and_issuer() {
        let now = OffsetDateTime::now_utc();
        let bundle = generate(&ServingNames::for_service("fluxgate", "ops"), now).unwrap();
        let der = rustls_pki_types::pem::PemObject::pem_slice_iter(bundle.cert_pem.as_bytes())
            .next()
            .unwrap()
            .map(|c: rustls_pki_types::CertificateDer<'static>| c)
            .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(
            names.contains(&"DNSName(fluxgate.ops.svc)".to_owned()),
            "{names:?}"
        );
        assert!(!cert.is_ca());
        assert_eq!(
            cert.issuer().to_string(),
            "CN=fluxgate webhook CA",
            "signed by the generated CA"
        );
    }

    #[test]
    fn rejects_missing_or_bad_names() {
        let now = OffsetDateTime::now_utc();
        assert!(matches!(
            generate(&ServingNames::default(), now),
            Err(CertError::NoNames)
        ));
        let bad = ServingNames {
            dns: vec!["bad name with spaces\u{0}".into()],
            ips: vec![],
        };
        assert!(generate(&bad, now).is_err());
    }

    #[test]
    fn writes_the_three_files_with_a_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = generate(
            &ServingNames::for_service("fluxgate", "fluxgate"),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let written = write_dir(dir.path(), &bundle).unwrap();
        assert_eq!(written.len(), 3);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
            bundle.cert_pem
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
