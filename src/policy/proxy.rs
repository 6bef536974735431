//! Proxy environment for source-controller's Pods.
//!
//! Setting `HTTPS_PROXY` on source-controller by hand is lost on the next Flux upgrade, and a
//! `NO_PROXY` that misses the cluster's own names sends its Kubernetes API calls through the proxy
//! and breaks it (fluxcd/source-controller#1027, fluxcd/flux2#5897). Injecting at Pod creation
//! keeps the Deployment that kustomize-controller manages untouched, and `NO_PROXY` always carries
//! what must never be proxied.

use serde_json::{Map, Value, json};

use super::{Mutation, PatchBuilder, PolicyError};

/// Destinations that must never go through a proxy, whatever the operator configures.
pub const ALWAYS_DIRECT: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    ".cluster.local.",
    ".cluster.local",
    ".svc",
];

/// A proxy setting: a literal value, or a reference to a Secret key in the Pod's namespace (for
/// URLs that carry credentials, which fluxgate then never sees).
#[derive(Clone, PartialEq, Eq)]
pub enum ProxyValue {
    Literal(String),
    SecretKey { name: String, key: String },
}

impl ProxyValue {
    /// Parses `secret:NAME/KEY` as a Secret reference, anything else as a literal URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix("secret:") {
            Some(reference) => match reference.split_once('/') {
                Some((name, key)) if !name.is_empty() && !key.is_empty() => Ok(Self::SecretKey {
                    name: name.to_owned(),
                    key: key.to_owned(),
                }),
                _ => Err(format!(
                    "{text:?}: expected secret:NAME/KEY for a proxy URL kept in a Secret"
                )),
            },
            None if text.is_empty() => Err("empty proxy URL".to_owned()),
            None => Ok(Self::Literal(text.to_owned())),
        }
    }

    fn env_entry(&self, name: &str) -> Value {
        match self {
            Self::Literal(value) => json!({ "name": name, "value": value }),
            Self::SecretKey { name: secret, key } => json!({
                "name": name,
                "valueFrom": { "secretKeyRef": { "name": secret, "key": key } }
            }),
        }
    }
}

impl std::fmt::Debug for ProxyValue {
    /// Never prints credentials: `http://user:secret@proxy:3128` shows as `http://***@proxy:3128`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Literal(url) => write!(f, "{:?}", redact_userinfo(url)),
            Self::SecretKey { name, key } => write!(f, "secret:{name}/{key}"),
        }
    }
}

/// Replaces the userinfo of a URL with `***`.
pub fn redact_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let redacted = match rest[..authority_end].rfind('@') {
        Some(at) => format!("***{}", &rest[at..]),
        None => rest.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{redacted}"),
        None => redacted,
    }
}

/// Which Pods get proxy settings, and which settings. No proxy configured leaves every Pod
/// untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPolicy {
    pub https_proxy: Option<ProxyValue>,
    pub http_proxy: Option<ProxyValue>,
    /// What the operator adds to NO_PROXY.
    pub no_proxy: Vec<String>,
    /// Service and Pod CIDRs, when known, so in-cluster traffic by IP stays direct.
    pub cluster_cidrs: Vec<String>,
    /// ClusterIP of `default/kubernetes`, discovered at startup and kept current.
    pub kubernetes_service_ip: Option<String>,
    /// Namespaces whose Pods are considered.
    pub namespaces: Vec<String>,
    /// Labels a Pod must carry (all of them).
    pub selector: Vec<(String, String)>,
    /// Containers that get the environment; init containers never do.
    pub containers: Vec<String>,
    /// Replace variables the Pod already sets instead of leaving them alone.
    pub override_existing: bool,
}

impl Default for ProxyPolicy {
    fn default() -> Self {
        Self {
            https_proxy: None,
            http_proxy: None,
            no_proxy: Vec::new(),
            cluster_cidrs: Vec::new(),
            kubernetes_service_ip: None,
            namespaces: vec!["flux-system".to_owned()],
            selector: vec![("app".to_owned(), "source-controller".to_owned())],
            containers: vec!["manager".to_owned()],
            override_existing: false,
        }
    }
}

impl ProxyPolicy {
    pub fn is_enabled(&self) -> bool {
        self.https_proxy.is_some() || self.http_proxy.is_some()
    }

    /// The NO_PROXY value: always-direct names, the cluster's CIDRs and API server address, then
    /// the operator's list; duplicates dropped, order kept.
    pub fn no_proxy_value(&self) -> String {
        let mut entries: Vec<&str> = Vec::new();
        let candidates = ALWAYS_DIRECT
            .iter()
            .copied()
            .chain(self.kubernetes_service_ip.as_deref())
            .chain(self.cluster_cidrs.iter().map(String::as_str))
            .chain(self.no_proxy.iter().map(String::as_str));
        for entry in candidates.map(str::trim).filter(|e| !e.is_empty()) {
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        entries.join(",")
    }

    /// The variables to inject, upper- and lowercase (some clients read only one form).
    pub(crate) fn wanted_env(&self) -> Vec<(String, Value)> {
        let mut wanted = Vec::new();
        let mut push = |name: &str, value: &ProxyValue| {
            wanted.push((name.to_owned(), value.env_entry(name)));
            let lower = name.to_ascii_lowercase();
            wanted.push((lower.clone(), value.env_entry(&lower)));
        };
        if let Some(https) = &self.https_proxy {
            push("HTTPS_PROXY", https);
        }
        if let Some(http) = &self.http_proxy {
            push("HTTP_PROXY", http);
        }
        push("NO_PROXY", &ProxyValue::Literal(self.no_proxy_value()));
        wanted
    }

    fn selects(&self, namespace: Option<&str>, labels: Option<&Map<String, Value>>) -> bool {
        let in_namespace = namespace.is_some_and(|ns| self.namespaces.iter().any(|n| n == ns));
        let labelled = self.selector.iter().all(|(key, value)| {
            labels
                .and_then(|l| l.get(key))
                .and_then(Value::as_str)
                .is_some_and(|v| v == value)
        });
        in_namespace && labelled
    }

    /// The patch for a Pod being created. `namespace` is the request's (a Pod created by a
    /// ReplicaSet may not carry one in its metadata yet).
    pub fn plan_pod(&self, namespace: Option<&str>, pod: &Value) -> Result<Mutation, PolicyError> {
        let pod = pod.as_object().ok_or(PolicyError::NotAnObject)?;
        let metadata = pod.get("metadata").and_then(Value::as_object);
        let namespace = namespace.filter(|ns| !ns.is_empty()).or_else(|| {
            metadata
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
        });
        let labels = metadata
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object);
        if !self.is_enabled() || !self.selects(namespace, labels) {
            return Ok(Mutation::default());
        }
        let spec = match pod.get("spec") {
            Some(Value::Object(spec)) => spec,
            None | Some(Value::Null) => return Ok(Mutation::default()),
            Some(_) => return Err(PolicyError::FieldNotAnObject("spec", "non-object")),
        };
        let containers = match spec.get("containers") {
            Some(Value::Array(containers)) => containers,
            None | Some(Value::Null) => return Ok(Mutation::default()),
            Some(_) => {
                return Err(PolicyError::FieldNotAList(
                    "spec.containers".to_owned(),
                    "non-list",
                ));
            }
        };

        let wanted = self.wanted_env();
        let mut patch = PatchBuilder::default();
        for (index, container) in containers.iter().enumerate() {
            let Some(container) = container.as_object() else {
                continue;
            };
            let name = container.get("name").and_then(Value::as_str).unwrap_or("");
            if !self.containers.iter().any(|c| c == name) {
                continue;
            }
            let index = index.to_string();
            match container.get("env") {
                None | Some(Value::Null) => {
                    let env: Vec<Value> = wanted.iter().map(|(_, entry)| entry.clone()).collect();
                    let op_path = ["spec", "containers", &index, "env"];
                    if container.contains_key("env") {
                        patch.replace(&op_path, Value::Array(env));
                    } else {
                        patch.add(&op_path, Value::Array(env));
                    }
                }
                Some(Value::Array(existing)) => {
                    for (var, entry) in &wanted {
                        let position = existing.iter().position(|e| {
                            e.get("name").and_then(Value::as_str) == Some(var.as_str())
                        });
                        match position {
                            None => patch
                                .add(&["spec", "containers", &index, "env", "-"], entry.clone()),
                            Some(at) if self.override_existing && existing[at] != *entry => {
                                patch.replace(
                                    &["spec", "containers", &index, "env", &at.to_string()],
                                    entry.clone(),
                                );
                            }
                            // The Pod's own setting (a value or a valueFrom) wins by default.
                            Some(_) => {}
                        }
                    }
                }
                Some(_) => {
                    return Err(PolicyError::FieldNotAList(
                        format!("spec.containers[{index}].env"),
                        "non-list",
                    ));
                }
            }
        }
        Ok(Mutation {
            patch: patch.finish(),
            ..Mutation::default()
        })
    }

    /// The same rule applied to a workload's Pod template (`spec.template`), for previews of
    /// Deployments with `fluxgate mutate`.
    pub fn plan_pod_template(&self, workload: &Value) -> Result<Mutation, PolicyError> {
        let namespace = workload
            .pointer("/metadata/namespace")
            .and_then(Value::as_str);
        let Some(template) = workload.pointer("/spec/template") else {
            return Ok(Mutation::default());
        };
        let pod_view = json!({
            "metadata": template.get("metadata").cloned().unwrap_or(Value::Null),
            "spec": template.get("spec").cloned().unwrap_or(Value::Null),
        });
        let mutation = self.plan_pod(namespace, &pod_view)?;
        let ops = mutation
            .patch
            .0
            .into_iter()
            .map(|op| prefix_path(op, "/spec/template"))
            .collect();
        Ok(Mutation {
            patch: json_patch::Patch(ops),
            ..mutation
        })
    }
}

fn prefix_path(op: json_patch::PatchOperation, prefix: &str) -> json_patch::PatchOperation {
    use json_patch::PatchOperation as Op;
    let rebase = |path: &jsonptr::PointerBuf| {
        jsonptr::PointerBuf::parse(format!("{prefix}{path}")).unwrap_or_else(|_| path.clone())
    };
    match op {
        Op::Add(mut o) => {
            o.path = rebase(&o.path);
            Op::Add(o)
        }
        Op::Replace(mut o) => {
            o.path = rebase(&o.path);
            Op::Replace(o)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ProxyPolicy {
        ProxyPolicy {
            https_proxy: Some(ProxyValue::Literal("http://proxy.internal:3128".into())),
            kubernetes_service_ip: Some("10.96.0.1".into()),
            ..ProxyPolicy::default()
        }
    }

    fn pod(containers: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": "source-controller-7d9f8b6c4-",
                "namespace": "flux-system",
                "labels": { "app": "source-controller", "pod-template-hash": "7d9f8b6c4" }
            },
            "spec": {
                "initContainers": [{ "name": "manager", "image": "init" }],
                "containers": containers
            }
        })
    }

    const NO_PROXY: &str = "localhost,127.0.0.1,::1,.cluster.local.,.cluster.local,.svc,10.96.0.1";

    fn apply(policy: &ProxyPolicy, object: &Value) -> (Value, Mutation) {
        let mutation = policy.plan_pod(Some("flux-system"), object).unwrap();
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &mutation.patch).unwrap();
        (patched, mutation)
    }

    fn patch_json(m: &Mutation) -> Value {
        serde_json::to_value(&m.patch).unwrap()
    }

    #[test]
    fn container_without_env_gets_the_whole_list() {
        let (patched, m) = apply(
            &policy(),
            &pod(json!([{ "name": "manager", "image": "sc" }])),
        );
        assert_eq!(
            patch_json(&m),
            json!([{ "op": "add", "path": "/spec/containers/0/env", "value": [
                { "name": "HTTPS_PROXY", "value": "http://proxy.internal:3128" },
                { "name": "https_proxy", "value": "http://proxy.internal:3128" },
                { "name": "NO_PROXY", "value": NO_PROXY },
                { "name": "no_proxy", "value": NO_PROXY },
            ] }])
        );
        assert_eq!(
            patched["spec"]["initContainers"],
            json!([{ "name": "manager", "image": "init" }])
        );
    }

    #[test]
    fn existing_env_is_appended_to_and_kept() {
        let object = pod(json!([{ "name": "manager", "env": [
            { "name": "RUNTIME_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
            { "name": "no_proxy", "value": "example.com" }
        ] }]));
        let (patched, m) = apply(&policy(), &object);
        assert_eq!(
            patch_json(&m),
            json!([
                { "op": "add", "path": "/spec/containers/0/env/-", "value": { "name": "HTTPS_PROXY", "value": "http://proxy.internal:3128" } },
                { "op": "add", "path": "/spec/containers/0/env/-", "value": { "name": "https_proxy", "value": "http://proxy.internal:3128" } },
                { "op": "add", "path": "/spec/containers/0/env/-", "value": { "name": "NO_PROXY", "value": NO_PROXY } },
            ])
        );
        let env = patched["spec"]["containers"][0]["env"].as_array().unwrap();
        assert_eq!(env.len(), 5, "nothing duplicated: {env:?}");
        assert_eq!(
            env[1],
            json!({ "name": "no_proxy", "value": "example.com" })
        );
    }

    #[test]
    fn existing_proxy_vars_are_replaced_only_with_override() {
        let object = pod(json!([{ "name": "manager", "env": [
            { "name": "HTTPS_PROXY", "value": "http://old:8080" },
            { "name": "https_proxy", "valueFrom": { "secretKeyRef": { "name": "p", "key": "url" } } }
        ] }]));
        let (kept, _) = apply(&policy(), &object);
        let env = kept["spec"]["containers"][0]["env"].as_array().unwrap();
        assert_eq!(env[0]["value"], "http://old:8080");
        assert!(env[1].get("valueFrom").is_some(), "valueFrom respected");
        assert_eq!(env.len(), 4);

        let overriding = ProxyPolicy {
            override_existing: true,
            ..policy()
        };
        let (replaced, m) = apply(&overriding, &object);
        let env = replaced["spec"]["containers"][0]["env"].as_array().unwrap();
        assert_eq!(
            env[0],
            json!({ "name": "HTTPS_PROXY", "value": "http://proxy.internal:3128" })
        );
        assert_eq!(
            env[1],
            json!({ "name": "https_proxy", "value": "http://proxy.internal:3128" })
        );
        assert_eq!(patch_json(&m)[0]["op"], "replace");
        assert_eq!(patch_json(&m)[0]["path"], "/spec/containers/0/env/0");
    }

    #[test]
    fn an_already_injected_pod_gets_no_patch() {
        let (patched, first) = apply(&policy(), &pod(json!([{ "name": "manager" }])));
        assert!(!first.is_empty());
        let again = policy().plan_pod(Some("flux-system"), &patched).unwrap();
        assert!(again.is_empty(), "{:?}", again.patch);
        let overriding = ProxyPolicy {
            override_existing: true,
            ..policy()
        };
        assert!(
            overriding
                .plan_pod(Some("flux-system"), &patched)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn only_configured_containers_and_never_init_containers() {
        let object = pod(json!([
            { "name": "sidecar" },
            { "name": "manager", "env": [] }
        ]));
        let (patched, _) = apply(&policy(), &object);
        assert!(patched["spec"]["containers"][0].get("env").is_none());
        assert_eq!(
            patched["spec"]["containers"][1]["env"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        assert!(patched["spec"]["initContainers"][0].get("env").is_none());

        let both = ProxyPolicy {
            containers: vec!["manager".into(), "sidecar".into()],
            ..policy()
        };
        let (patched, _) = apply(&both, &object);
        assert_eq!(
            patched["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    }

    #[test]
    fn http_proxy_and_secret_references() {
        let p = ProxyPolicy {
            https_proxy: Some(ProxyValue::parse("secret:proxy-credentials/https").unwrap()),
            http_proxy: Some(ProxyValue::parse("http://proxy:3128").unwrap()),
            no_proxy: vec!["gitlab.internal".into(), ".svc".into()],
            cluster_cidrs: vec!["10.96.0.0/12".into(), "10.244.0.0/16".into()],
            ..policy()
        };
        let (patched, _) = apply(&p, &pod(json!([{ "name": "manager" }])));
        let env = patched["spec"]["containers"][0]["env"].as_array().unwrap();
        let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "HTTPS_PROXY",
                "https_proxy",
                "HTTP_PROXY",
                "http_proxy",
                "NO_PROXY",
                "no_proxy"
            ]
        );
        assert_eq!(
            env[0]["valueFrom"],
            json!({ "secretKeyRef": { "name": "proxy-credentials", "key": "https" } })
        );
        assert_eq!(
            env[4]["value"],
            "localhost,127.0.0.1,::1,.cluster.local.,.cluster.local,.svc,10.96.0.1,10.96.0.0/12,10.244.0.0/16,gitlab.internal"
        );
    }

    #[test]
    fn unselected_pods_and_disabled_policy_pass_untouched() {
        let manager = json!([{ "name": "manager" }]);
        let mut other_app = pod(manager.clone());
        other_app["metadata"]["labels"]["app"] = json!("kustomize-controller");
        assert!(
            policy()
                .plan_pod(Some("flux-system"), &other_app)
                .unwrap()
                .is_empty()
        );
        assert!(
            policy()
                .plan_pod(Some("default"), &pod(manager.clone()))
                .unwrap()
                .is_empty()
        );
        let mut unlabelled = pod(manager.clone());
        unlabelled["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("labels");
        assert!(
            policy()
                .plan_pod(Some("flux-system"), &unlabelled)
                .unwrap()
                .is_empty()
        );
        assert!(
            ProxyPolicy::default()
                .plan_pod(Some("flux-system"), &pod(manager))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn namespace_falls_back_to_metadata() {
        let object = pod(json!([{ "name": "manager" }]));
        assert!(!policy().plan_pod(None, &object).unwrap().is_empty());
        assert!(!policy().plan_pod(Some(""), &object).unwrap().is_empty());
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let mut bad = pod(json!("nope"));
        assert!(policy().plan_pod(Some("flux-system"), &bad).is_err());
        bad["spec"]["containers"] = json!([{ "name": "manager", "env": "x" }]);
        assert!(policy().plan_pod(Some("flux-system"), &bad).is_err());
        assert!(policy().plan_pod(Some("flux-system"), &json!(3)).is_err());
    }

    #[test]
    fn deployment_template_preview() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "source-controller", "namespace": "flux-system" },
            "spec": { "template": {
                "metadata": { "labels": { "app": "source-controller" } },
                "spec": { "containers": [{ "name": "manager" }] }
            } }
        });
        let m = policy().plan_pod_template(&deployment).unwrap();
        let mut patched = deployment.clone();
        json_patch::patch(&mut patched, &m.patch).unwrap();
        assert_eq!(
            patched["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"],
            "HTTPS_PROXY"
        );
        assert_eq!(
            patch_json(&m)[0]["path"],
            "/spec/template/spec/containers/0/env"
        );
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let p = ProxyPolicy {
            https_proxy: Some(ProxyValue::Literal(
                "http://user:hunter2@proxy:3128/".into(),
            )),
            ..ProxyPolicy::default()
        };
        let debug = format!("{p:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("http://***@proxy:3128/"), "{debug}");
        assert_eq!(redact_userinfo("proxy:3128"), "proxy:3128");
        assert_eq!(
            redact_userinfo("https://a@b@proxy/x@y"),
            "https://***@proxy/x@y"
        );
    }

    #[test]
    fn secret_reference_syntax_is_checked() {
        assert!(ProxyValue::parse("secret:only-name").is_err());
        assert!(ProxyValue::parse("secret:/key").is_err());
        assert!(ProxyValue::parse("").is_err());
    }
}
