//! What fluxgate changes on a new GitRepository: `spec.timeout`, `spec.suspend` and the
//! `reconcile.fluxcd.io/requestedAt` annotation.
//!
//! Works on the raw JSON object so every served version (v1, v1beta2) and every field fluxgate does
//! not know about pass through untouched.

use std::borrow::Cow;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::fields::{Field, Read, Skip, key_index};

use super::{Mutation, PatchBuilder, PolicyError, rfc3339_seconds};
use crate::duration::{FluxDuration, parse_timeout};

use crate::flux::REQUESTED_AT_ANNOTATION;

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
}

impl Default for GitRepositoryPolicy {
    fn default() -> Self {
        Self {
            timeout: FluxDuration::from_duration(std::time::Duration::from_secs(300)),
            timeout_mode: TimeoutMode::Floor,
            suspend_mode: SuspendMode::Force,
        }
    }
}

/// Decides the patch for one GitRepository being created, given as a parsed JSON value (what
/// `fluxgate mutate` reads from manifests). Pure: `now` is the admission time.
pub fn plan_object(
    object: &Value,
    policy: &GitRepositoryPolicy,
    now: OffsetDateTime,
) -> Result<Mutation, PolicyError> {
    plan(&GitRepositoryFields::from_value(object)?, policy, now)
}

/// The decision itself, on the only parts of a GitRepository it reads. The webhook reads these
/// fields straight from the AdmissionReview's JSON ([`GitRepositoryFields`]'s `Deserialize`) and
/// `fluxgate mutate` from a parsed value ([`GitRepositoryFields::from_value`]); both then decide
/// here, so they cannot disagree.
pub fn plan(
    object: &GitRepositoryFields<'_>,
    policy: &GitRepositoryPolicy,
    now: OffsetDateTime,
) -> Result<Mutation, PolicyError> {
    let mut patch = PatchBuilder::default();
    let mut warnings = Vec::new();

    plan_requested_at(&object.metadata, now, &mut patch)?;

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

    Ok(Mutation {
        patch: patch.finish(),
        warnings,
    })
}

fn plan_requested_at(
    metadata: &Field<MetadataFields>,
    now: OffsetDateTime,
    patch: &mut PatchBuilder,
) -> Result<(), PolicyError> {
    let stamp = json!(rfc3339_seconds(now));
    match metadata {
        Field::Missing | Field::Null => {
            patch.add(
                &["metadata"],
                json!({ "annotations": { REQUESTED_AT_ANNOTATION: stamp } }),
            );
        }
        Field::Is(metadata) => match &metadata.annotations {
            Field::Missing | Field::Null => {
                patch.add(
                    &["metadata", "annotations"],
                    json!({ REQUESTED_AT_ANNOTATION: stamp }),
                );
            }
            Field::Is(annotations) => {
                // Any existing value is kept: the user may have asked for a reconcile, and a
                // re-invoked webhook must not produce a second patch.
                if !annotations.has_requested_at {
                    patch.add(&["metadata", "annotations", REQUESTED_AT_ANNOTATION], stamp);
                }
            }
            Field::Other(kind) => {
                return Err(PolicyError::FieldNotAnObject("metadata.annotations", kind));
            }
        },
        Field::Other(kind) => return Err(PolicyError::FieldNotAnObject("metadata", kind)),
    }
    Ok(())
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

/// What the policy reads of a GitRepository: `metadata.annotations` (only whether the requestedAt
/// key is there), `spec.timeout` and `spec.suspend`, each with its JSON type when it is not the
/// expected one. Everything else in the object passes through untouched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitRepositoryFields<'a> {
    pub metadata: Field<MetadataFields>,
    pub spec: Field<SpecFields<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataFields {
    pub annotations: Field<AnnotationsFields>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnotationsFields {
    /// Whether `reconcile.fluxcd.io/requestedAt` is present, whatever its value.
    pub has_requested_at: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpecFields<'a> {
    pub timeout: Field<Cow<'a, str>>,
    pub suspend: Field<bool>,
}

impl<'a> GitRepositoryFields<'a> {
    /// Reads the fields from a parsed object.
    pub fn from_value(object: &'a Value) -> Result<Self, PolicyError> {
        let object = object.as_object().ok_or(PolicyError::NotAnObject)?;
        Ok(Self {
            metadata: Field::from_value(object.get("metadata"), |metadata| {
                let metadata = metadata.as_object()?;
                Some(MetadataFields {
                    annotations: Field::from_value(metadata.get("annotations"), |annotations| {
                        Some(AnnotationsFields {
                            has_requested_at: annotations
                                .as_object()?
                                .contains_key(REQUESTED_AT_ANNOTATION),
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
        while let Some(key) = map.next_key_seed(key_index(&["annotations"]))? {
            match key {
                Some(_) => fields.annotations = map.next_value()?,
                None => map.next_value::<Skip>().map(drop)?,
            }
        }
        Ok(Some(fields))
    }
}

impl<'de> Read<'de> for AnnotationsFields {
    fn from_map<A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut fields = Self::default();
        while let Some(key) = map.next_key_seed(key_index(&[REQUESTED_AT_ANNOTATION]))? {
            fields.has_requested_at |= key.is_some();
            map.next_value::<Skip>()?;
        }
        Ok(Some(fields))
    }
}

impl<'de> Read<'de> for SpecFields<'de> {
    fn from_map<A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Option<Self>, A::Error> {
        let mut fields = Self::default();
        while let Some(key) = map.next_key_seed(key_index(&["timeout", "suspend"]))? {
            match key {
                Some(0) => fields.timeout = map.next_value()?,
                Some(_) => fields.suspend = map.next_value()?,
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
        let mutation = plan_object(object, policy, NOW).expect("mutation");
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
        let second = plan_object(&patched, &GitRepositoryPolicy::default(), NOW).unwrap();
        assert!(second.is_empty(), "second pass patched: {:?}", second.patch);
        assert!(second.warnings.is_empty());
    }

    #[test]
    fn an_existing_requested_at_is_kept() {
        let object = repo(
            json!({ "url": "u", "interval": "1m", "timeout": "5m", "suspend": false }),
            Some(json!({ REQUESTED_AT_ANNOTATION: "by-hand" })),
        );
        let m = plan_object(&object, &GitRepositoryPolicy::default(), NOW).unwrap();
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
        let m = plan_object(&object, &GitRepositoryPolicy::default(), NOW).unwrap();
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
        let m = plan_object(&suspended, &p, NOW).unwrap();
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
            plan_object(&json!([1, 2]), &p, NOW),
            Err(PolicyError::NotAnObject)
        );
        assert!(matches!(
            plan_object(&json!({ "spec": "x" }), &p, NOW),
            Err(PolicyError::FieldNotAnObject("spec", "string"))
        ));
        assert!(matches!(
            plan_object(&json!({ "metadata": { "annotations": [] } }), &p, NOW),
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
