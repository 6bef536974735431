//! Watches GitRepositories and publishes their health as Prometheus metrics.
//!
//! One watch (per configured namespace, or cluster-wide) folds events into compact records via
//! [`crate::health::classify`]; a collector aggregates them at scrape time. When the watch fails
//! the stream is dropped and started again with a fresh list (with backoff), so the gauges equal
//! the cluster again once the API server is back, including deletions missed meanwhile.

pub mod store;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher;
use prometheus_client::registry::Registry;
use time::OffsetDateTime;

pub use store::{Store, StoreCollector};

use crate::health;

/// Which GitRepositories to watch.
#[derive(Debug, Clone, Default)]
pub struct ExporterConfig {
    /// Namespaces to watch; empty means cluster-wide.
    pub namespaces: Vec<String>,
}

/// How long the watch may be broken before `/readyz` says so.
const READY_GRACE_SECONDS: i64 = 60;

/// Whether the exporter's view is complete and current (for `/readyz`).
#[derive(Debug, Default)]
pub struct WatchStatus {
    store: Arc<Store>,
}

impl WatchStatus {
    pub fn is_ready(&self) -> bool {
        self.store.is_ready(
            OffsetDateTime::now_utc().unix_timestamp(),
            READY_GRACE_SECONDS,
        )
    }
}

pub struct Exporter {
    config: ExporterConfig,
    store: Arc<Store>,
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl Exporter {
    /// Registers the exporter's metric families; call before the registry is shared.
    pub fn new(registry: &mut Registry, config: ExporterConfig) -> Self {
        let store = Arc::new(Store::default());
        registry.register(
            "gitrepository_first_reconcile_seconds",
            "Time from a GitRepository's creation to its first status condition, for repositories \
             the exporter saw waiting",
            store.first_reconcile(),
        );
        registry.register_collector(Box::new(StoreCollector(store.clone())));
        Self { config, store }
    }

    pub fn status(&self) -> Arc<WatchStatus> {
        Arc::new(WatchStatus {
            store: self.store.clone(),
        })
    }

    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// Runs until the returned future is dropped.
    pub async fn run(self, client: kube::Client) -> anyhow::Result<()> {
        let resource = crate::janitor::gitrepository_api_resource();
        let apis: Vec<Api<DynamicObject>> = if self.config.namespaces.is_empty() {
            vec![Api::all_with(client, &resource)]
        } else {
            self.config
                .namespaces
                .iter()
                .map(|ns| Api::namespaced_with(client.clone(), ns, &resource))
                .collect()
        };
        let mut backoff = Duration::from_secs(1);
        loop {
            // One stream per scope, merged; any error drops them all and starts over with a list.
            let streams = apis.iter().enumerate().map(|(scope, api)| {
                let config = watcher::Config::default().page_size(500);
                let scope = scope as u16;
                watcher(api.clone(), config)
                    .map_ok(move |event| (scope, event))
                    .boxed()
            });
            let mut events = futures::stream::select_all(streams);
            let mut listed = std::collections::HashSet::new();
            let error = loop {
                match events.try_next().await {
                    Ok(Some((scope, event))) => match event {
                        watcher::Event::Init => self.store.relist_start(scope),
                        watcher::Event::InitApply(object) => {
                            if let Some(h) = classify(&object) {
                                self.store.relist_apply(scope, &h);
                            }
                        }
                        watcher::Event::InitDone => {
                            listed.insert(scope);
                            let all = listed.len() >= apis.len();
                            self.store.relist_done(scope, all, now());
                            if all {
                                backoff = Duration::from_secs(1);
                                tracing::info!(
                                    objects = self.store.len(),
                                    "GitRepository watch synced"
                                );
                            }
                        }
                        watcher::Event::Apply(object) => {
                            if let Some(h) = classify(&object) {
                                self.store.apply(scope, &h, now());
                            }
                        }
                        watcher::Event::Delete(object) => {
                            if let Some(uid) = object.metadata.uid.as_deref() {
                                self.store.delete(uid, now());
                            }
                        }
                    },
                    Ok(None) => break anyhow::anyhow!("watch stream ended"),
                    Err(err) => break anyhow::Error::from(err),
                }
            };
            self.store.watch_error(now());
            tracing::warn!(error = %error, retry_in = ?backoff, "GitRepository watch failed; re-listing");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

fn classify(object: &DynamicObject) -> Option<health::Health> {
    let value = serde_json::to_value(object).ok()?;
    match health::classify(&value) {
        Ok(h) => Some(h),
        Err(err) => {
            tracing::debug!(error = %err, "skipping an unreadable GitRepository");
            None
        }
    }
}
