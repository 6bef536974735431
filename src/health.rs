//! How healthy one GitRepository is, from its spec and status. Pure (the caller passes the
//! object; nothing here reads the clock or the network): the exporter, `fluxgate report` and the
//! janitor all call [`classify`], so their numbers agree.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The one state a GitRepository is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// `Ready=True` for the current generation.
    Ready,
    /// `Ready=False` and not suspended.
    Failed,
    /// No status conditions at all: source-controller has not picked it up yet (starvation).
    Pending,
    /// `spec.suspend: true` (wins over every other state).
    Suspended,
    /// Anything in between: `Ready=Unknown`, no Ready condition yet, or Ready for an older
    /// generation.
    Progressing,
}

impl State {
    pub const ALL: [State; 5] = [
        State::Ready,
        State::Failed,
        State::Pending,
        State::Suspended,
        State::Progressing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Pending => "pending",
            Self::Suspended => "suspended",
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
    Auth,
    NotFound,
    Other,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Auth => "auth",
            Self::NotFound => "not_found",
            Self::Other => "other",
        }
    }
}

/// Message fragments (lowercase) per class, tried in this order; the first match wins. Order
/// matters: `lookup github.com: i/o timeout` is a DNS failure, `tls: handshake timeout` a timeout.
const CLASS_PATTERNS: &[(FailureClass, &[&str])] = &[
    (
        FailureClass::Auth,
        &[
            "authentication required",
            "authentication failed",
            "authorization failed",
            "invalid credentials",
            "invalid username or password",
            "could not read username",
            "permission denied",
            "unauthorized",
            "forbidden",
            "ssh: handshake failed: ssh: unable to authenticate",
        ],
    ),
    (
        FailureClass::NotFound,
        &[
            "repository not found",
            "couldn't find remote ref",
            "reference not found",
            "remote repository is empty",
            "not found",
        ],
    ),
    (
        FailureClass::Dns,
        &[
            "no such host",
            "server misbehaving",
            "name resolution",
            "name or service not known",
            ": lookup ",
        ],
    ),
    (
        FailureClass::Timeout,
        &[
            "context deadline exceeded",
            "i/o timeout",
            "timed out",
            "timeout",
            "deadline exceeded",
        ],
    ),
    (
        FailureClass::Tls,
        &["x509", "certificate", "tls:", "handshake failure"],
    ),
];

/// Classifies a failure by the condition's reason and message.
pub fn failure_class(reason: &str, message: &str) -> FailureClass {
    if reason == "AuthenticationFailed" {
        return FailureClass::Auth;
    }
    let message = message.to_ascii_lowercase();
    CLASS_PATTERNS
        .iter()
        .find(|(_, patterns)| patterns.iter().any(|p| message.contains(p)))
        .map_or(FailureClass::Other, |(class, _)| *class)
}

/// The Git host of a `spec.url`: https/http/ssh/git URLs and scp-like `git@host:org/repo`,
/// lowercased, without user or port. `unknown` when there is none.
pub fn git_host(url: &str) -> String {
    let url = url.trim();
    let authority = if let Some((_, rest)) = url.split_once("://") {
        rest.split(['/', '?', '#']).next().unwrap_or("")
    } else if let Some((before, _)) = url.split_once(':') {
        // scp-like: [user@]host:path
        before
    } else {
        ""
    };
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() || host.contains(char::is_whitespace) {
        "unknown".to_owned()
    } else {
        host
    }
}

/// A failed repository's details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: FailureClass,
    /// The Ready condition's `lastTransitionTime`: when it started failing.
    pub since: Option<OffsetDateTime>,
    pub reason: String,
    pub message: String,
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
    pub host: String,
    pub failure: Option<Failure>,
    pub created: Option<OffsetDateTime>,
    /// The earliest `lastTransitionTime` of any condition: when the controller first reported.
    pub first_condition_at: Option<OffsetDateTime>,
    /// `status.artifact.lastUpdateTime`: when a new revision was last stored.
    pub last_artifact: Option<OffsetDateTime>,
    /// Applied by a Flux Kustomization or HelmRelease (their ownership labels).
    pub gitops_managed: bool,
    pub annotations: Vec<(String, String)>,
}

impl Health {
    pub fn is_pending(&self) -> bool {
        self.state == State::Pending
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
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

/// Classifies one GitRepository (any served version) from its JSON.
pub fn classify(object: &Value) -> Result<Health, HealthError> {
    let object = object.as_object().ok_or(HealthError::NotAnObject)?;
    let empty = serde_json::Map::new();
    let metadata = object
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let spec = object
        .get("spec")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let status = object
        .get("status")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let conditions: &[Value] = status
        .get("conditions")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let conditions: Vec<&serde_json::Map<String, Value>> =
        conditions.iter().filter_map(Value::as_object).collect();
    let ready = conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));

    let generation = metadata.get("generation").and_then(Value::as_i64);
    let observed = status.get("observedGeneration").and_then(Value::as_i64);
    let unobserved = match (observed, generation) {
        (None, _) => true,
        (Some(o), _) if o < 0 => true,
        (Some(o), Some(g)) => o < g,
        (Some(_), None) => false,
    };

    let suspended = spec.get("suspend").and_then(Value::as_bool) == Some(true);
    let ready_status = ready.and_then(|r| r.get("status")).and_then(Value::as_str);
    let state = if suspended {
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

    let failure = ready.filter(|_| state == State::Failed).map(|ready| {
        let reason = text(ready.get("reason"));
        let message = text(ready.get("message"));
        Failure {
            class: failure_class(&reason, &message),
            since: timestamp(ready.get("lastTransitionTime")),
            reason,
            message,
        }
    });

    let labels = metadata.get("labels").and_then(Value::as_object);
    let gitops_managed = labels.is_some_and(|l| {
        l.contains_key("kustomize.toolkit.fluxcd.io/name")
            || l.contains_key("helm.toolkit.fluxcd.io/name")
    });
    let annotations = metadata
        .get("annotations")
        .and_then(Value::as_object)
        .map(|a| {
            a.iter()
                .filter(|(k, _)| k.starts_with("fluxgate.io/"))
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();

    Ok(Health {
        namespace: text(metadata.get("namespace")),
        name: text(metadata.get("name")),
        uid: text(metadata.get("uid")),
        resource_version: text(metadata.get("resourceVersion")),
        state,
        unobserved,
        host: git_host(spec.get("url").and_then(Value::as_str).unwrap_or("")),
        failure,
        created: timestamp(metadata.get("creationTimestamp")),
        first_condition_at: conditions
            .iter()
            .filter_map(|c| timestamp(c.get("lastTransitionTime")))
            .min(),
        last_artifact: timestamp(status.get("artifact").and_then(|a| a.get("lastUpdateTime"))),
        gitops_managed,
        annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn ready(status: &str, reason: &str, message: &str) -> Value {
        json!({ "type": "Ready", "status": status, "reason": reason, "message": message,
                "lastTransitionTime": "2026-11-27T11:00:00Z", "observedGeneration": 1 })
    }

    #[test]
    fn no_status_is_pending_and_unobserved() {
        let h = classify(&repo(spec(), None)).unwrap();
        assert_eq!(h.state, State::Pending);
        assert!(h.unobserved);
        assert!(h.failure.is_none());
        assert_eq!(h.first_condition_at, None);
        assert_eq!(h.created, Some(datetime!(2026-11-27 10:00 UTC)));
    }

    #[test]
    fn empty_conditions_and_crd_default_observed_generation_are_pending() {
        let h = classify(&repo(
            spec(),
            Some(json!({ "observedGeneration": -1, "conditions": [] })),
        ))
        .unwrap();
        assert_eq!(h.state, State::Pending);
        assert!(h.unobserved);
    }

    #[test]
    fn ready_true_for_the_current_generation_is_ready() {
        let status = json!({ "observedGeneration": 1, "conditions": [ready("True", "Succeeded", "stored artifact")],
                             "artifact": { "lastUpdateTime": "2026-11-27T11:00:00Z" } });
        let h = classify(&repo(spec(), Some(status))).unwrap();
        assert_eq!(h.state, State::Ready);
        assert!(!h.unobserved);
        assert_eq!(h.last_artifact, Some(datetime!(2026-11-27 11:00 UTC)));
        assert_eq!(h.first_condition_at, Some(datetime!(2026-11-27 11:00 UTC)));
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
    fn ready_unknown_reconciling_and_missing_ready_are_progressing() {
        for conditions in [
            json!([ready(
                "Unknown",
                "Progressing",
                "reconciliation in progress"
            )]),
            json!([{ "type": "Reconciling", "status": "True", "reason": "Progressing", "message": "", "lastTransitionTime": "2026-11-27T11:00:00Z" }]),
            json!([{ "type": "Stalled", "status": "True", "reason": "URLInvalid", "message": "", "lastTransitionTime": "2026-11-27T11:00:00Z" }]),
        ] {
            let h = classify(&repo(
                spec(),
                Some(json!({ "observedGeneration": -1, "conditions": conditions })),
            ))
            .unwrap();
            assert_eq!(h.state, State::Progressing, "{conditions}");
            assert!(h.unobserved);
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
        let failure = h.failure.unwrap();
        assert_eq!(failure.class, FailureClass::Timeout);
        assert_eq!(failure.since, Some(datetime!(2026-11-27 11:00 UTC)));
        assert_eq!(failure.reason, "GitOperationFailed");
        assert_eq!(
            h.first_condition_at,
            Some(datetime!(2026-11-27 10:00:05 UTC))
        );
    }

    #[test]
    fn suspended_wins_over_failed() {
        let mut s = spec();
        s["suspend"] = json!(true);
        let h = classify(&repo(
            s,
            Some(json!({ "conditions": [ready("False", "GitOperationFailed", "timeout")] })),
        ))
        .unwrap();
        assert_eq!(h.state, State::Suspended);
        assert!(h.failure.is_none());
    }

    #[test]
    fn failure_classes() {
        let cases = [
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
                "net/http: TLS handshake timeout",
                FailureClass::Timeout,
            ),
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
                "x509: certificate signed by unknown authority",
                FailureClass::Tls,
            ),
            (
                "AuthenticationFailed",
                "failed to get secret",
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
                "unable to clone: repository not found",
                FailureClass::NotFound,
            ),
            (
                "GitOperationFailed",
                "couldn't find remote ref \"refs/heads/mian\"",
                FailureClass::NotFound,
            ),
            ("URLInvalid", "git URL is invalid", FailureClass::Other),
            (
                "StorageOperationFailed",
                "failed to write artifact",
                FailureClass::Other,
            ),
        ];
        for (reason, message, class) in cases {
            assert_eq!(failure_class(reason, message), class, "{message}");
        }
    }

    #[test]
    fn hosts_from_every_url_form() {
        for (url, host) in [
            ("https://github.com/o/r", "github.com"),
            ("https://GitHub.com:443/o/r.git", "github.com"),
            ("http://user:token@git.example.com/o/r", "git.example.com"),
            ("ssh://git@github.com/o/r", "github.com"),
            (
                "ssh://git@gitlab.example.com:2222/o/r.git",
                "gitlab.example.com",
            ),
            ("git@github.com:o/r.git", "github.com"),
            ("https://[2001:db8::1]:8443/o/r", "2001:db8::1"),
            ("", "unknown"),
            ("not a url", "unknown"),
        ] {
            assert_eq!(git_host(url), host, "{url}");
        }
    }

    #[test]
    fn bad_timestamps_and_shapes_do_not_panic() {
        let status = json!({ "observedGeneration": "x", "conditions": [
            { "type": "Ready", "status": "False", "lastTransitionTime": "yesterday" }, 3, null
        ] });
        let mut object = repo(json!({ "url": 7 }), Some(status));
        object["metadata"]["creationTimestamp"] = json!(12);
        let h = classify(&object).unwrap();
        assert_eq!(h.state, State::Failed);
        assert_eq!(h.failure.unwrap().since, None);
        assert_eq!(h.created, None);
        assert_eq!(h.host, "unknown");
        assert!(h.unobserved);
        assert_eq!(classify(&json!([1])), Err(HealthError::NotAnObject));
        assert_eq!(classify(&json!({})).unwrap().state, State::Pending);
    }

    #[test]
    fn gitops_labels_and_fluxgate_annotations() {
        let mut object = repo(spec(), None);
        object["metadata"]["labels"] = json!({ "kustomize.toolkit.fluxcd.io/name": "apps" });
        object["metadata"]["annotations"] = json!({ "fluxgate.io/janitor": "false", "other": "x" });
        let h = classify(&object).unwrap();
        assert!(h.gitops_managed);
        assert_eq!(h.annotation("fluxgate.io/janitor"), Some("false"));
        assert_eq!(
            h.annotation("other"),
            None,
            "only fluxgate's annotations are kept"
        );
    }
}
