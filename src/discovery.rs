//! Keeps the API server's ClusterIP current in the proxy policy's NO_PROXY.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Api;

use crate::server::webhook::WebhookState;

/// The API server's ClusterIP as a Pod sees it, before any API call is possible.
pub fn kubernetes_service_ip_from_env() -> Option<String> {
    std::env::var("KUBERNETES_SERVICE_HOST")
        .ok()
        .filter(|host| !host.is_empty())
}

/// Reads `default/kubernetes` every `interval` and updates the policy when its ClusterIP changes.
pub async fn track_kubernetes_service(
    client: kube::Client,
    state: Arc<WebhookState>,
    interval: Duration,
) {
    let services: Api<Service> = Api::namespaced(client, "default");
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let ip = match services.get("kubernetes").await {
            Ok(service) => service.spec.and_then(|s| s.cluster_ip),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read default/kubernetes; NO_PROXY keeps the last known ClusterIP");
                continue;
            }
        };
        let Some(ip) = ip.filter(|ip| !ip.is_empty() && ip != "None") else {
            continue;
        };
        let current = state.policy();
        if current.proxy.kubernetes_service_ip.as_deref() != Some(ip.as_str()) {
            tracing::info!(cluster_ip = %ip, "API server ClusterIP added to NO_PROXY");
            let mut updated = (*current).clone();
            updated.proxy.kubernetes_service_ip = Some(ip);
            state.set_policy(updated);
        }
    }
}
