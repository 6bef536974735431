//! fluxgate's own check that a Git host answers: one short, bounded request, the first step of a
//! clone, so a host's breaker can tell a host that is back from one that is not without
//! releasing a GitRepository to find out.
//!
//! - HTTP(S): `GET <repo>/info/refs?service=git-upload-pack`, the smart-HTTP discovery request
//!   git starts with, without credentials. Any status below 500 but 429 is an answer (401, 403
//!   and 404 mean the host is up); 429, 502 and 503 are [`Verdict::Throttled`]. The body is not
//!   read and redirects are not followed: the status is the answer.
//! - SSH: a TCP connect and the server's identification line ([`ssh`]).
//!
//! A probe goes through the proxy source-controller would use for the URL ([`ProxyRoutes`]),
//! trusts the bundled Mozilla roots plus the system's (`SSL_CERT_FILE`/`SSL_CERT_DIR` replace
//! the system's, so a private CA can be mounted) plus any given, and never takes longer than the
//! [`Prober`]'s timeout.

mod route;
mod ssh;

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::fmt;
use std::hash::Hash;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::sync::Semaphore;
use url::{Host, Url};

pub use route::{ProxyRoutes, RouteError};

/// How long a probe may take unless configured otherwise: a host that has not answered the
/// first request of a clone in 10 seconds is not serving clones.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many hosts are probed at once unless configured otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;

const USER_AGENT: &str = concat!("fluxgate/", env!("CARGO_PKG_VERSION"), " (host probe)");

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The host answered: an HTTP status below 500 other than 429, or an SSH identification
    /// line (`status` is then `None`).
    Answered { status: Option<u16> },
    /// 429, 502 or 503: the host, or a gateway in front of it, asks to come back later.
    Throttled { status: u16 },
    /// Another 5xx status.
    ServerError { status: u16 },
    /// No answer within the timeout: a hang, a tarpit, a silent drop.
    Timeout,
    /// The connection was refused.
    Refused,
    /// The connection was reset or closed before an answer, or no route leads to the host.
    Connection,
    /// The host's name could not be resolved.
    Dns,
    /// The TLS handshake failed (an untrusted or invalid certificate included).
    Tls,
    /// The proxy could not be reached or would not open a tunnel to the host.
    Proxy,
    /// Something answered, but not HTTP, or not an SSH server.
    Protocol,
    /// The URL is not one a probe can use (see [`TargetError`]).
    InvalidUrl,
}

impl Verdict {
    /// Every [`Verdict::reason`] label, to register metric series up front.
    pub const REASONS: [&'static str; 11] = [
        "answered",
        "throttled",
        "server_error",
        "timeout",
        "refused",
        "connection",
        "dns",
        "tls",
        "proxy",
        "protocol",
        "invalid_url",
    ];

    /// The verdict on an HTTP status.
    pub fn from_status(status: u16) -> Self {
        match status {
            429 | 502 | 503 => Self::Throttled { status },
            500.. => Self::ServerError { status },
            _ => Self::Answered {
                status: Some(status),
            },
        }
    }

    /// Whether the host answered, which is all a breaker may release on.
    pub fn answered(&self) -> bool {
        matches!(self, Self::Answered { .. })
    }

    /// A short label for metrics and logs, one of [`Verdict::REASONS`].
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Answered { .. } => "answered",
            Self::Throttled { .. } => "throttled",
            Self::ServerError { .. } => "server_error",
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Connection => "connection",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Proxy => "proxy",
            Self::Protocol => "protocol",
            Self::InvalidUrl => "invalid_url",
        }
    }
}

/// What a probe contacts for a GitRepository's `spec.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The smart-HTTP discovery URL, without user info.
    Http(Url),
    /// An SSH server (`host` without brackets for IPv6).
    Ssh { host: String, port: u16 },
}

/// Why a URL cannot be probed. Never carries the URL: it may hold credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("not a URL, nor scp-like user@host:path")]
    NotAUrl,
    #[error("scheme {0:?} is not probed (http, https, ssh and scp-like user@host:path are)")]
    UnsupportedScheme(String),
    #[error("the URL names no host")]
    NoHost,
}

impl Target {
    /// `https://`/`http://` URLs, `ssh://[user@]host[:port]/path` and scp-like
    /// `[user@]host:path`, as source-controller accepts them.
    pub fn parse(repo_url: &str) -> Result<Self, TargetError> {
        let text = repo_url.trim();
        if !text.contains("://") {
            return scp_like(text);
        }
        let url = Url::parse(text).map_err(|_| TargetError::NotAUrl)?;
        match url.scheme() {
            "http" | "https" => discovery_url(url).map(Self::Http),
            "ssh" => {
                let host = match url.host().ok_or(TargetError::NoHost)? {
                    Host::Domain(name) if !name.is_empty() => name.to_ascii_lowercase(),
                    Host::Domain(_) => return Err(TargetError::NoHost),
                    Host::Ipv4(ip) => ip.to_string(),
                    Host::Ipv6(ip) => ip.to_string(),
                };
                Ok(Self::Ssh {
                    host,
                    port: url.port().unwrap_or(22),
                })
            }
            scheme => Err(TargetError::UnsupportedScheme(scheme.to_owned())),
        }
    }
}

impl fmt::Display for Target {
    /// What the probe contacts, fit for logs: user info was dropped when parsing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Http(url) => f.write_str(url.as_str()),
            Self::Ssh { host, port } if host.contains(':') => write!(f, "ssh://[{host}]:{port}"),
            Self::Ssh { host, port } => write!(f, "ssh://{host}:{port}"),
        }
    }
}

/// `<repo>/info/refs?service=git-upload-pack`: no user info, no trailing slash, `.git` kept as
/// given, the repository URL's own query and fragment dropped.
fn discovery_url(mut url: Url) -> Result<Url, TargetError> {
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::NoHost);
    }
    // Both only fail for URLs without a host, excluded above.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_fragment(None);
    let path = format!("{}/info/refs", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(Some("service=git-upload-pack"));
    Ok(url)
}

/// git's scp-like syntax: a `:` before any `/`, an optional `user@`, an optional `[...]` host.
fn scp_like(text: &str) -> Result<Target, TargetError> {
    let after_user = match text.split_once('@') {
        Some((user, rest)) if !user.contains(['/', ':', '[']) => rest,
        _ => text,
    };
    let (host, port) = if let Some(inner) = after_user.strip_prefix('[') {
        let (bracketed, rest) = inner.split_once(']').ok_or(TargetError::NotAUrl)?;
        if !rest.starts_with(':') {
            return Err(TargetError::NotAUrl);
        }
        // `[host:port]:path` as git reads it; a bare IPv6 address otherwise.
        match bracketed.rsplit_once(':') {
            Some((host, port)) if bracketed.parse::<IpAddr>().is_err() => {
                (host, port.parse::<u16>().map_err(|_| TargetError::NotAUrl)?)
            }
            _ => (bracketed, 22),
        }
    } else {
        match after_user.split_once(':') {
            Some((host, _)) if !host.contains('/') => (host, 22),
            _ => return Err(TargetError::NotAUrl),
        }
    };
    let plausible = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if host.is_empty() || !plausible {
        return Err(TargetError::NoHost);
    }
    Ok(Target::Ssh {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// A [`Prober`]'s settings.
#[derive(Debug, Clone)]
pub struct ProberConfig {
    /// The most one probe may take, from its connect to its answer.
    pub timeout: Duration,
    /// How many probes run at once, across calls.
    pub concurrency: usize,
    /// The proxies source-controller uses.
    pub proxy: ProxyRoutes,
    /// Roots trusted besides the bundled and the system's.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Names answered without DNS, like `/etc/hosts` entries.
    pub static_hosts: Vec<(String, IpAddr)>,
}

impl Default for ProberConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            concurrency: DEFAULT_CONCURRENCY,
            proxy: ProxyRoutes::direct(),
            extra_roots: Vec::new(),
            static_hosts: Vec::new(),
        }
    }
}

/// Why a [`Prober`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ProberError {
    #[error("the probe timeout must be longer than zero")]
    ZeroTimeout,
    #[error("a trusted root certificate is invalid: {0}")]
    Root(rustls::Error),
    #[error("TLS settings: {0}")]
    Tls(rustls::Error),
    #[error("HTTP client: {0}")]
    Client(reqwest::Error),
}

/// Probes Git hosts with one client, a timeout and a bound on how many run at once.
#[derive(Debug, Clone)]
pub struct Prober {
    client: reqwest::Client,
    proxy: ProxyRoutes,
    static_hosts: Arc<HashMap<String, IpAddr>>,
    timeout: Duration,
    permits: Arc<Semaphore>,
}

impl Prober {
    pub fn new(config: ProberConfig) -> Result<Self, ProberError> {
        if config.timeout.is_zero() {
            return Err(ProberError::ZeroTimeout);
        }
        let tls = tls_config(&config.extra_roots)?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // Only the routes below: never the process's own proxy variables.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            // A fresh connection each time: a pooled one would say nothing about the host now.
            .pool_max_idle_per_host(0)
            .http1_only()
            .user_agent(USER_AGENT);
        for (name, ip) in &config.static_hosts {
            builder = builder.resolve(name, SocketAddr::new(*ip, 0));
        }
        if config.proxy.is_enabled() {
            let routes = config.proxy.clone();
            builder = builder.proxy(reqwest::Proxy::custom(move |url| {
                routes.proxy_for(url).cloned()
            }));
        }
        Ok(Self {
            client: builder.build().map_err(ProberError::Client)?,
            proxy: config.proxy,
            static_hosts: Arc::new(
                config
                    .static_hosts
                    .into_iter()
                    .map(|(name, ip)| (name.to_ascii_lowercase(), ip))
                    .collect(),
            ),
            timeout: config.timeout,
            permits: Arc::new(Semaphore::new(
                config.concurrency.clamp(1, Semaphore::MAX_PERMITS),
            )),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Probes one target, waiting for a free slot first; the timeout starts once it has one.
    pub async fn probe(&self, target: &Target) -> Verdict {
        // The semaphore is never closed; without a permit the probe would still be bounded.
        let _permit = self.permits.acquire().await.ok();
        let attempt = async {
            match target {
                Target::Http(url) => self.probe_http(url).await,
                Target::Ssh { host, port } => self.probe_ssh(host, *port).await,
            }
        };
        let verdict = tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or(Verdict::Timeout);
        tracing::debug!(probe = %target, reason = verdict.reason(), "host probe");
        verdict
    }

    /// Probes a GitRepository's `spec.url`; [`Verdict::InvalidUrl`] when it cannot be probed.
    pub async fn probe_url(&self, repo_url: &str) -> Verdict {
        match Target::parse(repo_url) {
            Ok(target) => self.probe(&target).await,
            Err(_) => Verdict::InvalidUrl,
        }
    }

    /// Probes each host once, by the first URL given for its key, all at once within the
    /// concurrency bound: one connection per host per call. Verdicts come in the order given.
    pub async fn probe_hosts<K, U>(
        &self,
        targets: impl IntoIterator<Item = (K, U)>,
    ) -> Vec<(K, Verdict)>
    where
        K: Eq + Hash + Clone,
        U: AsRef<str>,
    {
        let mut seen = HashSet::new();
        let unique: Vec<(K, U)> = targets
            .into_iter()
            .filter(|(key, _)| seen.insert(key.clone()))
            .collect();
        futures::future::join_all(unique.into_iter().map(|(key, url)| async move {
            let verdict = self.probe_url(url.as_ref()).await;
            (key, verdict)
        }))
        .await
    }

    async fn probe_http(&self, url: &Url) -> Verdict {
        let via_proxy = self.proxy.proxy_for(url).is_some();
        match self.client.get(url.clone()).send().await {
            // The response is dropped unread: its status is the answer.
            Ok(response) => Verdict::from_status(response.status().as_u16()),
            Err(error) => http_error_verdict(&error, via_proxy),
        }
    }

    async fn probe_ssh(&self, host: &str, port: u16) -> Verdict {
        let addresses: Vec<SocketAddr> = match self.static_hosts.get(host) {
            Some(ip) => vec![SocketAddr::new(*ip, port)],
            None => match tokio::net::lookup_host((host, port)).await {
                Ok(found) => found.collect(),
                Err(_) => return Verdict::Dns,
            },
        };
        ssh::identify(&addresses).await
    }
}

/// rustls with ring, the bundled Mozilla roots, the system's and `extra`.
fn tls_config(extra: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, ProberError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let system = rustls_native_certs::load_native_certs();
    if !system.errors.is_empty() {
        tracing::debug!(
            errors = system.errors.len(),
            "some system CA certificates could not be read"
        );
    }
    roots.add_parsable_certificates(system.certs);
    for root in extra {
        roots.add(root.clone()).map_err(ProberError::Root)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ProberError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A socket error's verdict, when it has a telling kind. TLS errors reach here wrapped in one
/// or two I/O errors, and an I/O error's `source()` skips what it wraps: look inside.
fn io_verdict(error: &io::Error) -> Option<Verdict> {
    use io::ErrorKind::*;
    let inner = error.get_ref();
    if inner.is_some_and(|inner| inner.is::<rustls::Error>()) {
        return Some(Verdict::Tls);
    }
    let nested = inner
        .and_then(|inner| inner.downcast_ref::<io::Error>())
        .and_then(io_verdict);
    let own = match error.kind() {
        ConnectionRefused => Some(Verdict::Refused),
        TimedOut => Some(Verdict::Timeout),
        ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe | UnexpectedEof
        | HostUnreachable | NetworkUnreachable | AddrNotAvailable => Some(Verdict::Connection),
        _ => None,
    };
    match nested {
        Some(Verdict::Tls) => nested,
        _ => own.or(nested),
    }
}

/// Reads the error's causes, outermost first. Through a proxy, failing to connect or resolve is
/// the proxy's failure: the host's name is the proxy's to resolve.
fn http_error_verdict(error: &reqwest::Error, via_proxy: bool) -> Verdict {
    if error.is_timeout() {
        return Verdict::Timeout;
    }
    let mut found = None;
    let mut cause: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.is::<rustls::Error>() {
            return Verdict::Tls;
        }
        // hyper-util's tunnel error is not exported: its text is what there is.
        if current.to_string().starts_with("tunnel error") {
            return Verdict::Proxy;
        }
        if let Some(hyper_error) = current.downcast_ref::<hyper::Error>() {
            if hyper_error.is_parse() || hyper_error.is_parse_status() {
                found = found.or(Some(Verdict::Protocol));
            } else if hyper_error.is_incomplete_message() {
                found = found.or(Some(Verdict::Connection));
            }
        }
        if let Some(io_error) = current.downcast_ref::<io::Error>()
            && let Some(verdict) = io_verdict(io_error)
        {
            if verdict == Verdict::Tls {
                return verdict;
            }
            found = found.or(Some(verdict));
        }
        cause = current.source();
    }
    let verdict = if error.is_dns() {
        Verdict::Dns
    } else {
        found.unwrap_or(Verdict::Connection)
    };
    match verdict {
        Verdict::Dns | Verdict::Refused | Verdict::Connection
            if via_proxy && error.is_connect() =>
        {
            Verdict::Proxy
        }
        verdict => verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        for status in [
            200, 204, 301, 302, 304, 400, 401, 403, 404, 407, 410, 418, 499,
        ] {
            let verdict = Verdict::from_status(status);
            assert!(verdict.answered(), "{status}");
            assert_eq!(verdict.reason(), "answered");
        }
        for status in [429, 502, 503] {
            let verdict = Verdict::from_status(status);
            assert_eq!(verdict, Verdict::Throttled { status });
            assert!(!verdict.answered());
        }
        for status in [500, 501, 504, 599] {
            let verdict = Verdict::from_status(status);
            assert_eq!(verdict.reason(), "server_error");
            assert!(!verdict.answered());
        }
    }

    #[test]
    fn every_reason_is_listed_once_and_only_answers_answer() {
        let all = [
            Verdict::Answered { status: None },
            Verdict::Throttled { status: 429 },
            Verdict::ServerError { status: 500 },
            Verdict::Timeout,
            Verdict::Refused,
            Verdict::Connection,
            Verdict::Dns,
            Verdict::Tls,
            Verdict::Proxy,
            Verdict::Protocol,
            Verdict::InvalidUrl,
        ];
        let reasons: Vec<&str> = all.iter().map(Verdict::reason).collect();
        assert_eq!(reasons, Verdict::REASONS);
        assert_eq!(all.iter().filter(|v| v.answered()).count(), 1);
    }

    fn discovery(url: &str) -> String {
        match Target::parse(url).unwrap() {
            Target::Http(url) => url.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn http_urls_become_the_discovery_request_without_credentials() {
        assert_eq!(
            discovery("https://github.com/org/repo"),
            "https://github.com/org/repo/info/refs?service=git-upload-pack"
        );
        assert_eq!(
            discovery("https://github.com/org/repo.git/"),
            "https://github.com/org/repo.git/info/refs?service=git-upload-pack"
        );
        assert_eq!(
            discovery("http://user:s3cret@git.corp:8080/org/repo.git?ref=x#frag"),
            "http://git.corp:8080/org/repo.git/info/refs?service=git-upload-pack"
        );
        assert_eq!(
            discovery(" https://token@git.corp "),
            "https://git.corp/info/refs?service=git-upload-pack"
        );
    }

    fn ssh(url: &str) -> (String, u16) {
        match Target::parse(url).unwrap() {
            Target::Ssh { host, port } => (host, port),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ssh_urls_and_scp_like_forms() {
        let github = ("github.com".to_owned(), 22);
        assert_eq!(ssh("ssh://git@github.com/org/repo"), github);
        assert_eq!(ssh("ssh://git@GitHub.com:22/org/repo.git"), github);
        assert_eq!(ssh("git@github.com:org/repo.git"), github);
        assert_eq!(ssh("github.com:org/repo"), github);
        assert_eq!(
            ssh("ssh://git@git.corp:2222/org/repo"),
            ("git.corp".to_owned(), 2222)
        );
        assert_eq!(
            ssh("ssh://git@[2001:db8::7]:2222/r"),
            ("2001:db8::7".to_owned(), 2222)
        );
        assert_eq!(
            ssh("git@[2001:db8::7]:org/r"),
            ("2001:db8::7".to_owned(), 22)
        );
        assert_eq!(ssh("[git.corp:2222]:org/r"), ("git.corp".to_owned(), 2222));
        let target = Target::parse("ssh://git@[2001:db8::7]:2222/r").unwrap();
        assert_eq!(target.to_string(), "ssh://[2001:db8::7]:2222");
    }

    #[test]
    fn urls_that_cannot_be_probed_say_why_without_echoing_them() {
        for (url, error) in [
            ("", TargetError::NotAUrl),
            (
                "file:///srv/git/repo",
                TargetError::UnsupportedScheme("file".into()),
            ),
            (
                "git://git.corp/repo",
                TargetError::UnsupportedScheme("git".into()),
            ),
            ("/srv/git/repo", TargetError::NotAUrl),
            ("./repo:x", TargetError::NotAUrl),
            ("https://", TargetError::NotAUrl),
            ("ssh://user:s3cret@/r", TargetError::NotAUrl),
            ("git@git corp:r", TargetError::NoHost),
            ("[git.corp:port]:r", TargetError::NotAUrl),
        ] {
            let got = Target::parse(url).unwrap_err();
            assert_eq!(got, error, "{url:?}");
            assert!(!got.to_string().contains("s3cret"));
        }
    }

    #[test]
    fn a_prober_prints_no_proxy_credentials_and_takes_any_concurrency() {
        let prober = Prober::new(ProberConfig {
            proxy: ProxyRoutes::new(Some("http://user:s3cret@proxy.corp:3128"), None, "").unwrap(),
            concurrency: usize::MAX,
            ..ProberConfig::default()
        })
        .unwrap();
        let shown = format!("{prober:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("***@proxy.corp"),
            "{shown}"
        );
    }

    #[test]
    fn a_zero_timeout_is_refused() {
        let config = ProberConfig {
            timeout: Duration::ZERO,
            ..ProberConfig::default()
        };
        assert!(matches!(Prober::new(config), Err(ProberError::ZeroTimeout)));
    }
}
