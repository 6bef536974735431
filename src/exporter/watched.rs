//! The part of a GitRepository the exporter reads, decoded straight from the API server's JSON.
//!
//! A `DynamicObject` keeps the whole object as a JSON tree (behind a flattened field, which serde
//! buffers twice), managedFields included: at 100k objects the list pages and watch events are
//! most of the exporter's allocations. Here everything the metrics do not read is skipped while
//! parsing: managedFields, the artifact, the rest of the spec, and every label and annotation but
//! fluxgate's own (`fluxgate.io/...`: the breaker's and janitor's marks).

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::ApiResource;
use kube::core::DynamicResourceScope;
use std::collections::BTreeMap;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::Classify;

/// A GitRepository as the exporter watches it. Spec and status fields stay JSON values, so a
/// field of an unexpected type is "missing" to [`crate::health::classify`] rather than an error
/// that would fail the whole list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchedGitRepository {
    #[serde(default, deserialize_with = "slim_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<Spec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Value>,
}

/// The metadata fields the exporter and the watcher use (the watcher resumes from
/// `resourceVersion`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMetadata {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    generation: Option<i64>,
    resource_version: Option<String>,
    creation_timestamp: Option<Time>,
    #[serde(default, deserialize_with = "fluxgate_keys")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "fluxgate_keys")]
    annotations: Option<BTreeMap<String, String>>,
}

/// A label or annotation map, keeping only fluxgate's own keys and Flux's shard label (a host
/// lane); the rest is skipped unread.
fn fluxgate_keys<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if key.starts_with(FLUXGATE_PREFIX) || key == crate::flux::SHARD_LABEL {
                    // A value of another type is not a mark: left out, as classify would.
                    if let Value::String(value) = map.next_value::<Value>()? {
                        kept.insert(key.into_owned(), value);
                    }
                } else {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
            Ok((!kept.is_empty()).then_some(kept))
        }
    }
    deserializer.deserialize_any(Keys)
}

const FLUXGATE_PREFIX: &str = "fluxgate.io/";

fn slim_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let m = SlimMetadata::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        generation: m.generation,
        resource_version: m.resource_version,
        creation_timestamp: m.creation_timestamp,
        labels: m.labels,
        annotations: m.annotations,
        ..ObjectMeta::default()
    })
}

impl kube::Resource for WatchedGitRepository {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Classify for WatchedGitRepository {
    fn to_json(&self) -> Option<Value> {
        serde_json::to_value(self).ok()
    }

    fn uid(&self) -> Option<&str> {
        self.metadata.uid.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health;
    use serde_json::json;

    fn full_object() -> Value {
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": {
                "name": "a", "namespace": "proj-a", "uid": "u-1", "generation": 2,
                "resourceVersion": "42", "creationTimestamp": "2026-11-28T11:00:00Z",
                "labels": { "platform.example.com/project": "1" },
                "annotations": { "reconcile.fluxcd.io/requestedAt": "2026-11-28T11:00:00Z" },
                "managedFields": [{ "manager": "kubectl", "operation": "Update",
                                    "fieldsType": "FieldsV1", "fieldsV1": { "f:spec": {} } }],
            },
            "spec": { "url": "https://gitlab.com/example/a", "interval": "1m", "timeout": "5m",
                      "suspend": false, "ref": { "branch": "main" } },
            "status": {
                "observedGeneration": -1,
                "conditions": [
                    { "type": "Ready", "status": "False", "reason": "GitOperationFailed",
                      "message": "unable to clone: context deadline exceeded",
                      "lastTransitionTime": "2026-11-28T11:01:00Z", "observedGeneration": 2 },
                    { "type": "FetchFailed", "status": "True", "reason": "GitOperationFailed",
                      "message": "unable to clone: context deadline exceeded",
                      "lastTransitionTime": "2026-11-28T11:00:30Z", "observedGeneration": 2 }],
                "artifact": { "revision": "main@sha1:0123", "lastUpdateTime": "2026-11-20T10:00:00Z",
                              "path": "x.tar.gz", "url": "http://sc/x.tar.gz" },
            },
        })
    }

    #[test]
    fn keeps_what_the_metrics_read_and_nothing_else() {
        let watched: WatchedGitRepository = serde_json::from_value(full_object()).unwrap();
        assert_eq!(watched.metadata.resource_version.as_deref(), Some("42"));
        assert!(watched.metadata.managed_fields.is_none());
        assert!(watched.metadata.annotations.is_none());
        let json = watched.to_json().unwrap();
        assert!(json.pointer("/status/artifact").is_none());
        assert!(json.pointer("/spec/interval").is_none());
    }

    #[test]
    fn keeps_fluxgates_own_marks_only() {
        let mut object = full_object();
        object["metadata"]["labels"]["fluxgate.io/quarantined"] = json!("true");
        object["metadata"]["annotations"]["fluxgate.io/quarantined-at"] =
            json!("2026-11-28T11:05:00Z");
        object["metadata"]["annotations"]["fluxgate.io/odd"] = json!(3);
        let watched: WatchedGitRepository = serde_json::from_value(object).unwrap();
        let labels = watched.metadata.labels.as_ref().unwrap();
        assert_eq!(labels.len(), 1, "{labels:?}");
        assert_eq!(labels["fluxgate.io/quarantined"], "true");
        let annotations = watched.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.len(), 1, "{annotations:?}");
        let health = health::classify(&watched.to_json().unwrap()).unwrap();
        assert!(health.quarantine_marked());
        assert_eq!(
            health.marks.quarantine.and_then(|q| q.at),
            Some(time::macros::datetime!(2026-11-28 11:05 UTC))
        );
    }

    #[test]
    fn classifies_like_the_whole_object_for_every_field_the_exporter_publishes() {
        let full = full_object();
        let mut variants = vec![full.clone()];
        let mut pending = full.clone();
        pending.as_object_mut().unwrap().remove("status");
        variants.push(pending);
        let mut suspended = full.clone();
        suspended["spec"]["suspend"] = json!(true);
        variants.push(suspended);
        let mut odd = full.clone();
        odd["spec"]["suspend"] = json!("yes");
        odd["status"]["observedGeneration"] = json!("2");
        odd["status"]["conditions"] = json!({ "not": "a list" });
        variants.push(odd);
        for object in variants {
            let watched: WatchedGitRepository = serde_json::from_value(object.clone()).unwrap();
            let from_watched = health::classify(&watched.to_json().unwrap()).unwrap();
            let from_full = health::classify(&object).unwrap();
            assert_eq!(
                (
                    &from_watched.namespace,
                    &from_watched.name,
                    &from_watched.uid,
                    from_watched.state,
                    from_watched.unobserved,
                    &from_watched.host,
                    from_watched.failure.as_ref().map(|f| (f.class, f.since)),
                    from_watched.created,
                    from_watched.first_condition_at,
                ),
                (
                    &from_full.namespace,
                    &from_full.name,
                    &from_full.uid,
                    from_full.state,
                    from_full.unobserved,
                    &from_full.host,
                    from_full.failure.as_ref().map(|f| (f.class, f.since)),
                    from_full.created,
                    from_full.first_condition_at,
                ),
                "{object}"
            );
        }
    }
}
