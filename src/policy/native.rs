//! The admission policy as Kubernetes' own MutatingAdmissionPolicy (admissionregistration.k8s.io/v1,
//! GA in 1.36): the same decisions as [`super::gitrepository::plan`] and
//! [`super::ProxyPolicy::plan_pod`], written as CEL that builds a JSON Patch inside kube-apiserver,
//! for clusters that would rather have no webhook in the path of every create.
//!
//! Pure: a [`Policy`] in, manifests (as JSON values, or YAML text) out. The configured values are
//! written into the CEL as literals, so the manifests need no parameter objects.
//!
//! What CEL cannot do, and what the rendered policy does instead (each checked on kube-apiserver
//! v1.37, see `tests/e2e_native_policy.rs`):
//! - Kubernetes CEL has no clock: the `reconcile.fluxcd.io/requestedAt` annotation is not written
//!   (a creation queues a reconcile anyway; `metadata.creationTimestamp` is not set yet when
//!   mutating admission runs, so there is no time to copy either).
//! - Mutations cannot return warnings: a `suspend: true` or an invalid timeout is corrected
//!   silently.
//! - CEL's `duration()` is Go's syntax, not the CRD's: it accepts `1h`, `-5m`, `.5m`, `1us` and `0`,
//!   and fails (rather than returning false) on anything else. The policy parses `spec.timeout`
//!   with the CRD's own grammar (`matches()` and `findAll()`) and integer arithmetic instead,
//!   exactly as [`crate::duration::parse_timeout`] does, limit of Go's `time.Duration` included.
//!   CEL's cost grows faster than the text it reads, so both read at most
//!   [`MAX_TIMEOUT_LEN`] characters (a longer timeout is invalid to both).
//! - The webhook admits an object whose `metadata.annotations` is not a map unchanged (it cannot
//!   add requestedAt to it); the policy, which writes no annotation, still sets the timeout. No
//!   such object reaches admission through kube-apiserver, which decodes metadata strictly.
//! - JSON Patch, not an apply configuration: an apply configuration merges `env` entries by name
//!   (overriding a `valueFrom` with a `value` leaves both, and the Pod is rejected), adds the
//!   named container when a Pod has none of that name (rejected: no image), and fails on a field
//!   of the wrong JSON type (then the object is admitted unchanged). JSON Patch with indexes
//!   reproduces the webhook's patch operation for operation.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::gitrepository::{GitRepositoryPolicy, SuspendMode, TimeoutMode};
use super::proxy::{ProxyPolicy, ProxyValue};
use super::{Policy, proxy};
use crate::duration::{MAX_NANOS, MAX_TIMEOUT_LEN};
use crate::flux;

pub const API_VERSION: &str = "admissionregistration.k8s.io/v1";
/// The MutatingAdmissionPolicy (and its binding) for GitRepositories.
pub const GITREPOSITORY_POLICY: &str = "fluxgate-gitrepositories";
/// The MutatingAdmissionPolicy (and its binding) for source-controller Pods.
pub const PROXY_POLICY: &str = "fluxgate-source-controller-proxy";
/// Namespaces the deploy/ webhook registration leaves out, left out here too by default.
pub const DEFAULT_EXCLUDED_NAMESPACES: &[&str] = &["fluxgate", "kube-system"];

/// The CRD's pattern for `spec.timeout`, and one part of it (a number and its unit).
const TIMEOUT_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$";
const TIMEOUT_PART: &str = r"[0-9]+(\.[0-9]+)?(ms|s|m)";

/// What the manifests are rendered with besides the policy itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeOptions {
    /// Namespaces whose GitRepositories are left alone.
    pub excluded_namespaces: Vec<String>,
}

impl Default for NativeOptions {
    fn default() -> Self {
        Self {
            excluded_namespaces: DEFAULT_EXCLUDED_NAMESPACES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

/// Why a policy cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "{flag} {value:?} is not a proxy URL: expected scheme://host[:port] with scheme http, \
         https, socks5 or socks5h ({reason}), or secret:NAME/KEY"
    )]
    ProxyUrl {
        flag: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "{flag} secret:{name}/{key}: {what} is not a valid Secret {what} (lowercase letters, \
         digits, '-' and '.' for a name; letters, digits, '-', '_' and '.' for a key)"
    )]
    SecretReference {
        flag: &'static str,
        name: String,
        key: String,
        what: &'static str,
    },
    #[error(
        "a proxy needs --kubernetes-service-ip: NO_PROXY must hold the API server's ClusterIP, \
         which the webhook discovers but a rendered policy must be given \
         (kubectl get service kubernetes -n default -o jsonpath='{{.spec.clusterIP}}')"
    )]
    MissingServiceIp,
    #[error("--kubernetes-service-ip {0:?} is not an IP address")]
    ServiceIp(String),
    #[error("{0} is empty: the proxy would reach no Pod")]
    EmptySelection(&'static str),
    #[error(
        "--lane is applied by the webhook only; the native policy does not render it: the host \
         must be read out of every URL form Git accepts (scp-like git@host:path, users, ports, \
         IPv6, any case, a trailing dot), and a CEL reading that differed from the webhook's \
         would put repositories in the wrong source-controller without a warning (a \
         MutatingAdmissionPolicy cannot return one)"
    )]
    Lanes,
}

/// The manifests, in the order to apply them, and what the operator should know about them.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub objects: Vec<Value>,
    pub warnings: Vec<String>,
}

impl Rendered {
    /// Multi-document YAML, each CEL expression in a literal block.
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::ser::Error> {
        let mut out = String::new();
        for (i, object) in self.objects.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&serde_saphyr::to_string(&Yaml(object, false))?);
        }
        Ok(out)
    }
}

/// A JSON value serialized as YAML with the strings of `expression` keys as literal blocks.
struct Yaml<'a>(&'a Value, bool);

impl serde::Serialize for Yaml<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::String(s) if self.1 => serde_saphyr::LitStr(s).serialize(serializer),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Yaml(item, false))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    out.serialize_entry(key, &Yaml(value, key == "expression"))?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// Renders the policy as MutatingAdmissionPolicies and their bindings: always the GitRepository
/// policy, and the source-controller Pod policy when a proxy is configured.
pub fn render(policy: &Policy, options: &NativeOptions) -> Result<Rendered, RenderError> {
    // Refused rather than left out: a policy that silently does less than the webhook it
    // stands in for would leave far hosts in the main source-controller.
    if !policy.gitrepository.lanes.is_empty() {
        return Err(RenderError::Lanes);
    }
    let mut warnings = Vec::new();
    let mut objects = vec![
        gitrepository_policy(&policy.gitrepository, &options.excluded_namespaces),
        binding(GITREPOSITORY_POLICY),
    ];
    if policy.proxy.is_enabled() {
        check_proxy(&policy.proxy, &mut warnings)?;
        objects.push(proxy_policy(&policy.proxy));
        objects.push(binding(PROXY_POLICY));
    }
    Ok(Rendered { objects, warnings })
}

fn metadata(name: &str) -> Value {
    json!({ "name": name, "labels": { "app.kubernetes.io/name": "fluxgate" } })
}

fn binding(policy: &str) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": metadata(policy),
        "spec": { "policyName": policy },
    })
}

fn variable(name: &str, expression: String) -> Value {
    json!({ "name": name, "expression": expression })
}

// --- GitRepository ---------------------------------------------------------------------------

/// The policy for new GitRepositories: `spec.timeout` and `spec.suspend` as
/// [`super::gitrepository::plan`] decides them.
fn gitrepository_policy(policy: &GitRepositoryPolicy, excluded: &[String]) -> Value {
    let mut variables = vec![variable(
        "specKind",
        "!has(object.spec) || object.spec == null ? 'missing'\n\
         : type(object.spec) == map ? 'map' : 'other'"
            .to_owned(),
    )];
    variables.extend(timeout_variables());
    variables.extend(operation_variables(policy));
    let text = cel_string(&policy.timeout.to_string());
    let patch = format!(
        "variables.specKind == 'missing'\n\
         \x20 ? [JSONPatch{{op: 'add', path: '/spec', value: {{'timeout': dyn({text}), 'suspend': dyn(false)}}}}]\n\
         : variables.specKind != 'map' ? []\n\
         : (variables.timeoutOp == '' ? [] : [JSONPatch{{op: variables.timeoutOp, path: '/spec/timeout', value: {text}}}])\n\
         \x20 + (variables.suspendOp == '' ? [] : [JSONPatch{{op: variables.suspendOp, path: '/spec/suspend', value: false}}])"
    );
    json!({
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicy",
        "metadata": metadata(GITREPOSITORY_POLICY),
        "spec": {
            "matchConstraints": gitrepository_constraints(excluded),
            "failurePolicy": "Ignore",
            "reinvocationPolicy": "IfNeeded",
            "variables": variables,
            "mutations": [{ "patchType": "JSONPatch", "jsonPatch": { "expression": patch } }],
        },
    })
}

/// CREATE of GitRepositories of any served version, outside the `excluded` namespaces.
fn gitrepository_constraints(excluded: &[String]) -> Value {
    let mut constraints = json!({
        "resourceRules": [{
            "apiGroups": [flux::GROUP],
            "apiVersions": ["*"],
            "resources": [flux::PLURAL],
            "operations": ["CREATE"],
            "scope": "Namespaced",
        }],
        "matchPolicy": "Equivalent",
    });
    if !excluded.is_empty() {
        constraints["namespaceSelector"] = json!({ "matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded,
        }] });
    }
    constraints
}

/// `spec.timeout`, read as [`crate::duration::parse_timeout`] reads it, ending in
/// `timeoutMillis`: the timeout in whole milliseconds, or -1 when it is not a duration Flux can
/// read.
fn timeout_variables() -> Vec<Value> {
    let limit_ms = MAX_NANOS / 1_000_000;
    let limit_rest = MAX_NANOS % 1_000_000;
    vec![
        // Its parts (a number and a unit each) when it is a string in the CRD's syntax of at
        // most MAX_TIMEOUT_LEN characters, else none.
        variable(
            "timeoutParts",
            format!(
                "has(object.spec.timeout) && type(object.spec.timeout) == string\n\
                 \x20 && size(object.spec.timeout) <= {MAX_TIMEOUT_LEN}\n\
                 \x20 && object.spec.timeout.matches({})\n\
                 ? object.spec.timeout.findAll({}) : []",
                cel_raw(TIMEOUT_PATTERN),
                cel_raw(TIMEOUT_PART)
            ),
        ),
        // Milliseconds per unit.
        variable(
            "timeoutUnits",
            "variables.timeoutParts.map(p, p.endsWith('ms') ? 1 : p.endsWith('s') ? 1000 : 60000)"
                .to_owned(),
        ),
        // Each whole number without leading zeros, as an int; -1 when it has more digits than
        // any duration Flux can read (int() would fail on them).
        variable(
            "timeoutWholes",
            "variables.timeoutParts.map(p, p.find('^[0-9]+').find('[1-9][0-9]*'))\n\
             .map(w, w == '' ? 0 : size(w) <= 13 ? int(w) : -1)"
                .to_owned(),
        ),
        // Each fraction's first nine digits, padded: billionths of the unit.
        variable(
            "timeoutFractions",
            "variables.timeoutParts.map(p,\n\
             \x20 int((p.find(r'\\.[0-9]{1,9}').find('[0-9]+') + '000000000').substring(0, 9)))"
                .to_owned(),
        ),
        variable(
            "timeoutInRange",
            format!(
                "lists.range(size(variables.timeoutParts)).all(i, variables.timeoutWholes[i] >= 0\n\
                 \x20 && variables.timeoutWholes[i] * variables.timeoutUnits[i] <= {limit_ms})"
            ),
        ),
        // Nanoseconds of each fraction (truncated), kept apart as whole milliseconds plus the
        // rest, so that no sum leaves int64.
        variable(
            "timeoutFractionNanos",
            "lists.range(size(variables.timeoutParts))\n\
             .map(i, variables.timeoutFractions[i] * variables.timeoutUnits[i] / 1000)"
                .to_owned(),
        ),
        variable(
            "timeoutWholeMillis",
            "lists.range(size(variables.timeoutParts)).map(i,\n\
             \x20 variables.timeoutWholes[i] * variables.timeoutUnits[i]\n\
             \x20 + variables.timeoutFractionNanos[i] / 1000000).sum()\n\
             + variables.timeoutFractionNanos.map(n, n % 1000000).sum() / 1000000"
                .to_owned(),
        ),
        variable(
            "timeoutRestNanos",
            "variables.timeoutFractionNanos.map(n, n % 1000000).sum() % 1000000".to_owned(),
        ),
        // Not a string in the CRD's syntax, or longer than Go's time.Duration holds: -1.
        variable(
            "timeoutMillis",
            format!(
                "size(variables.timeoutParts) == 0 || !variables.timeoutInRange ? -1\n\
                 : variables.timeoutWholeMillis > {limit_ms}\n\
                 \x20 || (variables.timeoutWholeMillis == {limit_ms} && variables.timeoutRestNanos > {limit_rest}) ? -1\n\
                 : variables.timeoutWholeMillis"
            ),
        ),
    ]
}

/// `timeoutOp` and `suspendOp`: the JSON Patch operation each field needs under the configured
/// modes, `''` for none.
fn operation_variables(policy: &GitRepositoryPolicy) -> [Value; 2] {
    let wanted_ms = policy.timeout.as_duration().as_millis();
    let keep = match policy.timeout_mode {
        TimeoutMode::Floor => format!("variables.timeoutMillis >= {wanted_ms}"),
        TimeoutMode::Force => format!("variables.timeoutMillis == {wanted_ms}"),
    };
    let suspend_true = match policy.suspend_mode {
        SuspendMode::Force => "'replace'",
        SuspendMode::Preserve => "''",
    };
    [
        variable(
            "timeoutOp",
            format!(
                "!has(object.spec.timeout) ? 'add'\n\
                 : variables.timeoutMillis < 0 ? 'replace'\n\
                 : {keep} ? '' : 'replace'"
            ),
        ),
        variable(
            "suspendOp",
            format!(
                "!has(object.spec.suspend) ? 'add'\n\
                 : type(object.spec.suspend) != bool ? 'replace'\n\
                 : object.spec.suspend ? {suspend_true} : ''"
            ),
        ),
    ]
}

// --- source-controller Pods ------------------------------------------------------------------

fn proxy_policy(policy: &ProxyPolicy) -> Value {
    let labels: Map<String, Value> = policy
        .selector
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let wanted: Vec<String> = policy
        .wanted_env()
        .into_iter()
        .map(|(_, entry)| format!("dyn({})", cel_value(&entry)))
        .collect();
    let containers: Vec<String> = policy.containers.iter().map(|c| cel_string(c)).collect();
    let c = "object.spec.containers[i]";
    let replace = if policy.override_existing {
        format!(
            "{c}.env[lists.range(size({c}.env)).filter(j, {c}.env[j].name == w.name)[0]] != w\n\
             \x20         ? [JSONPatch{{op: 'replace', path: '/spec/containers/' + string(i) + '/env/' + \
             string(lists.range(size({c}.env)).filter(j, {c}.env[j].name == w.name)[0]), value: w}}]\n\
             \x20         : []"
        )
    } else {
        "[]".to_owned()
    };
    let patch = format!(
        "variables.containers.map(i, !has({c}.env) || {c}.env == null\n\
         \x20 ? [JSONPatch{{op: has({c}.env) ? 'replace' : 'add', path: '/spec/containers/' + string(i) + '/env', value: variables.wanted}}]\n\
         \x20 : variables.wanted.map(w, !{c}.env.exists(e, e.name == w.name)\n\
         \x20     ? [JSONPatch{{op: 'add', path: '/spec/containers/' + string(i) + '/env/-', value: w}}]\n\
         \x20     : {replace}\n\
         \x20   ).flatten()\n\
         ).flatten()\n"
    );
    json!({
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicy",
        "metadata": metadata(PROXY_POLICY),
        "spec": {
            "matchConstraints": {
                "resourceRules": [{
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                    "operations": ["CREATE"],
                    "scope": "Namespaced",
                }],
                "matchPolicy": "Equivalent",
                "namespaceSelector": { "matchExpressions": [{
                    "key": "kubernetes.io/metadata.name", "operator": "In",
                    "values": policy.namespaces,
                }] },
                "objectSelector": { "matchLabels": labels },
            },
            "failurePolicy": "Ignore",
            "reinvocationPolicy": "IfNeeded",
            "variables": [
                // The variables to inject, in the webhook's order.
                variable("wanted", format!("[\n  {}\n]", wanted.join(",\n  "))),
                // Indexes of the containers that get them (never init containers).
                variable(
                    "containers",
                    format!(
                        "!has(object.spec.containers) ? []\n\
                         : lists.range(size(object.spec.containers)).filter(i,\n\
                         \x20   has(object.spec.containers[i].name)\n\
                         \x20   && object.spec.containers[i].name in [{}])",
                        containers.join(", ")
                    ),
                ),
            ],
            "mutations": [{ "patchType": "JSONPatch", "jsonPatch": { "expression": patch } }],
        },
    })
}

fn check_proxy(policy: &ProxyPolicy, warnings: &mut Vec<String>) -> Result<(), RenderError> {
    for (flag, value) in [
        ("--https-proxy", &policy.https_proxy),
        ("--http-proxy", &policy.http_proxy),
    ] {
        match value {
            None => {}
            Some(ProxyValue::Literal(url)) => {
                check_proxy_url(url).map_err(|reason| RenderError::ProxyUrl {
                    flag,
                    value: proxy::redact_userinfo(url),
                    reason,
                })?;
                if proxy::redact_userinfo(url) != *url {
                    warnings.push(format!(
                        "{flag} carries credentials, which the rendered policy holds in plain text \
                         for anyone who may read MutatingAdmissionPolicies: prefer secret:NAME/KEY"
                    ));
                }
            }
            Some(ProxyValue::SecretKey { name, key }) => {
                let bad = |what| RenderError::SecretReference {
                    flag,
                    name: name.clone(),
                    key: key.clone(),
                    what,
                };
                if !is_dns_subdomain(name) {
                    return Err(bad("name"));
                }
                if !is_config_key(key) {
                    return Err(bad("key"));
                }
            }
        }
    }
    match &policy.kubernetes_service_ip {
        None => return Err(RenderError::MissingServiceIp),
        Some(ip) if ip.trim().parse::<IpAddr>().is_err() => {
            return Err(RenderError::ServiceIp(ip.clone()));
        }
        Some(_) => {}
    }
    if policy.namespaces.iter().all(|n| n.trim().is_empty()) {
        return Err(RenderError::EmptySelection("--proxy-namespaces"));
    }
    if policy.containers.iter().all(|c| c.trim().is_empty()) {
        return Err(RenderError::EmptySelection("--proxy-containers"));
    }
    Ok(())
}

/// Whether `url` is `scheme://[userinfo@]host[:port][/path]` with a scheme Go's HTTP client takes
/// for a proxy; the reason when it is not.
pub fn check_proxy_url(url: &str) -> Result<(), &'static str> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace or control characters");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("no scheme");
    };
    if !["http", "https", "socks5", "socks5h"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        return Err("unsupported scheme");
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let Some((v6, after)) = bracketed.split_once(']') else {
            return Err("unclosed [ in the host");
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("not an IPv6 address in [ ]");
        }
        match after {
            "" => (v6, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (v6, Some(port)),
                None => return Err("text after the ] of the host"),
            },
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
    {
        return Err("the host has characters a host name cannot have");
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the port is not a number from 1 to 65535");
    }
    Ok(())
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && key != "."
        && key != ".."
}

// --- CEL literals ----------------------------------------------------------------------------

/// A CEL string literal (single-quoted, escaped).
pub fn cel_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A raw CEL string literal, for regular expressions (none of ours holds a quote).
fn cel_raw(text: &str) -> String {
    debug_assert!(!text.contains('\''));
    format!("r'{text}'")
}

/// A JSON value (strings, booleans, objects) as a CEL literal. Map values and list elements are
/// wrapped in `dyn()`, so maps that mix strings and maps type-check.
fn cel_value(value: &Value) -> String {
    match value {
        Value::String(s) => cel_string(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".to_owned(),
        Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|v| format!("dyn({})", cel_value(v)))
                .collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: dyn({})", cel_string(k), cel_value(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::FluxDuration;

    fn proxy_policy_with(https: &str) -> Policy {
        Policy {
            proxy: ProxyPolicy {
                https_proxy: Some(ProxyValue::parse(https).unwrap()),
                kubernetes_service_ip: Some("10.96.0.1".into()),
                ..ProxyPolicy::default()
            },
            ..Policy::default()
        }
    }

    fn expression(policy: &Value) -> &str {
        policy["spec"]["mutations"][0]["jsonPatch"]["expression"]
            .as_str()
            .unwrap()
    }

    fn variable<'a>(policy: &'a Value, name: &str) -> &'a str {
        policy["spec"]["variables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["expression"].as_str())
            .unwrap_or_else(|| panic!("no variable {name}"))
    }

    #[test]
    fn default_policy_renders_the_gitrepository_policy_and_binding_only() {
        let rendered = render(&Policy::default(), &NativeOptions::default()).unwrap();
        let kinds: Vec<(&str, &str)> = rendered
            .objects
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("MutatingAdmissionPolicy", GITREPOSITORY_POLICY),
                ("MutatingAdmissionPolicyBinding", GITREPOSITORY_POLICY),
            ]
        );
        assert!(rendered.warnings.is_empty());
        let policy = &rendered.objects[0];
        assert_eq!(policy["apiVersion"], API_VERSION);
        assert_eq!(policy["spec"]["failurePolicy"], "Ignore");
        assert_eq!(policy["spec"]["reinvocationPolicy"], "IfNeeded");
        assert_eq!(
            policy["spec"]["matchConstraints"]["resourceRules"][0]["operations"],
            json!(["CREATE"])
        );
        assert_eq!(
            policy["spec"]["matchConstraints"]["namespaceSelector"]["matchExpressions"][0]["values"],
            json!(["fluxgate", "kube-system"])
        );
        assert_eq!(
            rendered.objects[1]["spec"],
            json!({ "policyName": GITREPOSITORY_POLICY })
        );
    }

    #[test]
    fn the_configured_timeout_and_modes_are_written_into_the_cel() {
        let policy = Policy {
            gitrepository: GitRepositoryPolicy {
                timeout: "90m".parse().unwrap(),
                timeout_mode: TimeoutMode::Force,
                suspend_mode: SuspendMode::Preserve,
                ..GitRepositoryPolicy::default()
            },
            ..Policy::default()
        };
        let rendered = render(&policy, &NativeOptions::default()).unwrap();
        let object = &rendered.objects[0];
        assert!(
            expression(object).contains("value: '90m'"),
            "{}",
            expression(object)
        );
        assert!(variable(object, "timeoutOp").contains("variables.timeoutMillis == 5400000"));
        assert!(variable(object, "suspendOp").contains("object.spec.suspend ? '' : ''"));

        let floor = render(&Policy::default(), &NativeOptions::default()).unwrap();
        assert!(variable(&floor.objects[0], "timeoutOp").contains(">= 300000"));
        assert!(variable(&floor.objects[0], "suspendOp").contains("? 'replace' : ''"));
    }

    #[test]
    fn the_go_duration_limit_is_written_as_milliseconds_and_nanoseconds() {
        let rendered = render(&Policy::default(), &NativeOptions::default()).unwrap();
        let millis = variable(&rendered.objects[0], "timeoutMillis");
        assert!(
            millis.contains("timeoutWholeMillis > 9223372036854\n"),
            "{millis}"
        );
        assert!(millis.contains("timeoutRestNanos > 775807"), "{millis}");
        let range = variable(&rendered.objects[0], "timeoutInRange");
        assert!(range.contains("<= 9223372036854)"), "{range}");
    }

    #[test]
    fn fractions_are_read_as_billionths_of_the_unit_without_leaving_int64() {
        let rendered = render(&Policy::default(), &NativeOptions::default()).unwrap();
        let fractions = variable(&rendered.objects[0], "timeoutFractions");
        assert!(
            fractions.contains("+ '000000000').substring(0, 9)"),
            "{fractions}"
        );
        // The largest product: nine digits of minutes.
        assert!(999_999_999i64.checked_mul(60_000).is_some());
        // The largest whole number int() is given, times the largest unit.
        assert!(9_999_999_999_999i64.checked_mul(60_000).is_some());
    }

    #[test]
    fn no_excluded_namespaces_means_no_namespace_selector() {
        let rendered = render(
            &Policy::default(),
            &NativeOptions {
                excluded_namespaces: vec![],
            },
        )
        .unwrap();
        assert!(
            rendered.objects[0]["spec"]["matchConstraints"]
                .get("namespaceSelector")
                .is_none()
        );
    }

    #[test]
    fn a_proxy_adds_the_pod_policy_with_the_webhooks_selection_and_variables() {
        let mut policy = proxy_policy_with("secret:proxy-credentials/https");
        policy.proxy.http_proxy = Some(ProxyValue::parse("http://proxy:3128").unwrap());
        policy.proxy.no_proxy = vec!["git.example".into()];
        policy.proxy.selector = vec![
            ("app".into(), "source-controller".into()),
            ("tier".into(), "flux".into()),
        ];
        let rendered = render(&policy, &NativeOptions::default()).unwrap();
        assert_eq!(rendered.objects.len(), 4);
        let pods = &rendered.objects[2];
        assert_eq!(pods["metadata"]["name"], PROXY_POLICY);
        assert_eq!(rendered.objects[3]["spec"]["policyName"], PROXY_POLICY);
        let constraints = &pods["spec"]["matchConstraints"];
        assert_eq!(
            constraints["namespaceSelector"]["matchExpressions"][0]["values"],
            json!(["flux-system"])
        );
        assert_eq!(
            constraints["objectSelector"]["matchLabels"],
            json!({ "app": "source-controller", "tier": "flux" })
        );
        assert_eq!(
            constraints["resourceRules"][0]["resources"],
            json!(["pods"])
        );
        let wanted = variable(pods, "wanted");
        assert!(
            wanted.starts_with(
                "[\n  dyn({'name': dyn('HTTPS_PROXY'), 'valueFrom': dyn({'secretKeyRef': \
                 dyn({'name': dyn('proxy-credentials'), 'key': dyn('https')})})}),\n  "
            ),
            "{wanted}"
        );
        assert!(wanted.contains("'HTTP_PROXY'") && wanted.contains("'http_proxy'"));
        assert!(
            wanted.contains(
                "'localhost,127.0.0.1,::1,.cluster.local.,.cluster.local,.svc,10.96.0.1,git.example'"
            ),
            "{wanted}"
        );
        assert!(variable(pods, "containers").contains("in ['manager']"));
        // Without --proxy-override an existing variable is never replaced.
        assert!(
            !expression(pods)
                .contains("'replace', path: '/spec/containers/' + string(i) + '/env/'")
        );
        policy.proxy.override_existing = true;
        let overriding = render(&policy, &NativeOptions::default()).unwrap();
        assert!(
            expression(&overriding.objects[2]).contains(
                "op: 'replace', path: '/spec/containers/' + string(i) + '/env/' + string("
            )
        );
    }

    #[test]
    fn lanes_are_refused_rather_than_left_out() {
        let mut policy = Policy::default();
        policy.gitrepository.lanes = super::super::LaneRules::new(vec![
            super::super::LaneRule::parse("github.com=far").unwrap(),
        ])
        .unwrap();
        let err = render(&policy, &NativeOptions::default()).unwrap_err();
        assert_eq!(err, RenderError::Lanes);
        assert!(
            err.to_string()
                .starts_with("--lane is applied by the webhook only")
        );
    }

    #[test]
    fn bad_proxy_input_is_a_clear_error() {
        for (url, reason) in [
            ("proxy.internal:3128", "no scheme"),
            ("proxy.internal", "no scheme"),
            ("ftp://proxy:21", "unsupported scheme"),
            ("http://", "no host"),
            ("http://:3128", "no host"),
            (
                "http://proxy:port",
                "the port is not a number from 1 to 65535",
            ),
            ("http://proxy:0", "the port is not a number from 1 to 65535"),
            (
                "http://proxy:70000",
                "the port is not a number from 1 to 65535",
            ),
            (
                "http://pro xy:3128",
                "it contains whitespace or control characters",
            ),
            (
                "http://proxy'x:3128",
                "the host has characters a host name cannot have",
            ),
            ("http://[::1:3128", "unclosed [ in the host"),
        ] {
            let err = render(&proxy_policy_with(url), &NativeOptions::default()).unwrap_err();
            assert!(
                matches!(&err, RenderError::ProxyUrl { reason: r, .. } if *r == reason),
                "{url}: {err:?}"
            );
            assert!(err.to_string().starts_with("--https-proxy "), "{err}");
        }
        let err = render(
            &proxy_policy_with("http://user:hunter2@proxy:3128"),
            &NativeOptions::default(),
        )
        .unwrap();
        assert_eq!(err.warnings.len(), 1);
        assert!(!err.warnings[0].contains("hunter2"));
        let bad = render(
            &proxy_policy_with("http://user:hunter2@proxy:bad"),
            &NativeOptions::default(),
        )
        .unwrap_err();
        assert!(!bad.to_string().contains("hunter2"), "{bad}");
    }

    #[test]
    fn good_proxy_urls_pass() {
        for url in [
            "http://proxy.internal:3128",
            "https://proxy.internal",
            "HTTP://proxy:8080/",
            "socks5://10.0.0.5:1080",
            "http://user:p%40ss@proxy:3128",
            "http://[fd00::1]:3128",
            "http://[fd00::1]",
        ] {
            assert_eq!(check_proxy_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn the_service_ip_and_secret_names_are_checked() {
        let mut policy = proxy_policy_with("http://proxy:3128");
        policy.proxy.kubernetes_service_ip = None;
        assert_eq!(
            render(&policy, &NativeOptions::default()),
            Err(RenderError::MissingServiceIp)
        );
        policy.proxy.kubernetes_service_ip = Some("kubernetes.default".into());
        assert!(matches!(
            render(&policy, &NativeOptions::default()),
            Err(RenderError::ServiceIp(_))
        ));
        for (reference, what) in [
            ("secret:Proxy/url", "name"),
            ("secret:proxy/u rl", "key"),
            ("secret:-proxy/url", "name"),
        ] {
            let err = render(&proxy_policy_with(reference), &NativeOptions::default()).unwrap_err();
            assert!(
                matches!(&err, RenderError::SecretReference { what: w, .. } if *w == what),
                "{reference}: {err:?}"
            );
        }
        let mut none = proxy_policy_with("http://proxy:3128");
        none.proxy.namespaces = vec![];
        assert_eq!(
            render(&none, &NativeOptions::default()),
            Err(RenderError::EmptySelection("--proxy-namespaces"))
        );
    }

    #[test]
    fn cel_literals_are_escaped() {
        assert_eq!(cel_string("a'b\\c\nd"), r"'a\'b\\c\nd'");
        assert_eq!(cel_string("\u{1}"), r"'\u0001'");
        assert_eq!(
            cel_value(&json!({ "name": "X", "valueFrom": { "k": "v" } })),
            "{'name': dyn('X'), 'valueFrom': dyn({'k': dyn('v')})}"
        );
        let mut policy = proxy_policy_with("http://proxy:3128");
        policy.proxy.no_proxy = vec!["it's".into()];
        let rendered = render(&policy, &NativeOptions::default()).unwrap();
        assert!(variable(&rendered.objects[2], "wanted").contains(r".svc,10.96.0.1,it\'s'"));
    }

    #[test]
    fn yaml_output_keeps_cel_in_block_scalars_and_parses_back() {
        let rendered = render(
            &proxy_policy_with("http://proxy:3128"),
            &NativeOptions::default(),
        )
        .unwrap();
        let yaml = rendered.to_yaml().unwrap();
        assert!(yaml.contains("expression: |"), "{yaml}");
        let back = crate::manifests::parse_documents(&yaml).unwrap();
        assert_eq!(back, rendered.objects);
    }

    #[test]
    fn any_configured_timeout_renders() {
        for text in ["0s", "500ms", "1m30s", "153722867m"] {
            let timeout: FluxDuration = text.parse().unwrap();
            let policy = Policy {
                gitrepository: GitRepositoryPolicy {
                    timeout,
                    ..GitRepositoryPolicy::default()
                },
                ..Policy::default()
            };
            let rendered = render(&policy, &NativeOptions::default()).unwrap();
            let expected = format!("value: '{timeout}'");
            assert!(expression(&rendered.objects[0]).contains(&expected));
        }
    }
}
