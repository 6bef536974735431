//! Property-based fuzzing of the code that reads untrusted input: the AdmissionReview core
//! (`admission::review`), the policy (`Policy::plan`) and the manifest reader
//! (`manifests::parse_documents`).
//!
//! Runs on stable Rust. Each `cargo test` replays the committed corpus in `tests/fuzz-corpus/` and a
//! bounded number of generated cases per property; a longer campaign is
//! `PROPTEST_CASES=100000 cargo test --release --test fuzz_admission`.
//!
//! The properties are the webhook's promises: never panic, never refuse a well-formed review
//! whatever object it carries, always echo the uid with `allowed: true`, and return a patch that
//! applies to the object and leaves nothing to patch on a second pass (reinvocation safety).

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use fluxgate::admission::{self, InvalidReview, ReviewOutcome, Reviewed};
use fluxgate::duration::FluxDuration;
use fluxgate::manifests::{self, ManifestError};
use fluxgate::policy::proxy::ProxyValue;
use fluxgate::policy::{
    GitRepositoryPolicy, LaneRule, LaneRules, MirrorRule, MirrorRules, Policy, PolicyError,
    ProxyPolicy, SuspendMode, Target, TimeoutMode,
};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-28 10:00:00 UTC);
const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";
const SHARD_LABEL: &str = "sharding.fluxcd.io/key";

/// Generated cases per property: small by default so `cargo test` stays quick, raised with
/// `PROPTEST_CASES` for a longer campaign. Failures are not persisted to files: a reproducer
/// belongs in the corpus, replayed by name.
fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Keys the code under test looks for, plus a few that need escaping in a JSON Pointer.
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "annotations",
    "labels",
    "name",
    "namespace",
    "spec",
    "timeout",
    "suspend",
    "containers",
    "initContainers",
    "env",
    "value",
    "valueFrom",
    "items",
    "request",
    "uid",
    "object",
    "operation",
    "group",
    "version",
    "dryRun",
    "app",
    REQUESTED_AT,
    "a/b~c",
    "~1",
    "",
    "-",
    "0",
];

/// Values with meaning somewhere in the code under test.
const STRINGS: &[&str] = &[
    "",
    "5m",
    "4m59s",
    "5m0s",
    "300s",
    "1h",
    "90m",
    "1.5m",
    "0s",
    "-1s",
    "soon",
    "1e3s",
    "99999999999999999999m",
    "CREATE",
    "UPDATE",
    "DELETE",
    "CONNECT",
    "GitRepository",
    "GitRepositoryList",
    "List",
    "Pod",
    "AdmissionReview",
    "admission.k8s.io/v1",
    "admission.k8s.io/v1beta1",
    "source.toolkit.fluxcd.io",
    "source.toolkit.fluxcd.io/v1",
    "flux-system",
    "source-controller",
    "manager",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "HTTP_PROXY",
    "null",
    "true",
    "~",
    "yes",
    "0x1F",
    "1e3",
    ".inf",
    "- a",
    "a: b",
    "#c",
    "\u{0}",
    "\u{feff}",
    "é\u{301}",
    "\u{1F600}",
    "line\nbreak",
    "tab\there",
    "\"quoted\"",
    "back\\slash",
];

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(KEYS).prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
    .boxed()
}

/// Go-like and Flux-like durations, valid or not.
fn duration_text() -> BoxedStrategy<String> {
    "-?([0-9]{1,4}(\\.[0-9]{0,3})?(ns|us|µs|ms|s|m|h)?){0,3}".boxed()
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(STRINGS).prop_map(str::to_owned),
        2 => duration_text(),
        2 => ".{0,24}",
        1 => "[\\x00-\\x7f]{0,40}",
    ]
    .boxed()
}

fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Non-finite floats become null, as serde_json does.
        any::<f64>().prop_map(Value::from),
        select(&[0.0, -0.0, 1e300, 5e-324, 300.0][..]).prop_map(Value::from),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value, up to a few levels deep.
fn value() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A field that may be absent, null, of any type, or of the expected shape (most often).
fn slot(expected: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => value().prop_map(Some),
        5 => expected.prop_map(Some),
    ]
    .boxed()
}

fn object(fields: Vec<(&'static str, Option<Value>)>, extra: Vec<(String, Value)>) -> Value {
    let mut map: Map<String, Value> = extra.into_iter().collect();
    for (key, value) in fields {
        match value {
            Some(value) => {
                map.insert(key.to_owned(), value);
            }
            None => {
                map.remove(key);
            }
        }
    }
    Value::Object(map)
}

fn extras() -> BoxedStrategy<Vec<(String, Value)>> {
    prop::collection::vec((key(), value()), 0..3).boxed()
}

fn string_value() -> BoxedStrategy<Value> {
    text().prop_map(Value::String).boxed()
}

/// GitRepository-shaped objects with every field fluxgate reads perturbed.
fn gitrepository() -> BoxedStrategy<Value> {
    let url = prop_oneof![
        select(
            &[
                "https://github.com/o/r",
                "https://github.com/o/r.git",
                "http://GitHub.com:80/o/r/",
                "ssh://git@github.com/o/r",
                "git@github.com:o/r",
                "https://github.com/",
                "https://gitee.com/acme-mirror/o/r",
                "https://tok@github.com/o/r",
            ][..]
        )
        .prop_map(|u| json!(u)),
        text().prop_map(|t| json!(format!("https://github.com/{t}"))),
        string_value(),
    ]
    .boxed();
    let opt_out = select(&["false", "disabled", "true", ""][..])
        .prop_map(|v| json!(v))
        .boxed();
    let annotations = (
        slot(string_value()),
        slot(url.clone()),
        slot(opt_out),
        extras(),
    )
        .prop_map(|(at, original, opt_out, extra)| {
            object(
                vec![
                    (REQUESTED_AT, at),
                    ("fluxgate.io/original-url", original),
                    ("fluxgate.io/mirror", opt_out.clone()),
                    ("fluxgate.io/lane", opt_out),
                ],
                extra,
            )
        })
        .boxed();
    let labels = (slot(string_value()), slot(string_value()), extras())
        .prop_map(|(managed, shard, extra)| {
            object(
                vec![
                    ("kustomize.toolkit.fluxcd.io/name", managed),
                    (SHARD_LABEL, shard),
                ],
                extra,
            )
        })
        .boxed();
    let metadata = (
        slot(string_value()),
        slot(string_value()),
        slot(annotations),
        slot(labels),
        extras(),
    )
        .prop_map(|(name, ns, ann, labels, extra)| {
            object(
                vec![
                    ("name", name),
                    ("namespace", ns),
                    ("annotations", ann),
                    ("labels", labels),
                ],
                extra,
            )
        })
        .boxed();
    let timeout = prop_oneof![
        duration_text().prop_map(Value::String),
        string_value(),
        number()
    ]
    .boxed();
    let secret_ref = Just(json!({ "name": "s" })).boxed();
    let spec = (
        slot(timeout),
        slot(any::<bool>().prop_map(Value::Bool).boxed()),
        slot(url),
        slot(secret_ref),
        extras(),
    )
        .prop_map(|(timeout, suspend, url, secret_ref, extra)| {
            object(
                vec![
                    ("timeout", timeout),
                    ("suspend", suspend),
                    ("url", url),
                    ("secretRef", secret_ref),
                ],
                extra,
            )
        })
        .boxed();
    let repo = (
        slot(Just(json!("source.toolkit.fluxcd.io/v1")).boxed()),
        slot(Just(json!("GitRepository")).boxed()),
        slot(metadata),
        slot(spec),
        extras(),
    )
        .prop_map(|(api, kind, metadata, spec, extra)| {
            object(
                vec![
                    ("apiVersion", api),
                    ("kind", kind),
                    ("metadata", metadata),
                    ("spec", spec),
                ],
                extra,
            )
        });
    prop_oneof![9 => repo, 1 => value()].boxed()
}

/// Pod-shaped objects aimed at the proxy injection: selected or not, containers and env of
/// every shape.
fn pod() -> BoxedStrategy<Value> {
    let env_name = prop_oneof![
        select(
            &[
                "HTTPS_PROXY",
                "https_proxy",
                "NO_PROXY",
                "no_proxy",
                "HTTP_PROXY",
                "OTHER"
            ][..]
        )
        .prop_map(Value::from),
        string_value(),
    ]
    .boxed();
    let env_entry = prop_oneof![
        6 => (slot(env_name), slot(string_value()), slot(value()))
            .prop_map(|(name, v, from)| object(vec![("name", name), ("value", v), ("valueFrom", from)], vec![])),
        1 => value(),
    ]
    .boxed();
    let env = prop::collection::vec(env_entry, 0..6)
        .prop_map(Value::Array)
        .boxed();
    let container_name = prop_oneof![
        select(&["manager", "sidecar"][..]).prop_map(Value::from),
        string_value()
    ]
    .boxed();
    let container = prop_oneof![
        6 => (slot(container_name), slot(env), extras())
            .prop_map(|(name, env, extra)| object(vec![("name", name), ("env", env)], extra)),
        1 => value(),
    ]
    .boxed();
    let containers = prop::collection::vec(container, 0..4)
        .prop_map(Value::Array)
        .boxed();
    let spec = (slot(containers.clone()), slot(containers))
        .prop_map(|(c, init)| object(vec![("containers", c), ("initContainers", init)], vec![]))
        .boxed();
    let labels = (
        slot(prop_oneof![Just(json!("source-controller")), string_value()].boxed()),
        extras(),
    )
        .prop_map(|(app, extra)| object(vec![("app", app)], extra))
        .boxed();
    let namespace = prop_oneof![
        Just(json!("flux-system")),
        Just(json!("default")),
        string_value()
    ]
    .boxed();
    let metadata = (slot(namespace), slot(labels))
        .prop_map(|(ns, labels)| object(vec![("namespace", ns), ("labels", labels)], vec![]))
        .boxed();
    let pod = (slot(metadata), slot(spec), extras()).prop_map(|(metadata, spec, extra)| {
        object(vec![("metadata", metadata), ("spec", spec)], extra)
    });
    prop_oneof![9 => pod, 1 => value()].boxed()
}

fn proxy_value() -> BoxedStrategy<ProxyValue> {
    prop_oneof![
        Just(ProxyValue::Literal("http://proxy.internal:3128".into())),
        Just(ProxyValue::Literal("http://user:pa%40ss@proxy:3128".into())),
        Just(ProxyValue::SecretKey {
            name: "git-proxy".into(),
            key: "url".into()
        }),
    ]
    .boxed()
}

fn proxy_policy() -> BoxedStrategy<ProxyPolicy> {
    let enabled = (
        proxy_value(),
        prop::option::of(proxy_value()),
        prop::collection::vec(
            select(&["example.com", ".internal", "10.0.0.0/8", " "][..]),
            0..3,
        ),
        prop::option::of(Just("10.96.0.1".to_owned())),
        any::<bool>(),
    )
        .prop_map(
            |(https, http, no_proxy, ip, override_existing)| ProxyPolicy {
                https_proxy: Some(https),
                http_proxy: http,
                no_proxy: no_proxy.into_iter().map(str::to_owned).collect(),
                cluster_cidrs: vec!["10.96.0.0/12".into()],
                kubernetes_service_ip: ip,
                override_existing,
                ..ProxyPolicy::default()
            },
        );
    prop_oneof![1 => Just(ProxyPolicy::default()), 3 => enabled].boxed()
}

fn mirror_rules() -> MirrorRules {
    let rules = [
        "https://github.com/=https://gitee.com/acme-mirror/",
        "ssh://git@github.com/=ssh://git@gitea.internal:2222/m/;credentials=carry;git-suffix=add",
    ];
    MirrorRules::new(
        rules
            .iter()
            .map(|r| MirrorRule::parse(r).unwrap())
            .collect(),
        vec!["platform".to_owned()],
    )
    .unwrap()
}

/// Lanes for the original host and for a mirror: a lane is judged after the mirror step.
fn lane_rules() -> LaneRules {
    let rules = ["github.com=far", "GITEE.com.=mirrored"];
    LaneRules::new(rules.iter().map(|r| LaneRule::parse(r).unwrap()).collect()).unwrap()
}

fn policy() -> BoxedStrategy<Policy> {
    (
        select(&[0u64, 1, 1_500, 60_000, 300_000, 5_400_000, 5_430_250][..]),
        any::<bool>(),
        any::<bool>(),
        proxy_policy(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(ms, force_timeout, preserve_suspend, proxy, mirror, lanes)| Policy {
                gitrepository: GitRepositoryPolicy {
                    timeout: FluxDuration::from_duration(Duration::from_millis(ms)),
                    timeout_mode: if force_timeout {
                        TimeoutMode::Force
                    } else {
                        TimeoutMode::Floor
                    },
                    suspend_mode: if preserve_suspend {
                        SuspendMode::Preserve
                    } else {
                        SuspendMode::Force
                    },
                    mirror: if mirror {
                        mirror_rules()
                    } else {
                        MirrorRules::default()
                    },
                    lanes: if lanes {
                        lane_rules()
                    } else {
                        LaneRules::default()
                    },
                },
                proxy,
            },
        )
        .boxed()
}

fn review_of(group: &str, kind: &str, operation: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": { "group": group, "version": "v1", "kind": kind },
            "resource": { "group": group, "version": "v1", "resource": "things" },
            "name": "app",
            "namespace": "flux-system",
            "operation": operation,
            "userInfo": { "username": "admin", "groups": ["system:masters"] },
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" }
        }
    })
}

/// A well-formed review of a GitRepository, a Pod or something else, for any operation.
fn well_formed_review() -> BoxedStrategy<Value> {
    let operation = select(
        &[
            "CREATE", "CREATE", "CREATE", "UPDATE", "DELETE", "CONNECT", "x",
        ][..],
    );
    prop_oneof![
        (gitrepository(), operation.clone()).prop_map(|(o, op)| review_of(
            "source.toolkit.fluxcd.io",
            "GitRepository",
            op,
            o
        )),
        (pod(), operation.clone()).prop_map(|(o, op)| review_of("", "Pod", op, o)),
        (value(), operation).prop_map(|(o, op)| review_of("apps", "Deployment", op, o)),
    ]
    .boxed()
}

/// Places in a review where a mutation can land.
const REVIEW_POINTERS: &[&str] = &[
    "",
    "/apiVersion",
    "/kind",
    "/request",
    "/request/uid",
    "/request/kind",
    "/request/kind/group",
    "/request/kind/kind",
    "/request/kind/version",
    "/request/operation",
    "/request/namespace",
    "/request/name",
    "/request/object",
    "/request/object/metadata",
    "/request/object/metadata/annotations",
    "/request/object/spec",
    "/request/object/spec/timeout",
    "/request/object/spec/suspend",
    "/request/object/spec/containers",
    "/request/oldObject",
    "/request/dryRun",
    "/request/userInfo",
    "/request/options",
    "/response",
];

#[derive(Debug, Clone)]
enum Edit {
    Remove(&'static str),
    Set(&'static str, Value),
}

fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        select(REVIEW_POINTERS).prop_map(Edit::Remove),
        (select(REVIEW_POINTERS), value()).prop_map(|(p, v)| Edit::Set(p, v)),
    ]
    .boxed()
}

fn apply_edit(review: &mut Value, edit: &Edit) {
    let (pointer, new) = match edit {
        Edit::Remove(p) => (*p, None),
        Edit::Set(p, v) => (*p, Some(v.clone())),
    };
    if pointer.is_empty() {
        *review = new.unwrap_or(Value::Null);
        return;
    }
    let (parent, last) = pointer.rsplit_once('/').expect("pointer starts with /");
    if let Some(Value::Object(map)) = review.pointer_mut(parent) {
        match new {
            Some(v) => {
                map.insert(last.to_owned(), v);
            }
            None => {
                map.remove(last);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Oracles
// ---------------------------------------------------------------------------------------------

/// Reviews `body` and checks every promise the webhook makes about the answer. Returns what
/// `review` returned so callers can add their own expectations.
fn check_review(body: &[u8], policy: &Policy) -> Result<Reviewed, InvalidReview> {
    let result = admission::review(body, policy, NOW);
    // Fields fluxgate skips are not checked for UTF-8 by serde_json: compare with a lossy read.
    let input: Option<Value> = serde_json::from_slice(body)
        .or_else(|_| serde_json::from_str(&String::from_utf8_lossy(body)))
        .ok()
        .map(as_fields);
    match &result {
        Ok(reviewed) => {
            assert!(!reviewed.uid.is_empty());
            let out: Value = serde_json::from_slice(&reviewed.body).expect("response is JSON");
            assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
            assert_eq!(out["kind"], "AdmissionReview");
            assert_eq!(out["response"]["uid"], reviewed.uid.as_str());
            assert_eq!(out["response"]["allowed"], true, "fluxgate never denies");
            assert_eq!(out.as_object().unwrap().len(), 3, "{out}");

            // A skipped field nested past serde_json's limit for values: only the answer above
            // can be checked.
            let Some(input) = input else {
                assert_eq!(reviewed.outcome, ReviewOutcome::Skipped);
                return result;
            };
            assert_eq!(input["apiVersion"], "admission.k8s.io/v1");
            assert_eq!(input["kind"], "AdmissionReview");
            assert_eq!(input["request"]["uid"], reviewed.uid.as_str());

            let request = &input["request"];
            let target = request["kind"].as_object().and_then(|gvk| {
                Target::from_group_kind(
                    gvk.get("group").and_then(Value::as_str).unwrap_or(""),
                    gvk.get("kind").and_then(Value::as_str).unwrap_or(""),
                )
            });
            let acted_on = target.is_some() && request["operation"] == "CREATE";
            assert_eq!(reviewed.target, target);
            if !acted_on {
                assert_eq!(reviewed.outcome, ReviewOutcome::Skipped);
            }
            // A mirror rule that leaves an object alone says so, with or without a patch.
            if reviewed
                .warnings
                .iter()
                .any(|w| !w.starts_with(LEFT_WARNING))
            {
                assert_eq!(
                    reviewed.outcome,
                    ReviewOutcome::Patched,
                    "{:?}",
                    reviewed.warnings
                );
            }
            match reviewed.outcome {
                ReviewOutcome::Error => assert!(reviewed.error.is_some()),
                _ => assert!(reviewed.error.is_none()),
            }

            let patch = out["response"].get("patch");
            assert_eq!(patch.is_some(), reviewed.outcome == ReviewOutcome::Patched);
            assert_eq!(
                out["response"].get("patchType").is_some(),
                patch.is_some(),
                "{out}"
            );
            if let Some(patch) = patch {
                assert_eq!(out["response"]["patchType"], "JSONPatch");
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(patch.as_str().expect("patch is a base64 string"))
                    .expect("patch is valid base64");
                let patch: json_patch::Patch =
                    serde_json::from_slice(&bytes).expect("patch is a JSON Patch");
                let mut object = request["object"].clone();
                json_patch::patch(&mut object, &patch).expect("patch applies to the object");

                // Reinvocation: the same review of the patched object needs no further patch.
                let mut again = input.clone();
                again["request"]["object"] = object;
                let again = admission::review(&serde_json::to_vec(&again).unwrap(), policy, NOW)
                    .expect("the patched review is answerable");
                assert_eq!(again.outcome, ReviewOutcome::Unchanged, "{:?}", again.error);
                assert!(
                    again.warnings.iter().all(|w| w.starts_with(LEFT_WARNING)),
                    "{:?}",
                    again.warnings
                );
            }
        }
        Err(err) => {
            let message = err.to_string();
            assert!(!message.is_empty());
            assert!(!message.contains('\n'), "one-line message: {message:?}");
            match (err, &input) {
                // Not readable as a JSON value (or too deep for one, where skipped fields are
                // not): any refusal will do.
                (_, None) => {}
                (InvalidReview::Version { api_version, kind }, Some(input)) => {
                    let api = input.get("apiVersion").and_then(Value::as_str);
                    let k = input.get("kind").and_then(Value::as_str);
                    assert_eq!(api.unwrap_or(""), api_version);
                    assert_eq!(k.unwrap_or(""), kind);
                    assert!(api != Some("admission.k8s.io/v1") || k != Some("AdmissionReview"));
                }
                (InvalidReview::MissingRequest, Some(input)) => {
                    assert!(input.get("request").is_none_or(Value::is_null), "{input}");
                }
                (InvalidReview::MissingUid, Some(input)) => {
                    let uid = &input["request"]["uid"];
                    assert!(uid.is_null() || uid == "", "{uid}");
                }
                (InvalidReview::Json(_), Some(_)) => {}
            }
        }
    }
    result
}

/// serde's derived readers also take a struct as a list of its fields in order; present such
/// input the way `review` reads it so the oracle checks the same fields.
fn as_fields(value: Value) -> Value {
    fn named(value: Value, names: &[&str]) -> Value {
        match value {
            Value::Array(items) => {
                Value::Object(names.iter().map(|n| n.to_string()).zip(items).collect())
            }
            other => other,
        }
    }
    let mut review = named(value, &["apiVersion", "kind", "request"]);
    if let Some(request) = review.get_mut("request") {
        *request = named(
            request.take(),
            &[
                "uid",
                "kind",
                "operation",
                "namespace",
                "name",
                "object",
                "dryRun",
            ],
        );
        if let Some(kind) = request.get_mut("kind") {
            *kind = named(kind.take(), &["group", "kind"]);
        }
    }
    review
}

fn type_is_container(value: Option<&Value>) -> bool {
    matches!(value, None | Some(Value::Null) | Some(Value::Object(_)))
}

/// Runs the policy on `object` and checks: errors only for the shapes that are documented as
/// errors; a patch always applies; a second pass on the result is empty (idempotency); the
/// patched object holds what the policy promises.
/// How a mirror rule's warning for an object it left alone begins.
const LEFT_WARNING: &str = "spec.url left on its host";

fn check_mutation(policy: &Policy, target: Target, namespace: Option<&str>, object: &Value) {
    let result = policy.plan(target, namespace, object, NOW);
    if target == Target::GitRepository {
        let shape_ok = object.as_object().is_some_and(|o| {
            let metadata = o.get("metadata");
            type_is_container(metadata)
                && type_is_container(metadata.and_then(|m| m.get("annotations")))
                && type_is_container(o.get("spec"))
        });
        assert_eq!(result.is_ok(), shape_ok, "{object}: {result:?}");
    }
    if !object.is_object() {
        assert_eq!(result, Err(PolicyError::NotAnObject));
    }
    let Ok(mutation) = result else { return };
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &mutation.patch)
        .unwrap_or_else(|e| panic!("patch {} does not apply to {object}: {e}", mutation.patch));
    let again = policy
        .plan(target, namespace, &patched, NOW)
        .unwrap_or_else(|e| panic!("patched object {patched} refused: {e}"));
    assert!(
        again.patch.0.is_empty(),
        "not idempotent: {object} -> {patched} -> {}",
        again.patch
    );
    // Only a mirror rule's "left on its host" repeats: nothing marks an object it left alone.
    assert!(
        again
            .warnings
            .iter()
            .all(|w| w.starts_with(LEFT_WARNING) && mutation.warnings.contains(w)),
        "{:?}",
        again.warnings
    );
    assert!(again.mirror_rule.is_none(), "rewritten twice: {patched}");
    assert!(again.lane_shard.is_none(), "put in a lane twice: {patched}");
    if let Some(shard) = &mutation.lane_shard {
        // Only where the creator set no shard, and exactly the shard decided.
        assert!(
            object["metadata"]["labels"].get(SHARD_LABEL).is_none(),
            "{object}"
        );
        assert_eq!(
            patched["metadata"]["labels"][SHARD_LABEL],
            json!(&**shard),
            "{patched}"
        );
    } else if object.is_object() {
        assert_eq!(
            patched["metadata"]["labels"].get(SHARD_LABEL),
            object["metadata"]["labels"].get(SHARD_LABEL),
            "{patched}"
        );
    }
    if mutation.mirror_rule.is_some() {
        assert_eq!(
            patched["metadata"]["annotations"]["fluxgate.io/original-url"], object["spec"]["url"],
            "{patched}"
        );
    }

    if target == Target::GitRepository {
        // Present, whatever its value: an existing one is the user's and is kept.
        assert!(
            patched["metadata"]["annotations"]
                .as_object()
                .is_some_and(|a| a.contains_key(REQUESTED_AT)),
            "{patched}"
        );
        let timeout = patched["spec"]["timeout"]
            .as_str()
            .expect("timeout is text");
        let timeout = fluxgate::duration::parse_timeout(timeout).expect("timeout parses");
        let wanted = policy.gitrepository.timeout.as_duration();
        match policy.gitrepository.timeout_mode {
            TimeoutMode::Floor => assert!(timeout >= wanted, "{patched}"),
            TimeoutMode::Force => assert_eq!(timeout, wanted, "{patched}"),
        }
        match policy.gitrepository.suspend_mode {
            SuspendMode::Force => assert_eq!(patched["spec"]["suspend"], false),
            SuspendMode::Preserve => assert!(patched["spec"]["suspend"].is_boolean()),
        }
    } else if !mutation.patch.0.is_empty() {
        assert!(policy.proxy.is_enabled());
        let containers = patched["spec"]["containers"].as_array().unwrap();
        for container in containers.iter().filter(|c| c["name"] == "manager") {
            let env = container["env"].as_array().expect("env is a list");
            for var in ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"] {
                assert!(env.iter().any(|e| e["name"] == var), "{var} in {container}");
            }
        }
    }
}

/// What `parse_documents` must return for a JSON stream, by its documented rules.
fn expected_documents(docs: &[Value]) -> Option<Vec<Value>> {
    let mut objects = Vec::new();
    for doc in docs {
        match doc {
            Value::Object(map) => {
                let is_list = map
                    .get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k.ends_with("List"))
                    && map.get("items").is_some_and(Value::is_array);
                if is_list {
                    let items = map["items"].as_array().unwrap();
                    if !items.iter().all(Value::is_object) {
                        return None;
                    }
                    objects.extend(items.iter().cloned());
                } else {
                    objects.push(doc.clone());
                }
            }
            Value::Array(items) if items.iter().all(Value::is_object) => {
                objects.extend(items.iter().cloned())
            }
            _ => return None,
        }
    }
    Some(objects)
}

fn check_manifest(text: &str) -> Result<Vec<Value>, ManifestError> {
    let result = manifests::parse_documents(text);
    if let Ok(objects) = &result {
        assert!(objects.iter().all(Value::is_object), "{objects:?}");
    }
    if let Err(err) = &result {
        assert!(!err.to_string().is_empty());
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn review_survives_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = check_review(&body, &Policy::default());
    }

    #[test]
    fn review_survives_arbitrary_text(body in ".{0,256}") {
        let _ = check_review(body.as_bytes(), &Policy::default());
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn review_survives_arbitrary_json(input in value()) {
        let _ = check_review(&serde_json::to_vec(&input).unwrap(), &Policy::default());
    }

    /// Any object in a well-formed review is answered: allowed, uid echoed, never a 400.
    #[test]
    fn any_object_in_a_well_formed_review_is_answered(review in well_formed_review(), policy in policy()) {
        let reviewed = check_review(&serde_json::to_vec(&review).unwrap(), &policy);
        prop_assert!(reviewed.is_ok(), "{review}: {:?}", reviewed.err());
    }

    /// Reviews of every shape: a real review with random parts replaced or removed.
    #[test]
    fn review_survives_structured_mutation(
        review in well_formed_review(),
        edits in prop::collection::vec(edit(), 1..4),
        policy in policy(),
    ) {
        let mut review = review;
        for edit in &edits {
            apply_edit(&mut review, edit);
        }
        let _ = check_review(&serde_json::to_vec(&review).unwrap(), &policy);
    }

    /// The same, sent as broken bytes: truncated or with a byte flipped.
    #[test]
    fn review_survives_byte_level_mutation(
        review in well_formed_review(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        truncate in any::<bool>(),
    ) {
        let mut body = serde_json::to_vec(&review).unwrap();
        if truncate {
            body.truncate(cut.index(body.len() + 1));
        } else {
            let at = flip.index(body.len());
            body[at] = byte;
        }
        let _ = check_review(&body, &Policy::default());
    }

    #[test]
    fn gitrepository_policy_is_total_and_idempotent(object in gitrepository(), policy in policy()) {
        check_mutation(&policy, Target::GitRepository, Some("team-a"), &object);
    }

    #[test]
    fn pod_policy_is_total_and_idempotent(
        object in pod(),
        policy in policy(),
        namespace in prop::option::of(select(&["flux-system", "default", ""][..])),
    ) {
        check_mutation(&policy, Target::Pod, namespace, &object);
    }

    #[test]
    fn policies_survive_any_value(object in value(), policy in policy()) {
        check_mutation(&policy, Target::GitRepository, None, &object);
        check_mutation(&policy, Target::Pod, Some("flux-system"), &object);
    }

    #[test]
    fn manifests_survive_arbitrary_text(text in ".{0,256}") {
        let _ = check_manifest(&text);
    }

    /// YAML-looking soup: indentation, flow collections, anchors, aliases, tags, documents.
    #[test]
    fn manifests_survive_yaml_fragments(parts in prop::collection::vec(select(&[
        "---\n", "...\n", "\n", "  ", "- ", "? ", ": ", "kind: List\n", "items:\n", "kind: A\n",
        "{", "}", "[", "]", ", ", "&a ", "*a", "<<: *a\n", "!!str ", "!!binary ", "!custom ",
        "%YAML 1.2\n", "%TAG ! tag:x,2000:\n", "\"", "'", "|\n", ">-\n", "#", "\t", "\r\n",
        "a", "1", "null", "~", "true", "\u{feff}", "\\u0000", "\u{1F600}",
    ][..]), 0..48)) {
        let _ = check_manifest(&parts.concat());
    }

    /// A JSON stream of values is parsed exactly by the documented rules.
    #[test]
    fn manifests_follow_the_json_rules(first in prop_oneof![
        prop::collection::vec((key(), value()), 0..4)
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        prop::collection::vec(value(), 0..3).prop_map(Value::Array),
        (select(&["List", "GitRepositoryList", "A"][..]), prop::collection::vec(value(), 0..3))
            .prop_map(|(kind, items)| json!({ "kind": kind, "items": items })),
    ], rest in prop::collection::vec(value(), 0..3), pretty in any::<bool>()) {
        let docs: Vec<Value> = std::iter::once(first).chain(rest).collect();
        let text = docs
            .iter()
            .map(|d| if pretty { serde_json::to_string_pretty(d).unwrap() } else { d.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        let parsed = check_manifest(&text).ok();
        let expected = expected_documents(&docs);
        prop_assert!(same_documents(&parsed, &expected), "{text}\n{parsed:?}\n{expected:?}");
    }

    /// What `fluxgate mutate` prints as YAML reads back as the same objects.
    #[test]
    fn yaml_output_reads_back_unchanged(objects in prop::collection::vec(
        prop::collection::vec((key(), value()), 1..5)
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        1..4,
    )) {
        // A `kind: ...List` with `items` would be flattened on reading: not a round trip.
        prop_assume!(expected_documents(&objects).as_ref() == Some(&objects));
        let text = objects
            .iter()
            .map(|o| serde_saphyr::to_string(o).unwrap())
            .collect::<Vec<_>>()
            .join("---\n");
        let parsed = check_manifest(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert!(same_documents(&Some(parsed.clone()), &Some(objects.clone())), "{text}\n{parsed:?}");
    }
}

/// Equal as Kubernetes would see them. YAML has one number type, so `1.0` and `1` may come back
/// either way, and serde_json reads floats to within a unit in the last place (subnormals less
/// precisely): numbers compare with a relative tolerance.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()) || x.abs().max(y.abs()) < 1e-300
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn same_documents(a: &Option<Vec<Value>>, b: &Option<Vec<Value>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same_json(&Value::Array(a.clone()), &Value::Array(b.clone())),
        (None, None) => true,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic edge cases and the corpus
// ---------------------------------------------------------------------------------------------

fn gitrepository_review_with(object: Value) -> Value {
    review_of(
        "source.toolkit.fluxcd.io",
        "GitRepository",
        "CREATE",
        object,
    )
}

/// Nesting below the object: answered up to serde_json's recursion limit, refused past it, never
/// a stack overflow (this runs on a test thread's default stack).
#[test]
fn deep_nesting_is_bounded_by_the_recursion_limit() {
    let nested = |depth: usize| {
        let mut v = json!("leaf");
        for _ in 0..depth {
            v = json!([v]);
        }
        v
    };
    let at = |depth: usize| {
        let mut object = json!({ "spec": { "url": "x" } });
        object["spec"]["deep"] = nested(depth);
        serde_json::to_vec(&gitrepository_review_with(object)).unwrap()
    };
    let policy = Policy::default();
    // Review, request, object and spec are four levels; serde_json takes 127 in all.
    let last_ok = 123;
    let ok = check_review(&at(last_ok), &policy).expect("within the limit");
    assert_eq!(ok.outcome, ReviewOutcome::Patched);
    let err = check_review(&at(last_ok + 1), &policy).unwrap_err();
    assert!(
        err.to_string().contains("recursion limit exceeded"),
        "{err}"
    );
    for depth in [1_000, 100_000] {
        // A top-level list is read as the review's fields in order and fails on the first.
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(check_review(body.as_bytes(), &policy).is_err());
        // Unknown fields are skipped without recursion, whatever their depth.
        let unknown = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        let err = check_review(unknown.as_bytes(), &policy).unwrap_err();
        assert!(matches!(err, InvalidReview::Version { .. }), "{err}");
        let body = format!(
            "{{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"x\":{}{},\"request\":{{\"uid\":\"u\"}}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let reviewed = check_review(body.as_bytes(), &policy).unwrap();
        assert_eq!(reviewed.outcome, ReviewOutcome::Skipped);
        // Inside the object fluxgate reads, the limit applies.
        let mut deep = gitrepository_review_with(json!({}));
        deep["request"]["object"] = json!("PLACEHOLDER");
        let body = serde_json::to_string(&deep).unwrap().replace(
            "\"PLACEHOLDER\"",
            &format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
        );
        let err = check_review(body.as_bytes(), &policy).unwrap_err();
        assert!(
            err.to_string().contains("recursion limit exceeded"),
            "{err}"
        );
    }
}

#[test]
fn deep_yaml_and_json_manifests_fail_cleanly() {
    for depth in [200, 10_000, 200_000] {
        for text in [
            "[".repeat(depth),
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
            "a:\n".to_owned()
                + &(1..depth.min(5_000))
                    .map(|i| format!("{}a:\n", " ".repeat(i)))
                    .collect::<String>(),
            format!("x: {}{}", "[".repeat(depth), "]".repeat(depth)),
            format!("x: {}", "{a: ".repeat(depth)),
            "- ".repeat(depth),
        ] {
            let _ = check_manifest(&text);
        }
    }
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    let err = check_manifest(&text).unwrap_err();
    assert!(matches!(err, ManifestError::Yaml(_)), "{err}");
}

/// Found by `yaml_output_reads_back_unchanged`: valid YAML that opens with a flow collection
/// (`{}` is how an empty mapping is written) was once refused as broken JSON.
#[test]
fn yaml_stream_opening_with_a_flow_mapping_is_read_as_yaml() {
    for (text, count) in [
        ("{}\n---\n{}\n", 2),
        ("{kind: A, spec: {timeout: 5m, suspend: false}}\n", 1),
        ("[{kind: A}, {kind: B}]\n", 2),
        ("{\"kind\": \"A\"}\n---\nkind: B\n", 2),
    ] {
        let objects = manifests::parse_documents(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(objects.len(), count, "{text:?}");
    }
}

/// Strings up to the body limit: answered, and any warning stays short.
#[test]
fn huge_strings_are_answered_and_warnings_stay_short() {
    let huge = "9".repeat(6 * 1024 * 1024);
    let policy = Policy::default();
    for object in [
        json!({ "metadata": { "name": huge }, "spec": {} }),
        json!({ "spec": { "timeout": huge } }),
        json!({ "spec": { "timeout": format!("{huge}m") } }),
        json!({ "metadata": { "annotations": { huge.clone(): "x" } }, "spec": {} }),
        json!({ "spec": { "suspend": huge } }),
    ] {
        let reviewed = check_review(
            &serde_json::to_vec(&gitrepository_review_with(object)).unwrap(),
            &policy,
        )
        .unwrap();
        assert_eq!(reviewed.outcome, ReviewOutcome::Patched);
        for warning in &reviewed.warnings {
            assert!(warning.len() <= 200, "{} bytes", warning.len());
        }
    }
}

fn corpus(kind: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(kind);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn corpus_policies() -> Vec<Policy> {
    let proxy = ProxyPolicy {
        https_proxy: Some(ProxyValue::Literal("http://proxy:3128".into())),
        http_proxy: Some(ProxyValue::SecretKey {
            name: "p".into(),
            key: "url".into(),
        }),
        ..ProxyPolicy::default()
    };
    let mut force = Policy::default();
    force.gitrepository.timeout_mode = TimeoutMode::Force;
    force.gitrepository.suspend_mode = SuspendMode::Preserve;
    force.proxy = ProxyPolicy {
        override_existing: true,
        ..proxy.clone()
    };
    vec![
        Policy::default(),
        Policy {
            proxy,
            ..Policy::default()
        },
        force,
    ]
}

/// Every committed review body: the oracles hold, and a file named `answered-*` must be answered
/// while one named `refused-*` must not be.
#[test]
fn corpus_reviews_replay() {
    for (path, body) in corpus("review") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for policy in corpus_policies() {
            let result = check_review(&body, &policy);
            if name.starts_with("answered-") {
                assert!(result.is_ok(), "{name}: {:?}", result.err());
            } else if name.starts_with("refused-") {
                assert!(result.is_err(), "{name}");
            }
        }
    }
}

/// Every committed object, under each policy, as a GitRepository and as a Pod.
#[test]
fn corpus_objects_replay() {
    for (path, bytes) in corpus("object") {
        let object: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for policy in corpus_policies() {
            for namespace in [None, Some("flux-system")] {
                check_mutation(&policy, Target::GitRepository, namespace, &object);
                check_mutation(&policy, Target::Pod, namespace, &object);
            }
            let review = gitrepository_review_with(object.clone());
            check_review(&serde_json::to_vec(&review).unwrap(), &policy)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

/// Every committed manifest: `ok-*` files parse, `err-*` files are refused with an error.
#[test]
fn corpus_manifests_replay() {
    for (path, bytes) in corpus("manifest") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let result = check_manifest(text);
        if name.starts_with("ok-") {
            assert!(result.is_ok(), "{name}: {:?}", result.err());
        } else if name.starts_with("err-") {
            assert!(result.is_err(), "{name}: {result:?}");
        }
    }
}
