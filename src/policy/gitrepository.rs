//! What fluxgate changes on a new GitRepository: `spec.timeout`, `spec.suspend`, the
//! `reconcile.fluxcd.io/requestedAt` annotation, under a mirror rule `spec.url` (the original
//! kept in `fluxgate.io/original-url`) and, under a lane rule, Flux's sharding label.
//!
//! Works on the raw JSON object so every served version (v1, v1beta2) and every field fluxgate does
//! not know about pass through untouched.

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::fields::{Field, Read, Skip, key_index};
use super::lane::{LaneInput, LaneRules};
use super::mirror::{Decision, MirrorInput, MirrorRules};

use super::{Mutation, PatchBuilder, PolicyError, rfc3339_seconds};
use crate::duration::{FluxDuration, parse_timeout};

use crate::flux::{GITOPS_LABELS, REQUESTED_AT_ANNOTATION, SHARD_LABEL};
use crate::marks::lane::OPT_OUT_ANNOTATION as LANE_OPT_OUT;
use crate::marks::mirror::{OPT_OUT_ANNOTATION as MIRROR_OPT_OUT, ORIGINAL_URL_ANNOTATION};

/// How `spec.timeout` is brought to the configured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeoutMode {
    /// Raise a missing or shorter timeout; keep a longer one the user chose.
    Floor,
    /// Always set the configured timeout.
    Force,
}

/// What happens to a `spec.suspend: true` written by the creator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SuspendMode {
    /// Always `suspend: false`, with an admission warning when that overrides the user.
    Force,
    /// Leave an explicit `true` alone.
    Preserve,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRepositoryPolicy {
    pub timeout: FluxDuration,
    pub timeout_mode: TimeoutMode,
    pub suspend_mode: SuspendMode,
    /// Mirror rules for `spec.url` (none by default).
    pub mirror: MirrorRules,
    /// Lane rules: hosts whose GitRepositories get Flux's sharding label (none by default).
    pub lanes: LaneRules,
}

impl Default for GitRepositoryPolicy {
    fn default() -> Self {
        Self {
            timeout: FluxDuration::from_duration(std::time::Duration::from_secs(300)),
            timeout_mode: TimeoutMode::Floor,
            suspend_mode: SuspendMode::Force,
            mirror: MirrorRules::default(),
            lanes: LaneRules::default(),
        }
    }
}

/// Decides the patch for one GitRepository being created, given as a parsed JSON value (what
/// `fluxgate mutate` reads from manifests). Pure: `now` is the admission time.
pub fn plan_object(
    object: &Value,
    namespace: Option<&str>,
    policy: &GitRepositoryPolicy,
    now: OffsetDateTime,
) -> Result<Mutation, PolicyError> {
    plan(
        &GitRepositoryFields::from_value(object)?,
        namespace,
        policy,
        now,
    )
}

/// The decision itself, on the only parts of a GitRepository it reads. The webhook reads these
/// fields straight from the AdmissionReview's JSON ([`GitRepositoryFields`]'s `Deserialize`) and
/// `fluxgate mutate` from a parsed value ([`GitRepositoryFields::from_value`]); both then decide
/// here, so they cannot disagree. `namespace` is the object's (the review's, for the webhook).
pub fn plan(
    object: &GitRepositoryFields<'_>,
    namespace: Option<&str>,
    policy: &GitRepositoryPolicy,
    now: OffsetDateTime,
) -> Result<Mutation, PolicyError> {
    let mut patch = PatchBuilder::default();
    let mut warnings = Vec::new();

    let mirror = plan_mirror(object, namespace, &policy.mirror, &mut warnings);
    let mut annotations = Vec::with_capacity(2);
    if !object.has_requested_at() {
        // Any existing value is kept: the user may have asked for a reconcile, and a re-invoked
        // webhook must not produce a second patch.
        annotations.push((REQUESTED_AT_ANNOTATION, json!(rfc3339_seconds(now))));
    }
    if let Some((_, original, _)) = &mirror {
        annotations.push((ORIGINAL_URL_ANNOTATION, json!(original)));
    }
    // The lane is judged on the URL as it will be stored: a mirror's, once one rewrote it.
    let stored_url = mirror.as_ref().map(|(url, _, _)| url.as_str());
    let lane = plan_lane(object, stored_url, &policy.lanes);
    let labels: Vec<(&str, Value)> = lane
        .iter()
        .map(|shard| (SHARD_LABEL, json!(&**shard)))
        .collect();
    plan_metadata(&object.metadata, annotations, labels, &mut patch)?;

    match &object.spec {
        Field::Missing | Field::Null => {
            // Nothing to merge into: create the whole spec with just fluxgate's fields. The API
            // server's schema validation still reports the user's missing url/interval.
            let mut spec = Map::new();
            spec.insert("timeout".into(), json!(policy.timeout.to_string()));
            spec.insert("suspend".into(), json!(false));
            patch.add(&["spec"], Value::Object(spec));
        }
        Field::Is(spec) => {
            plan_timeout(&spec.timeout, policy, &mut patch, &mut warnings);
            plan_suspend(&spec.suspend, policy, &mut patch, &mut warnings);
        }
        Field::Other(kind) => return Err(PolicyError::FieldNotAnObject("spec", kind)),
    }

    let mirror_rule = mirror.map(|(url, _, rule)| {
        patch.replace(&["spec", "url"], json!(url));
        rule
    });
    Ok(Mutation {
        patch: patch.finish(),
        warnings,
        mirror_rule,
        lane_shard: lane,
    })
}

/// The lane step: the shard of the lane the object goes to, if any. `mirrored_url` is the URL a
/// mirror rule rewrote `spec.url` to.
fn plan_lane(
    object: &GitRepositoryFields<'_>,
    mirrored_url: Option<&str>,
    rules: &LaneRules,
) -> Option<Arc<str>> {
    if rules.is_empty() {
        return None;
    }
    let Field::Is(spec) = &object.spec else {
        return None;
    };
    let url = match (mirrored_url, &spec.url) {
        (Some(url), _) => url,
        (None, Field::Is(url)) => &**url,
        (None, _) => return None,
    };
    let (opted_out, has_shard_label) = match &object.metadata {
        Field::Is(metadata) => match &metadata.labels {
            // Labels that are not a map cannot take one more; kube-apiserver refuses the object
            // anyway.
            Field::Other(_) => return None,
            labels => (
                matches!(&metadata.annotations, Field::Is(a) if a.lane_opt_out),
                matches!(labels, Field::Is(l) if l.has_shard_label),
            ),
        },
        _ => (false, false),
    };
    let input = LaneInput {
        url: Some(url),
        opted_out,
        has_shard_label,
    };
    rules.decide(&input).map(|rule| rule.shard().clone())
}

/// The mirror step: `Some((new URL, original URL, rule name))` when `spec.url` is rewritten, and
/// a warning for the creator either way once a rule catches the URL.
fn plan_mirror<'o>(
    object: &'o GitRepositoryFields<'_>,
    namespace: Option<&str>,
    rules: &MirrorRules,
    warnings: &mut Vec<String>,
) -> Option<(String, &'o str, Arc<str>)> {
    if rules.is_empty() {
        return None;
    }
    let Field::Is(spec) = &object.spec else {
        return None;
    };
    let Field::Is(url) = &spec.url else {
        return None;
    };
    let (annotations, gitops_managed) = match &object.metadata {
        Field::Is(metadata) => (
            match &metadata.annotations {
                Field::Is(annotations) => annotations.clone(),
                _ => AnnotationsFields::default(),
            },
            metadata.gitops_managed(),
        ),
        _ => (AnnotationsFields::default(), false),
    };
    let input = MirrorInput {
        namespace,
        url: Some(url),
        has_secret_ref: spec.has_secret_ref,
        opted_out: annotations.mirror_opt_out,
        has_original_url: annotations.has_original_url,
        gitops_managed,
    };
    match rules.decide(&input) {
        Decision::Keep => None,
        Decision::Rewrite { rule, url: new } => {
            let warning = format!(
                "spec.url rewritten to the mirror {new} (rule {}); the original is in \
                 {ORIGINAL_URL_ANNOTATION}",
                rule.label()
            );
            warnings.push(crate::text::fit(&warning, MIRROR_WARNING_LIMIT).into_owned());
            Some((new, &**url, rule.label().clone()))
        }
        Decision::Left { rule, why } => {
            let warning = format!(
                "spec.url left on its host although the mirror rule {} matches: {}",
                rule.label(),
                why.explain()
            );
            warnings.push(crate::text::fit(&warning, MIRROR_WARNING_LIMIT).into_owned());
            None
        }
    }
}

/// Adds `annotations` and `labels` (none of which the object has) in as few operations as the
/// object's shape allows.
fn plan_metadata(
    metadata: &Field<MetadataFields>,
    annotations: Vec<(&str, Value)>,
    labels: Vec<(&str, Value)>,
    patch: &mut PatchBuilder,
) -> Result<(), PolicyError> {
    match metadata {
        Field::Missing | Field::Null => {
            let mut created = Map::new();
            for (key, entries) in [("annotations", annotations), ("labels", labels)] {
                if !entries.is_empty() {
                    created.insert(key.to_owned(), string_map(entries));
                }
            }
            if !created.is_empty() {
                patch.add(&["metadata"], Value::Object(created));
            }
        }
        Field::Is(metadata) => {
            let annotations_shape = metadata.annotations.shape();
            plan_map(ANNOTATIONS, annotations_shape, annotations, patch)?;
            plan_map(LABELS, metadata.labels.shape(), labels, patch)?;
        }
        Field::Other(kind) => return Err(PolicyError::FieldNotAnObject("metadata", kind)),
    }
    Ok(())
}

/// `metadata.annotations` and `metadata.labels`: the key in a path, the field in messages.
const ANNOTATIONS: (&str, &str) = ("annotations", "metadata.annotations");
const LABELS: (&str, &str) = ("labels", "metadata.labels");

/// Adds `entries` to the map `(key, field)` of `metadata`, of the given shape: the whole map when
/// there is none, else one key at a time.
fn plan_map(
    (key, field): (&'static str, &'static str),
    shape: Field<()>,
    entries: Vec<(&str, Value)>,
    patch: &mut PatchBuilder,
) -> Result<(), PolicyError> {
    if entries.is_empty() {
        return Ok(());
    }
    match shape {
        Field::Missing | Field::Null => patch.add(&["metadata", key], string_map(entries)),
        Field::Is(()) => {
            for (name, value) in entries {
                patch.add(&["metadata", key, name], value);
            }
        }
        Field::Other(kind) => return Err(PolicyError::FieldNotAnObject(field, kind)),
    }
    Ok(())
}

fn string_map(entries: Vec<(&str, Value)>) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn plan_timeout(
    timeout: &Field<Cow<'_, str>>,
    policy: &GitRepositoryPolicy,
    patch: &mut PatchBuilder,
    warnings: &mut Vec<String>,
) {
    let wanted = policy.timeout.as_duration();
    let wanted_text = json!(policy.timeout.to_string());
    match timeout {
        Field::Missing => patch.add(&["spec", "timeout"], wanted_text),
        Field::Null => patch.replace(&["spec", "timeout"], wanted_text),
        Field::Is(text) => {
            if let Ok(current) = parse_timeout(text) {
                let keep = match policy.timeout_mode {
                    TimeoutMode::Floor => current >= wanted,
                    TimeoutMode::Force => current == wanted,
                };
                if !keep {
                    patch.replace(&["spec", "timeout"], wanted_text);
                }
            } else {
                let warning = format!(
                    "spec.timeout {:?} is not a valid duration; fluxgate set it to {}",
                    &**text, policy.timeout
                );
                warnings.push(crate::text::fit(&warning, WARNING_LIMIT).into_owned());
                patch.replace(&["spec", "timeout"], wanted_text);
            }
        }
        Field::Other(kind) => {
            warnings.push(format!(
                "spec.timeout was a {kind}, not a duration; fluxgate set it to {}",
                policy.timeout
            ));
            patch.replace(&["spec", "timeout"], wanted_text);
        }
    }
}

fn plan_suspend(
    suspend: &Field<bool>,
    policy: &GitRepositoryPolicy,
    patch: &mut PatchBuilder,
    warnings: &mut Vec<String>,
) {
    let other = match suspend {
        Field::Missing => return patch.add(&["spec", "suspend"], json!(false)),
        Field::Is(false) => return,
        Field::Is(true) => {
            if policy.suspend_mode == SuspendMode::Force {
                warnings.push(
                    "spec.suspend: true was changed to false by fluxgate: new GitRepositories \
                     must reconcile"
                        .to_owned(),
                );
                patch.replace(&["spec", "suspend"], json!(false));
            }
            return;
        }
        Field::Null => "null",
        Field::Other(kind) => kind,
    };
    warnings.push(format!(
        "spec.suspend was a {other}, not a boolean; fluxgate set it to false"
    ));
    patch.replace(&["spec", "suspend"], json!(false));
}

/// kube-apiserver truncates longer warnings; keep ours whole and readable instead.
const WARNING_LIMIT: usize = 120;

/// A mirror warning names two URLs; kube-apiserver keeps a warning whole up to 256 characters.
const MIRROR_WARNING_LIMIT: usize = 256;

/// What the policy reads of a GitRepository: `metadata.annotations` (whether the requestedAt and
/// original-url keys are there, the mirror opt-out), whether `metadata.labels` mark it as applied
/// by Flux, `spec.timeout`, `spec.suspend`, `spec.url` and whether `spec.secretRef` is set, each
/// with its JSON type when it is not the expected one. Everything else in the object passes
/// through untouched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitRepositoryFields<'a> {
    pub metadata: Field<MetadataFields>,
    pub spec: Field<SpecFields<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataFields {
    pub annotations: Field<AnnotationsFields>,
    pub labels: Field<LabelsFields>,
}

impl MetadataFields {
    /// Carries a label by which a Flux Kustomization or HelmRelease marks what it applies.
    pub fn gitops_managed(&self) -> bool {
        matches!(&self.labels, Field::Is(l) if l.gitops_managed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelsFields {
    /// One of the labels by which Flux marks what its Kustomizations and HelmReleases apply.
    pub gitops_managed: bool,
    /// Whether `sharding.fluxcd.io/key` is present, whatever its value.
    pub has_shard_label: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnotationsFields {
    /// Whether `reconcile.fluxcd.io/requestedAt` is present, whatever its value.
    pub has_requested_at: bool,
    /// Whether `fluxgate.io/original-url` is present, whatever its value.
    pub has_original_url: bool,
    /// `fluxgate.io/mirror` is `"false"` or `"disabled"`.
    pub mirror_opt_out: bool,
    /// `fluxgate.io/lane` opts out (the values of [`crate::marks::opts_out`]).
    pub lane_opt_out: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpecFields<'a> {
    pub timeout: Field<Cow<'a, str>>,
    pub suspend: Field<bool>,
    pub url: Field<Cow<'a, str>>,
    /// `spec.secretRef` is there and not `null`.
    pub has_secret_ref: bool,
}

impl<'a> GitRepositoryFields<'a> {
    fn has_requested_at(&self) -> bool {
        matches!(&self.metadata, Field::Is(m)
            if matches!(&m.annotations, Field::Is(a) if a.has_requested_at))
    }

    /// Reads the fields from a parsed object.
    pub fn from_value(object: &'a Value) -> Result<Self, PolicyError> {
        let object = object.as_object().ok_or(PolicyError::NotAnObject)?;
        Ok(Self {
            metadata: Field::from_value(object.get("metadata"), |metadata| {
                let metadata = metadata.as_object()?;
                Some(MetadataFields {
                    annotations: Field::from_value(metadata.get("annotations"), |annotations| {
                        let annotations = annotations.as_object()?;
                        Some(AnnotationsFields {
                            has_requested_at: annotations.contains_key(REQUESTED_AT_ANNOTATION),
                            has_original_url: annotations.contains_key(ORIGINAL_URL_ANNOTATION),
                            mirror_opt_out: annotations
                                .get(MIRROR_OPT_OUT)
                                .and_then(Value::as_str)
                                .is_some_and(crate::marks::opts_out),
                            lane_opt_out: annotations
                                .get(LANE_OPT_OUT)
                                .and_then(Value::as_str)
                                .is_some_and(crate::marks::opts_out),
                        })
                    }),
                    labels: Field::from_value(metadata.get("labels"), |labels| {
                        let labels = labels.as_object()?;
                        Some(LabelsFields {
                            gitops_managed: crate::flux::is_gitops_managed(
                                labels.keys().map(String::as_str),
                            ),
                            has_shard_label: labels.contains_key(SHARD_LABEL),
                        })
                    }),
                })
            }),
            spec: Field::from_value(object.get("spec"), |spec| {
                let spec = spec.as_object()?;
                Some(SpecFields {
                    timeout: Field::from_value(spec.get("timeout"), |t| {
                        t.as_str().map(Cow::Borrowed)
                    }),
                    suspend: Field::from_value(spec.get("suspend"), Value::as_bool),
                    url: Field::from_value(spec.get("url"), |u| u.as_str().map(Cow::Borrowed)),
                    has_secret_ref: spec.get("secretRef").is_some_and(|r| !r.is_null()),
                })
            }),
        })
    }
}

// Reading the same fields from JSON text: one pass, nothing else in the object is built (but
// all of it is still read and checked as `serde_json::Value` would, nesting limit included).
// On a repeated key the last one wins, as in a `serde_json::Map`.

impl<'de> Read<'de> for GitRepositoryFields<'de> {
    fn from_map<A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut fields = Self::default();
        while let Some(key) = map.next_key_seed(key_index(&["metadata", "spec"]))? {
            match key {
                Some(0) => fields.metadata = map.next_value()?,
                Some(_) => fields.spec = map.next_value()?,
                None => map.next_value::<Skip>().map(drop)?,
            }
        }
        Ok(Some(fields))
    }
}

impl<'de> Read<'de> for MetadataFields {
    fn from_map<A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut fields = Self::default();
        while let Some(key) = map.next_key_seed(key_index(&["annotations", "labels"]))? {
            match key {
                Some(0) => fields.annotations = map.next_value()?,
                Some(_) => fields.labels = map.next_value()?,
                None => map.next_value::<Skip>().map(drop)?,
            }
        }
        Ok(Some(fields))
    }
}

impl<'de> Read<'de> for LabelsFields {
    fn from_map<A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        const KEYS: &[&str] = &[GITOPS_LABELS[0], GITOPS_LABELS[1], SHARD_LABEL];
        let mut fields = Self::default();
        while let Some(key) = map.next_key_seed(key_index(KEYS))? {
            match key {
                Some(0 | 1) => fields.gitops_managed = true,
                Some(_) => fields.has_shard_label = true,
                None => {}
            }
            map.next_value::<Skip>()?;
        }
        Ok(Some(fields))
    }
}

impl<'de> Read<'de> for AnnotationsFields {
    fn from_map<A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        const KEYS: &[&str] = &[
            REQUESTED_AT_ANNOTATION,
            ORIGINAL_URL_ANNOTATION,
            MIRROR_OPT_OUT,
            LANE_OPT_OUT,
        ];
        let mut fields = Self::default();
        while let Some(key) = map.next_key_seed(key_index(KEYS))? {
            match key {
                Some(0) => fields.has_requested_at = true,
                Some(1) => fields.has_original_url = true,
                Some(2) => {
                    // The last one wins, as in a parsed map.
                    fields.mirror_opt_out = matches!(
                        map.next_value::<Field<Cow<str>>>()?,
                        Field::Is(value) if crate::marks::opts_out(&value)
                    );
                    continue;
                }
                Some(_) => {
                    fields.lane_opt_out = matches!(
                        map.next_value::<Field<Cow<str>>>()?,
                        Field::Is(value) if crate::marks::opts_out(&value)
                    );
                    continue;
                }
                None => {}
            }
            map.next_value::<Skip>()?;
        }
        Ok(Some(fields))
    }
}

impl<'de> Read<'de> for SpecFields<'de> {
    fn from_map<A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut fields = Self::default();
        const KEYS: &[&str] = &["timeout", "suspend", "url", "secretRef"];
        while let Some(key) = map.next_key_seed(key_index(KEYS))? {
            match key {
                Some(0) => fields.timeout = map.next_value()?,
                Some(1) => fields.suspend = map.next_value()?,
                Some(2) => fields.url = map.next_value()?,
                Some(_) => fields.has_secret_ref = map.next_value::<Option<Skip>>()?.is_some(),
                None => map.next_value::<Skip>().map(drop)?,
            }
        }
        Ok(Some(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 10:00:00.123456 UTC);
    const STAMP: &str = "2026-11-28T10:00:00Z";

    fn policy(timeout_mode: TimeoutMode, suspend_mode: SuspendMode) -> GitRepositoryPolicy {
        GitRepositoryPolicy {
            timeout_mode,
            suspend_mode,
            ..GitRepositoryPolicy::default()
        }
    }

    fn repo(spec: Value, annotations: Option<Value>) -> Value {
        let mut metadata = json!({ "name": "app", "namespace": "team-a" });
        if let Some(a) = annotations {
            metadata["annotations"] = a;
        }
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": metadata,
            "spec": spec,
        })
    }

    /// Applies the planned patch the way kube-apiserver would and returns the result.
    fn apply(object: &Value, policy: &GitRepositoryPolicy) -> (Value, Mutation) {
        let mutation = plan_object(object, Some("team-a"), policy, NOW).expect("mutation");
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &mutation.patch).expect("patch applies");
        (patched, mutation)
    }

    fn patch_json(m: &Mutation) -> Value {
        serde_json::to_value(&m.patch).unwrap()
    }

    #[test]
    fn bare_repository_gets_every_field_with_exact_patch() {
        let object = repo(
            json!({ "url": "https://github.com/o/r", "interval": "1m" }),
            None,
        );
        let (patched, m) = apply(&object, &GitRepositoryPolicy::default());
        assert_eq!(
            patch_json(&m),
            json!([
                { "op": "add", "path": "/metadata/annotations",
                  "value": { "reconcile.fluxcd.io/requestedAt": STAMP } },
                { "op": "add", "path": "/spec/timeout", "value": "5m" },
                { "op": "add", "path": "/spec/suspend", "value": false },
            ])
        );
        assert!(m.warnings.is_empty());
        assert_eq!(patched["spec"]["timeout"], "5m");
        assert_eq!(patched["spec"]["suspend"], false);
        assert_eq!(patched["spec"]["url"], "https://github.com/o/r");
    }

    #[test]
    fn existing_annotations_get_an_escaped_pointer() {
        let object = repo(
            json!({ "url": "u", "interval": "1m", "timeout": "5m", "suspend": false }),
            Some(json!({ "team": "a", "example.com/owner": "x" })),
        );
        let (patched, m) = apply(&object, &GitRepositoryPolicy::default());
        assert_eq!(
            patch_json(&m),
            json!([{ "op": "add",
                     "path": "/metadata/annotations/reconcile.fluxcd.io~1requestedAt",
                     "value": STAMP }])
        );
        assert_eq!(patched["metadata"]["annotations"]["example.com/owner"], "x");
        assert_eq!(
            patched["metadata"]["annotations"][REQUESTED_AT_ANNOTATION],
            STAMP
        );
    }

    #[test]
    fn null_annotations_are_replaced_by_a_map() {
        let object = repo(
            json!({ "url": "u", "interval": "1m", "timeout": "5m", "suspend": false }),
            Some(Value::Null),
        );
        let (patched, _) = apply(&object, &GitRepositoryPolicy::default());
        assert_eq!(
            patched["metadata"]["annotations"],
            json!({ REQUESTED_AT_ANNOTATION: STAMP })
        );
    }

    #[test]
    fn compliant_repository_gets_no_patch_and_reinvocation_is_idempotent() {
        let object = repo(json!({ "url": "u", "interval": "1m" }), None);
        let (patched, first) = apply(&object, &GitRepositoryPolicy::default());
        assert!(!first.is_empty());
        let second = plan_object(&patched, None, &GitRepositoryPolicy::default(), NOW).unwrap();
        assert!(second.is_empty(), "second pass patched: {:?}", second.patch);
        assert!(second.warnings.is_empty());
    }

    #[test]
    fn an_existing_requested_at_is_kept() {
        let object = repo(
            json!({ "url": "u", "interval": "1m", "timeout": "5m", "suspend": false }),
            Some(json!({ REQUESTED_AT_ANNOTATION: "by-hand" })),
        );
        let m = plan_object(&object, None, &GitRepositoryPolicy::default(), NOW).unwrap();
        assert!(m.is_empty());
    }

    #[test]
    fn floor_mode_raises_short_timeouts_and_keeps_long_ones() {
        let p = policy(TimeoutMode::Floor, SuspendMode::Force);
        for (given, expected) in [
            ("60s", "5m"),
            ("4m59s", "5m"),
            ("500ms", "5m"),
            ("5m", "5m"),
            ("300s", "300s"),
            ("10m", "10m"),
            ("1m30s", "5m"),
            ("7.5m", "7.5m"),
        ] {
            let object = repo(
                json!({ "url": "u", "interval": "1m", "timeout": given, "suspend": false }),
                Some(json!({ REQUESTED_AT_ANNOTATION: "x" })),
            );
            let (patched, m) = apply(&object, &p);
            assert_eq!(patched["spec"]["timeout"], expected, "given {given}");
            assert!(m.warnings.is_empty());
            if given == expected {
                assert!(m.is_empty(), "no patch expected for {given}");
            } else {
                assert_eq!(
                    patch_json(&m),
                    json!([{ "op": "replace", "path": "/spec/timeout", "value": "5m" }])
                );
            }
        }
    }

    #[test]
    fn force_mode_sets_exactly_the_configured_timeout() {
        let p = policy(TimeoutMode::Force, SuspendMode::Force);
        for (given, expected) in [("10m", "5m"), ("60s", "5m"), ("5m", "5m"), ("300s", "300s")] {
            let object = repo(
                json!({ "url": "u", "interval": "1m", "timeout": given }),
                None,
            );
            let (patched, _) = apply(&object, &p);
            assert_eq!(patched["spec"]["timeout"], expected, "given {given}");
        }
    }

    #[test]
    fn configured_timeout_is_emitted_without_hours() {
        let p = GitRepositoryPolicy {
            timeout: "90m".parse().unwrap(),
            ..GitRepositoryPolicy::default()
        };
        let object = repo(json!({ "url": "u", "interval": "1m" }), None);
        let (patched, _) = apply(&object, &p);
        assert_eq!(patched["spec"]["timeout"], "90m");
    }

    #[test]
    fn unparsable_timeouts_are_replaced_with_a_warning() {
        for given in [
            json!("1h"),
            json!("soon"),
            json!(""),
            // The CRD's syntax, but longer than fluxgate reads (duration::MAX_TIMEOUT_LEN).
            json!("1m".repeat(33)),
            json!(30),
            json!(null),
        ] {
            let object = repo(
                json!({ "url": "u", "interval": "1m", "timeout": given.clone() }),
                None,
            );
            let (patched, m) = apply(&object, &GitRepositoryPolicy::default());
            assert_eq!(patched["spec"]["timeout"], "5m", "given {given}");
            if given.is_null() {
                assert!(m.warnings.is_empty());
            } else {
                assert_eq!(m.warnings.len(), 1, "given {given}");
                assert!(m.warnings[0].contains("spec.timeout"), "{:?}", m.warnings);
            }
        }
    }

    #[test]
    fn warnings_stay_within_the_apiserver_limit() {
        let long = "x".repeat(500);
        let object = repo(
            json!({ "url": "u", "interval": "1m", "timeout": long }),
            None,
        );
        let m = plan_object(&object, None, &GitRepositoryPolicy::default(), NOW).unwrap();
        assert!(m.warnings[0].len() <= 120);
        assert!(m.warnings[0].ends_with("..."));
    }

    #[test]
    fn suspend_true_is_overridden_with_a_warning_in_force_mode() {
        let object = repo(
            json!({ "url": "u", "interval": "1m", "timeout": "5m", "suspend": true }),
            Some(json!({ REQUESTED_AT_ANNOTATION: "x" })),
        );
        let (patched, m) = apply(&object, &GitRepositoryPolicy::default());
        assert_eq!(patched["spec"]["suspend"], false);
        assert_eq!(
            patch_json(&m),
            json!([{ "op": "replace", "path": "/spec/suspend", "value": false }])
        );
        assert_eq!(m.warnings.len(), 1);
        assert!(m.warnings[0].contains("spec.suspend"));
    }

    #[test]
    fn suspend_true_is_kept_in_preserve_mode_and_absent_is_still_set() {
        let p = policy(TimeoutMode::Floor, SuspendMode::Preserve);
        let suspended = repo(
            json!({ "url": "u", "interval": "1m", "timeout": "5m", "suspend": true }),
            Some(json!({ REQUESTED_AT_ANNOTATION: "x" })),
        );
        let m = plan_object(&suspended, None, &p, NOW).unwrap();
        assert!(m.is_empty() && m.warnings.is_empty());

        let unset = repo(
            json!({ "url": "u", "interval": "1m", "timeout": "5m" }),
            None,
        );
        let (patched, _) = apply(&unset, &p);
        assert_eq!(patched["spec"]["suspend"], false);
    }

    #[test]
    fn non_boolean_suspend_is_replaced() {
        let object = repo(
            json!({ "url": "u", "interval": "1m", "timeout": "5m", "suspend": "yes" }),
            None,
        );
        let (patched, m) = apply(&object, &GitRepositoryPolicy::default());
        assert_eq!(patched["spec"]["suspend"], false);
        assert_eq!(m.warnings.len(), 1);
    }

    #[test]
    fn missing_spec_and_metadata_are_created() {
        let object =
            json!({ "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository" });
        let (patched, _) = apply(&object, &GitRepositoryPolicy::default());
        assert_eq!(
            patched["spec"],
            json!({ "timeout": "5m", "suspend": false })
        );
        assert_eq!(
            patched["metadata"]["annotations"][REQUESTED_AT_ANNOTATION],
            STAMP
        );
    }

    #[test]
    fn wrong_shapes_are_errors_not_panics() {
        let p = GitRepositoryPolicy::default();
        assert_eq!(
            plan_object(&json!([1, 2]), None, &p, NOW),
            Err(PolicyError::NotAnObject)
        );
        assert!(matches!(
            plan_object(&json!({ "spec": "x" }), None, &p, NOW),
            Err(PolicyError::FieldNotAnObject("spec", "string"))
        ));
        assert!(matches!(
            plan_object(&json!({ "metadata": { "annotations": [] } }), None, &p, NOW),
            Err(PolicyError::FieldNotAnObject(
                "metadata.annotations",
                "list"
            ))
        ));
    }

    #[test]
    fn fields_read_from_json_text_equal_fields_read_from_a_value() {
        for object in [
            repo(
                json!({ "url": "u", "timeout": "60s", "suspend": true }),
                None,
            ),
            repo(
                json!({ "timeout": null, "suspend": "yes" }),
                Some(json!({})),
            ),
            repo(json!({ "timeout": 30, "suspend": null }), Some(Value::Null)),
            repo(json!([]), Some(json!({ REQUESTED_AT_ANNOTATION: null }))),
            repo(Value::Null, Some(json!([1]))),
            json!({ "metadata": "x", "spec": { "timeout": "1h\n\"x" } }),
            json!({}),
        ] {
            let text = serde_json::to_string(&object).unwrap();
            let from_text: Field<GitRepositoryFields> = serde_json::from_str(&text).unwrap();
            let from_value = GitRepositoryFields::from_value(&object).unwrap();
            assert_eq!(from_text, Field::Is(from_value), "{text}");
        }
        // On a repeated key the last one wins, as when parsing into a value.
        let text = r#"{"spec":{"suspend":true},"spec":{"timeout":"5m","timeout":"9m"}}"#;
        let from_text: Field<GitRepositoryFields> = serde_json::from_str(text).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        let from_value = GitRepositoryFields::from_value(&value).unwrap();
        assert_eq!(from_text, Field::Is(from_value));
    }

    fn mirrored() -> GitRepositoryPolicy {
        let rules = ["https://github.com/=https://gitee.com/acme-mirror/"]
            .iter()
            .map(|r| super::super::MirrorRule::parse(r).unwrap())
            .collect();
        GitRepositoryPolicy {
            mirror: MirrorRules::new(rules, vec!["platform".into()]).unwrap(),
            ..GitRepositoryPolicy::default()
        }
    }

    #[test]
    fn a_mirror_rule_rewrites_the_url_and_keeps_the_original() {
        let object = repo(
            json!({ "url": "https://github.com/org/repo.git", "interval": "1m" }),
            None,
        );
        let (patched, m) = apply(&object, &mirrored());
        assert_eq!(
            patch_json(&m),
            json!([
                { "op": "add", "path": "/metadata/annotations",
                  "value": { REQUESTED_AT_ANNOTATION: STAMP,
                             ORIGINAL_URL_ANNOTATION: "https://github.com/org/repo.git" } },
                { "op": "add", "path": "/spec/timeout", "value": "5m" },
                { "op": "add", "path": "/spec/suspend", "value": false },
                { "op": "replace", "path": "/spec/url",
                  "value": "https://gitee.com/acme-mirror/org/repo.git" },
            ])
        );
        assert_eq!(m.mirror_rule.as_deref(), Some("https://github.com/"));
        assert_eq!(
            m.warnings,
            [
                "spec.url rewritten to the mirror https://gitee.com/acme-mirror/org/repo.git \
              (rule https://github.com/); the original is in fluxgate.io/original-url"
            ]
        );
        // Re-invoked on its own output: nothing more to do, no second rewrite.
        let again = plan_object(&patched, Some("team-a"), &mirrored(), NOW).unwrap();
        assert!(again.is_empty() && again.warnings.is_empty() && again.mirror_rule.is_none());
    }

    #[test]
    fn the_original_url_joins_existing_annotations() {
        let object = repo(
            json!({ "url": "https://github.com/o/r", "interval": "1m", "timeout": "5m",
                    "suspend": false }),
            Some(json!({ REQUESTED_AT_ANNOTATION: "x", "team": "a" })),
        );
        let (patched, m) = apply(&object, &mirrored());
        assert_eq!(
            patch_json(&m),
            json!([
                { "op": "add", "path": "/metadata/annotations/fluxgate.io~1original-url",
                  "value": "https://github.com/o/r" },
                { "op": "replace", "path": "/spec/url", "value": "https://gitee.com/acme-mirror/o/r" },
            ])
        );
        assert_eq!(patched["metadata"]["annotations"]["team"], "a");
    }

    #[test]
    fn opted_out_excluded_managed_and_credentialed_objects_keep_their_url() {
        let url = "https://github.com/o/r";
        let with = |spec: Value, annotations: Option<Value>, labels: Option<Value>| {
            let mut object = repo(spec, annotations);
            if let Some(labels) = labels {
                object["metadata"]["labels"] = labels;
            }
            object
        };
        let spec = json!({ "url": url, "interval": "1m" });
        for (object, namespace, warned) in [
            (
                with(
                    spec.clone(),
                    Some(json!({ "fluxgate.io/mirror": "false" })),
                    None,
                ),
                "team-a",
                false,
            ),
            (
                with(
                    spec.clone(),
                    Some(json!({ "fluxgate.io/mirror": "disabled" })),
                    None,
                ),
                "team-a",
                false,
            ),
            (
                with(
                    spec.clone(),
                    Some(json!({ ORIGINAL_URL_ANNOTATION: "https://x/y" })),
                    None,
                ),
                "team-a",
                false,
            ),
            (with(spec.clone(), None, None), "platform", false),
            (
                with(
                    json!({ "url": url, "interval": "1m", "secretRef": { "name": "gh" } }),
                    None,
                    None,
                ),
                "team-a",
                true,
            ),
            (
                with(
                    spec.clone(),
                    None,
                    Some(json!({ "kustomize.toolkit.fluxcd.io/name": "apps" })),
                ),
                "team-a",
                true,
            ),
        ] {
            let m = plan_object(&object, Some(namespace), &mirrored(), NOW).unwrap();
            let mut patched = object.clone();
            json_patch::patch(&mut patched, &m.patch).unwrap();
            assert_eq!(patched["spec"]["url"], url, "{object}");
            assert!(m.mirror_rule.is_none());
            let annotations = &patched["metadata"]["annotations"];
            if object["metadata"]["annotations"]
                .get(ORIGINAL_URL_ANNOTATION)
                .is_none()
            {
                assert!(
                    annotations.get(ORIGINAL_URL_ANNOTATION).is_none(),
                    "{object}"
                );
            }
            assert_eq!(!m.warnings.is_empty(), warned, "{object}: {:?}", m.warnings);
        }
        // A secretRef of null is no secretRef.
        let null_ref = repo(
            json!({ "url": url, "interval": "1m", "secretRef": null }),
            None,
        );
        let (patched, _) = apply(&null_ref, &mirrored());
        assert_eq!(patched["spec"]["url"], "https://gitee.com/acme-mirror/o/r");
    }

    #[test]
    fn mirror_fields_read_from_json_text_equal_fields_read_from_a_value() {
        for object in [
            json!({ "metadata": { "labels": { "helm.toolkit.fluxcd.io/name": "x", "a": "b" },
                                  "annotations": { "fluxgate.io/mirror": "false",
                                                   ORIGINAL_URL_ANNOTATION: 1 } },
                    "spec": { "url": "https://github.com/o/r", "secretRef": { "name": "s" } } }),
            json!({ "metadata": { "labels": [], "annotations": { "fluxgate.io/mirror": true } },
                    "spec": { "url": 7, "secretRef": null } }),
            json!({ "metadata": { "labels": null,
                                  "annotations": { "fluxgate.io/mirror": "false",
                                                   "fluxgate.io/mirror": "true" } },
                    "spec": { "url": "https://g/é", "secretRef": "x" } }),
        ] {
            let text = serde_json::to_string(&object).unwrap();
            let from_text: Field<GitRepositoryFields> = serde_json::from_str(&text).unwrap();
            let from_value = GitRepositoryFields::from_value(&object).unwrap();
            assert_eq!(from_text, Field::Is(from_value), "{text}");
        }
        let text = r#"{"metadata":{"labels":{"kustomize.toolkit.fluxcd.io/name":"a"},
            "annotations":{"fluxgate.io/mirror":"disabled"}},"spec":{"url":"u","secretRef":{}}}"#;
        let Field::Is(fields) = serde_json::from_str::<Field<GitRepositoryFields>>(text).unwrap()
        else {
            panic!("not read")
        };
        let Field::Is(metadata) = &fields.metadata else {
            panic!("no metadata")
        };
        assert!(metadata.gitops_managed());
        assert!(matches!(&metadata.annotations, Field::Is(a) if a.mirror_opt_out));
        assert!(matches!(&fields.spec, Field::Is(s) if s.has_secret_ref));
    }

    fn laned(mirror: bool) -> GitRepositoryPolicy {
        let rules = ["github.com=far", "gitee.com=mirrored"]
            .iter()
            .map(|r| super::super::LaneRule::parse(r).unwrap())
            .collect();
        let base = if mirror {
            mirrored()
        } else {
            GitRepositoryPolicy::default()
        };
        GitRepositoryPolicy {
            lanes: LaneRules::new(rules).unwrap(),
            ..base
        }
    }

    #[test]
    fn a_lane_host_gets_the_shard_label_with_the_exact_patch() {
        // No labels at all: the map is added whole.
        let object = repo(
            json!({ "url": "ssh://git@GitHub.com:22/o/r", "interval": "1m", "timeout": "5m",
                    "suspend": false }),
            Some(json!({ REQUESTED_AT_ANNOTATION: "x" })),
        );
        let (patched, m) = apply(&object, &laned(false));
        assert_eq!(
            patch_json(&m),
            json!([{ "op": "add", "path": "/metadata/labels",
                     "value": { "sharding.fluxcd.io/key": "far" } }])
        );
        assert_eq!(m.lane_shard.as_deref(), Some("far"));
        assert!(m.warnings.is_empty());
        assert_eq!(patched["metadata"]["labels"][SHARD_LABEL], "far");

        // Existing labels: one key, its `/` escaped; the others stay.
        let mut object = object;
        object["metadata"]["labels"] = json!({ "team": "a" });
        let (patched, m) = apply(&object, &laned(false));
        assert_eq!(
            patch_json(&m),
            json!([{ "op": "add", "path": "/metadata/labels/sharding.fluxcd.io~1key",
                     "value": "far" }])
        );
        assert_eq!(patched["metadata"]["labels"]["team"], "a");

        // Re-invoked on its own output: nothing more.
        let again = plan_object(&patched, Some("team-a"), &laned(false), NOW).unwrap();
        assert!(again.is_empty() && again.lane_shard.is_none());

        // null labels are replaced by the map; no metadata at all gets both maps.
        object["metadata"]["labels"] = Value::Null;
        let (patched, _) = apply(&object, &laned(false));
        assert_eq!(patched["metadata"]["labels"], json!({ SHARD_LABEL: "far" }));
        let bare = json!({ "spec": { "url": "git@github.com:o/r", "interval": "1m" } });
        let (patched, m) = apply(&bare, &laned(false));
        assert_eq!(
            patch_json(&m)[0],
            json!({ "op": "add", "path": "/metadata",
                    "value": { "annotations": { REQUESTED_AT_ANNOTATION: STAMP },
                               "labels": { SHARD_LABEL: "far" } } })
        );
        assert_eq!(patched["metadata"]["labels"][SHARD_LABEL], "far");
    }

    #[test]
    fn the_lane_follows_the_url_as_stored_after_a_mirror_rewrite() {
        let object = repo(
            json!({ "url": "https://github.com/o/r", "interval": "1m" }),
            None,
        );
        // Mirrored to gitee.com: the github.com lane no longer applies, gitee.com's does.
        let (patched, m) = apply(&object, &laned(true));
        assert_eq!(patched["spec"]["url"], "https://gitee.com/acme-mirror/o/r");
        assert_eq!(m.lane_shard.as_deref(), Some("mirrored"));
        assert_eq!(patched["metadata"]["labels"][SHARD_LABEL], "mirrored");
        // Left on github.com by the mirror (a Secret it does not carry): github.com's lane.
        let with_secret = repo(
            json!({ "url": "https://github.com/o/r", "interval": "1m",
                    "secretRef": { "name": "token" } }),
            None,
        );
        let (patched, m) = apply(&with_secret, &laned(true));
        assert_eq!(patched["spec"]["url"], "https://github.com/o/r");
        assert_eq!(m.lane_shard.as_deref(), Some("far"));
        assert_eq!(m.warnings.len(), 1, "the mirror's warning only");
    }

    #[test]
    fn opted_out_other_hosts_and_the_creators_own_shard_stay_out_of_lanes() {
        let url = json!({ "url": "https://github.com/o/r", "interval": "1m" });
        let with = |annotations: Value, labels: Value| {
            let mut object = repo(url.clone(), Some(annotations));
            object["metadata"]["labels"] = labels;
            object
        };
        for (object, label) in [
            (
                with(json!({ "fluxgate.io/lane": "false" }), json!({})),
                None,
            ),
            (
                with(json!({ "fluxgate.io/lane": "disabled" }), json!({})),
                None,
            ),
            (
                with(json!({}), json!({ SHARD_LABEL: "mine" })),
                Some("mine"),
            ),
            (with(json!({}), json!({ SHARD_LABEL: "" })), Some("")),
            (
                repo(
                    json!({ "url": "https://gitlab.com/o/r", "interval": "1m" }),
                    None,
                ),
                None,
            ),
            // Labels that are not a map: left alone, not an error.
            (with(json!({}), json!("x")), None),
        ] {
            let m = plan_object(&object, Some("team-a"), &laned(false), NOW).unwrap();
            assert_eq!(m.lane_shard, None, "{object}");
            let mut patched = object.clone();
            json_patch::patch(&mut patched, &m.patch).unwrap();
            assert_eq!(
                patched["metadata"]["labels"]
                    .get(SHARD_LABEL)
                    .and_then(Value::as_str),
                label,
                "{object}"
            );
        }
        // Any other value of the annotation does not opt out.
        let (_, m) = apply(
            &with(json!({ "fluxgate.io/lane": "true" }), json!({})),
            &laned(false),
        );
        assert_eq!(m.lane_shard.as_deref(), Some("far"));
    }

    #[test]
    fn the_lane_opt_out_takes_the_values_of_the_other_opt_outs() {
        for value in ["false", "disabled", "False", "DISABLED", "no", "true", ""] {
            let mut object = repo(
                json!({ "url": "https://github.com/o/r", "interval": "1m" }),
                Some(json!({ "fluxgate.io/lane": value })),
            );
            object["metadata"]["labels"] = json!({});
            let m = plan_object(&object, None, &laned(false), NOW).unwrap();
            assert_eq!(
                m.lane_shard.is_none(),
                crate::marks::opts_out(value),
                "{value:?}"
            );
        }
    }

    #[test]
    fn lane_fields_read_from_json_text_equal_fields_read_from_a_value() {
        for object in [
            json!({ "metadata": { "labels": { "sharding.fluxcd.io/key": "a", "x": 1 },
                                  "annotations": { "fluxgate.io/lane": "false" } },
                    "spec": { "url": "https://github.com/o/r" } }),
            json!({ "metadata": { "labels": { "sharding.fluxcd.io/key": null },
                                  "annotations": { "fluxgate.io/lane": 1 } } }),
            json!({ "metadata": { "labels": "x",
                                  "annotations": { "fluxgate.io/lane": "true",
                                                   "fluxgate.io/lane": "disabled" } } }),
        ] {
            let text = serde_json::to_string(&object).unwrap();
            let from_text: Field<GitRepositoryFields> = serde_json::from_str(&text).unwrap();
            let from_value = GitRepositoryFields::from_value(&object).unwrap();
            assert_eq!(from_text, Field::Is(from_value), "{text}");
        }
        let text = r#"{"metadata":{"labels":{"sharding.fluxcd.io/key":"far"},
            "annotations":{"fluxgate.io/lane":"false","fluxgate.io/lane":"disabled"}}}"#;
        let Field::Is(fields) = serde_json::from_str::<Field<GitRepositoryFields>>(text).unwrap()
        else {
            panic!("not read")
        };
        let Field::Is(metadata) = &fields.metadata else {
            panic!("no metadata")
        };
        assert!(matches!(&metadata.labels, Field::Is(l) if l.has_shard_label));
        assert!(matches!(&metadata.annotations, Field::Is(a) if a.lane_opt_out));
    }

    #[test]
    fn unknown_fields_and_v1beta2_pass_through() {
        let mut object = repo(
            json!({ "url": "u", "interval": "1m", "ref": { "branch": "main" }, "future": [1] }),
            None,
        );
        object["apiVersion"] = json!("source.toolkit.fluxcd.io/v1beta2");
        let (patched, _) = apply(&object, &GitRepositoryPolicy::default());
        assert_eq!(patched["spec"]["ref"], json!({ "branch": "main" }));
        assert_eq!(patched["spec"]["future"], json!([1]));
        assert_eq!(patched["apiVersion"], "source.toolkit.fluxcd.io/v1beta2");
    }
}
