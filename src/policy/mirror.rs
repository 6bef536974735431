//! Mirror rules: a new GitRepository whose `spec.url` is under a far host's prefix is sent to a
//! mirror inside the network, and its original URL is kept in `fluxgate.io/original-url`.
//!
//! Pure: parsing and validating the rules, reading the URL forms Flux accepts, and the decision
//! for one object. [`super::gitrepository::plan`] turns the decision into the patch.
//!
//! A rule is `FROM=TO[;option...]`:
//!
//! - `FROM` and `TO` are `http://`, `https://` or `ssh://` URLs with a host; `FROM` is a prefix of
//!   whole path segments (`https://github.com/`, `https://github.com/acme/`), always read as
//!   ending at a `/`. scp-like `git@host:path` is refused: Flux's GitRepository accepts only
//!   `http`, `https` and `ssh` URLs, so objects never carry it and a mirror must not produce it.
//! - Hosts compare without case, ports with the scheme's default filled in, paths exactly.
//!   `http` and `https` are one transport (the same credentials work over both): a rule for
//!   `https://github.com/` also catches `http://github.com/…`. `ssh://` is the other transport;
//!   an `ssh` URL is only caught by an `ssh` rule, whose user is not compared.
//! - What follows the prefix is appended to `TO` as it is, `.git` or not (`git-suffix=keep`);
//!   `git-suffix=add` or `strip` make it end, or not end, in `.git` for mirrors that need one form.
//! - Credentials are per host. An object with `spec.secretRef` (or credentials inside its URL) is
//!   left on its host unless the rule says `credentials=carry`: the Secret is then expected to
//!   work on the mirror too. A rule that changes the transport cannot carry credentials (an SSH
//!   key does not open an HTTPS mirror).
//!
//! Rules are refused at start when they cannot be meant: not a URL, no host (a prefix that would
//! match everything), two rules whose prefixes overlap, or a mirror that another rule would
//! rewrite again.

use std::fmt;
use std::sync::Arc;

/// Which credentials a rewritten object may take to the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// Objects with credentials stay on the original host (the default).
    Skip,
    /// Objects with credentials are rewritten too, keeping their `spec.secretRef`.
    Carry,
}

/// How a rewritten path ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitSuffix {
    /// As the object had it.
    Keep,
    /// Always ending in `.git`.
    Add,
    /// Never ending in `.git`.
    Strip,
}

/// The two ways Flux talks to a Git host; credentials work within one only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Http,
    Ssh,
}

/// A URL as the rules compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location<'a> {
    scheme: &'static str,
    transport: Transport,
    /// The part before `@` in the authority, if any.
    userinfo: Option<&'a str>,
    /// Lowercase; an IPv6 address keeps its brackets.
    host: String,
    /// `None` for the scheme's default port.
    port: Option<u16>,
    /// From the first `/` after the authority (empty when there is none).
    path: &'a str,
    /// Whether a `?query` or `#fragment` follows the path.
    has_suffix: bool,
}

impl<'a> Location<'a> {
    /// Reads `http(s)://` and `ssh://` URLs; `None` for anything else, scp-like included.
    fn parse(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let (scheme, transport, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "https" => ("https", Transport::Http, 443),
            "http" => ("http", Transport::Http, 80),
            "ssh" => ("ssh", Transport::Ssh, 22),
            _ => return None,
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
        let (path, suffix) = tail.split_at(path_end);
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((user, host_port)) => (Some(user), host_port),
            None => (None, authority),
        };
        let (host, port) = if host_port.starts_with('[') {
            let close = host_port.find(']')?;
            let (host, after) = host_port.split_at(close + 1);
            match after {
                "" => (host, None),
                after => (host, Some(after.strip_prefix(':')?)),
            }
        } else {
            match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        let plausible = !host.is_empty()
            && host.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':')
            });
        if !plausible {
            return None;
        }
        let port = match port {
            None | Some("") => None,
            Some(port) => Some(port.parse::<u16>().ok()?).filter(|p| *p != default_port),
        };
        Some(Self {
            scheme,
            transport,
            userinfo,
            host: host.to_ascii_lowercase(),
            port,
            path,
            has_suffix: !suffix.is_empty(),
        })
    }

    /// `scheme://[user@]host[:port]`, normalised.
    fn origin(&self) -> String {
        let user = self.userinfo.map_or_else(String::new, |u| format!("{u}@"));
        let port = self.port.map_or_else(String::new, |p| format!(":{p}"));
        format!("{}://{user}{}{port}", self.scheme, self.host)
    }
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorRule {
    /// The normalised `FROM` prefix: the rule's name in warnings and the `rule` label.
    label: Arc<str>,
    from_transport: Transport,
    from_host: String,
    from_port: Option<u16>,
    /// Starts and ends with `/`.
    from_path: String,
    /// The normalised `TO` prefix, ending with `/`.
    to: String,
    to_transport: Transport,
    to_host: String,
    to_port: Option<u16>,
    to_path: String,
    pub credentials: Credentials,
    pub git_suffix: GitSuffix,
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mirror rule {rule:?}: {reason}")]
pub struct RuleError {
    pub rule: String,
    pub reason: String,
}

impl MirrorRule {
    /// Parses `FROM=TO[;credentials=carry|skip][;git-suffix=keep|add|strip]`.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let refuse = |reason: String| RuleError {
            rule: text.to_owned(),
            reason,
        };
        let mut parts = text.trim().split(';');
        let pair = parts.next().unwrap_or("");
        let Some((from, to)) = pair.split_once('=') else {
            return Err(refuse(
                "expected FROM=TO, e.g. https://github.com/=https://gitee.com/acme-mirror/"
                    .to_owned(),
            ));
        };
        let (from, to) = (from.trim(), to.trim());
        let from_at = prefix(from, "FROM").map_err(&refuse)?;
        let to_at = prefix(to, "TO").map_err(&refuse)?;
        if to_at.userinfo.is_some() && to_at.transport == Transport::Http {
            return Err(refuse(format!(
                "TO {to:?} carries credentials, which would be written into every spec.url: \
                 keep them in the objects' Secret"
            )));
        }
        if from_at.userinfo.is_some() && from_at.transport == Transport::Http {
            return Err(refuse(format!(
                "FROM {from:?} carries credentials; name the host only"
            )));
        }

        let mut credentials = Credentials::Skip;
        let mut git_suffix = GitSuffix::Keep;
        for option in parts {
            let option = option.trim();
            match option.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("credentials", "carry")) => credentials = Credentials::Carry,
                Some(("credentials", "skip")) => credentials = Credentials::Skip,
                Some(("git-suffix", "keep")) => git_suffix = GitSuffix::Keep,
                Some(("git-suffix", "add")) => git_suffix = GitSuffix::Add,
                Some(("git-suffix", "strip")) => git_suffix = GitSuffix::Strip,
                _ => {
                    return Err(refuse(format!(
                        "unknown option {option:?}: expected credentials=carry|skip or \
                         git-suffix=keep|add|strip"
                    )));
                }
            }
        }
        if credentials == Credentials::Carry && from_at.transport != to_at.transport {
            return Err(refuse(format!(
                "credentials=carry with {} to {}: credentials of one transport do not work over \
                 the other",
                from_at.scheme, to_at.scheme
            )));
        }

        let rule = Self {
            label: format!("{}{}", from_at.origin(), dir(from_at.path)).into(),
            from_transport: from_at.transport,
            from_host: from_at.host.clone(),
            from_port: from_at.port,
            from_path: dir(from_at.path),
            to: format!("{}{}", to_at.origin(), dir(to_at.path)),
            to_transport: to_at.transport,
            to_host: to_at.host.clone(),
            to_port: to_at.port,
            to_path: dir(to_at.path),
            credentials,
            git_suffix,
        };
        if rule.catches_under(
            rule.to_transport,
            &rule.to_host,
            rule.to_port,
            &rule.to_path,
        ) {
            return Err(refuse(
                "the mirror is under FROM: rewritten URLs would match the rule again".to_owned(),
            ));
        }
        Ok(rule)
    }

    /// The rule's name: its normalised `FROM`.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// The normalised `TO`.
    pub fn mirror(&self) -> &str {
        &self.to
    }

    /// The mirror's host, as `health::git_host` names it.
    pub fn mirror_host(&self) -> &str {
        &self.to_host
    }

    /// Whether some URL could be under both this rule's `FROM` and the prefix given (one path
    /// is a prefix of the other, on the same server).
    fn catches_under(
        &self,
        transport: Transport,
        host: &str,
        port: Option<u16>,
        path: &str,
    ) -> bool {
        self.from_transport == transport
            && self.from_host == host
            && self.from_port == port
            && (path.starts_with(&self.from_path) || self.from_path.starts_with(path))
    }

    /// The rewritten URL for `at`, or `None` when this rule does not catch it.
    fn rewrite(&self, at: &Location<'_>) -> Option<String> {
        if at.transport != self.from_transport
            || at.host != self.from_host
            || at.port != self.from_port
            || at.has_suffix
        {
            return None;
        }
        let rest = at.path.strip_prefix(self.from_path.as_str())?;
        if rest.trim_matches('/').is_empty() {
            // The host or organisation itself, not a repository.
            return None;
        }
        let rest = match self.git_suffix {
            GitSuffix::Keep => rest.to_owned(),
            GitSuffix::Add => {
                let bare = rest.trim_end_matches('/');
                if bare.ends_with(".git") {
                    bare.to_owned()
                } else {
                    format!("{bare}.git")
                }
            }
            GitSuffix::Strip => {
                let bare = rest.trim_end_matches('/');
                bare.strip_suffix(".git").unwrap_or(bare).to_owned()
            }
        };
        Some(format!("{}{rest}", self.to))
    }
}

impl fmt::Display for MirrorRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.label, self.to)?;
        if self.credentials == Credentials::Carry {
            f.write_str(";credentials=carry")?;
        }
        match self.git_suffix {
            GitSuffix::Keep => Ok(()),
            GitSuffix::Add => f.write_str(";git-suffix=add"),
            GitSuffix::Strip => f.write_str(";git-suffix=strip"),
        }
    }
}

/// A path as a directory prefix: starting and ending with `/`.
fn dir(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

/// Reads one side of a rule, refusing what cannot be a prefix of Flux URLs.
fn prefix<'a>(text: &'a str, side: &str) -> Result<Location<'a>, String> {
    if !text.contains("://") {
        return Err(if text.contains('@') && text.contains(':') {
            format!(
                "{side} {text:?} is scp-like; Flux accepts only http, https and ssh URLs: write \
                 it as ssh://user@host/path"
            )
        } else {
            format!("{side} {text:?} is not a URL (expected https://host/path/ or ssh://…)")
        });
    }
    let scheme = text.split("://").next().unwrap_or("");
    if !matches!(
        scheme.to_ascii_lowercase().as_str(),
        "http" | "https" | "ssh"
    ) {
        return Err(format!(
            "{side} {text:?}: the scheme must be http, https or ssh, as Flux accepts"
        ));
    }
    let authority = text.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    });
    if authority.rsplit('@').next().unwrap_or("").is_empty() {
        return Err(format!(
            "{side} {text:?} has no host: it would match every {scheme} URL; name the host, \
             e.g. {scheme}://github.com/"
        ));
    }
    let at = Location::parse(text).ok_or_else(|| {
        format!("{side} {text:?} is not a URL (a host, an optional port, then a path)")
    })?;
    if at.has_suffix {
        return Err(format!(
            "{side} {text:?} has a query or fragment; a prefix is a host and a path"
        ));
    }
    Ok(at)
}

/// What the mirror step decided for one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'r> {
    /// No rule catches the URL, or the object is out of the rules' reach (opted out, excluded
    /// namespace, already rewritten): nothing to say.
    Keep,
    /// Rewrite `spec.url` to `url`, keeping the original in `fluxgate.io/original-url`.
    Rewrite { rule: &'r MirrorRule, url: String },
    /// A rule catches the URL but the object is left alone; the creator is told why.
    Left {
        rule: &'r MirrorRule,
        why: LeftBecause,
    },
}

/// Why a caught object was not rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftBecause {
    /// `spec.secretRef` holds credentials for the original host.
    SecretRef,
    /// The URL itself carries credentials.
    CredentialsInUrl,
    /// A Flux Kustomization or HelmRelease applied it: it would put the URL back.
    GitOpsManaged,
}

impl LeftBecause {
    pub fn explain(self) -> &'static str {
        match self {
            Self::SecretRef => {
                "spec.secretRef holds credentials for the original host and the rule does not \
                 carry them (credentials=carry)"
            }
            Self::CredentialsInUrl => "the URL carries credentials for the original host",
            Self::GitOpsManaged => {
                "a Flux Kustomization or HelmRelease applied it and would put the URL back: \
                 change the URL in its source"
            }
        }
    }
}

/// What the mirror step reads of a GitRepository being created.
#[derive(Debug, Clone, Copy, Default)]
pub struct MirrorInput<'a> {
    pub namespace: Option<&'a str>,
    pub url: Option<&'a str>,
    pub has_secret_ref: bool,
    /// `fluxgate.io/mirror: "false"` (or `"disabled"`).
    pub opted_out: bool,
    /// `fluxgate.io/original-url` is there: rewritten before (a re-invoked webhook), or set by
    /// the creator on purpose.
    pub has_original_url: bool,
    pub gitops_managed: bool,
}

/// The configured rules, validated together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MirrorRules {
    rules: Vec<MirrorRule>,
    exclude_namespaces: Vec<String>,
}

impl MirrorRules {
    /// Validates the rules as a set: no two may catch the same URL, and no mirror may be caught
    /// by a rule.
    pub fn new(rules: Vec<MirrorRule>, exclude_namespaces: Vec<String>) -> Result<Self, RuleError> {
        for (i, a) in rules.iter().enumerate() {
            for b in &rules[i + 1..] {
                if a.catches_under(b.from_transport, &b.from_host, b.from_port, &b.from_path) {
                    let (outer, inner) = if a.from_path.len() <= b.from_path.len() {
                        (a, b)
                    } else {
                        (b, a)
                    };
                    return Err(RuleError {
                        rule: b.to_string(),
                        reason: format!(
                            "overlaps {a}: every URL under {} is also under {}; keep one rule \
                             per prefix",
                            inner.label, outer.label
                        ),
                    });
                }
            }
            for b in &rules {
                if b.catches_under(a.to_transport, &a.to_host, a.to_port, &a.to_path) {
                    return Err(RuleError {
                        rule: a.to_string(),
                        reason: format!(
                            "its mirror {} is under the rule {b}: rewritten URLs would be \
                             rewritten again",
                            a.to
                        ),
                    });
                }
            }
        }
        Ok(Self {
            rules,
            exclude_namespaces,
        })
    }

    pub fn rules(&self) -> &[MirrorRule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The decision for one GitRepository being created.
    pub fn decide(&self, input: &MirrorInput<'_>) -> Decision<'_> {
        if self.rules.is_empty() || input.opted_out || input.has_original_url {
            return Decision::Keep;
        }
        if input
            .namespace
            .is_some_and(|ns| self.exclude_namespaces.iter().any(|e| e == ns))
        {
            return Decision::Keep;
        }
        let Some(at) = input.url.map(str::trim).and_then(Location::parse) else {
            return Decision::Keep;
        };
        let Some((rule, url)) = self
            .rules
            .iter()
            .find_map(|rule| rule.rewrite(&at).map(|url| (rule, url)))
        else {
            return Decision::Keep;
        };
        let why = if input.gitops_managed {
            Some(LeftBecause::GitOpsManaged)
        } else if at.transport == Transport::Http && at.userinfo.is_some() {
            Some(LeftBecause::CredentialsInUrl)
        } else if input.has_secret_ref && rule.credentials == Credentials::Skip {
            Some(LeftBecause::SecretRef)
        } else {
            None
        };
        match why {
            Some(why) => Decision::Left { rule, why },
            None => Decision::Rewrite { rule, url },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(texts: &[&str]) -> MirrorRules {
        let parsed = texts
            .iter()
            .map(|t| MirrorRule::parse(t).unwrap())
            .collect();
        MirrorRules::new(parsed, vec!["platform".to_owned()]).unwrap()
    }

    fn github() -> MirrorRules {
        rules(&[
            "https://github.com/=https://gitee.com/acme-mirror/",
            "ssh://git@github.com/=ssh://git@gitea.internal:2222/mirror/;credentials=carry",
        ])
    }

    fn create(url: &str) -> MirrorInput<'_> {
        MirrorInput {
            namespace: Some("team-a"),
            url: Some(url),
            ..MirrorInput::default()
        }
    }

    fn rewritten(rules: &MirrorRules, input: &MirrorInput<'_>) -> Option<String> {
        match rules.decide(input) {
            Decision::Rewrite { url, .. } => Some(url),
            _ => None,
        }
    }

    #[test]
    fn every_url_form_maps_as_documented() {
        let r = github();
        let m = "https://gitee.com/acme-mirror";
        for (given, expected) in [
            // http(s), with or without .git, case-insensitive host, default port spelled out.
            ("https://github.com/org/repo", Some(format!("{m}/org/repo"))),
            (
                "https://github.com/org/repo.git",
                Some(format!("{m}/org/repo.git")),
            ),
            ("http://github.com/org/repo", Some(format!("{m}/org/repo"))),
            ("HTTPS://GitHub.COM/org/repo", Some(format!("{m}/org/repo"))),
            (
                "https://github.com:443/org/repo",
                Some(format!("{m}/org/repo")),
            ),
            (
                "https://github.com/org/repo/",
                Some(format!("{m}/org/repo/")),
            ),
            // ssh:// goes to the ssh rule's mirror, user and default port or not.
            (
                "ssh://git@github.com/org/repo.git",
                Some("ssh://git@gitea.internal:2222/mirror/org/repo.git".to_owned()),
            ),
            (
                "ssh://git@github.com:22/org/repo",
                Some("ssh://git@gitea.internal:2222/mirror/org/repo".to_owned()),
            ),
            // Not caught: scp-like (the CRD refuses it), other hosts and ports, a host that
            // merely starts the same, the host alone, queries, other schemes.
            ("git@github.com:org/repo", None),
            ("https://github.com.evil.example/org/repo", None),
            ("https://github.com:8443/org/repo", None),
            ("https://gitlab.com/org/repo", None),
            ("https://github.com/", None),
            ("https://github.com", None),
            ("https://github.com/org/repo?ref=x", None),
            ("git://github.com/org/repo", None),
            ("not a url", None),
        ] {
            assert_eq!(rewritten(&r, &create(given)), expected, "{given}");
        }
    }

    #[test]
    fn an_http_rule_does_not_catch_ssh_and_the_reverse() {
        let https_only = rules(&["https://github.com/=https://gitee.com/m/"]);
        assert_eq!(
            https_only.decide(&create("ssh://git@github.com/org/repo")),
            Decision::Keep
        );
        let ssh_only = rules(&["ssh://git@github.com/=ssh://git@gitee.com/m/"]);
        assert_eq!(
            ssh_only.decide(&create("https://github.com/org/repo")),
            Decision::Keep
        );
    }

    #[test]
    fn an_organisation_prefix_stops_at_a_segment() {
        let r = rules(&["https://github.com/acme=https://mirror.internal/acme/"]);
        assert_eq!(
            rewritten(&r, &create("https://github.com/acme/app")).as_deref(),
            Some("https://mirror.internal/acme/app")
        );
        assert_eq!(
            rewritten(&r, &create("https://github.com/acme-labs/app")),
            None
        );
        assert_eq!(rewritten(&r, &create("https://github.com/acme")), None);
    }

    #[test]
    fn git_suffix_is_kept_added_or_stripped_as_the_rule_says() {
        let add = rules(&["https://github.com/=http://git.internal:8080/;git-suffix=add"]);
        let strip = rules(&["https://github.com/=https://gitea.internal/m/;git-suffix=strip"]);
        for given in [
            "https://github.com/o/r",
            "https://github.com/o/r.git",
            "https://github.com/o/r/",
        ] {
            assert_eq!(
                rewritten(&add, &create(given)).as_deref(),
                Some("http://git.internal:8080/o/r.git"),
                "{given}"
            );
            assert_eq!(
                rewritten(&strip, &create(given)).as_deref(),
                Some("https://gitea.internal/m/o/r"),
                "{given}"
            );
        }
    }

    #[test]
    fn credentials_stay_on_their_host_unless_the_rule_carries_them() {
        let r = github();
        let with_secret = MirrorInput {
            has_secret_ref: true,
            ..create("https://github.com/org/private")
        };
        assert!(matches!(
            r.decide(&with_secret),
            Decision::Left {
                why: LeftBecause::SecretRef,
                ..
            }
        ));
        let ssh_with_secret = MirrorInput {
            has_secret_ref: true,
            ..create("ssh://git@github.com/org/private")
        };
        assert!(matches!(
            r.decide(&ssh_with_secret),
            Decision::Rewrite { .. }
        ));
        assert!(matches!(
            r.decide(&create("https://token:x@github.com/org/private")),
            Decision::Left {
                why: LeftBecause::CredentialsInUrl,
                ..
            }
        ));
    }

    #[test]
    fn opt_outs_exclusions_and_earlier_rewrites_are_left_alone_silently() {
        let r = github();
        let url = "https://github.com/org/repo";
        for input in [
            MirrorInput {
                opted_out: true,
                ..create(url)
            },
            MirrorInput {
                has_original_url: true,
                ..create(url)
            },
            MirrorInput {
                namespace: Some("platform"),
                ..create(url)
            },
            MirrorInput {
                url: None,
                ..create(url)
            },
        ] {
            assert_eq!(r.decide(&input), Decision::Keep, "{input:?}");
        }
        assert_eq!(MirrorRules::default().decide(&create(url)), Decision::Keep);
        let managed = MirrorInput {
            gitops_managed: true,
            ..create(url)
        };
        assert!(matches!(
            r.decide(&managed),
            Decision::Left {
                why: LeftBecause::GitOpsManaged,
                ..
            }
        ));
    }

    #[test]
    fn a_rewritten_url_is_never_caught_again() {
        let r = github();
        let once = rewritten(&r, &create("https://github.com/org/repo")).unwrap();
        assert_eq!(r.decide(&create(&once)), Decision::Keep);
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        for (text, says) in [
            ("https://github.com/", "expected FROM=TO"),
            ("github.com=https://gitee.com/m/", "not a URL"),
            ("https://github.com/=gitee.com/m", "not a URL"),
            ("git@github.com:=https://gitee.com/m/", "scp-like"),
            ("https://github.com/=git@gitee.com:m/", "scp-like"),
            ("https://=https://gitee.com/m/", "has no host"),
            ("ssh://=ssh://git@gitee.com/m/", "has no host"),
            ("ftp://github.com/=https://gitee.com/m/", "scheme must be"),
            ("https://github.com:x/=https://gitee.com/m/", "not a URL"),
            (
                "https://github.com/?a=https://gitee.com/m/",
                "query or fragment",
            ),
            (
                "https://github.com/=https://user:pw@gitee.com/m/",
                "carries credentials",
            ),
            (
                "https://github.com/=https://gitee.com/m/;credentials=maybe",
                "unknown option",
            ),
            (
                "ssh://git@github.com/=https://gitee.com/m/;credentials=carry",
                "do not work over",
            ),
            (
                "https://github.com/=https://github.com/mirror/",
                "the mirror is under FROM",
            ),
            (
                "https://github.com/acme/=https://github.com/",
                "the mirror is under FROM",
            ),
        ] {
            let err = MirrorRule::parse(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn overlapping_and_chained_rules_are_refused_as_a_set() {
        let set = |texts: &[&str]| {
            MirrorRules::new(
                texts
                    .iter()
                    .map(|t| MirrorRule::parse(t).unwrap())
                    .collect(),
                Vec::new(),
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        for texts in [
            &[
                "https://github.com/=https://a.internal/",
                "https://github.com/acme/=https://b.internal/",
            ][..],
            &[
                "https://github.com/acme/=https://b.internal/",
                "https://github.com/=https://a.internal/",
            ],
            &[
                "https://github.com/=https://a.internal/",
                "http://github.com/=https://b.internal/",
            ],
            &[
                "https://github.com/=https://a.internal/",
                "https://GITHUB.com:443=https://b.internal/",
            ],
        ] {
            let err = set(texts).unwrap_err();
            assert!(err.contains("overlaps"), "{texts:?}: {err}");
        }
        let err = set(&[
            "https://github.com/=https://gitee.com/m/",
            "https://gitee.com/=https://gitea.internal/",
        ])
        .unwrap_err();
        assert!(err.contains("rewritten again"), "{err}");
        // Disjoint rules are fine: other hosts, other ports, other transports, sibling paths.
        set(&[
            "https://github.com/acme/=https://a.internal/acme/",
            "https://github.com/acme-labs/=https://a.internal/labs/",
            "https://github.com:8443/=https://b.internal/",
            "ssh://git@github.com/=ssh://git@a.internal/m/",
            "https://gitlab.com/=https://c.internal/",
        ])
        .unwrap();
    }

    #[test]
    fn rules_are_named_by_their_normalised_prefix() {
        let rule = MirrorRule::parse(" HTTPS://GitHub.com:443/acme=https://gitee.com/m ").unwrap();
        assert_eq!(&**rule.label(), "https://github.com/acme/");
        assert_eq!(rule.mirror(), "https://gitee.com/m/");
        assert_eq!(rule.mirror_host(), "gitee.com");
        assert_eq!(
            rule.to_string(),
            "https://github.com/acme/=https://gitee.com/m/"
        );
    }
}
