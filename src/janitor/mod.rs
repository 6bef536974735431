//! The janitor stops endless retries: it suspends (or, opted in, deletes) GitRepositories that
//! have failed for a day and test repositories nobody used for a week, and restores them on
//! request. In `serve` it runs on an interval on the replica that holds a Lease; `fluxgate
//! cleanup --once` runs it from a CronJob.

pub mod actions;
pub mod args;
pub mod rules;

use kube::api::{DynamicObject, ListParams};
use time::OffsetDateTime;

pub use crate::flux::Removal;
pub use actions::{ActionOutcome, Decision};
pub use args::{JanitorArgs, RuleArgs};
pub use rules::{Rule, Rules, Subject, Verdict};

use crate::election::{Duty, Leadership};
use crate::flux;
use crate::marks::Writer;
use crate::metrics::{JanitorActionLabels, JanitorMetrics, RuleLabels};

#[derive(Debug, Clone)]
pub struct JanitorConfig {
    pub rules: Rules,
    pub dry_run: bool,
    /// Namespaces to consider; empty: all.
    pub namespaces: Vec<String>,
    /// Most actions in one run, so a bad rule cannot archive a whole cluster at once.
    pub max_actions_per_run: usize,
}

/// What one run saw and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub examined: usize,
    pub matched: usize,
    pub done: usize,
    pub dry_run: usize,
    /// Changed or vanished since they were judged: left alone.
    pub skipped: usize,
    pub errors: usize,
    pub deferred: usize,
}

/// The janitor's writer: its changes and Events, as `instance` (the replica) of
/// `fluxgate-janitor`.
pub fn writer(client: &kube::Client, instance: Option<String>) -> Writer {
    Writer::new(client, "fluxgate-janitor", instance)
}

/// Lists every GitRepository in scope, a page at a time.
async fn list_all(
    client: &kube::Client,
    namespaces: &[String],
) -> Result<Vec<DynamicObject>, kube::Error> {
    let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.iter().map(|n| Some(n.as_str())).collect()
    };
    let mut objects = Vec::new();
    for scope in scopes {
        let api = flux::gitrepositories(client, scope);
        let mut params = ListParams::default().limit(500);
        loop {
            let page = api.list(&params).await?;
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            objects.extend(page.items);
            match next {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(objects)
}

/// Evaluates the rules on the cluster as it is now and acts, while `still_leader` says so.
pub async fn run_once(
    client: &kube::Client,
    writer: &Writer,
    config: &JanitorConfig,
    metrics: &JanitorMetrics,
    still_leader: &(dyn Fn() -> bool + Send + Sync),
) -> Result<RunSummary, kube::Error> {
    let now = OffsetDateTime::now_utc();
    let objects = list_all(client, &config.namespaces).await?;
    let mut summary = RunSummary {
        examined: objects.len(),
        ..RunSummary::default()
    };
    let mut decisions = Vec::new();
    let mut candidates: std::collections::HashMap<&'static str, i64> =
        [("failing", 0), ("stale_test", 0)].into_iter().collect();
    for object in &objects {
        let Some(subject) = subject_of(object) else {
            continue;
        };
        if let Some(verdict) = config.rules.evaluate(&subject, now) {
            *candidates.entry(verdict.rule).or_default() += 1;
            decisions.push(Decision {
                namespace: subject.namespace,
                name: subject.name,
                uid: subject.uid,
                resource_version: subject.resource_version,
                rule: verdict.rule,
                removal: verdict.removal,
                reason: verdict.reason,
            });
        }
    }
    for (rule, count) in candidates {
        metrics
            .candidates
            .get_or_create(&RuleLabels { rule })
            .set(count);
    }
    summary.matched = decisions.len();

    for (index, decision) in decisions.iter().enumerate() {
        if index >= config.max_actions_per_run {
            summary.deferred = decisions.len() - index;
            tracing::warn!(
                deferred = summary.deferred,
                "action limit reached; the rest waits for the next run"
            );
            break;
        }
        // Leadership is re-checked before every action: a replica that lost its Lease mid-run
        // stops at once, and the new leader judges the objects afresh.
        if !config.dry_run && !still_leader() {
            tracing::warn!("lost the janitor Lease mid-run; stopping");
            break;
        }
        let outcome = actions::apply(writer, decision, config.dry_run, now).await;
        let label = match &outcome {
            Ok(outcome) => outcome.as_str(),
            Err(_) => "error",
        };
        metrics
            .actions
            .get_or_create(&JanitorActionLabels {
                rule: decision.rule,
                action: decision.removal.as_str(),
                outcome: label,
            })
            .inc();
        match outcome {
            Ok(ActionOutcome::Done) => summary.done += 1,
            Ok(ActionOutcome::DryRun) => summary.dry_run += 1,
            Ok(ActionOutcome::Skipped) => summary.skipped += 1,
            Err(err) => {
                summary.errors += 1;
                tracing::warn!(error = %err, namespace = %decision.namespace, name = %decision.name, "janitor action failed");
            }
        }
    }
    tracing::info!(?summary, dry_run = config.dry_run, "janitor run finished");
    Ok(summary)
}

/// The rules' view of one GitRepository, from the shared health model.
pub fn subject_of(object: &DynamicObject) -> Option<Subject> {
    let value = serde_json::to_value(object).ok()?;
    subject_from(&crate::health::classify(&value).ok()?)
}

/// The rules' view of a classified GitRepository.
pub fn subject_from(health: &crate::health::Health) -> Option<Subject> {
    if health.namespace.is_empty() || health.name.is_empty() {
        return None;
    }
    Some(Subject {
        namespace: health.namespace.clone(),
        name: health.name.clone(),
        uid: health.uid.clone(),
        resource_version: health.resource_version.clone(),
        failing_since: health.failure.as_ref().and_then(|f| f.since),
        failure: health.failure.as_ref().map_or_else(String::new, |f| {
            format!("{}, {}", f.class.as_str(), health.host)
        }),
        suspended: matches!(
            health.state,
            crate::health::State::Suspended | crate::health::State::Quarantined
        ),
        last_activity: health.last_artifact.or(health.created),
        gitops_managed: health.gitops_managed,
        opted_out: health.marks.opt_out.janitor,
        restored_at: health.marks.let_run_at(),
    })
}

/// The janitor's runs on the Lease holder, every `--janitor-interval`.
pub struct JanitorDuty {
    pub client: kube::Client,
    pub config: JanitorConfig,
    pub metrics: JanitorMetrics,
    /// Names this replica in the Events it records.
    pub instance: String,
}

impl Duty for JanitorDuty {
    fn leadership_changed(&mut self, leading: bool) {
        self.metrics.leader.set(i64::from(leading));
    }

    async fn pass(&mut self, leadership: &Leadership) {
        let writer = writer(&self.client, Some(self.instance.clone()));
        let still_leader = || leadership.is_leader();
        if let Err(err) = run_once(
            &self.client,
            &writer,
            &self.config,
            &self.metrics,
            &still_leader,
        )
        .await
        {
            tracing::warn!(error = %err, "janitor run failed; retrying next interval");
        }
    }
}
