//! What the janitor does to one GitRepository: suspend (archive) or delete. Every change is
//! conditional on the object being the one that was judged (uid and resourceVersion), so a change
//! made meanwhile, by a user or another replica, wins. `fluxgate restore` lives with the marks.

use time::OffsetDateTime;

use crate::flux::Removal;
use crate::marks::{Change, Target, Writer, Written};

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

/// Carries out `decision` (or only reports it with `dry_run`) through the marks' writer: an
/// archive or a delete, conditional on the uid and resourceVersion that were judged, with an
/// Event.
pub async fn apply(
    writer: &Writer,
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
    let (rule, reason) = (decision.rule.to_owned(), decision.reason.clone());
    let change = match decision.removal {
        Removal::Suspend => Change::Archive { rule, reason },
        Removal::Delete => Change::Delete { rule, reason },
    };
    let target = Target {
        namespace: decision.namespace.clone(),
        name: decision.name.clone(),
        uid: Some(decision.uid.clone()),
        resource_version: Some(decision.resource_version.clone()),
    };
    Ok(match writer.write(&target, &change, now).await? {
        Written::Done => ActionOutcome::Done,
        Written::Skipped => ActionOutcome::Skipped,
    })
}
