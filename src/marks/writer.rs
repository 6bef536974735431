//! The one writer of fluxgate's changes to GitRepositories: every part (janitor, breaker,
//! `fluxgate restore`) applies its [`Change`] here, so each write is conditional the same way,
//! each conflict means the same thing, and each change leaves the same kind of Event.

use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use time::OffsetDateTime;

use super::Change;
use crate::flux;

/// Which object a change is for, and the version of it that was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub name: String,
    /// Tells a re-created object from the judged one (Events and deletes).
    pub uid: Option<String>,
    /// The resourceVersion the decision was made on; `None` leaves the write unconditional.
    pub resource_version: Option<String>,
}

/// What became of one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Done,
    /// The object changed or vanished since it was judged: nothing was done, and the next look
    /// judges it afresh.
    Skipped,
}

impl Written {
    /// The `outcome` label of the metrics that count changes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Skipped => "skip",
        }
    }
}

/// Writes changes with one client and records their Events as one reporter.
pub struct Writer {
    client: kube::Client,
    recorder: Recorder,
}

/// Whether an API error says the object is no longer the one that was judged.
pub fn is_precondition_failure(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.is_conflict() || status.is_not_found())
}

impl Writer {
    /// `controller` names the part in its Events (`fluxgate-janitor`, `fluxgate-breaker`,
    /// `fluxgate-restore`), `instance` the replica. A writer per run or pass: each change is a
    /// distinct Event, created and never patched into a series, which keeps the RBAC to `create`.
    pub fn new(client: &kube::Client, controller: &str, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: controller.to_owned(),
            instance,
        };
        Self {
            client: client.clone(),
            recorder: Recorder::new(client.clone(), reporter),
        }
    }

    /// Carries out `change` on `target`, conditional on the judged version where the change asks
    /// for it, then records its Event. A conflict or a vanished object is [`Written::Skipped`].
    pub async fn write(
        &self,
        target: &Target,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Written, kube::Error> {
        let api = flux::gitrepositories(&self.client, Some(&target.namespace));
        let version = target
            .resource_version
            .as_ref()
            .filter(|_| change.judged_on_a_version());
        let result = match change.patch(now) {
            Some(mut patch) => {
                if let (Some(version), Some(metadata)) =
                    (version, patch["metadata"].as_object_mut())
                {
                    metadata.insert("resourceVersion".to_owned(), version.clone().into());
                }
                api.patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            None => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: target.uid.clone(),
                        resource_version: version.cloned(),
                    }),
                    ..DeleteParams::default()
                };
                api.delete(&target.name, &params).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {}
            Err(err) if is_precondition_failure(&err) => {
                tracing::info!(
                    namespace = %target.namespace, name = %target.name, change = change.name(),
                    "changed since it was judged; left alone"
                );
                return Ok(Written::Skipped);
            }
            Err(err) => return Err(err),
        }
        tracing::info!(namespace = %target.namespace, name = %target.name, change = change.name(), "changed a GitRepository");
        self.record(target, change).await;
        Ok(Written::Done)
    }

    async fn record(&self, target: &Target, change: &Change) {
        let text = change.event();
        let event = Event {
            type_: if text.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: text.reason.to_owned(),
            note: Some(text.note),
            action: text.action.to_owned(),
            secondary: None,
        };
        let reference =
            flux::object_reference(&target.namespace, &target.name, target.uid.clone(), None);
        if let Err(err) = self.recorder.publish(&event, &reference).await {
            // The change itself is made; a lost Event must not undo or repeat it.
            tracing::warn!(error = %err, namespace = %target.namespace, name = %target.name, "recording the Event failed");
        }
    }
}
