//! What the janitor does to one GitRepository, through the API: suspend (archive), delete, restore.
//! Every change is conditional on the object being the one that was judged (uid and
//! resourceVersion), so a change made meanwhile, by a user or another replica, wins.

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder};
use serde_json::json;
use time::OffsetDateTime;

use crate::policy::rfc3339_seconds;

/// Label on archived GitRepositories (selectable: `kubectl get gitrepositories -l fluxgate.io/archived`).
pub const ARCHIVED_LABEL: &str = "fluxgate.io/archived";
pub const ARCHIVED_AT_ANNOTATION: &str = "fluxgate.io/archived-at";
pub const ARCHIVED_REASON_ANNOTATION: &str = "fluxgate.io/archived-reason";
pub const ARCHIVED_RULE_ANNOTATION: &str = "fluxgate.io/archived-rule";
/// When `fluxgate restore` last ran: the rules count from here, not from the old failure.
pub const RESTORED_AT_ANNOTATION: &str = "fluxgate.io/restored-at";
/// Set to `false` on a GitRepository (or its namespace list in the config) to keep the janitor away.
pub const OPT_OUT_ANNOTATION: &str = "fluxgate.io/janitor";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    /// `spec.suspend: true` plus archive marks: reversible with `fluxgate restore`.
    Suspend,
    /// Delete the GitRepository (opt-in).
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Delete => "delete",
        }
    }
}

/// One GitRepository the janitor decided to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    /// Rule name for metrics and marks: `failing`, `stale_test` or `manual`.
    pub rule: &'static str,
    pub action: Action,
    /// Human-readable why, recorded on the object and in the Event.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    DryRun,
    /// The object changed or vanished since it was judged; nothing was done.
    Superseded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::DryRun => "dry_run",
            Self::Superseded => "skip",
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
) -> Result<Outcome, kube::Error> {
    if dry_run {
        tracing::info!(
            namespace = %decision.namespace, name = %decision.name, rule = decision.rule,
            action = decision.action.as_str(), reason = %decision.reason,
            "dry run: would act"
        );
        return Ok(Outcome::DryRun);
    }
    let result = match decision.action {
        Action::Suspend => {
            let patch = json!({
                "metadata": {
                    // Conditional on the version that was judged: a concurrent change wins.
                    "resourceVersion": decision.resource_version,
                    "labels": { ARCHIVED_LABEL: "true" },
                    "annotations": {
                        ARCHIVED_AT_ANNOTATION: rfc3339_seconds(now),
                        ARCHIVED_REASON_ANNOTATION: decision.reason,
                        ARCHIVED_RULE_ANNOTATION: decision.rule,
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
        Action::Delete => {
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
            return Ok(Outcome::Superseded);
        }
        Err(err) => return Err(err),
    }
    tracing::info!(
        namespace = %decision.namespace, name = %decision.name, rule = decision.rule,
        action = decision.action.as_str(), reason = %decision.reason,
        "janitor acted"
    );
    if let Some(recorder) = recorder {
        let reference = object_reference(decision);
        let event = Event {
            type_: EventType::Warning,
            reason: match decision.action {
                Action::Suspend => "Archived".to_owned(),
                Action::Delete => "Deleted".to_owned(),
            },
            note: Some(truncate(&format!(
                "fluxgate {}: {} (rule {}){}",
                match decision.action {
                    Action::Suspend => "suspended this GitRepository",
                    Action::Delete => "deleted this GitRepository",
                },
                decision.reason,
                decision.rule,
                match decision.action {
                    Action::Suspend => "; undo with `fluxgate restore NAMESPACE/NAME`",
                    Action::Delete => "",
                },
            ))),
            action: match decision.action {
                Action::Suspend => "Suspend".to_owned(),
                Action::Delete => "Delete".to_owned(),
            },
            secondary: None,
        };
        if let Err(err) = recorder.publish(&event, &reference).await {
            // The action itself succeeded; a lost Event must not undo or repeat it.
            tracing::warn!(error = %err, name = %decision.name, "recording the Event failed");
        }
    }
    Ok(Outcome::Done)
}

fn object_reference(decision: &Decision) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("source.toolkit.fluxcd.io/v1".to_owned()),
        kind: Some("GitRepository".to_owned()),
        namespace: Some(decision.namespace.clone()),
        name: Some(decision.name.clone()),
        uid: Some(decision.uid.clone()),
        resource_version: Some(decision.resource_version.clone()),
        ..Default::default()
    }
}

/// Event notes are limited to 1 KiB by the API.
fn truncate(text: &str) -> String {
    const LIMIT: usize = 1000;
    if text.len() <= LIMIT {
        return text.to_owned();
    }
    let mut cut = LIMIT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

/// Undoes an archive: unsuspends, clears the marks, and asks for a reconcile now.
pub async fn restore(
    api: &Api<DynamicObject>,
    recorder: Option<&Recorder>,
    namespace: &str,
    name: &str,
    now: OffsetDateTime,
) -> Result<(), kube::Error> {
    let patch = json!({
        "metadata": {
            "labels": { ARCHIVED_LABEL: null },
            "annotations": {
                ARCHIVED_AT_ANNOTATION: null,
                ARCHIVED_REASON_ANNOTATION: null,
                ARCHIVED_RULE_ANNOTATION: null,
                RESTORED_AT_ANNOTATION: rfc3339_seconds(now),
                crate::policy::gitrepository::REQUESTED_AT_ANNOTATION: rfc3339_seconds(now),
            },
        },
        "spec": { "suspend": false },
    });
    let restored = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(%namespace, %name, "restored");
    if let Some(recorder) = recorder {
        let reference = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("source.toolkit.fluxcd.io/v1".to_owned()),
            kind: Some("GitRepository".to_owned()),
            namespace: Some(namespace.to_owned()),
            name: Some(name.to_owned()),
            uid: restored.metadata.uid.clone(),
            ..Default::default()
        };
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
