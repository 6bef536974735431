//! Plain-HTTP operational endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::exporter::WatchStatus;
use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE};

/// What `/readyz` answers from. Ready means: the webhook listener is up (when enabled), the
/// exporter has its initial list and a live watch (when enabled), and no shutdown has begun.
#[derive(Debug, Default)]
pub struct Readiness {
    webhook_expected: AtomicBool,
    webhook_listening: AtomicBool,
    shutting_down: AtomicBool,
    exporter: std::sync::OnceLock<Arc<WatchStatus>>,
}

impl Readiness {
    pub fn new(webhook_expected: bool) -> Arc<Self> {
        let r = Self::default();
        r.webhook_expected
            .store(webhook_expected, Ordering::Relaxed);
        Arc::new(r)
    }

    pub fn set_webhook_listening(&self) {
        self.webhook_listening.store(true, Ordering::Relaxed);
    }

    pub fn set_exporter(&self, status: Arc<WatchStatus>) {
        let _ = self.exporter.set(status);
    }

    /// Turns `/readyz` false so load balancers stop sending new requests before the drain.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// `Ok` when ready, otherwise the reason.
    pub fn check(&self) -> Result<(), &'static str> {
        self.check_excluding(&[])
    }

    /// Like [`check`](Self::check) with named checks left out (`webhook`, `exporter`), as
    /// kube-apiserver's `/readyz?exclude=`. The Deployment's probe excludes the exporter: a
    /// stale watch must not take the webhook out of its Service.
    pub fn check_excluding(&self, excluded: &[&str]) -> Result<(), &'static str> {
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err("shutting down");
        }
        if !excluded.contains(&"webhook")
            && self.webhook_expected.load(Ordering::Relaxed)
            && !self.webhook_listening.load(Ordering::Relaxed)
        {
            return Err("webhook not listening yet");
        }
        if !excluded.contains(&"exporter")
            && let Some(exporter) = self.exporter.get()
            && !exporter.is_ready()
        {
            return Err("GitRepository watch not synced");
        }
        Ok(())
    }
}

#[derive(Clone)]
struct OpsState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(OpsState { metrics, readiness })
}

async fn serve_metrics(State(state): State<OpsState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode(),
    )
}

async fn readyz(State(state): State<OpsState>, uri: axum::http::Uri) -> impl IntoResponse {
    let excluded: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.strip_prefix("exclude="))
        .collect();
    match state.readiness.check_excluding(&excluded) {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    async fn get(router: &Router, uri: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(
                axum::http::Request::get(uri)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readiness_follows_webhook_exporter_and_shutdown() {
        let readiness = Readiness::new(true);
        let exporter = Arc::new(WatchStatus::default());
        readiness.set_exporter(exporter.clone());
        let router = router(Arc::new(Metrics::new()), readiness.clone());

        assert_eq!(
            get(&router, "/healthz").await,
            (StatusCode::OK, "ok\n".into())
        );
        assert_eq!(
            get(&router, "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "webhook not listening yet\n".into()
            )
        );
        readiness.set_webhook_listening();
        assert_eq!(
            get(&router, "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "GitRepository watch not synced\n".into()
            )
        );
        assert_eq!(
            get(&router, "/readyz?exclude=exporter").await.0,
            StatusCode::OK
        );
        readiness.begin_shutdown();
        assert_eq!(
            get(&router, "/readyz?exclude=exporter").await,
            (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
        );
        assert_eq!(
            get(&router, "/healthz").await.0,
            StatusCode::OK,
            "alive while draining"
        );
    }

    #[tokio::test]
    async fn metrics_are_openmetrics() {
        let router = router(Arc::new(Metrics::new()), Readiness::new(false));
        let response = router
            .oneshot(
                axum::http::Request::get("/metrics")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], OPENMETRICS_CONTENT_TYPE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("fluxgate_build_info"));
    }
}
