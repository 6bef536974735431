//! Host lanes: a new GitRepository whose `spec.url` is on a far Git host gets Flux's sharding
//! label `sharding.fluxcd.io/key: SHARD`, so a source-controller of its own (started with
//! `--watch-label-selector=sharding.fluxcd.io/key=SHARD`) clones it and its hangs never take the
//! main source-controller's workers.
//!
//! Pure: parsing and validating the rules (`--lane HOST=SHARD`), reading the host out of every URL
//! form, and the decision for one object. [`super::gitrepository::plan`] turns the decision into
//! the patch, after the mirror step: a lane is judged on the URL as it will be stored.
//!
//! - `HOST` is a host name or an IP address, nothing else: a lane holds every repository of the
//!   host, whatever the scheme (`https`, `http`, `ssh://`, scp-like `git@host:path`), port or user.
//!   Hosts compare without case and without a trailing dot.
//! - `SHARD` is the label's value, so it must be a valid Kubernetes label value.
//! - A creator's own `sharding.fluxcd.io/key` label is kept, whatever its value, and
//!   `fluxgate.io/lane: "false"` (or `"disabled"`) keeps an object in the main source-controller.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// One validated rule: every repository on `host` goes to the lane `shard`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneRule {
    /// Lowercase, without a trailing dot; an IPv6 address keeps its brackets.
    host: String,
    shard: Arc<str>,
}

/// Why a rule, or a set of rules, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lane rule {rule:?}: {reason}")]
pub struct LaneError {
    pub rule: String,
    pub reason: String,
}

/// Kubernetes' limit on a label value.
const MAX_LABEL_VALUE: usize = 63;

impl LaneRule {
    /// Parses `HOST=SHARD`.
    pub fn parse(text: &str) -> Result<Self, LaneError> {
        let refuse = |reason: String| LaneError {
            rule: text.to_owned(),
            reason,
        };
        let Some((host, shard)) = text.trim().split_once('=') else {
            return Err(refuse(
                "expected HOST=SHARD, e.g. github.com=far".to_owned(),
            ));
        };
        let (host, shard) = (host.trim(), shard.trim());
        if host.is_empty() || shard.is_empty() {
            return Err(refuse(
                "HOST and SHARD must both be given, e.g. github.com=far".to_owned(),
            ));
        }
        let host = rule_host(host).map_err(&refuse)?;
        check_label_value(shard).map_err(&refuse)?;
        Ok(Self {
            host,
            shard: shard.into(),
        })
    }

    /// The normalised host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The shard: the value of `sharding.fluxcd.io/key`, and the `shard` label of the counter.
    pub fn shard(&self) -> &Arc<str> {
        &self.shard
    }
}

impl fmt::Display for LaneRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.host, self.shard)
    }
}

/// Reads the `HOST` of a rule, refusing what is not a host alone.
fn rule_host(text: &str) -> Result<String, String> {
    if text.contains("://") || text.contains('/') {
        return Err(format!(
            "HOST {text:?} is a URL; name the host alone (e.g. github.com): a lane holds every \
             repository of the host, whatever the scheme, port or user"
        ));
    }
    if text.contains('@') {
        return Err(format!(
            "HOST {text:?} names a user; name the host alone: a lane holds every user's \
             repositories"
        ));
    }
    let bracketed = text.starts_with('[') && text.ends_with(']');
    if !bracketed && text.contains(':') {
        return Err(format!(
            "HOST {text:?} has a port; name the host alone: a lane holds every port of the host"
        ));
    }
    let host = normalise(text);
    let plausible = !host.is_empty()
        && if bracketed {
            let inner = &host[1..host.len() - 1];
            !inner.is_empty()
                && inner
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        } else {
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        };
    if !plausible {
        return Err(format!(
            "HOST {text:?} is not a host name or IP address (letters, digits, '.', '-', '_', or \
             an IPv6 address in brackets)"
        ));
    }
    Ok(host)
}

/// Refuses what Kubernetes would refuse as a label value.
pub fn check_label_value(shard: &str) -> Result<(), String> {
    let edges_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let valid = shard.len() <= MAX_LABEL_VALUE
        && edges_ok(shard.chars().next())
        && edges_ok(shard.chars().last())
        && shard
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "SHARD {shard:?} is not a valid label value: at most {MAX_LABEL_VALUE} characters, \
             letters and digits at both ends, '-', '_' or '.' inside"
        ))
    }
}

/// A host as the rules compare it: lowercase, without the trailing dot of a fully qualified name.
fn normalise(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// The host of a Git URL in any form Git understands: `scheme://[user@]host[:port]/path` or
/// scp-like `[user@]host:path`. `None` for a local path or a URL without a host.
pub fn url_host(url: &str) -> Option<String> {
    let url = url.trim();
    let authority = match url.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or(""),
        None => {
            // scp-like: a `:` before any `/` (Git's own rule; `./a:b` is a path).
            let colon = scp_colon(url)?;
            &url[..colon]
        }
    };
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        &host_port[..=host_port.find(']')?]
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let host = normalise(host);
    (!host.is_empty()).then_some(host)
}

/// Where the host of a scp-like URL ends, if `url` is one.
fn scp_colon(url: &str) -> Option<usize> {
    // An IPv6 address in brackets holds colons of its own.
    let search_from = if url.contains("@[") || url.starts_with('[') {
        url.find(']')?
    } else {
        0
    };
    let colon = search_from + url[search_from..].find(':')?;
    let slash = url.find('/').unwrap_or(url.len());
    (colon < slash).then_some(colon)
}

/// What the lane step reads of a GitRepository being created.
#[derive(Debug, Clone, Copy, Default)]
pub struct LaneInput<'a> {
    /// `spec.url` as it will be stored (after a mirror rule rewrote it).
    pub url: Option<&'a str>,
    /// `fluxgate.io/lane: "false"` (or `"disabled"`).
    pub opted_out: bool,
    /// The creator set `sharding.fluxcd.io/key` already, whatever its value.
    pub has_shard_label: bool,
}

/// The configured rules, validated together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LaneRules {
    rules: Vec<LaneRule>,
}

impl LaneRules {
    /// Validates the rules as a set: one host cannot be in two lanes. The same rule given twice
    /// is kept once.
    pub fn new(rules: Vec<LaneRule>) -> Result<Self, LaneError> {
        let mut kept: Vec<LaneRule> = Vec::with_capacity(rules.len());
        for rule in rules {
            match kept.iter().find(|k| k.host == rule.host) {
                Some(k) if k.shard == rule.shard => {}
                Some(k) => {
                    return Err(LaneError {
                        rule: rule.to_string(),
                        reason: format!(
                            "the host {} is already in the lane {}: a host has one lane",
                            k.host, k.shard
                        ),
                    });
                }
                None => kept.push(rule),
            }
        }
        Ok(Self { rules: kept })
    }

    pub fn rules(&self) -> &[LaneRule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every configured shard, once each, sorted.
    pub fn shards(&self) -> Vec<Arc<str>> {
        let shards: BTreeSet<&Arc<str>> = self.rules.iter().map(|r| &r.shard).collect();
        shards.into_iter().cloned().collect()
    }

    /// The rule that puts one GitRepository being created into a lane, if any.
    pub fn decide(&self, input: &LaneInput<'_>) -> Option<&LaneRule> {
        if self.rules.is_empty() || input.opted_out || input.has_shard_label {
            return None;
        }
        let host = url_host(input.url?)?;
        self.rules.iter().find(|rule| rule.host == host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(texts: &[&str]) -> LaneRules {
        LaneRules::new(texts.iter().map(|t| LaneRule::parse(t).unwrap()).collect()).unwrap()
    }

    fn create(url: &str) -> LaneInput<'_> {
        LaneInput {
            url: Some(url),
            ..LaneInput::default()
        }
    }

    fn shard_of(rules: &LaneRules, input: &LaneInput<'_>) -> Option<String> {
        rules.decide(input).map(|r| r.shard().to_string())
    }

    #[test]
    fn every_url_form_of_the_host_goes_to_its_lane() {
        let r = lanes(&["github.com=far", "GitLab.example.org.=slow"]);
        for (url, expected) in [
            ("https://github.com/org/repo", Some("far")),
            ("http://github.com/org/repo.git", Some("far")),
            ("HTTPS://GitHub.COM/org/repo", Some("far")),
            ("https://github.com:8443/org/repo", Some("far")),
            ("https://token:x-oauth@github.com/org/repo", Some("far")),
            ("https://github.com./org/repo", Some("far")),
            ("https://github.com", Some("far")),
            ("https://github.com?x=1", Some("far")),
            ("ssh://git@github.com/org/repo.git", Some("far")),
            ("ssh://git@github.com:22/org/repo", Some("far")),
            ("ssh://github.com/org/repo", Some("far")),
            ("git@github.com:org/repo.git", Some("far")),
            ("github.com:org/repo", Some("far")),
            ("git@GITHUB.com.:org/repo", Some("far")),
            ("git://github.com/org/repo", Some("far")),
            ("  https://github.com/org/repo  ", Some("far")),
            ("https://gitlab.example.org/group/repo", Some("slow")),
            (
                "ssh://git@GITLAB.example.org.:2222/group/repo",
                Some("slow"),
            ),
            // Other hosts: one that merely starts or ends the same, a subdomain, the host in
            // the path or the user, local paths, nothing at all.
            ("https://github.com.evil.example/org/repo", None),
            ("https://api.github.com/org/repo", None),
            ("https://notgithub.com/org/repo", None),
            ("https://mirror.internal/github.com/org/repo", None),
            ("https://github.com@mirror.internal/org/repo", None),
            ("ssh://github.com@mirror.internal/org/repo", None),
            ("./github.com:repo", None),
            ("/srv/git/github.com:x", None),
            ("https:///org/repo", None),
            ("", None),
            ("not a url", None),
        ] {
            assert_eq!(shard_of(&r, &create(url)).as_deref(), expected, "{url:?}");
        }
    }

    #[test]
    fn ip_addresses_are_hosts_too() {
        let r = lanes(&["[2001:DB8::1]=v6", "192.0.2.7=v4"]);
        for (url, expected) in [
            ("https://[2001:db8::1]:8443/org/repo", Some("v6")),
            ("ssh://git@[2001:db8::1]/org/repo", Some("v6")),
            ("git@[2001:db8::1]:org/repo", Some("v6")),
            ("https://192.0.2.7/org/repo", Some("v4")),
            ("git@192.0.2.7:org/repo", Some("v4")),
            ("https://[2001:db8::2]/org/repo", None),
        ] {
            assert_eq!(shard_of(&r, &create(url)).as_deref(), expected, "{url}");
        }
    }

    #[test]
    fn the_creators_label_and_the_opt_out_keep_the_object_where_it_is() {
        let r = lanes(&["github.com=far"]);
        let url = "https://github.com/org/repo";
        for input in [
            LaneInput {
                opted_out: true,
                ..create(url)
            },
            LaneInput {
                has_shard_label: true,
                ..create(url)
            },
            LaneInput {
                url: None,
                ..create(url)
            },
        ] {
            assert_eq!(r.decide(&input), None, "{input:?}");
        }
        assert_eq!(LaneRules::default().decide(&create(url)), None);
        assert_eq!(shard_of(&r, &create(url)).as_deref(), Some("far"));
    }

    #[test]
    fn rules_are_named_by_their_normalised_host() {
        let rule = LaneRule::parse(" GitHub.COM. = far-1 ").unwrap();
        assert_eq!(rule.host(), "github.com");
        assert_eq!(&**rule.shard(), "far-1");
        assert_eq!(rule.to_string(), "github.com=far-1");
        let shard = "a".repeat(63);
        assert!(LaneRule::parse(&format!("h={shard}")).is_ok());
        for shard in ["A.b_c-D", "9", "x.y"] {
            assert!(LaneRule::parse(&format!("h={shard}")).is_ok(), "{shard}");
        }
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let long = format!("github.com={}", "a".repeat(64));
        for (text, says) in [
            ("github.com", "expected HOST=SHARD"),
            ("", "expected HOST=SHARD"),
            ("=far", "must both be given"),
            ("github.com=", "must both be given"),
            (" = ", "must both be given"),
            ("https://github.com=far", "is a URL"),
            ("https://github.com/=far", "is a URL"),
            ("github.com/org=far", "is a URL"),
            ("git@github.com=far", "names a user"),
            ("github.com:443=far", "has a port"),
            ("git hub.com=far", "not a host name"),
            ("[zz::1]=far", "not a host name"),
            ("[]=far", "not a host name"),
            (".=far", "not a host name"),
            ("github.com=-far", "not a valid label value"),
            ("github.com=far-", "not a valid label value"),
            ("github.com=far lane", "not a valid label value"),
            ("github.com=far/x", "not a valid label value"),
            ("github.com=fär", "not a valid label value"),
            ("github.com=a=b", "not a valid label value"),
            (long.as_str(), "at most 63"),
        ] {
            let err = LaneRule::parse(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(err.starts_with("lane rule "), "{err}");
        }
    }

    #[test]
    fn a_host_has_one_lane() {
        let set = |texts: &[&str]| {
            LaneRules::new(texts.iter().map(|t| LaneRule::parse(t).unwrap()).collect())
                .map_err(|e| e.to_string())
        };
        let err = set(&["github.com=far", "GITHUB.com.=other"]).unwrap_err();
        assert!(
            err.contains("github.com is already in the lane far"),
            "{err}"
        );
        // The same rule twice is one rule; two hosts may share a lane.
        let r = set(&[
            "github.com=far",
            "github.com=far",
            "gitlab.com=far",
            "x.org=b",
        ])
        .unwrap();
        assert_eq!(r.rules().len(), 3);
        let shards: Vec<String> = r.shards().iter().map(|s| s.to_string()).collect();
        assert_eq!(shards, ["b", "far"]);
    }
}
