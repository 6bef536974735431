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
        if self.shutting_down.load(Ordering::Relaxed) {
            return Err("shutting down");
        }
        if self.webhook_expected.load(Ordering::Relaxed)
            && !self.webhook_listening.load(Ordering::Relaxed)
        {
            return Err("webhook not listening yet");
        }
        if let Some(exporter) = self.exporter.get()
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

async fn readyz(State(state): State<OpsState>) -> impl IntoResponse {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}
