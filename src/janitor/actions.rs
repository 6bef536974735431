//! What the janitor does to one GitRepository, through the API: suspend (archive), delete, restore.
//! Every change is conditional on the object being the one that was judged (uid and
//! resourceVersion), so a change made meanwhile, by a user or another replica, wins.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder};
use serde_json::json;
use time::OffsetDateTime;

use crate::flux::{self, Removal, archive, quarantine};
use crate::policy::rfc3339_seconds;

/// One GitRepository the janitor decided to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    /// Rule name for metrics and marks: `failing`, `stale_test` or `manual`.
    pub rule: &'static str,
    pub removal: Removal,
    /// Human-readable why, recorded on the object and in the Event.
    pub reason: String,
}

/// What became of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionOutcome {
    Done,
    DryRun,
    /// The object changed or vanished since it was judged; nothing was done.
    Skipped,
}

impl ActionOutcome {
    /// The `outcome` label of `fluxgate_janitor_actions_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::DryRun => "dry_run",
            Self::Skipped => "skip",
        }
    }
}

fn is_precondition_failure(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.is_conflict() || status.is_not_found())
}

/// Carries out `decision` (or only reports it with `dry_run`), then records an Event on the
/// object. Returns what happened.
pub async fn apply(
    api: &Api<DynamicObject>,
    recorder: Option<&Recorder>,
    decision: &Decision,
    dry_run: bool,
    now: OffsetDateTime,
) -> Result<ActionOutcome, kube::Error> {
    if dry_run {
        tracing::info!(
            namespace = %decision.namespace, name = %decision.name, rule = decision.rule,
            action = decision.removal.as_str(), reason = %decision.reason,
            "dry run: would act"
        );
        return Ok(ActionOutcome::DryRun);
    }
    let result = match decision.removal {
        Removal::Suspend => {
            let patch = json!({
                "metadata": {
                    // Conditional on the version that was judged: a concurrent change wins.
                    "resourceVersion": decision.resource_version,
                    "labels": { archive::LABEL: "true" },
                    "annotations": {
                        archive::AT_ANNOTATION: rfc3339_seconds(now),
                        archive::REASON_ANNOTATION: decision.reason,
                        archive::RULE_ANNOTATION: decision.rule,
                    },
                },
                "spec": { "suspend": true },
            });
            api.patch(
                &decision.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map(|_| ())
        }
        Removal::Delete => {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(decision.uid.clone()),
                    resource_version: Some(decision.resource_version.clone()),
                }),
                ..DeleteParams::default()
            };
            api.delete(&decision.name, &params).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => {}
        Err(err) if is_precondition_failure(&err) => {
            tracing::info!(
                namespace = %decision.namespace, name = %decision.name,
                "changed since it was judged; left alone"
            );
            return Ok(ActionOutcome::Skipped);
        }
        Err(err) => return Err(err),
    }
    tracing::info!(
        namespace = %decision.namespace, name = %decision.name, rule = decision.rule,
        action = decision.removal.as_str(), reason = %decision.reason,
        "janitor acted"
    );
    if let Some(recorder) = recorder {
        let reference = object_reference(decision);
        let event = Event {
            type_: EventType::Warning,
            reason: match decision.removal {
                Removal::Suspend => "Archived".to_owned(),
                Removal::Delete => "Deleted".to_owned(),
            },
            note: Some(
                crate::text::fit(
                    &format!(
                        "fluxgate {}: {} (rule {}){}",
                        match decision.removal {
                            Removal::Suspend => "suspended this GitRepository",
                            Removal::Delete => "deleted this GitRepository",
                        },
                        decision.reason,
                        decision.rule,
                        match decision.removal {
                            Removal::Suspend => "; undo with `fluxgate restore NAMESPACE/NAME`",
                            Removal::Delete => "",
                        },
                    ),
                    EVENT_NOTE_LIMIT,
                )
                .into_owned(),
            ),
            action: match decision.removal {
                Removal::Suspend => "Suspend".to_owned(),
                Removal::Delete => "Delete".to_owned(),
            },
            secondary: None,
        };
        if let Err(err) = recorder.publish(&event, &reference).await {
            // The action itself succeeded; a lost Event must not undo or repeat it.
            tracing::warn!(error = %err, name = %decision.name, "recording the Event failed");
        }
    }
    Ok(ActionOutcome::Done)
}

fn object_reference(decision: &Decision) -> k8s_openapi::api::core::v1::ObjectReference {
    flux::object_reference(
        &decision.namespace,
        &decision.name,
        Some(decision.uid.clone()),
        Some(decision.resource_version.clone()),
    )
}

/// Event notes are limited to 1 KiB by the API.
const EVENT_NOTE_LIMIT: usize = 1000;

/// Undoes an archive or a quarantine: unsuspends, clears the marks, and asks for a reconcile now.
/// A quarantined object so restored is one the breaker's episode no longer holds: it is not
/// quarantined again until it fails again while its host's breaker is open.
pub async fn restore(
    api: &Api<DynamicObject>,
    recorder: Option<&Recorder>,
    namespace: &str,
    name: &str,
    now: OffsetDateTime,
) -> Result<(), kube::Error> {
    let patch = json!({
        "metadata": {
            "labels": { archive::LABEL: null, quarantine::LABEL: null },
            "annotations": {
                quarantine::HOST_ANNOTATION: null,
                quarantine::AT_ANNOTATION: null,
                quarantine::REASON_ANNOTATION: null,
                archive::AT_ANNOTATION: null,
                archive::REASON_ANNOTATION: null,
                archive::RULE_ANNOTATION: null,
                archive::RESTORED_AT_ANNOTATION: rfc3339_seconds(now),
                flux::REQUESTED_AT_ANNOTATION: rfc3339_seconds(now),
            },
        },
        "spec": { "suspend": false },
    });
    let restored = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(%namespace, %name, "restored");
    if let Some(recorder) = recorder {
        let reference =
            flux::object_reference(namespace, name, restored.metadata.uid.clone(), None);
        let event = Event {
            type_: EventType::Normal,
            reason: "Restored".to_owned(),
            note: Some(
                "fluxgate restored this GitRepository: unsuspended and archive marks removed"
                    .to_owned(),
            ),
            action: "Restore".to_owned(),
            secondary: None,
        };
        if let Err(err) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %err, %name, "recording the Event failed");
        }
    }
    Ok(())
}
