//! Which proxy a Git URL goes through, decided as source-controller decides it, so a probe takes
//! the same path as the clones it stands for.
//!
//! source-controller's HTTP transport (go-git) uses Go's `http.ProxyFromEnvironment`, that is
//! `golang.org/x/net/http/httpproxy`: `HTTPS_PROXY` for `https` URLs, `HTTP_PROXY` for `http`
//! ones, never a proxy for `localhost` or a loopback address, and `NO_PROXY` entries that are `*`
//! (everything), a CIDR, an IP (optionally `:port`), or a domain (optionally `:port`): `corp.example`
//! matches it and its subdomains, `.corp.example` and `*.corp.example` only its subdomains.
//! reqwest's own `NoProxy` reads `.corp.example` differently, hence this small matcher.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use url::{Host, Url};

use crate::policy::ProxyPolicy;
use crate::policy::proxy::ProxyValue;

/// The proxies in force and the destinations that bypass them.
#[derive(Clone, Default)]
pub struct ProxyRoutes {
    https: Option<Url>,
    http: Option<Url>,
    no_proxy: NoProxy,
}

/// Why a proxy setting cannot be used. Never carries the value: it may hold credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{variable} is not a proxy URL")]
    NotAUrl { variable: &'static str },
    #[error("{variable}: proxy scheme {scheme:?} is not supported (http, https, socks5, socks5h)")]
    UnsupportedScheme {
        variable: &'static str,
        scheme: String,
    },
    #[error(
        "{variable} is kept in Secret key {name}/{key}, which fluxgate does not read: pass its value"
    )]
    InSecret {
        variable: &'static str,
        name: String,
        key: String,
    },
}

impl ProxyRoutes {
    /// No proxy at all: every probe connects directly.
    pub fn direct() -> Self {
        Self::default()
    }

    /// From the values source-controller would see in `HTTPS_PROXY`, `HTTP_PROXY` and
    /// `NO_PROXY`. A value without a scheme means `http://`, as in Go.
    pub fn new(
        https_proxy: Option<&str>,
        http_proxy: Option<&str>,
        no_proxy: &str,
    ) -> Result<Self, RouteError> {
        Ok(Self {
            https: parse_proxy("HTTPS_PROXY", https_proxy)?,
            http: parse_proxy("HTTP_PROXY", http_proxy)?,
            no_proxy: NoProxy::parse(no_proxy),
        })
    }

    /// What fluxgate injects into source-controller's Pods (`--https-proxy`, `--http-proxy`,
    /// and the composed NO_PROXY). A proxy kept in a Secret is refused: fluxgate never reads it.
    pub fn from_policy(policy: &ProxyPolicy) -> Result<Self, RouteError> {
        fn literal<'a>(
            variable: &'static str,
            value: Option<&'a ProxyValue>,
        ) -> Result<Option<&'a str>, RouteError> {
            match value {
                None => Ok(None),
                Some(ProxyValue::Literal(url)) => Ok(Some(url)),
                Some(ProxyValue::SecretKey { name, key }) => Err(RouteError::InSecret {
                    variable,
                    name: name.clone(),
                    key: key.clone(),
                }),
            }
        }
        if !policy.is_enabled() {
            return Ok(Self::direct());
        }
        Self::new(
            literal("HTTPS_PROXY", policy.https_proxy.as_ref())?,
            literal("HTTP_PROXY", policy.http_proxy.as_ref())?,
            &policy.no_proxy_value(),
        )
    }

    /// Whether any proxy is configured.
    pub fn is_enabled(&self) -> bool {
        self.https.is_some() || self.http.is_some()
    }

    /// The proxy a request to `url` goes through, or `None` for a direct connection.
    pub fn proxy_for(&self, url: &Url) -> Option<&Url> {
        let proxy = match url.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref(),
            _ => None,
        }?;
        let host = url.host()?;
        let port = url.port_or_known_default()?;
        (!self.no_proxy.bypasses(&host, port)).then_some(proxy)
    }
}

impl fmt::Debug for ProxyRoutes {
    /// Never prints a proxy's credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |url: &Option<Url>| {
            url.as_ref().map(|url| {
                let mut shown = url.clone();
                let had_userinfo = !url.username().is_empty() || url.password().is_some();
                // Cannot fail: a proxy URL always has a host.
                let _ = shown.set_username("");
                let _ = shown.set_password(None);
                match (had_userinfo, shown.host_str()) {
                    (true, Some(host)) => {
                        shown
                            .as_str()
                            .replacen(&format!("//{host}"), &format!("//***@{host}"), 1)
                    }
                    _ => shown.to_string(),
                }
            })
        };
        f.debug_struct("ProxyRoutes")
            .field("https", &redacted(&self.https))
            .field("http", &redacted(&self.http))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

fn parse_proxy(variable: &'static str, value: Option<&str>) -> Result<Option<Url>, RouteError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    // Go reads a value without a scheme (`proxy.corp:3128`) as `http://proxy.corp:3128`.
    let url = if value.contains("://") {
        Url::parse(value)
    } else {
        Url::parse(&format!("http://{value}"))
    }
    .ok()
    .filter(|url| url.host_str().is_some_and(|h| !h.is_empty()))
    .ok_or(RouteError::NotAUrl { variable })?;
    match url.scheme() {
        "http" | "https" | "socks5" | "socks5h" => Ok(Some(url)),
        scheme => Err(RouteError::UnsupportedScheme {
            variable,
            scheme: scheme.to_owned(),
        }),
    }
}

/// A parsed NO_PROXY list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NoProxy {
    everything: bool,
    networks: Vec<IpNet>,
    addresses: Vec<(IpAddr, Option<u16>)>,
    domains: Vec<DomainRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DomainRule {
    /// Always starts with a dot.
    suffix: String,
    /// Whether the domain itself matches too (an entry written without a leading dot).
    itself: bool,
    port: Option<u16>,
}

impl NoProxy {
    fn parse(list: &str) -> Self {
        let mut rules = Self::default();
        for entry in list.split(',').map(|e| e.trim().to_ascii_lowercase()) {
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                return Self {
                    everything: true,
                    ..Self::default()
                };
            }
            if let Ok(network) = entry.parse::<IpNet>() {
                rules.networks.push(network);
                continue;
            }
            let Some((host, port)) = split_port(&entry) else {
                // A port that is not a number matches no URL.
                continue;
            };
            if host.is_empty() {
                continue;
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                rules.addresses.push((ip, port));
                continue;
            }
            let host = host.strip_prefix('*').unwrap_or(host);
            let (suffix, itself) = match host.strip_prefix('.') {
                Some(_) => (host.to_owned(), false),
                None => (format!(".{host}"), true),
            };
            // Hosts reach the matcher in their ASCII (punycode) form.
            let suffix = match Host::parse(&suffix[1..]) {
                Ok(Host::Domain(ascii)) => format!(".{ascii}"),
                _ => suffix,
            };
            rules.domains.push(DomainRule {
                suffix,
                itself,
                port,
            });
        }
        rules
    }

    fn bypasses(&self, host: &Host<&str>, port: u16) -> bool {
        let port_matches = |wanted: Option<u16>| wanted.is_none_or(|p| p == port);
        match host {
            Host::Domain(name) => {
                let name = name.to_ascii_lowercase();
                name == "localhost"
                    || self.everything
                    || self.domains.iter().any(|rule| {
                        (name.ends_with(&rule.suffix) || (rule.itself && name == rule.suffix[1..]))
                            && port_matches(rule.port)
                    })
            }
            Host::Ipv4(ip) => self.bypasses_ip(IpAddr::V4(*ip), port),
            Host::Ipv6(ip) => self.bypasses_ip(IpAddr::V6(*ip), port),
        }
    }

    fn bypasses_ip(&self, ip: IpAddr, port: u16) -> bool {
        ip.is_loopback()
            || self.everything
            || self.networks.iter().any(|n| n.contains(&ip))
            || self
                .addresses
                .iter()
                .any(|(a, p)| *a == ip && p.is_none_or(|p| p == port))
    }
}

/// `host`, `host:port`, `[v6]:port` or a bare IPv6 address; `None` when the port is not a
/// number. An empty port (`host:`) means any port, as in Go.
fn split_port(entry: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" | ":" => Some((host, None)),
            _ => after
                .strip_prefix(':')?
                .parse()
                .ok()
                .map(|p| (host, Some(p))),
        };
    }
    match entry.split_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((_, rest)) if rest.contains(':') => Some((entry, None)),
        Some((host, "")) => Some((host, None)),
        Some((host, port)) => port.parse().ok().map(|p| (host, Some(p))),
        None => Some((entry, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(no_proxy: &str) -> ProxyRoutes {
        ProxyRoutes::new(
            Some("http://proxy.corp:3128"),
            Some("http://plain-proxy.corp:8080"),
            no_proxy,
        )
        .unwrap()
    }

    fn via(routes: &ProxyRoutes, url: &str) -> Option<String> {
        routes
            .proxy_for(&Url::parse(url).unwrap())
            .map(|u| u.host_str().unwrap_or_default().to_owned())
    }

    #[test]
    fn https_and_http_urls_take_their_own_proxy_and_ssh_none() {
        let r = routes("");
        assert_eq!(
            via(&r, "https://github.com/o/r").as_deref(),
            Some("proxy.corp")
        );
        assert_eq!(
            via(&r, "http://git.corp/o/r").as_deref(),
            Some("plain-proxy.corp")
        );
        assert_eq!(via(&r, "ssh://git@github.com/o/r"), None);
        let only_https = ProxyRoutes::new(Some("http://proxy.corp:3128"), None, "").unwrap();
        assert_eq!(via(&only_https, "http://git.corp/o/r"), None);
        assert_eq!(via(&ProxyRoutes::direct(), "https://github.com/o/r"), None);
    }

    #[test]
    fn loopback_and_localhost_are_never_proxied() {
        let r = routes("");
        for url in [
            "https://localhost:8443/r",
            "https://127.0.0.1/r",
            "https://127.9.9.9/r",
            "https://[::1]:8443/r",
        ] {
            assert_eq!(via(&r, url), None, "{url}");
        }
    }

    #[test]
    fn no_proxy_domains_follow_go() {
        let r = routes("corp.example, .svc,*.internal.example");
        // A plain domain: itself and its subdomains.
        assert_eq!(via(&r, "https://corp.example/r"), None);
        assert_eq!(via(&r, "https://git.corp.example/r"), None);
        // A suffix match needs the dot: `evilcorp.example` is not `corp.example`.
        assert!(via(&r, "https://evilcorp.example/r").is_some());
        // A leading dot or `*.`: subdomains only.
        assert_eq!(via(&r, "https://git.svc/r"), None);
        assert!(via(&r, "https://svc/r").is_some());
        assert_eq!(via(&r, "https://git.internal.example/r"), None);
        assert!(via(&r, "https://internal.example/r").is_some());
        // Case does not matter.
        assert_eq!(
            via(&routes("Corp.Example"), "https://GIT.corp.example/r"),
            None
        );
    }

    #[test]
    fn no_proxy_ports_ips_cidrs_and_everything() {
        let r = routes("git.corp:8443,10.0.0.0/8,192.0.2.7,[2001:db8::1]:443,2001:db8::2");
        assert_eq!(via(&r, "https://git.corp:8443/r"), None);
        assert!(via(&r, "https://git.corp/r").is_some(), "another port");
        assert_eq!(via(&r, "https://10.20.30.40/r"), None);
        assert_eq!(via(&r, "https://192.0.2.7/r"), None);
        assert!(via(&r, "https://192.0.2.8/r").is_some());
        assert_eq!(via(&r, "https://[2001:db8::1]/r"), None);
        assert!(via(&r, "https://[2001:db8::1]:8443/r").is_some());
        assert_eq!(via(&r, "https://[2001:db8::2]:8443/r"), None);
        // A domain entry never matches an IP, nor a CIDR a name.
        assert!(via(&routes("10.0.0.0/8"), "https://ten.example/r").is_some());
        assert_eq!(via(&routes("x.example,*"), "https://github.com/r"), None);
        assert!(via(&routes("git.corp:abc"), "https://git.corp/r").is_some());
    }

    #[test]
    fn proxy_values_are_read_as_go_reads_them() {
        let bare = ProxyRoutes::new(Some("proxy.corp:3128"), None, "").unwrap();
        let url = bare
            .proxy_for(&Url::parse("https://github.com/o/r").unwrap())
            .unwrap();
        assert_eq!(url.as_str(), "http://proxy.corp:3128/");
        assert!(ProxyRoutes::new(Some("socks5://proxy.corp:1080"), None, "").is_ok());
        assert_eq!(
            ProxyRoutes::new(Some("ftp://proxy.corp"), None, "").unwrap_err(),
            RouteError::UnsupportedScheme {
                variable: "HTTPS_PROXY",
                scheme: "ftp".into()
            }
        );
        let err = ProxyRoutes::new(None, Some("http://user:s3cret@[bad"), "").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(!ProxyRoutes::new(Some(" "), None, "").unwrap().is_enabled());
    }

    #[test]
    fn debug_hides_proxy_credentials() {
        let r = ProxyRoutes::new(Some("http://user:s3cret@proxy.corp:3128"), None, "").unwrap();
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("proxy.corp"),
            "{shown}"
        );
    }

    #[test]
    fn from_policy_uses_what_source_controller_gets() {
        let policy = ProxyPolicy {
            https_proxy: Some(ProxyValue::Literal("http://proxy.corp:3128".into())),
            no_proxy: vec!["git.corp".into()],
            kubernetes_service_ip: Some("10.96.0.1".into()),
            ..ProxyPolicy::default()
        };
        let r = ProxyRoutes::from_policy(&policy).unwrap();
        assert!(via(&r, "https://github.com/o/r").is_some());
        assert_eq!(via(&r, "https://git.corp/o/r"), None);
        assert_eq!(via(&r, "https://source-controller.flux-system.svc/x"), None);
        assert_eq!(via(&r, "https://10.96.0.1/x"), None);

        let unset = ProxyRoutes::from_policy(&ProxyPolicy::default()).unwrap();
        assert!(!unset.is_enabled());

        let secret = ProxyPolicy {
            https_proxy: Some(ProxyValue::SecretKey {
                name: "proxy".into(),
                key: "url".into(),
            }),
            ..ProxyPolicy::default()
        };
        let err = ProxyRoutes::from_policy(&secret).unwrap_err();
        assert!(err.to_string().contains("proxy/url"), "{err}");
    }
}
