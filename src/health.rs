//! How healthy one GitRepository is, from its spec and status. Pure (the caller passes the
//! object; nothing here reads the clock or the network): the exporter, `fluxgate report` and the
//! janitor all call [`classify`], so their numbers agree.
//!
//! # States
//!
//! Every object is in exactly one [`State`], decided in this order (first match wins):
//!
//! | # | condition                                                          | state         |
//! |---|--------------------------------------------------------------------|---------------|
//! | 0 | `spec.suspend: true` and the label `fluxgate.io/quarantined=true`  | `quarantined` |
//! | 1 | `spec.suspend: true`                                               | `suspended`   |
//! | 2 | no `status.conditions` (missing, empty, or no object entries)      | `pending`     |
//! | 3 | `Ready` is `False`                                                 | `failed`      |
//! | 4 | `Ready` is `True` and the object is not unobserved (below)         | `ready`       |
//! | 5 | anything else: `Ready=Unknown`, no `Ready` condition (only         | `progressing` |
//! |   | `Reconciling`, `Stalled`, ...), `Ready=True` for an older          |               |
//! |   | generation                                                         |               |
//!
//! `failed` follows `Ready` alone: `Reconciling=True` or `Stalled=True` next to `Ready=False` is
//! still failed (source-controller always sets `Ready=False` when it stalls or retries).
//!
//! `unobserved` is independent of the state: `status.observedGeneration` missing, not an
//! integer, negative (the CRD default `-1`, kept until a reconcile succeeds or stalls), or below
//! `metadata.generation`.
//!
//! # Failure classes
//!
//! See [`failure_class`]: a reason table first, then an ordered table of message fragments.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::marks::Marks;

/// The one state a GitRepository is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// `Ready=True` for the current generation.
    Ready,
    /// `Ready=False` and not suspended.
    Failed,
    /// No status conditions at all: source-controller has not picked it up yet (starvation).
    Pending,
    /// `spec.suspend: true` (wins over every other state but [`State::Quarantined`]).
    Suspended,
    /// `spec.suspend: true` set by fluxgate's host circuit breaker (its quarantine label): the
    /// host is down, and the breaker releases it when the host answers again.
    Quarantined,
    /// Anything in between: `Ready=Unknown`, no Ready condition, or Ready for an older
    /// generation.
    Progressing,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Ready,
        State::Failed,
        State::Pending,
        State::Suspended,
        State::Quarantined,
        State::Progressing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Pending => "pending",
            Self::Suspended => "suspended",
            Self::Quarantined => "quarantined",
            Self::Progressing => "progressing",
        }
    }
}

/// Why a failed GitRepository fails, from its Ready condition's reason and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureClass {
    Timeout,
    Dns,
    Tls,
    /// The host refused or dropped the connection, or no route leads to it.
    Connection,
    Auth,
    NotFound,
    /// The host answered 429, 502 or 503: it (or a gateway in front of it) asks to come back
    /// later. Not a transport failure: see [`FailureClass::is_transport`].
    Throttled,
    Other,
}

impl FailureClass {
    pub const ALL: [FailureClass; 8] = [
        FailureClass::Timeout,
        FailureClass::Dns,
        FailureClass::Tls,
        FailureClass::Auth,
        FailureClass::NotFound,
        FailureClass::Other,
        FailureClass::Connection,
        FailureClass::Throttled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Connection => "connection",
            Self::Auth => "auth",
            Self::NotFound => "not_found",
            Self::Throttled => "throttled",
            Self::Other => "other",
        }
    }

    /// Whether the Git host (or the path to it) is at fault rather than the repository or its
    /// credentials: the only failures a host's circuit breaker counts.
    ///
    /// `throttled` is not one: a 429 or 5xx comes back at once and holds none of
    /// source-controller's workers, which is what the breaker protects, and source-controller's
    /// per-object backoff already spaces the retries.
    pub fn is_transport(self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::Dns | Self::Tls | Self::Connection
        )
    }
}

/// Ready reasons that decide the class on their own, before the message is read.
const REASON_CLASSES: &[(&str, FailureClass)] = &[
    // source-controller's own verdict: bad or missing credentials (also a missing Secret).
    ("AuthenticationFailed", FailureClass::Auth),
    // Its local artifact storage failed; a "permission denied" there is about a disk, not Git.
    ("StorageOperationFailed", FailureClass::Other),
];

/// One message fragment: a lowercase substring, or an HTTP status code that must stand alone
/// (`403` matches `status code: 403`, not `sha1:a403f`).
#[derive(Debug, Clone, Copy)]
enum Pattern {
    Text(&'static str),
    Code(&'static str),
}

use Pattern::{Code, Text};

/// Message fragments per class, tried in this order; the first class with a match wins.
///
/// Throttled comes first: go-git reports any status but 401, 403 and 404 as `unexpected
/// requesting "<url>" status code: N` (newer versions append the response body), so a status
/// code in the message means the host answered, whatever words its body adds.
/// Order matters where fragments meet in one message: DNS comes before timeout because a resolver
/// timeout (`lookup github.com on 10.96.0.10:53: ... i/o timeout`) points at cluster DNS, not at
/// the Git host; timeout comes before TLS so `net/http: TLS handshake timeout` is a timeout.
/// Connection comes after all three, so a resolver that refuses (`lookup ...: connection refused`)
/// stays DNS and `connect: connection timed out` stays a timeout, and before auth and not found:
/// a reset in the middle of an SSH handshake (`ssh: handshake failed: read: connection reset by
/// peer`) says nothing about credentials.
const MESSAGE_CLASSES: &[(FailureClass, &[Pattern])] = &[
    (
        FailureClass::Throttled,
        &[
            Text("status code: 429"),
            Text("status code: 502"),
            Text("status code: 503"),
        ],
    ),
    (
        FailureClass::Dns,
        &[
            Text("no such host"),
            Text("server misbehaving"),
            Text("temporary failure in name resolution"),
            Text("name or service not known"),
            Text(": lookup "),
        ],
    ),
    (
        FailureClass::Timeout,
        &[
            Text(crate::flux::DEADLINE_EXCEEDED),
            Text("i/o timeout"),
            Text("timed out"),
            Text("timeout"),
        ],
    ),
    (
        FailureClass::Tls,
        &[
            Text("x509"),
            Text("certificate"),
            Text("tls:"),
            Text("handshake failure"),
        ],
    ),
    (
        FailureClass::Connection,
        &[
            Text("connection refused"),
            Text("connection reset"),
            Text("no route to host"),
            Text("network is unreachable"),
            Text("host is unreachable"),
        ],
    ),
    (
        FailureClass::Auth,
        &[
            Text("authentication required"),
            Text("authentication failed"),
            Text("authorization failed"),
            Text("unable to authenticate"),
            Text("invalid username or password"),
            Text("could not read username"),
            Text("permission denied"),
            Text("unauthorized"),
            Text("forbidden"),
            Code("401"),
            Code("403"),
        ],
    ),
    (
        FailureClass::NotFound,
        &[
            Text("repository not found"),
            Text("couldn't find remote ref"),
            Text("reference not found"),
            Text("remote repository is empty"),
            Text("not found"),
            Code("404"),
        ],
    ),
];

/// The message, lowercased, with URLs (`scheme://...`, `user@host:path`) replaced by `<url>` and
/// whitespace collapsed: Flux quotes the repository URL in its messages, and a repository named
/// `timeout-service` or an org named `forbidden-fruit` must not decide the class.
fn without_urls(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for word in message.split_whitespace() {
        let core = word.trim_matches(|c: char| "'\"`()[]<>,;".contains(c) || c == ':');
        let scp_like = core
            .split_once('@')
            .is_some_and(|(user, rest)| !user.is_empty() && rest.contains(':'));
        if !out.is_empty() {
            out.push(' ');
        }
        if core.contains("://") || scp_like {
            // Keep what follows the URL (`':`), which separates it from the error text.
            let end = word.rfind(core).map_or(word.len(), |i| i + core.len());
            out.push_str("<url>");
            out.push_str(&word[end..].to_ascii_lowercase());
        } else {
            out.push_str(&word.to_ascii_lowercase());
        }
    }
    out
}

fn pattern_matches(message: &str, pattern: Pattern) -> bool {
    match pattern {
        Text(text) => message.contains(text),
        Code(code) => message
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|token| token == code),
    }
}

/// Classifies a failure by the Ready condition's reason (exact, [`REASON_CLASSES`]) and then its
/// message ([`MESSAGE_CLASSES`], case-insensitive, URLs ignored); `other` when nothing matches.
pub fn failure_class(reason: &str, message: &str) -> FailureClass {
    if let Some((_, class)) = REASON_CLASSES.iter().find(|(r, _)| *r == reason) {
        return *class;
    }
    let message = without_urls(message);
    MESSAGE_CLASSES
        .iter()
        .find(|(_, patterns)| patterns.iter().any(|p| pattern_matches(&message, *p)))
        .map_or(FailureClass::Other, |(class, _)| *class)
}

/// Whether a failure message is an attempt running out of its `spec.timeout` (read as
/// [`failure_class`] reads it: case-insensitive, URLs ignored).
fn ran_out_of_time(message: &str) -> bool {
    pattern_matches(&without_urls(message), Text(crate::flux::DEADLINE_EXCEEDED))
}

/// The Git host of a `spec.url`: `https://`, `http://`, `ssh://`, `git://` URLs and scp-like
/// `[user@]host:path`, lowercased, without user info or port. `unknown` when there is no
/// plausible host name (empty, a local path, `file://`, stray characters), which also keeps the
/// `host` label's values bounded to real names.
/// `url` without the userinfo of a `scheme://user:password@host/...` URL (a token in the URL
/// must not be kept or sent anywhere); scp-like `user@host:path` has no password and is kept.
pub fn url_without_userinfo(url: &str) -> String {
    let url = url.trim();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(end);
            let host = authority.rsplit('@').next().unwrap_or("");
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// The Git host a GitRepository is judged and counted by, with its transport: [`git_host`], and
/// `ssh://` before it for SSH (`ssh://` URLs and scp-like `user@host:path`). One host's SSH and
/// HTTPS are two ways in that fail apart (port 22 blocked while 443 answers), so each has its own
/// breaker, and an SSH outage is not diluted by the same host's HTTPS successes.
pub fn host_key(url: &str) -> String {
    let host = git_host(url);
    let url = url.trim();
    let ssh = match url.split_once("://") {
        Some((scheme, _)) => {
            scheme.eq_ignore_ascii_case("ssh") || scheme.eq_ignore_ascii_case("git+ssh")
        }
        None => true,
    };
    if ssh && host != "unknown" {
        format!("ssh://{host}")
    } else {
        host
    }
}

/// The host name of a breaker's host ([`host_key`]), without its transport.
pub fn host_name(key: &str) -> &str {
    key.strip_prefix("ssh://").unwrap_or(key)
}

pub fn git_host(url: &str) -> String {
    let url = url.trim();
    let authority = if let Some((_, rest)) = url.split_once("://") {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    } else {
        // scp-like, as git reads it: a ':' before any '/'.
        match url.split_once(':') {
            Some((before, _)) if !before.contains('/') => before,
            _ => "",
        }
    };
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        match v6.split_once(']') {
            Some((inside, _)) => inside,
            None => "",
        }
    } else {
        // `github.com.` (fully qualified) is the same host as `github.com`.
        host_port
            .split(':')
            .next()
            .unwrap_or("")
            .trim_end_matches('.')
    };
    let plausible = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if plausible {
        host.to_ascii_lowercase()
    } else {
        "unknown".to_owned()
    }
}

/// A failed repository's details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    /// When it started failing: the earlier of the Ready condition's `lastTransitionTime` and,
    /// while the fetch keeps failing, the `FetchFailed` condition's. `None` when neither is
    /// readable (missing or not RFC 3339).
    ///
    /// Why both: while a GitRepository's generation is not yet observed (it never succeeded),
    /// source-controller marks Ready `Unknown` at the start of every attempt and `False` again at
    /// its end, so Ready's time is only the last attempt's. `FetchFailed` stays `True` from the
    /// first failed fetch until a checkout succeeds.
    pub since: Option<OffsetDateTime>,
    /// The object's `spec.timeout` when the failure was its attempt running out of it: the Git
    /// host had then been silent for that long before the failure showed.
    pub attempt_timeout: Option<std::time::Duration>,
    pub reason: String,
    pub message: String,
}

impl Failure {
    /// When the first failed attempt of this streak began, as near as the status tells: `since`,
    /// moved back by the attempt's timeout when it ran out of it. A clone that hangs reports
    /// nothing for its whole `spec.timeout` (5m with fluxgate's floor), so dating it by when it
    /// showed makes an outage look five minutes younger than it is.
    pub fn first_attempt_started(&self) -> Option<OffsetDateTime> {
        let since = self.since?;
        let started = self
            .attempt_timeout
            .and_then(|timeout| time::Duration::try_from(timeout).ok())
            .and_then(|timeout| since.checked_sub(timeout));
        Some(started.unwrap_or(since))
    }
}

/// Everything the surfaces need to know about one GitRepository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub state: State,
    /// `status.observedGeneration` missing, `-1` or behind `metadata.generation`.
    pub unobserved: bool,
    pub generation: Option<i64>,
    /// `status.observedGeneration` as written (the CRD default is `-1`).
    pub observed_generation: Option<i64>,
    /// From `spec.url`, whatever the state: the Git host and its transport ([`host_key`]).
    pub host: String,
    /// `spec.url` without its userinfo ([`url_without_userinfo`]): what fluxgate's own probe of
    /// the host contacts.
    pub probe_url: String,
    /// Set exactly when the state is [`State::Failed`].
    pub failure: Option<Failure>,
    pub created: Option<OffsetDateTime>,
    /// The earliest `lastTransitionTime` of any condition: when the controller first reported.
    pub first_condition_at: Option<OffsetDateTime>,
    /// `status.artifact.lastUpdateTime`: when a new revision was last stored.
    pub last_artifact: Option<OffsetDateTime>,
    /// The Ready condition's `lastTransitionTime`: when Ready last changed. source-controller
    /// sets Ready `Unknown` when it starts on a new generation and `True`/`False` when it ends,
    /// so after a spec change a time at or after the change means an attempt has finished.
    pub ready_changed_at: Option<OffsetDateTime>,
    /// Applied by a Flux Kustomization or HelmRelease (their ownership labels).
    pub gitops_managed: bool,
    /// fluxgate's own marks (archive, quarantine, stamps, opt-outs), parsed once.
    pub marks: Marks,
    /// Its host lane: Flux's `sharding.fluxcd.io/key` label.
    pub lane: Option<String>,
}

impl Health {
    pub fn is_pending(&self) -> bool {
        self.state == State::Pending
    }

    pub fn failing_since(&self) -> Option<OffsetDateTime> {
        self.failure.as_ref().and_then(|f| f.since)
    }

    /// Carries the breaker's label `fluxgate.io/quarantined: "true"`, suspended or not.
    pub fn quarantine_marked(&self) -> bool {
        self.marks.quarantine.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    #[error("the GitRepository is not a JSON object")]
    NotAnObject,
}

fn timestamp(value: Option<&Value>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value?.as_str()?, &Rfc3339).ok()
}

fn text(value: Option<&Value>) -> String {
    value.and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn object<'a>(parent: &'a Map<String, Value>, key: &str) -> Option<&'a Map<String, Value>> {
    parent.get(key).and_then(Value::as_object)
}

/// Classifies one GitRepository (any served version) from its JSON. Fields of the wrong type
/// count as missing; only a value that is not an object at all is an error.
pub fn classify(object_json: &Value) -> Result<Health, HealthError> {
    let root = object_json.as_object().ok_or(HealthError::NotAnObject)?;
    let empty = Map::new();
    let metadata = object(root, "metadata").unwrap_or(&empty);
    let spec = object(root, "spec").unwrap_or(&empty);
    let status = object(root, "status").unwrap_or(&empty);
    let conditions: Vec<&Map<String, Value>> = status
        .get("conditions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(Value::as_object)
        .collect();
    let ready = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));

    let generation = metadata.get("generation").and_then(Value::as_i64);
    let observed_generation = status.get("observedGeneration").and_then(Value::as_i64);
    let unobserved = match (observed_generation, generation) {
        (None, _) => true,
        (Some(o), _) if o < 0 => true,
        (Some(o), Some(g)) => o < g,
        (Some(_), None) => false,
    };

    let labels = object(metadata, "labels").unwrap_or(&empty);
    let gitops_managed = crate::flux::is_gitops_managed(labels.keys().map(String::as_str));
    let marks = Marks::of_metadata(metadata);
    let quarantined = marks.quarantine.is_some();
    let suspended = spec.get("suspend").and_then(Value::as_bool) == Some(true);
    let ready_status = ready.and_then(|r| r.get("status")).and_then(Value::as_str);
    let state = if suspended && quarantined {
        State::Quarantined
    } else if suspended {
        State::Suspended
    } else if conditions.is_empty() {
        State::Pending
    } else {
        match ready_status {
            Some("False") => State::Failed,
            Some("True") if !unobserved => State::Ready,
            _ => State::Progressing,
        }
    };

    let fetch_failed_since = conditions
        .iter()
        .find(|c| {
            c.get("type").and_then(Value::as_str) == Some("FetchFailed")
                && c.get("status").and_then(Value::as_str) == Some("True")
        })
        .and_then(|c| timestamp(c.get("lastTransitionTime")));
    let failure = ready.filter(|_| state == State::Failed).map(|ready| {
        let reason = text(ready.get("reason"));
        let message = text(ready.get("message"));
        let ready_since = timestamp(ready.get("lastTransitionTime"));
        Failure {
            class: failure_class(&reason, &message),
            since: match (ready_since, fetch_failed_since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            attempt_timeout: ran_out_of_time(&message).then(|| {
                spec.get("timeout")
                    .and_then(Value::as_str)
                    .and_then(|t| crate::duration::parse_timeout(t).ok())
                    .unwrap_or(crate::flux::DEFAULT_TIMEOUT)
            }),
            reason,
            message,
        }
    });

    Ok(Health {
        namespace: text(metadata.get("namespace")),
        name: text(metadata.get("name")),
        uid: text(metadata.get("uid")),
        resource_version: text(metadata.get("resourceVersion")),
        state,
        unobserved,
        generation,
        observed_generation,
        host: host_key(spec.get("url").and_then(Value::as_str).unwrap_or("")),
        probe_url: url_without_userinfo(spec.get("url").and_then(Value::as_str).unwrap_or("")),
        failure,
        created: timestamp(metadata.get("creationTimestamp")),
        first_condition_at: conditions
            .iter()
            .filter_map(|c| timestamp(c.get("lastTransitionTime")))
            .min(),
        last_artifact: timestamp(object(status, "artifact").and_then(|a| a.get("lastUpdateTime"))),
        ready_changed_at: ready.and_then(|r| timestamp(r.get("lastTransitionTime"))),
        gitops_managed,
        marks,
        lane: labels
            .get(crate::flux::SHARD_LABEL)
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_whatever_the_scheme_port_user_case_or_trailing_dot() {
        for url in [
            "https://github.com/o/r",
            "https://GitHub.com./o/r",
            "https://user:token@github.com:443/o/r",
            "http://github.com:80/o/r",
            "ssh://git@github.com:22/o/r",
            "git@GITHUB.COM:o/r",
        ] {
            assert_eq!(git_host(url), "github.com", "{url}");
        }
    }

    #[test]
    fn ssh_and_https_to_one_host_are_two_breakers_hosts() {
        assert_eq!(host_key("https://GitHub.com./o/r"), "github.com");
        assert_eq!(host_key("http://github.com:80/o/r"), "github.com");
        assert_eq!(host_key("ssh://git@github.com:22/o/r"), "ssh://github.com");
        assert_eq!(host_key("git@github.com:o/r"), "ssh://github.com");
        assert_eq!(host_key("not a url"), "unknown");
        assert_eq!(host_name("ssh://github.com"), "github.com");
        assert_eq!(host_name("github.com"), "github.com");
    }

    #[test]
    fn a_probe_url_never_keeps_a_password() {
        assert_eq!(
            url_without_userinfo(" https://user:token@github.com/o/r.git "),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            url_without_userinfo("ssh://git@github.com:22/o/r"),
            "ssh://github.com:22/o/r"
        );
        assert_eq!(url_without_userinfo("https://a@b@h/x?y"), "https://h/x?y");
        assert_eq!(
            url_without_userinfo("git@github.com:o/r"),
            "git@github.com:o/r"
        );
    }
    use serde_json::json;
    use time::macros::datetime;

    fn repo(spec: Value, status: Option<Value>) -> Value {
        let mut object = json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {
                "name": "app", "namespace": "proj-1", "uid": "u-1", "resourceVersion": "7",
                "generation": 1, "creationTimestamp": "2026-11-27T10:00:00Z"
            },
            "spec": spec,
        });
        if let Some(status) = status {
            object["status"] = status;
        }
        object
    }

    fn spec() -> Value {
        json!({ "url": "https://github.com/example/app", "interval": "1m" })
    }

    fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
        json!({ "type": kind, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": "2026-11-27T11:00:00Z", "observedGeneration": 1 })
    }

    fn ready(status: &str, reason: &str, message: &str) -> Value {
        condition("Ready", status, reason, message)
    }

    fn with_conditions(observed: Value, conditions: Vec<Value>) -> Health {
        classify(&repo(
            spec(),
            Some(json!({ "observedGeneration": observed, "conditions": conditions })),
        ))
        .unwrap()
    }

    #[test]
    fn no_status_is_pending_and_unobserved() {
        let h = classify(&repo(spec(), None)).unwrap();
        assert_eq!(h.state, State::Pending);
        assert!(h.unobserved);
        assert_eq!(h.observed_generation, None);
        assert_eq!(h.generation, Some(1));
        assert!(h.failure.is_none());
        assert_eq!(h.first_condition_at, None);
        assert_eq!(h.created, Some(datetime!(2026-11-27 10:00 UTC)));
        assert_eq!(h.host, "github.com", "the host is known whatever the state");
    }

    #[test]
    fn empty_or_unreadable_conditions_with_the_crd_default_are_pending() {
        for conditions in [json!([]), json!([3, null, "Ready"]), json!({}), json!(null)] {
            let h = classify(&repo(
                spec(),
                Some(json!({ "observedGeneration": -1, "conditions": conditions })),
            ))
            .unwrap();
            assert_eq!(h.state, State::Pending, "{conditions}");
            assert!(h.unobserved);
            assert_eq!(h.observed_generation, Some(-1));
        }
    }

    #[test]
    fn ready_true_for_the_current_generation_is_ready() {
        let status = json!({ "observedGeneration": 1, "conditions": [ready("True", "Succeeded", "stored artifact")],
                             "artifact": { "lastUpdateTime": "2026-11-27T11:00:00Z" } });
        let h = classify(&repo(spec(), Some(status))).unwrap();
        assert_eq!(h.state, State::Ready);
        assert!(!h.unobserved);
        assert!(h.failure.is_none());
        assert_eq!(h.last_artifact, Some(datetime!(2026-11-27 11:00 UTC)));
        assert_eq!(h.first_condition_at, Some(datetime!(2026-11-27 11:00 UTC)));
    }

    #[test]
    fn observed_generation_table() {
        // (generation, observedGeneration, unobserved)
        for (generation, observed, unobserved) in [
            (json!(1), json!(1), false),
            (json!(3), json!(3), false),
            (json!(3), json!(2), true),
            (json!(1), json!(-1), true),
            (json!(1), json!(null), true),
            (json!(1), json!("1"), true),
            (json!(null), json!(1), false),
            (json!(null), json!(-1), true),
            (json!(1), json!(2), false),
        ] {
            let mut object = repo(
                spec(),
                Some(
                    json!({ "observedGeneration": observed, "conditions": [ready("True", "Succeeded", "")] }),
                ),
            );
            object["metadata"]["generation"] = generation.clone();
            let h = classify(&object).unwrap();
            assert_eq!(h.unobserved, unobserved, "{generation} {observed}");
            let state = if unobserved {
                State::Progressing
            } else {
                State::Ready
            };
            assert_eq!(h.state, state, "Ready=True counts only when observed");
        }
        let mut missing = repo(
            spec(),
            Some(json!({ "conditions": [ready("True", "Succeeded", "")] })),
        );
        assert!(classify(&missing).unwrap().unobserved);
        missing["status"] = json!(null);
        assert!(classify(&missing).unwrap().unobserved);
    }

    #[test]
    fn ready_for_an_older_generation_is_progressing_and_unobserved() {
        let mut object = repo(
            spec(),
            Some(
                json!({ "observedGeneration": 1, "conditions": [ready("True", "Succeeded", "")] }),
            ),
        );
        object["metadata"]["generation"] = json!(2);
        let h = classify(&object).unwrap();
        assert_eq!(h.state, State::Progressing);
        assert!(h.unobserved);
    }

    #[test]
    fn ready_unknown_reconciling_and_stalled_without_ready_are_progressing() {
        for conditions in [
            vec![
                condition("Reconciling", "True", "Progressing", "building artifact"),
                ready("Unknown", "Progressing", "building artifact"),
            ],
            vec![condition(
                "Reconciling",
                "True",
                "Progressing",
                "processing object: new generation 0 -> 1",
            )],
            vec![condition("Stalled", "True", "URLInvalid", "invalid URL")],
            vec![ready("Maybe", "", "")],
            vec![json!({ "type": "Ready" })],
        ] {
            let h = with_conditions(json!(-1), conditions.clone());
            assert_eq!(h.state, State::Progressing, "{conditions:?}");
            assert!(h.unobserved);
            assert!(h.failure.is_none());
        }
    }

    #[test]
    fn reconciling_or_stalled_next_to_ready_false_is_failed() {
        for other in [
            condition("Reconciling", "True", "ProgressingWithRetry", "retrying"),
            condition("Stalled", "True", "URLInvalid", "invalid URL"),
        ] {
            let h = with_conditions(
                json!(1),
                vec![other, ready("False", "URLInvalid", "git URL is invalid")],
            );
            assert_eq!(h.state, State::Failed);
            assert_eq!(h.failure.unwrap().class, FailureClass::Other);
        }
    }

    #[test]
    fn ready_false_is_failed_with_class_host_and_since() {
        let status = json!({ "observedGeneration": -1, "conditions": [
            { "type": "Reconciling", "status": "True", "reason": "ProgressingWithRetry", "message": "", "lastTransitionTime": "2026-11-27T10:00:05Z" },
            ready("False", "GitOperationFailed", "failed to checkout and determine revision: unable to clone 'https://github.com/example/app': context deadline exceeded"),
        ] });
        let h = classify(&repo(spec(), Some(status))).unwrap();
        assert_eq!(h.state, State::Failed);
        assert!(
            h.unobserved,
            "a repository whose first clone failed stays at -1"
        );
        assert_eq!(h.host, "github.com");
        assert_eq!(h.failing_since(), Some(datetime!(2026-11-27 11:00 UTC)));
        let failure = h.failure.unwrap();
        assert_eq!(failure.class, FailureClass::Timeout);
        assert_eq!(failure.reason, "GitOperationFailed");
        assert_eq!(
            h.first_condition_at,
            Some(datetime!(2026-11-27 10:00:05 UTC))
        );
    }

    #[test]
    fn an_attempt_that_ran_out_of_its_timeout_is_dated_from_its_start() {
        let failed = |message: &str, timeout: Option<&str>| {
            let mut spec = spec();
            if let Some(timeout) = timeout {
                spec["timeout"] = json!(timeout);
            }
            let status = json!({ "conditions": [ready("False", "GitOperationFailed", message)] });
            classify(&repo(spec, Some(status)))
                .unwrap()
                .failure
                .unwrap()
        };
        let deadline = "unable to clone 'https://github.com/example/app': Get \"https://github.com/example/app/info/refs?service=git-upload-pack\": context deadline exceeded";
        let showed = datetime!(2026-11-27 11:00 UTC);

        let five_minutes = failed(deadline, Some("5m"));
        assert_eq!(
            five_minutes.since,
            Some(showed),
            "the failure still shows when it showed"
        );
        assert_eq!(
            five_minutes.attempt_timeout,
            Some(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            five_minutes.first_attempt_started(),
            Some(datetime!(2026-11-27 10:55 UTC))
        );
        // Without spec.timeout the attempt had the CRD's default; Go's text in any case.
        let default = failed(&deadline.to_uppercase(), None);
        assert_eq!(
            default.first_attempt_started(),
            Some(datetime!(2026-11-27 10:59 UTC))
        );
        // A timeout unreadable here: the default, rather than no date at all.
        assert_eq!(
            failed(deadline, Some("forever")).first_attempt_started(),
            Some(datetime!(2026-11-27 10:59 UTC))
        );
        // A dial or TLS timeout has its own, shorter clock, and a refusal is immediate: when it
        // showed is the nearest date there is.
        for message in [
            "dial tcp 140.82.112.3:443: i/o timeout",
            "net/http: TLS handshake timeout",
            "dial tcp 140.82.112.3:443: connect: connection refused",
        ] {
            let failure = failed(message, Some("5m"));
            assert!(failure.class.is_transport(), "{message}");
            assert_eq!(failure.attempt_timeout, None, "{message}");
            assert_eq!(failure.first_attempt_started(), Some(showed), "{message}");
        }
    }

    /// As source-controller v1.9 leaves a never-succeeded GitRepository after a retry: Ready was
    /// re-stamped by the attempt, FetchFailed still holds the first failure.
    #[test]
    fn failing_since_survives_the_ready_restamp_of_each_retry() {
        let status = json!({ "observedGeneration": -1, "conditions": [
            { "type": "FetchFailed", "status": "True", "reason": "GitOperationFailed",
              "message": "context deadline exceeded", "lastTransitionTime": "2026-11-20T08:00:00Z" },
            ready("False", "GitOperationFailed", "context deadline exceeded"),
        ] });
        let h = classify(&repo(spec(), Some(status))).unwrap();
        assert_eq!(h.failing_since(), Some(datetime!(2026-11-20 08:00 UTC)));

        // A FetchFailed newer than Ready (the fetch failed after something else already did):
        // the older time wins.
        let status = json!({ "observedGeneration": 1, "conditions": [
            { "type": "FetchFailed", "status": "True", "lastTransitionTime": "2026-11-27T12:00:00Z" },
            ready("False", "StorageOperationFailed", "disk full"),
        ] });
        let h = classify(&repo(spec(), Some(status))).unwrap();
        assert_eq!(h.failing_since(), Some(datetime!(2026-11-27 11:00 UTC)));

        // FetchFailed=False, or with an unreadable time, does not count; Ready's time alone is
        // used, and without any readable time there is none.
        for fetch_failed in [
            json!({ "type": "FetchFailed", "status": "False", "lastTransitionTime": "2026-11-01T00:00:00Z" }),
            json!({ "type": "FetchFailed", "status": "True", "lastTransitionTime": "yesterday" }),
        ] {
            let status =
                json!({ "conditions": [fetch_failed, ready("False", "GitOperationFailed", "x")] });
            let h = classify(&repo(spec(), Some(status))).unwrap();
            assert_eq!(h.failing_since(), Some(datetime!(2026-11-27 11:00 UTC)));
        }
        let status = json!({ "conditions": [
            { "type": "FetchFailed", "status": "True", "lastTransitionTime": "2026-11-20T08:00:00Z" },
            { "type": "Ready", "status": "False", "reason": "GitOperationFailed", "message": "x" },
        ] });
        let h = classify(&repo(spec(), Some(status))).unwrap();
        assert_eq!(h.failing_since(), Some(datetime!(2026-11-20 08:00 UTC)));
    }

    #[test]
    fn ready_false_for_every_failure_class() {
        for (reason, message, class) in [
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to clone 'https://github.com/example/app': dial tcp 140.82.112.3:443: i/o timeout",
                FailureClass::Timeout,
            ),
            (
                "GitOperationFailed",
                "unable to clone 'https://git.corp.example/app.git': dial tcp: lookup git.corp.example on 10.96.0.10:53: no such host",
                FailureClass::Dns,
            ),
            (
                "GitOperationFailed",
                "unable to clone 'https://git.corp.example/app.git': x509: certificate signed by unknown authority",
                FailureClass::Tls,
            ),
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to clone 'https://github.com/example/app': dial tcp 140.82.112.3:443: connect: connection refused",
                FailureClass::Connection,
            ),
            (
                "AuthenticationFailed",
                "failed to get secret 'proj-1/git-auth': secrets \"git-auth\" not found",
                FailureClass::Auth,
            ),
            (
                "GitOperationFailed",
                "unable to clone 'https://github.com/example/app': repository not found",
                FailureClass::NotFound,
            ),
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to clone 'https://github.com/example/app': unexpected client error: unexpected requesting \"https://github.com/example/app/info/refs?service=git-upload-pack\" status code: 429",
                FailureClass::Throttled,
            ),
            (
                "StorageOperationFailed",
                "failed to write artifact",
                FailureClass::Other,
            ),
        ] {
            let h = with_conditions(json!(-1), vec![ready("False", reason, message)]);
            assert_eq!(h.state, State::Failed);
            let failure = h.failure.unwrap();
            assert_eq!(failure.class, class, "{message}");
            assert_eq!(failure.message, message);
        }
    }

    #[test]
    fn suspended_wins_over_failed_and_pending() {
        let mut s = spec();
        s["suspend"] = json!(true);
        let h = classify(&repo(
            s.clone(),
            Some(json!({ "conditions": [ready("False", "GitOperationFailed", "timeout")] })),
        ))
        .unwrap();
        assert_eq!(h.state, State::Suspended);
        assert!(h.failure.is_none(), "a suspended repository is not failed");
        assert_eq!(
            classify(&repo(s, None)).unwrap().state,
            State::Suspended,
            "suspended at creation"
        );
        let mut not_bool = spec();
        not_bool["suspend"] = json!("true");
        assert_eq!(
            classify(&repo(not_bool, None)).unwrap().state,
            State::Pending,
            "only a boolean true suspends, as the API server's schema says"
        );
    }

    #[test]
    fn failure_classes() {
        let cases = [
            // timeout
            (
                "GitOperationFailed",
                "unable to clone 'https://github.com/o/r': dial tcp 140.82.112.3:443: i/o timeout",
                FailureClass::Timeout,
            ),
            (
                "GitOperationFailed",
                "unable to clone: context deadline exceeded",
                FailureClass::Timeout,
            ),
            (
                "GitOperationFailed",
                "Get \"https://github.com/o/r/info/refs?service=git-upload-pack\": net/http: TLS handshake timeout",
                FailureClass::Timeout,
            ),
            (
                "GitOperationFailed",
                "ssh: dial tcp 140.82.112.4:22: connect: connection timed out",
                FailureClass::Timeout,
            ),
            ("GitOperationFailed", "Timeout", FailureClass::Timeout),
            // dns
            (
                "GitOperationFailed",
                "dial tcp: lookup github.com on 10.96.0.10:53: read udp 10.244.0.5:40000->10.96.0.10:53: i/o timeout",
                FailureClass::Dns,
            ),
            (
                "GitOperationFailed",
                "dial tcp: lookup gitlab.invalid: no such host",
                FailureClass::Dns,
            ),
            (
                "GitOperationFailed",
                "dial tcp: lookup github.com on 10.96.0.10:53: server misbehaving",
                FailureClass::Dns,
            ),
            (
                "GitOperationFailed",
                "ssh: Could not resolve hostname git.corp: Temporary failure in name resolution",
                FailureClass::Dns,
            ),
            // tls
            (
                "GitOperationFailed",
                "x509: certificate signed by unknown authority",
                FailureClass::Tls,
            ),
            (
                "GitOperationFailed",
                "remote error: tls: handshake failure",
                FailureClass::Tls,
            ),
            // connection
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to clone 'https://github.com/org/app': dial tcp 140.82.112.3:443: connect: connection refused",
                FailureClass::Connection,
            ),
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to clone 'https://github.com/org/app': read tcp 10.244.0.5:51234->140.82.112.3:443: read: connection reset by peer",
                FailureClass::Connection,
            ),
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to clone 'https://git.corp.example/org/app.git': dial tcp 10.20.0.7:443: connect: no route to host",
                FailureClass::Connection,
            ),
            (
                "GitOperationFailed",
                "unable to clone 'ssh://git@git.corp.example/org/app': dial tcp [2001:db8::7]:22: connect: network is unreachable",
                FailureClass::Connection,
            ),
            (
                "GitOperationFailed",
                "unable to clone 'ssh://git@github.com/org/app': ssh: handshake failed: read tcp 10.244.0.5:40000->140.82.112.4:22: read: connection reset by peer",
                FailureClass::Connection,
            ),
            (
                "GitOperationFailed",
                "unable to clone 'https://github.com/org/app': proxyconnect tcp: dial tcp 10.0.0.8:3128: connect: connection refused",
                FailureClass::Connection,
            ),
            // a resolver that refuses is DNS, a connect that times out is a timeout, a TLS alert
            // is TLS, even when the same message also mentions the connection.
            (
                "GitOperationFailed",
                "dial tcp: lookup github.com on 10.96.0.10:53: read udp 10.244.0.5:40000->10.96.0.10:53: read: connection refused",
                FailureClass::Dns,
            ),
            (
                "GitOperationFailed",
                "dial tcp 140.82.112.3:443: connect: connection timed out",
                FailureClass::Timeout,
            ),
            (
                "GitOperationFailed",
                "remote error: tls: handshake failure; connection reset by peer",
                FailureClass::Tls,
            ),
            (
                "StorageOperationFailed",
                "failed to upload artifact: connection refused",
                FailureClass::Other,
            ),
            // auth
            (
                "AuthenticationFailed",
                "failed to get secret",
                FailureClass::Auth,
            ),
            (
                "AuthenticationFailed",
                "context deadline exceeded",
                FailureClass::Auth,
            ),
            (
                "GitOperationFailed",
                "unable to clone: authentication required",
                FailureClass::Auth,
            ),
            (
                "GitOperationFailed",
                "ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey]",
                FailureClass::Auth,
            ),
            (
                "GitOperationFailed",
                "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
                FailureClass::Auth,
            ),
            (
                "GitOperationFailed",
                "git@github.com: Permission denied (publickey).",
                FailureClass::Auth,
            ),
            (
                "GitOperationFailed",
                "unexpected client error: unexpected requesting \"https://git.example/r\" status code: 403",
                FailureClass::Auth,
            ),
            ("GitOperationFailed", "HTTP 401", FailureClass::Auth),
            // not_found
            (
                "GitOperationFailed",
                "unable to clone: repository not found",
                FailureClass::NotFound,
            ),
            (
                "GitOperationFailed",
                "couldn't find remote ref \"refs/heads/mian\"",
                FailureClass::NotFound,
            ),
            (
                "GitOperationFailed",
                "unable to resolve tag v1.2.3: reference not found",
                FailureClass::NotFound,
            ),
            (
                "GitOperationFailed",
                "unexpected requesting \"https://git.example/r\" status code: 404",
                FailureClass::NotFound,
            ),
            // throttled: go-git's text for a status it has no error of its own for
            (
                "GitOperationFailed",
                "failed to checkout and determine revision: unable to clone 'https://github.com/o/r': unexpected client error: unexpected requesting \"https://github.com/o/r/info/refs?service=git-upload-pack\" status code: 429",
                FailureClass::Throttled,
            ),
            (
                "GitOperationFailed",
                "unable to clone 'https://git.corp.example/o/r.git': unexpected client error: unexpected requesting \"https://git.corp.example/o/r.git/info/refs?service=git-upload-pack\" status code: 502",
                FailureClass::Throttled,
            ),
            (
                "GitOperationFailed",
                "unexpected requesting \"https://git.corp.example/o/timeout-svc/info/refs?service=git-upload-pack\" status code: 503: upstream connect error or disconnect/reset before headers. reset reason: connection timeout",
                FailureClass::Throttled,
            ),
            // 500 and 504 are not throttling; 401, 403 and 404 keep their classes
            (
                "GitOperationFailed",
                "unexpected client error: unexpected requesting \"https://github.com/o/r/info/refs?service=git-upload-pack\" status code: 500",
                FailureClass::Other,
            ),
            (
                "GitOperationFailed",
                "unexpected client error: unexpected requesting \"https://github.com/o/r/info/refs?service=git-upload-pack\" status code: 504",
                FailureClass::Other,
            ),
            (
                "GitOperationFailed",
                "unexpected client error: unexpected requesting \"https://github.com/o/r/info/refs?service=git-upload-pack\" status code: 401",
                FailureClass::Auth,
            ),
            (
                "GitOperationFailed",
                "unable to clone 'https://github.com/o/r': authentication required: ",
                FailureClass::Auth,
            ),
            (
                "GitOperationFailed",
                "unable to clone 'https://github.com/o/r': repository not found: Not Found",
                FailureClass::NotFound,
            ),
            // other
            ("URLInvalid", "git URL is invalid", FailureClass::Other),
            (
                "StorageOperationFailed",
                "failed to write artifact: open /data/x: permission denied",
                FailureClass::Other,
            ),
            ("", "", FailureClass::Other),
            (
                "GitOperationFailed",
                "unexpected EOF at commit sha1:a403f404",
                FailureClass::Other,
            ),
        ];
        for (reason, message, class) in cases {
            assert_eq!(failure_class(reason, message), class, "{reason}: {message}");
        }
    }

    #[test]
    fn urls_in_messages_do_not_decide_the_class() {
        for (message, class) in [
            (
                "unable to clone 'https://github.com/forbidden-fruit/timeout-lib': repository not found",
                FailureClass::NotFound,
            ),
            (
                "unable to clone 'https://github.com/o/certificate-manager': dial tcp 140.82.112.3:443: i/o timeout",
                FailureClass::Timeout,
            ),
            (
                "unable to clone 'ssh://git@github.com/o/timeout.git': authentication required",
                FailureClass::Auth,
            ),
            (
                "unable to clone git@github.com:o/timeout-lib.git: x509: certificate has expired",
                FailureClass::Tls,
            ),
            (
                "unable to clone 'https://git.example/o/r/404': something else",
                FailureClass::Other,
            ),
        ] {
            assert_eq!(
                failure_class("GitOperationFailed", message),
                class,
                "{message}"
            );
        }
    }

    #[test]
    fn hosts_from_every_url_form() {
        for (url, host) in [
            ("https://github.com/o/r", "github.com"),
            ("https://GitHub.com:443/o/r.git", "github.com"),
            ("http://user:token@git.example.com/o/r", "git.example.com"),
            ("http://git.example.com", "git.example.com"),
            ("ssh://git@github.com/o/r", "github.com"),
            (
                "ssh://git@gitlab.example.com:2222/o/r.git",
                "gitlab.example.com",
            ),
            ("git://git.kernel.org/pub/scm/git.git", "git.kernel.org"),
            ("git@github.com:o/r.git", "github.com"),
            ("Git@GitHub.COM:o/r.git", "github.com"),
            ("gitlab.example.com:group/r.git", "gitlab.example.com"),
            ("  https://github.com/o/r  ", "github.com"),
            ("https://[2001:db8::1]:8443/o/r", "2001:db8::1"),
            ("https://[2001:db8::1/o/r", "unknown"),
            ("https://user@/o/r", "unknown"),
            ("file:///srv/git/r.git", "unknown"),
            ("./local/path:with-colon", "unknown"),
            ("github.com/o/r", "unknown"),
            ("https://git hub.com/o/r", "unknown"),
            ("https://ex\"ample.com/o/r", "unknown"),
            ("", "unknown"),
            ("not a url", "unknown"),
        ] {
            assert_eq!(git_host(url), host, "{url}");
        }
    }

    #[test]
    fn bad_timestamps_and_shapes_do_not_panic() {
        let status = json!({ "observedGeneration": "x", "conditions": [
            { "type": "Ready", "status": "False", "lastTransitionTime": "yesterday" }, 3, null,
            { "type": "Reconciling", "status": "True", "lastTransitionTime": "2026-13-45T99:00:00Z" }
        ], "artifact": { "lastUpdateTime": 5 } });
        let mut object = repo(json!({ "url": 7 }), Some(status));
        object["metadata"]["creationTimestamp"] = json!(12);
        let h = classify(&object).unwrap();
        assert_eq!(h.state, State::Failed);
        assert_eq!(h.failure.as_ref().unwrap().since, None);
        assert_eq!(h.failure.unwrap().class, FailureClass::Other);
        assert_eq!(h.created, None);
        assert_eq!(h.first_condition_at, None);
        assert_eq!(h.last_artifact, None);
        assert_eq!(h.host, "unknown");
        assert!(h.unobserved);

        for not_an_object in [json!([1]), json!(null), json!("GitRepository"), json!(7)] {
            assert_eq!(classify(&not_an_object), Err(HealthError::NotAnObject));
        }
        let bare = classify(&json!({})).unwrap();
        assert_eq!(
            (bare.state, bare.unobserved, bare.name.as_str()),
            (State::Pending, true, "")
        );
        let wrong_types =
            json!({ "metadata": [], "spec": "x", "status": { "conditions": "Ready" } });
        assert_eq!(classify(&wrong_types).unwrap().state, State::Pending);
    }

    #[test]
    fn timestamps_with_offsets_and_fractions_are_read() {
        let status = json!({ "observedGeneration": 1, "conditions": [
            { "type": "Ready", "status": "False", "reason": "GitOperationFailed", "message": "i/o timeout",
              "lastTransitionTime": "2026-11-27T12:00:00.5+01:00" }] });
        let h = classify(&repo(spec(), Some(status))).unwrap();
        assert_eq!(
            h.failing_since(),
            Some(datetime!(2026-11-27 11:00:00.5 UTC))
        );
    }

    #[test]
    fn gitops_labels_and_fluxgate_annotations() {
        for label in crate::flux::GITOPS_LABELS {
            let mut object = repo(spec(), None);
            object["metadata"]["labels"] = json!({ label: "apps" });
            assert!(classify(&object).unwrap().gitops_managed, "{label}");
        }
        let mut object = repo(spec(), None);
        object["metadata"]["labels"] = json!({ "app": "x" });
        object["metadata"]["annotations"] =
            json!({ "fluxgate.io/janitor": "false", "fluxgate.io/n": 1, "other": "x" });
        let h = classify(&object).unwrap();
        assert!(!h.gitops_managed);
        assert!(h.marks.opt_out.janitor);
        assert!(!h.marks.opt_out.breaker);
    }

    #[test]
    fn only_host_and_network_failures_are_transport_failures() {
        let transport: Vec<_> = FailureClass::ALL
            .into_iter()
            .filter(|c| c.is_transport())
            .map(FailureClass::as_str)
            .collect();
        assert_eq!(transport, ["timeout", "dns", "tls", "connection"]);
        // A throttled host answers at once: it holds no worker, so it alone trips nothing.
        assert!(!FailureClass::Throttled.is_transport());
    }

    #[test]
    fn repositories_named_after_connection_errors_are_not_connection_failures() {
        assert_eq!(
            failure_class(
                "GitOperationFailed",
                "unable to clone 'https://github.com/o/connection-refused-demo': repository not found"
            ),
            FailureClass::NotFound
        );
    }

    #[test]
    fn the_quarantine_label_and_ready_transition_time_are_read() {
        let mut object = repo(
            spec(),
            Some(json!({ "conditions": [ready("False", "GitOperationFailed", "i/o timeout")] })),
        );
        let h = classify(&object).unwrap();
        assert!(!h.quarantine_marked());
        assert_eq!(h.ready_changed_at, Some(datetime!(2026-11-27 11:00 UTC)));
        for (value, quarantined) in [
            (json!("true"), true),
            (json!("false"), false),
            (json!(true), false),
        ] {
            object["metadata"]["labels"] = json!({ "fluxgate.io/quarantined": value });
            assert_eq!(
                classify(&object).unwrap().quarantine_marked(),
                quarantined,
                "{value}"
            );
        }
        assert_eq!(
            classify(&repo(spec(), None)).unwrap().ready_changed_at,
            None
        );
    }

    #[test]
    fn every_state_and_class_has_a_distinct_label() {
        let states: std::collections::BTreeSet<_> = State::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(states.len(), State::ALL.len());
        let classes: std::collections::BTreeSet<_> =
            FailureClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(classes.len(), FailureClass::ALL.len());
    }
}
