//! AdmissionReview bytes in, AdmissionReview bytes out. No sockets, no clock: the server passes the
//! body and the admission time, and gets back the response body plus what to count and log.
//!
//! fluxgate owns these wire types instead of using kube-core's: its `AdmissionResponse` serializes
//! `patch` as an array of numbers (kube-rs issue 1781), and a lenient request type lets a review
//! that lacks a field fluxgate does not need still be answered (allowed, unchanged) rather than
//! refused.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use time::OffsetDateTime;

use crate::metrics::LabelSlot;
use crate::policy::fields::{Field, Skip, key_index};
use crate::policy::{GitRepositoryFields, Mutation, Policy, PolicyError, Target};

pub const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";
pub const ADMISSION_KIND: &str = "AdmissionReview";

/// A body that cannot be answered with an AdmissionReview at all (no uid to echo). The server
/// answers these with HTTP 400; kube-apiserver then applies the webhook's `failurePolicy: Ignore`.
#[derive(Debug, thiserror::Error)]
pub enum InvalidReview {
    #[error("request body is not a JSON AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "unsupported AdmissionReview {api_version:?}/{kind:?}: only admission.k8s.io/v1 AdmissionReview is served"
    )]
    Version { api_version: String, kind: String },
    #[error("AdmissionReview has no request")]
    MissingRequest,
    #[error("AdmissionReview request has no uid")]
    MissingUid,
}

/// How a review ended, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewOutcome {
    /// Allowed with a patch.
    Patched,
    /// A kind and operation fluxgate handles, already compliant: allowed without a patch.
    Unchanged,
    /// Not fluxgate's business (other kind or operation): allowed without a patch.
    Skipped,
    /// Something went wrong inside fluxgate: allowed without a patch, and logged.
    Error,
}

impl ReviewOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patched => "patched",
            Self::Unchanged => "unchanged",
            Self::Skipped => "skipped",
            Self::Error => "error",
        }
    }

    /// The `outcome` label of `fluxgate_admission_requests_total`.
    pub fn label(self) -> LabelSlot {
        LabelSlot::new(self as usize, self.as_str())
    }
}

/// An answered review: the response body and what happened.
#[derive(Debug)]
pub struct Reviewed {
    pub body: Vec<u8>,
    pub uid: String,
    pub target: Option<Target>,
    pub operation: Operation,
    pub outcome: ReviewOutcome,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub dry_run: bool,
    pub warnings: Vec<String>,
    /// The mirror rule that rewrote `spec.url`, as the policy decided it (only when patched).
    pub mirror_rule: Option<std::sync::Arc<str>>,
    /// The shard of the lane the policy put the object in (only when patched).
    pub lane_shard: Option<std::sync::Arc<str>>,
    /// Why the object was allowed unchanged when `outcome` is `Error`.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
    Other,
}

impl Operation {
    fn parse(s: Option<&str>) -> Self {
        match s {
            Some("CREATE") => Self::Create,
            Some("UPDATE") => Self::Update,
            Some("DELETE") => Self::Delete,
            Some("CONNECT") => Self::Connect,
            _ => Self::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
            Self::Connect => "CONNECT",
            Self::Other => "other",
        }
    }

    /// The `operation` label of `fluxgate_admission_requests_total`.
    pub fn label(self) -> LabelSlot {
        LabelSlot::new(self as usize, self.as_str())
    }
}

/// The `kind` label of the admission metrics: the review's target, or `other`.
pub fn kind_label(target: Option<Target>) -> LabelSlot {
    match target {
        Some(target) => LabelSlot::new(target as usize, target.as_str()),
        None => LabelSlot::new(2, "other"),
    }
}

// Reading a review. Strings are borrowed from the body where they have no escapes, fields fluxgate
// does not use are skipped, and the object is read in the same pass straight into what the policy
// looks at: a GitRepository's few fields, a Pod as a JSON value, and nothing at all for what is
// not fluxgate's business (still checked as a JSON value would be). Only when `object` comes
// before `kind` or `operation` (kube-apiserver always sends them first) is it read as a value and
// sorted out afterwards.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn<'a> {
    #[serde(default, borrow)]
    api_version: Option<Text<'a>>,
    #[serde(default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    request: Option<RequestIn<'a>>,
}

/// A JSON string, borrowed from the body unless it had escapes.
#[derive(Default)]
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// The request fields fluxgate reads; everything is optional so a partial request is still
/// answerable as long as it carries a uid.
#[derive(Default)]
struct RequestIn<'a> {
    uid: Option<Text<'a>>,
    kind: Option<GroupVersionKind<'a>>,
    operation: Option<Text<'a>>,
    namespace: Option<Text<'a>>,
    name: Option<Text<'a>>,
    object: ObjectIn<'a>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
struct GroupVersionKind<'a> {
    #[serde(default, borrow)]
    group: Text<'a>,
    #[serde(default, borrow)]
    kind: Text<'a>,
}

/// `request.object`, read as far as the request's kind and operation call for.
#[derive(Default)]
enum ObjectIn<'a> {
    /// Absent or `null`.
    #[default]
    Missing,
    /// Read before the kind and operation were known.
    Value(Value),
    /// A GitRepository being created.
    GitRepository(GitRepositoryFields<'a>),
    /// A GitRepository being created whose object is not a JSON object (its type).
    NotAnObject,
    /// A Pod being created.
    Pod(Value),
    /// Not fluxgate's business: read and dropped.
    Skipped,
}

const REQUEST_FIELDS: &[&str] = &[
    "uid",
    "kind",
    "operation",
    "namespace",
    "name",
    "object",
    "dryRun",
];

impl RequestIn<'_> {
    fn target(&self) -> Option<Target> {
        self.kind
            .as_ref()
            .and_then(|gvk| Target::from_group_kind(&gvk.group.0, &gvk.kind.0))
    }

    fn operation(&self) -> Operation {
        Operation::parse(self.operation.as_ref().map(|op| &*op.0))
    }

    /// How to read the object given the fields read so far.
    fn object_seed(&self) -> ObjectSeed {
        if self.kind.is_none() || self.operation.is_none() {
            return ObjectSeed::Value;
        }
        match (self.target(), self.operation()) {
            (Some(Target::GitRepository), Operation::Create) => ObjectSeed::GitRepository,
            (Some(Target::Pod), Operation::Create) => ObjectSeed::Pod,
            _ => ObjectSeed::Skip,
        }
    }
}

#[derive(Clone, Copy)]
enum ObjectSeed {
    Value,
    GitRepository,
    Pod,
    Skip,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = ObjectIn<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ObjectIn<'de>, D::Error> {
        let value = |v: Option<Value>, wrap: fn(Value) -> ObjectIn<'de>| match v {
            None | Some(Value::Null) => ObjectIn::Missing,
            Some(v) => wrap(v),
        };
        Ok(match self {
            Self::Value => value(Option::deserialize(deserializer)?, ObjectIn::Value),
            Self::Pod => value(Option::deserialize(deserializer)?, ObjectIn::Pod),
            Self::GitRepository => match Field::<GitRepositoryFields>::deserialize(deserializer)? {
                Field::Missing | Field::Null => ObjectIn::Missing,
                Field::Is(fields) => ObjectIn::GitRepository(fields),
                Field::Other(_) => ObjectIn::NotAnObject,
            },
            Self::Skip => {
                Skip::deserialize(deserializer)?;
                ObjectIn::Skipped
            }
        })
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RequestIn<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct("RequestIn", REQUEST_FIELDS, RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = RequestIn<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("struct RequestIn")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestIn<'de>, A::Error> {
        let mut request = RequestIn::default();
        let mut seen = [false; REQUEST_FIELDS.len()];
        while let Some(key) = map.next_key_seed(key_index(REQUEST_FIELDS))? {
            let Some(index) = key else {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            };
            if seen.get(index).copied().unwrap_or(true) {
                return Err(de::Error::duplicate_field(REQUEST_FIELDS[index]));
            }
            seen[index] = true;
            match index {
                0 => request.uid = map.next_value()?,
                1 => request.kind = map.next_value()?,
                2 => request.operation = map.next_value()?,
                3 => request.namespace = map.next_value()?,
                4 => request.name = map.next_value()?,
                5 => request.object = map.next_value_seed(request.object_seed())?,
                _ => request.dry_run = map.next_value()?,
            }
        }
        Ok(request)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RequestIn<'de>, A::Error> {
        // serde's derived readers also take a struct as the list of its fields in order.
        let mut request = RequestIn::default();
        macro_rules! next {
            ($field:ident) => {
                match seq.next_element()? {
                    Some(value) => request.$field = value,
                    None => return Ok(request),
                }
            };
        }
        next!(uid);
        next!(kind);
        next!(operation);
        next!(namespace);
        next!(name);
        match seq.next_element_seed(request.object_seed())? {
            Some(object) => request.object = object,
            None => return Ok(request),
        }
        next!(dry_run);
        Ok(request)
    }
}

/// Writes the AdmissionReview response: `{"apiVersion","kind","response":{"uid","allowed",
/// "patchType","patch","warnings"}}`, the last three only when there is a patch or warnings.
/// The skeleton is fixed text and the patch is base64, which never needs escaping, so it is
/// encoded straight into the body; serde_json escapes the uid and the warnings.
fn write_response(
    uid: &str,
    patch: Option<&[u8]>,
    warnings: &[String],
) -> Result<Vec<u8>, serde_json::Error> {
    const HEAD: &[u8] =
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#;
    const PATCH: &[u8] = br#","patchType":"JSONPatch","patch":""#;
    let base64_len = patch.map_or(0, |p| p.len().div_ceil(3) * 4);
    let warnings_len: usize = warnings.iter().map(|w| w.len() + 3).sum();
    let mut out = Vec::with_capacity(
        HEAD.len() + uid.len() + 2 + 16 + PATCH.len() + base64_len + 16 + warnings_len + 2,
    );
    out.extend_from_slice(HEAD);
    serde_json::to_writer(&mut out, uid)?;
    out.extend_from_slice(br#","allowed":true"#);
    if let Some(patch) = patch {
        out.extend_from_slice(PATCH);
        let start = out.len();
        out.resize(start + base64_len, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(patch, &mut out[start..])
            .map_err(serde::ser::Error::custom)?;
        out.truncate(start + written);
        out.push(b'"');
    }
    if !warnings.is_empty() {
        out.extend_from_slice(br#","warnings":"#);
        serde_json::to_writer(&mut out, warnings)?;
    }
    out.extend_from_slice(b"}}");
    Ok(out)
}

/// Answers one AdmissionReview. Never denies: every answerable review is `allowed: true`.
pub fn review(
    body: &[u8],
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<Reviewed, InvalidReview> {
    let review: ReviewIn = match std::str::from_utf8(body) {
        // Checked as UTF-8 once, the review's strings (most of its bytes) are not checked again
        // one by one.
        Ok(text) => serde_json::from_str(text)?,
        // serde_json reports bad UTF-8 where it matters and tolerates it in fields nobody reads.
        Err(_) => serde_json::from_slice(body)?,
    };
    let api_version = review.api_version.unwrap_or_default().0;
    let kind = review.kind.unwrap_or_default().0;
    if api_version != ADMISSION_API_VERSION || kind != ADMISSION_KIND {
        return Err(InvalidReview::Version {
            api_version: api_version.into_owned(),
            kind: kind.into_owned(),
        });
    }
    let request = review.request.ok_or(InvalidReview::MissingRequest)?;
    let uid = match &request.uid {
        Some(uid) if !uid.0.is_empty() => uid.0.clone().into_owned(),
        _ => return Err(InvalidReview::MissingUid),
    };

    let operation = request.operation();
    let target = request.target();
    let owned = |text: Option<Text>| text.map(|t| t.0.into_owned());
    let mut reviewed = Reviewed {
        body: Vec::new(),
        uid,
        target,
        operation,
        outcome: ReviewOutcome::Skipped,
        namespace: owned(request.namespace),
        name: owned(request.name),
        dry_run: request.dry_run.unwrap_or(false),
        warnings: Vec::new(),
        mirror_rule: None,
        lane_shard: None,
        error: None,
    };

    let mut patch = None;
    if let (Some(target), Operation::Create) = (target, operation) {
        let mutation = match request.object {
            ObjectIn::Missing => Err("CREATE request carries no object".to_owned()),
            ObjectIn::GitRepository(fields) => policy
                .plan_gitrepository(&fields, reviewed.namespace.as_deref(), now)
                .map_err(|err| err.to_string()),
            ObjectIn::NotAnObject => Err(PolicyError::NotAnObject.to_string()),
            ObjectIn::Value(object) | ObjectIn::Pod(object) => policy
                .plan(target, reviewed.namespace.as_deref(), &object, now)
                .map_err(|err| err.to_string()),
            // Unreachable: a CREATE of a target is never skipped. Answer it as the others.
            ObjectIn::Skipped => Err("the object was not read".to_owned()),
        };
        match mutation {
            Ok(Mutation {
                patch: p,
                warnings,
                mirror_rule,
                lane_shard,
            }) => {
                reviewed.warnings = warnings;
                if p.0.is_empty() {
                    reviewed.outcome = ReviewOutcome::Unchanged;
                } else {
                    let mut bytes = Vec::with_capacity(256);
                    match serde_json::to_writer(&mut bytes, &p) {
                        Ok(()) => {
                            reviewed.outcome = ReviewOutcome::Patched;
                            reviewed.mirror_rule = mirror_rule;
                            reviewed.lane_shard = lane_shard;
                            patch = Some(bytes);
                        }
                        Err(err) => {
                            reviewed.outcome = ReviewOutcome::Error;
                            reviewed.error = Some(format!("encoding the patch: {err}"));
                            reviewed.warnings.clear();
                        }
                    }
                }
            }
            Err(err) => {
                reviewed.outcome = ReviewOutcome::Error;
                reviewed.error = Some(err);
            }
        }
    }

    reviewed.body = write_response(&reviewed.uid, patch.as_deref(), &reviewed.warnings)?;
    Ok(reviewed)
}

/// The answer for a review that could be parsed far enough to echo its uid but then failed in a way
/// `review` could not anticipate: allowed, no patch.
pub fn allow_unchanged(uid: &str) -> Vec<u8> {
    write_response(uid, None, &[]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 10:00:00 UTC);

    fn gitrepository_review(operation: &str, object: Value) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": { "group": "source.toolkit.fluxcd.io", "version": "v1", "kind": "GitRepository" },
                "resource": { "group": "source.toolkit.fluxcd.io", "version": "v1", "resource": "gitrepositories" },
                "requestKind": { "group": "source.toolkit.fluxcd.io", "version": "v1", "kind": "GitRepository" },
                "requestResource": { "group": "source.toolkit.fluxcd.io", "version": "v1", "resource": "gitrepositories" },
                "name": "app",
                "namespace": "team-a",
                "operation": operation,
                "userInfo": { "username": "platform", "groups": ["system:authenticated"] },
                "object": object,
                "oldObject": null,
                "dryRun": false,
                "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" }
            }
        })
    }

    fn repo() -> Value {
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": { "name": "app", "namespace": "team-a" },
            "spec": { "url": "https://github.com/o/r", "interval": "1m" }
        })
    }

    fn run(review_json: &Value) -> Reviewed {
        review(
            &serde_json::to_vec(review_json).unwrap(),
            &Policy::default(),
            NOW,
        )
        .unwrap()
    }

    fn response(r: &Reviewed) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn create_is_patched_with_a_base64_string_patch() {
        let r = run(&gitrepository_review("CREATE", repo()));
        assert_eq!(r.outcome, ReviewOutcome::Patched);
        let out = response(&r);
        assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(out["kind"], "AdmissionReview");
        assert_eq!(
            out["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        assert_eq!(out["response"]["allowed"], true);
        assert_eq!(out["response"]["patchType"], "JSONPatch");
        // The documented wire format: a base64 string (kube-core would emit a list of numbers).
        let encoded = out["response"]["patch"]
            .as_str()
            .expect("patch is a string");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let patch: Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(
            patch,
            json!([
                { "op": "add", "path": "/metadata/annotations",
                  "value": { "reconcile.fluxcd.io/requestedAt": "2026-11-28T10:00:00Z" } },
                { "op": "add", "path": "/spec/timeout", "value": "5m" },
                { "op": "add", "path": "/spec/suspend", "value": false },
            ])
        );
        assert!(out["response"].get("warnings").is_none());
    }

    #[test]
    fn update_delete_connect_and_other_kinds_are_skipped() {
        for op in ["UPDATE", "DELETE", "CONNECT"] {
            let r = run(&gitrepository_review(op, repo()));
            assert_eq!(r.outcome, ReviewOutcome::Skipped, "{op}");
            let out = response(&r);
            assert_eq!(out["response"]["allowed"], true);
            assert!(out["response"].get("patch").is_none());
            assert!(out["response"].get("patchType").is_none());
        }
        let mut other = gitrepository_review("CREATE", repo());
        other["request"]["kind"] =
            json!({ "group": "apps", "version": "v1", "kind": "Deployment" });
        assert_eq!(run(&other).outcome, ReviewOutcome::Skipped);
    }

    #[test]
    fn dry_run_gets_the_same_patch() {
        let mut dry = gitrepository_review("CREATE", repo());
        dry["request"]["dryRun"] = json!(true);
        let wet = run(&gitrepository_review("CREATE", repo()));
        let dry = run(&dry);
        assert!(dry.dry_run);
        assert_eq!(
            response(&dry)["response"]["patch"],
            response(&wet)["response"]["patch"]
        );
    }

    #[test]
    fn suspend_override_reaches_the_user_as_a_warning() {
        let mut object = repo();
        object["spec"]["suspend"] = json!(true);
        let r = run(&gitrepository_review("CREATE", object));
        let out = response(&r);
        let warnings = out["response"]["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].as_str().unwrap().contains("spec.suspend"));
    }

    #[test]
    fn compliant_object_is_unchanged() {
        let mut object = repo();
        object["metadata"]["annotations"] = json!({ "reconcile.fluxcd.io/requestedAt": "x" });
        object["spec"]["timeout"] = json!("5m");
        object["spec"]["suspend"] = json!(false);
        let r = run(&gitrepository_review("CREATE", object));
        assert_eq!(r.outcome, ReviewOutcome::Unchanged);
        assert!(response(&r)["response"].get("patch").is_none());
    }

    #[test]
    fn unusable_objects_are_allowed_unchanged_and_reported() {
        for object in [json!(null), json!("text"), json!({ "spec": [] })] {
            let r = run(&gitrepository_review("CREATE", object.clone()));
            assert_eq!(r.outcome, ReviewOutcome::Error, "{object}");
            assert!(r.error.is_some());
            let out = response(&r);
            assert_eq!(out["response"]["allowed"], true);
            assert_eq!(
                out["response"]["uid"],
                "705ab4f5-6393-11e8-b7cc-42010a800002"
            );
            assert!(out["response"].get("patch").is_none());
        }
        let mut no_object = gitrepository_review("CREATE", json!(null));
        no_object["request"]
            .as_object_mut()
            .unwrap()
            .remove("object");
        assert_eq!(run(&no_object).outcome, ReviewOutcome::Error);
    }

    #[test]
    fn an_object_before_kind_and_operation_gets_the_same_answer() {
        for object in [repo(), json!("text"), json!(null), json!({ "spec": [] })] {
            let in_order = run(&gitrepository_review("CREATE", object.clone()));
            let mut body = gitrepository_review("CREATE", object);
            let request = body["request"].as_object_mut().unwrap();
            let object = request.shift_remove("object").unwrap();
            let mut reordered = serde_json::Map::new();
            reordered.insert("object".into(), object);
            reordered.extend(std::mem::take(request));
            body["request"] = Value::Object(reordered);
            let reordered = run(&body);
            assert_eq!(reordered.outcome, in_order.outcome);
            assert_eq!(reordered.error, in_order.error);
            assert_eq!(reordered.body, in_order.body);
        }
    }

    #[test]
    fn a_request_with_only_a_uid_is_still_answered() {
        let r = run(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": { "uid": "u-1" }
        }));
        assert_eq!(r.outcome, ReviewOutcome::Skipped);
        assert_eq!(response(&r)["response"]["uid"], "u-1");
    }

    #[test]
    fn unanswerable_bodies_are_typed_errors() {
        let p = Policy::default();
        let check = |body: &[u8]| review(body, &p, NOW).unwrap_err();
        assert!(matches!(check(b"{not json"), InvalidReview::Json(_)));
        assert!(matches!(check(b""), InvalidReview::Json(_)));
        assert!(matches!(check(b"[1,2]"), InvalidReview::Json(_)));
        assert!(matches!(
            check(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"a"}}"#),
            InvalidReview::Version { .. }
        ));
        assert!(matches!(
            check(br#"{"kind":"Pod"}"#),
            InvalidReview::Version { .. }
        ));
        assert!(matches!(
            check(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
            InvalidReview::MissingRequest
        ));
        assert!(matches!(
            check(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""}}"#),
            InvalidReview::MissingUid
        ));
        assert!(matches!(
            check(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}"#),
            InvalidReview::Json(_)
        ));
    }

    #[test]
    fn bad_utf8_is_refused_where_it_is_read_and_tolerated_where_it_is_not() {
        let body = serde_json::to_vec(&gitrepository_review("CREATE", repo())).unwrap();
        let replace = |from: &[u8], to: &[u8]| -> Vec<u8> {
            let at = body
                .windows(from.len())
                .position(|w| w == from)
                .expect("pattern in the review");
            [&body[..at], to, &body[at + from.len()..]].concat()
        };
        // userInfo is skipped unread: the review is answered as if the bytes were fine.
        let in_skipped = replace(b"\"platform\"", b"\"plat\xffform\"");
        let answered = review(&in_skipped, &Policy::default(), NOW).unwrap();
        assert_eq!(answered.outcome, ReviewOutcome::Patched);
        assert_eq!(
            answered.body,
            run(&gitrepository_review("CREATE", repo())).body
        );
        // The uid is read and echoed: refused.
        let in_uid = replace(b"705ab4f5", b"705a\xff4f5");
        assert!(matches!(
            review(&in_uid, &Policy::default(), NOW),
            Err(InvalidReview::Json(_))
        ));
    }

    #[test]
    fn allow_unchanged_echoes_the_uid() {
        let out: Value = serde_json::from_slice(&allow_unchanged("abc")).unwrap();
        assert_eq!(
            out,
            json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": { "uid": "abc", "allowed": true } })
        );
    }

    /// The response as a derived `Serialize` writes it: what `write_response` must match byte
    /// for byte.
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ReferenceReview<'a> {
        api_version: &'static str,
        kind: &'static str,
        response: ReferenceResponse<'a>,
    }

    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ReferenceResponse<'a> {
        uid: &'a str,
        allowed: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch_type: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        warnings: &'a [String],
    }

    proptest::proptest! {
        #[test]
        fn the_written_response_is_what_serde_would_write(
            uid in "\\PC{0,40}|[\"\\\\\u{0}-\u{1f}\u{7f}-\u{10ffff}]{0,8}",
            patch in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..300)),
            warnings in proptest::collection::vec("\\PC{0,30}|[\"\\\\\u{0}-\u{1f}]{0,4}", 0..3),
        ) {
            let reference = serde_json::to_vec(&ReferenceReview {
                api_version: ADMISSION_API_VERSION,
                kind: ADMISSION_KIND,
                response: ReferenceResponse {
                    uid: &uid,
                    allowed: true,
                    patch_type: patch.as_ref().map(|_| "JSONPatch"),
                    patch: patch.as_ref().map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
                    warnings: &warnings,
                },
            })
            .unwrap();
            let written = write_response(&uid, patch.as_deref(), &warnings).unwrap();
            proptest::prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(reference).unwrap()
            );
        }
    }
}
