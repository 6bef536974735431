//! Watches GitRepositories and publishes their health as Prometheus metrics.
//!
//! One watch (per configured namespace, or cluster-wide) folds events into compact records via
//! [`crate::health::classify`] ([`Folder`]); the store keeps their counts, which a scrape encodes
//! in chunks ([`StoreFamilies`], [`FailingSinceFamily`]). When a watch fails every stream is dropped and started again with a fresh list
//! (with backoff), so the gauges equal the cluster again once the API server is back, including
//! deletions missed meanwhile, and `fluxgate_watcher_synced` has a definite moment to return to 1.

pub mod exposition;
pub mod store;
mod watched;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use time::OffsetDateTime;

pub use exposition::{FailingSinceFamily, StoreFamilies};
pub use store::Store;
pub use watched::WatchedGitRepository;

use crate::health;
use crate::metrics::Metrics;

/// Which GitRepositories to watch, and when a broken watch counts as stale.
#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// Namespaces to watch; empty means cluster-wide.
    pub namespaces: Vec<String>,
    /// How long the watch may be broken (or re-listing after a failure) before `/readyz` says
    /// so. Short API server restarts stay within it; an outage does not.
    pub stale_after: Duration,
}

/// The exporter's flags in `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExporterArgs {
    /// Run the webhook alone (needs no cluster access at all).
    #[arg(long, env = "FLUXGATE_NO_EXPORTER")]
    pub no_exporter: bool,

    /// Namespaces whose GitRepositories are watched (comma-separated); empty: all.
    #[arg(long, env = "FLUXGATE_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,

    /// How long the GitRepository watch may be broken before `/readyz` reports the exporter
    /// stale (its gauges may no longer be current).
    #[arg(long, env = "FLUXGATE_WATCH_STALE_AFTER", default_value = "60s", value_parser = crate::duration::parse_flag)]
    pub watch_stale_after: Duration,
}

impl ExporterArgs {
    pub fn enabled(&self) -> bool {
        !self.no_exporter
    }

    pub fn config(&self) -> ExporterConfig {
        ExporterConfig {
            namespaces: self.watch_namespaces.clone(),
            stale_after: self.watch_stale_after,
        }
    }
}

/// The default of [`ExporterConfig::stale_after`].
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);

impl Default for ExporterConfig {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            stale_after: DEFAULT_STALE_AFTER,
        }
    }
}

/// Objects per page of the initial list: bounds the memory a list of 100k objects needs at once.
const LIST_PAGE_SIZE: u32 = 500;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Whether the exporter's view is complete and current (for `/readyz`).
#[derive(Debug, Default)]
pub struct WatchStatus {
    store: Arc<Store>,
    stale_after_seconds: i64,
}

impl WatchStatus {
    /// Ready once the first full list is in, and not in a failure streak (watch errors and the
    /// re-list that follows) longer than [`ExporterConfig::stale_after`].
    pub fn is_ready(&self) -> bool {
        self.store.is_ready(now(), self.stale_after_seconds)
    }
}

pub struct Exporter {
    config: ExporterConfig,
    store: Arc<Store>,
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Folds the events of one or more watch streams (each a `scope`: a namespace, or the whole
/// cluster) into the store. Kept apart from the network so tests can drive it with events.
#[derive(Debug)]
pub struct Folder {
    store: Arc<Store>,
    scopes: usize,
    listed: HashSet<u16>,
}

impl Folder {
    /// A folder for `scopes` streams that are (re)started together.
    pub fn new(store: Arc<Store>, scopes: usize) -> Self {
        Self {
            store,
            scopes,
            listed: HashSet::new(),
        }
    }

    /// Applies one event of stream `scope`, received at `now` (unix seconds). Returns true when
    /// this event completed the lists of every scope.
    pub fn fold(&mut self, scope: u16, event: watcher::Event<DynamicObject>, now: i64) -> bool {
        self.fold_object(scope, event, now)
    }

    /// [`Folder::fold`] for any object the exporter can read: the watch itself decodes only the
    /// fields the metrics need ([`WatchedGitRepository`]).
    pub fn fold_object<K: Classify>(
        &mut self,
        scope: u16,
        event: watcher::Event<K>,
        now: i64,
    ) -> bool {
        match event {
            watcher::Event::Init => {
                self.listed.remove(&scope);
                self.store.relist_start(scope);
            }
            watcher::Event::InitApply(object) => {
                if let Some(h) = classify(&object) {
                    self.store.relist_apply(scope, &h);
                }
            }
            watcher::Event::InitDone => {
                self.listed.insert(scope);
                let all = self.listed.len() >= self.scopes;
                self.store.relist_done(scope, all, now);
                return all;
            }
            watcher::Event::Apply(object) => {
                if let Some(h) = classify(&object) {
                    self.store.apply(scope, &h, now);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some(uid) = object.uid() {
                    self.store.delete(uid, now);
                }
            }
        }
        false
    }

    /// A stream failed; every stream starts over with a list.
    pub fn failed(&mut self, now: i64) {
        self.listed.clear();
        self.store.watch_error(now);
    }
}

impl Exporter {
    /// Registers the exporter's metric families; call before the registry is shared.
    pub fn new(metrics: &mut Metrics, config: ExporterConfig) -> Self {
        let store = Arc::new(Store::default());
        let registry = metrics.registry_mut();
        registry.register(
            "gitrepository_first_reconcile_seconds",
            "Time from a GitRepository's creation to its first status condition, for repositories \
             the exporter saw waiting",
            store.first_reconcile(),
        );
        metrics.register_chunked(Arc::new(StoreFamilies(store.clone())));
        metrics.register_chunked(Arc::new(FailingSinceFamily(store.clone())));
        Self { config, store }
    }

    pub fn status(&self) -> Arc<WatchStatus> {
        Arc::new(WatchStatus {
            store: self.store.clone(),
            stale_after_seconds: i64::try_from(self.config.stale_after.as_secs())
                .unwrap_or(i64::MAX)
                .max(1),
        })
    }

    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// Runs until the returned future is dropped.
    pub async fn run(self, client: kube::Client) -> anyhow::Result<()> {
        let resource = crate::flux::api_resource();
        let mut namespaces = self.config.namespaces.clone();
        // A namespace listed twice would be two scopes fighting over the same records.
        namespaces.sort();
        namespaces.dedup();
        // Decoding only what the metrics read keeps a list page (500 objects) small: no
        // managedFields, annotations or artifact, and no flattened JSON tree per object.
        let apis: Vec<Api<WatchedGitRepository>> = if namespaces.is_empty() {
            vec![Api::all_with(client, &resource)]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced_with(client.clone(), ns, &resource))
                .collect()
        };
        let scopes = u16::try_from(apis.len())
            .map_err(|_| anyhow::anyhow!("at most {} namespaces can be watched", u16::MAX))?;
        let mut folder = Folder::new(self.store.clone(), usize::from(scopes));
        let mut backoff = BACKOFF_START;
        loop {
            // One stream per scope, merged; any error drops them all and starts over with a list.
            let streams = (0..scopes).zip(&apis).map(|(scope, api)| {
                let config = watcher::Config::default().page_size(LIST_PAGE_SIZE);
                watcher(api.clone(), config)
                    .map_ok(move |event| (scope, event))
                    .boxed()
            });
            let mut events = futures::stream::select_all(streams);
            let error = loop {
                match events.try_next().await {
                    Ok(Some((scope, event))) => {
                        if folder.fold_object(scope, event, now()) {
                            backoff = BACKOFF_START;
                            tracing::info!(
                                objects = self.store.len(),
                                "GitRepository watch synced"
                            );
                        }
                    }
                    Ok(None) => break anyhow::anyhow!("watch stream ended"),
                    Err(err) => break anyhow::Error::from(err),
                }
            };
            drop(events);
            folder.failed(now());
            tracing::warn!(error = %error, retry_in = ?backoff, "GitRepository watch failed; re-listing");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// An object the exporter can classify: its JSON for [`health::classify`], and its uid.
pub trait Classify {
    fn to_json(&self) -> Option<serde_json::Value>;
    fn uid(&self) -> Option<&str>;
}

impl Classify for DynamicObject {
    fn to_json(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self).ok()
    }

    fn uid(&self) -> Option<&str> {
        self.metadata.uid.as_deref()
    }
}

/// The health of a watched object; `None` (logged) for one that cannot be read.
fn classify<K: Classify>(object: &K) -> Option<health::Health> {
    let value = object.to_json()?;
    match health::classify(&value) {
        // Records are keyed by uid, which the API server always sets.
        Ok(h) if !h.uid.is_empty() => Some(h),
        Ok(_) => {
            tracing::debug!("skipping a GitRepository without a uid");
            None
        }
        Err(err) => {
            tracing::debug!(error = %err, "skipping an unreadable GitRepository");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: i64 = 1_795_867_200; // 2026-11-28T12:00:00Z

    fn object(ns: &str, name: &str, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": { "name": name, "namespace": ns, "uid": format!("{ns}/{name}"),
                          "generation": 1, "resourceVersion": "5",
                          "creationTimestamp": "2026-11-28T11:00:00Z",
                          "managedFields": [{ "manager": "kubectl", "operation": "Update" }] },
            "spec": { "url": format!("https://github.com/example/{name}"), "interval": "1m" },
            "status": status,
        }))
        .unwrap()
    }

    fn failing(message: &str, since: &str) -> Value {
        json!({ "observedGeneration": -1, "conditions": [
            { "type": "Reconciling", "status": "True", "reason": "ProgressingWithRetry",
              "message": "processing object: new generation 0 -> 1",
              "lastTransitionTime": "2026-11-28T11:00:10Z", "observedGeneration": 1 },
            { "type": "Ready", "status": "False", "reason": "GitOperationFailed", "message": message,
              "lastTransitionTime": since, "observedGeneration": 1 }] })
    }

    fn ready() -> Value {
        json!({ "observedGeneration": 1, "conditions": [
            { "type": "Ready", "status": "True", "reason": "Succeeded", "message": "stored artifact",
              "lastTransitionTime": "2026-11-28T11:00:30Z", "observedGeneration": 1 }],
            "artifact": { "lastUpdateTime": "2026-11-28T11:00:30Z" } })
    }

    fn waiting() -> Value {
        json!({ "observedGeneration": -1 })
    }

    fn exporter() -> (Metrics, Exporter) {
        let mut metrics = Metrics::new();
        let exporter = Exporter::new(&mut metrics, ExporterConfig::default());
        (metrics, exporter)
    }

    fn encode(metrics: &Metrics) -> String {
        metrics.encode()
    }

    /// The exposition from the exporter's first family on (the webhook's come before).
    fn exporter_text(metrics: &Metrics) -> String {
        let text = encode(metrics);
        let start = text
            .find("# HELP fluxgate_gitrepository_first_reconcile_seconds")
            .expect("the exporter's families are registered");
        text[start..].to_owned()
    }

    /// Sample lines of the exporter's families (not the histogram, nor HELP/TYPE).
    fn gauges(metrics: &Metrics) -> Vec<String> {
        encode(metrics)
            .lines()
            .filter(|l| {
                (l.starts_with("fluxgate_gitrepositor") || l.starts_with("fluxgate_watcher_"))
                    && !l.contains("first_reconcile")
            })
            .map(str::to_owned)
            .collect()
    }

    fn list(folder: &mut Folder, scope: u16, objects: Vec<DynamicObject>, now: i64) -> bool {
        folder.fold(scope, watcher::Event::Init, now);
        for o in objects {
            folder.fold(scope, watcher::Event::InitApply(o), now);
        }
        folder.fold(scope, watcher::Event::InitDone, now)
    }

    const TIMEOUT: &str = "failed to checkout and determine revision: unable to clone \
                           'https://github.com/example/a': dial tcp 140.82.112.3:443: i/o timeout";

    #[test]
    fn the_whole_exposition_after_a_list_and_events() {
        let (metrics, exporter) = exporter();
        let mut folder = Folder::new(exporter.store(), 1);
        assert!(list(
            &mut folder,
            0,
            vec![
                object("proj-a", "a", failing(TIMEOUT, "2026-11-28T11:01:00Z")),
                object("proj-a", "b", ready()),
                object("proj-b", "c", waiting()),
            ],
            NOW - 60,
        ));
        // c gets picked up 30 minutes after its creation; b is deleted.
        folder.fold(
            0,
            watcher::Event::Apply(object(
                "proj-b",
                "c",
                failing(
                    "unable to clone: authentication required",
                    "2026-11-28T11:30:00Z",
                ),
            )),
            NOW - 10,
        );
        folder.fold(
            0,
            watcher::Event::Delete(object("proj-a", "b", ready())),
            NOW,
        );
        assert_eq!(
            exporter_text(&metrics),
            r#"# HELP fluxgate_gitrepository_first_reconcile_seconds Time from a GitRepository's creation to its first status condition, for repositories the exporter saw waiting.
# TYPE fluxgate_gitrepository_first_reconcile_seconds histogram
fluxgate_gitrepository_first_reconcile_seconds_sum 10.0
fluxgate_gitrepository_first_reconcile_seconds_count 1
fluxgate_gitrepository_first_reconcile_seconds_bucket{le="1.0"} 0
fluxgate_gitrepository_first_reconcile_seconds_bucket{le="5.0"} 0
fluxgate_gitrepository_first_reconcile_seconds_bucket{le="15.0"} 1
fluxgate_gitrepository_first_reconcile_seconds_bucket{le="30.0"} 1
fluxgate_gitrepository_first_reconcile_seconds_bucket{le="60.0"} 1
fluxgate_gitrepository_first_reconcile_seconds_bucket{le="120.0"} 1
fluxgate_gitrepository_first_reconcile_seconds_bucket{le="300.0"} 1
fluxgate_gitrepository_first_reconcile_seconds_bucket{le="600.0"} 1
fluxgate_gitrepository_first_reconcile_seconds_bucket{le="1800.0"} 1
fluxgate_gitrepository_first_reconcile_seconds_bucket{le="3600.0"} 1
fluxgate_gitrepository_first_reconcile_seconds_bucket{le="+Inf"} 1
# HELP fluxgate_gitrepositories GitRepositories by namespace and state (ready, failed, pending, suspended, quarantined, progressing).
# TYPE fluxgate_gitrepositories gauge
fluxgate_gitrepositories{namespace="proj-a",state="failed"} 1
fluxgate_gitrepositories{namespace="proj-b",state="failed"} 1
# HELP fluxgate_gitrepositories_failed Failed GitRepositories (Ready=False, not suspended) by namespace, Git host and failure class.
# TYPE fluxgate_gitrepositories_failed gauge
fluxgate_gitrepositories_failed{namespace="proj-a",host="github.com",reason="timeout"} 1
fluxgate_gitrepositories_failed{namespace="proj-b",host="github.com",reason="auth"} 1
# HELP fluxgate_gitrepositories_quarantined GitRepositories the host circuit breaker suspended until their host answers again, by namespace and Git host.
# TYPE fluxgate_gitrepositories_quarantined gauge
# HELP fluxgate_lane_gitrepositories GitRepositories in a host lane (Flux's sharding.fluxcd.io/key label, served by that lane's source-controller), by lane and state.
# TYPE fluxgate_lane_gitrepositories gauge
# HELP fluxgate_lane_oldest_pending_timestamp_seconds Creation time of the oldest GitRepository without any status condition in a host lane (waiting for that lane's source-controller), by lane.
# TYPE fluxgate_lane_oldest_pending_timestamp_seconds gauge
# HELP fluxgate_gitrepositories_unobserved GitRepositories whose observedGeneration is missing, -1 or behind their generation.
# TYPE fluxgate_gitrepositories_unobserved gauge
fluxgate_gitrepositories_unobserved{namespace="proj-a"} 1
fluxgate_gitrepositories_unobserved{namespace="proj-b"} 1
# HELP fluxgate_gitrepositories_oldest_pending_timestamp_seconds Creation time of the oldest GitRepository without any status condition, outside host lanes, by namespace.
# TYPE fluxgate_gitrepositories_oldest_pending_timestamp_seconds gauge
# HELP fluxgate_watcher_objects GitRepositories in the exporter's cache.
# TYPE fluxgate_watcher_objects gauge
fluxgate_watcher_objects 2
# HELP fluxgate_watcher_synced 1 when the initial list is in and the watch is healthy, 0 while it fails or re-lists.
# TYPE fluxgate_watcher_synced gauge
fluxgate_watcher_synced 1
# HELP fluxgate_watcher_last_event_timestamp_seconds When the watcher last received an event or completed a list.
# TYPE fluxgate_watcher_last_event_timestamp_seconds gauge
fluxgate_watcher_last_event_timestamp_seconds 1795867200
# HELP fluxgate_watcher_restarts Times the GitRepository watch failed and was re-established with a fresh list.
# TYPE fluxgate_watcher_restarts counter
fluxgate_watcher_restarts_total 0
# HELP fluxgate_gitrepository_failing_since_timestamp_seconds When each failed GitRepository started failing (the earlier of its Ready and FetchFailed conditions' lastTransitionTime).
# TYPE fluxgate_gitrepository_failing_since_timestamp_seconds gauge
fluxgate_gitrepository_failing_since_timestamp_seconds{namespace="proj-a",name="a",host="github.com",reason="timeout"} 1795863660
fluxgate_gitrepository_failing_since_timestamp_seconds{namespace="proj-b",name="c",host="github.com",reason="auth"} 1795865400
# EOF
"#
        );
    }

    #[test]
    fn a_relist_after_an_error_forgets_objects_deleted_meanwhile() {
        let (metrics, exporter) = exporter();
        let store = exporter.store();
        let status = exporter.status();
        let mut folder = Folder::new(store.clone(), 1);
        list(
            &mut folder,
            0,
            vec![
                object("proj-a", "a", failing(TIMEOUT, "2026-11-28T11:01:00Z")),
                object("proj-gone", "x", waiting()),
            ],
            NOW,
        );
        folder.failed(NOW + 1);
        let during = gauges(&metrics);
        assert!(
            during.contains(&"fluxgate_watcher_synced 0".to_owned()),
            "{during:?}"
        );
        assert!(
            during.contains(&"fluxgate_watcher_restarts_total 1".to_owned()),
            "{during:?}"
        );
        assert!(
            during.iter().any(|l| l.contains("proj-gone")),
            "the last known view stays until the re-list completes"
        );
        // Re-list: proj-gone/x was deleted while the watch was down, a was fixed.
        folder.fold(0, watcher::Event::Init, NOW + 2);
        folder.fold(
            0,
            watcher::Event::InitApply(object("proj-a", "a", ready())),
            NOW + 2,
        );
        assert!(
            gauges(&metrics).iter().any(|l| l.contains("proj-gone")),
            "a list in progress replaces nothing yet"
        );
        assert!(folder.fold(0, watcher::Event::InitDone, NOW + 3));
        assert_eq!(
            gauges(&metrics),
            [
                r#"fluxgate_gitrepositories{namespace="proj-a",state="ready"} 1"#,
                "fluxgate_watcher_objects 1",
                "fluxgate_watcher_synced 1",
                "fluxgate_watcher_last_event_timestamp_seconds 1795867203",
                "fluxgate_watcher_restarts_total 1",
            ]
        );
        assert!(status.is_ready(), "synced again");
        assert_eq!(store.interned(), 2, "proj-a and the empty host only");
    }

    #[test]
    fn namespaced_scopes_are_synced_only_when_every_list_is_in() {
        let (metrics, exporter) = exporter();
        let mut folder = Folder::new(exporter.store(), 2);
        assert!(!list(
            &mut folder,
            0,
            vec![object("proj-a", "a", ready())],
            NOW
        ));
        assert!(gauges(&metrics).contains(&"fluxgate_watcher_synced 0".to_owned()));
        assert!(list(
            &mut folder,
            1,
            vec![object("proj-b", "b", waiting())],
            NOW
        ));
        assert!(gauges(&metrics).contains(&"fluxgate_watcher_synced 1".to_owned()));
        assert!(gauges(&metrics).contains(
            &r#"fluxgate_gitrepositories_oldest_pending_timestamp_seconds{namespace="proj-b"} 1795863600"#.to_owned()
        ));
        // After a failure both scopes must list again before the view counts as synced.
        folder.failed(NOW + 5);
        assert!(!list(&mut folder, 1, vec![], NOW + 6));
        assert!(gauges(&metrics).contains(&"fluxgate_watcher_synced 0".to_owned()));
        assert!(list(
            &mut folder,
            0,
            vec![object("proj-a", "a", ready())],
            NOW + 7
        ));
        let lines = gauges(&metrics);
        assert!(
            lines.contains(&"fluxgate_watcher_objects 1".to_owned()),
            "{lines:?}"
        );
        assert!(!lines.iter().any(|l| l.contains("proj-b")), "{lines:?}");
    }

    #[test]
    fn objects_listed_with_conditions_are_not_first_reconciles() {
        let (metrics, exporter) = exporter();
        let mut folder = Folder::new(exporter.store(), 1);
        list(&mut folder, 0, vec![object("p", "old", ready())], NOW);
        // Seen for the first time already reconciled (e.g. created and reconciled between a
        // failure and the re-list): its wait was not watched.
        folder.fold(0, watcher::Event::Apply(object("p", "new", ready())), NOW);
        folder.fold(0, watcher::Event::Apply(object("p", "old", ready())), NOW);
        let text = encode(&metrics);
        assert!(
            text.contains("fluxgate_gitrepository_first_reconcile_seconds_count 0"),
            "{text}"
        );
        // Created while watched: ADDED without status, then its first conditions.
        folder.fold(
            0,
            watcher::Event::Apply(object("p", "fresh", waiting())),
            NOW,
        );
        folder.fold(
            0,
            watcher::Event::Apply(object(
                "p",
                "fresh",
                failing(TIMEOUT, "2026-11-28T11:02:00Z"),
            )),
            NOW,
        );
        let text = encode(&metrics);
        assert!(
            text.contains("fluxgate_gitrepository_first_reconcile_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("fluxgate_gitrepository_first_reconcile_seconds_sum 10.0"),
            "first condition is the earliest transition (Reconciling at 11:00:10): {text}"
        );
    }

    #[test]
    fn objects_without_uid_are_skipped() {
        let (metrics, exporter) = exporter();
        let mut folder = Folder::new(exporter.store(), 1);
        let mut o = object("p", "a", ready());
        o.metadata.uid = None;
        list(&mut folder, 0, vec![o.clone()], NOW);
        folder.fold(0, watcher::Event::Apply(o.clone()), NOW);
        folder.fold(0, watcher::Event::Delete(o), NOW);
        assert!(gauges(&metrics).contains(&"fluxgate_watcher_objects 0".to_owned()));
    }
}
