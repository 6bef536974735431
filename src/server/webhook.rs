//! The admission endpoint: a thin axum layer over [`crate::admission::review`].

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use time::OffsetDateTime;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::admission::{self, ReviewOutcome, Reviewed};
use crate::metrics::{AdmissionLabels, Metrics, NamespaceLabels};
use crate::policy::{Policy, Target};

/// The path kube-apiserver posts every AdmissionReview to.
pub const MUTATE_PATH: &str = "/mutate";

/// Limits on one admission request.
#[derive(Debug, Clone, Copy)]
pub struct WebhookLimits {
    /// Largest accepted body. kube-apiserver's own request limit is 3 MiB; an AdmissionReview
    /// carries the object (and on UPDATE the old one), so twice that plus framing is ample.
    pub max_body_bytes: usize,
    /// Time to receive the body and answer; kube-apiserver gives up after `timeoutSeconds` anyway.
    pub request_timeout: Duration,
}

impl Default for WebhookLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 7 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What the admission handler needs. The policy sits behind a lock because parts of it (the
/// API server's ClusterIP for NO_PROXY) are discovered and refreshed while serving.
pub struct WebhookState {
    pub policy: RwLock<Arc<Policy>>,
    pub metrics: Arc<Metrics>,
}

impl WebhookState {
    pub fn new(policy: Policy, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            policy: RwLock::new(Arc::new(policy)),
            metrics,
        })
    }

    pub fn policy(&self) -> Arc<Policy> {
        // A poisoned lock only means a writer panicked mid-assignment of an Arc, which cannot
        // leave it half-written: keep serving with what is there.
        self.policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn set_policy(&self, policy: Policy) {
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(policy);
    }
}

pub fn router(state: Arc<WebhookState>, limits: WebhookLimits) -> Router {
    let panic_metrics = state.metrics.clone();
    Router::new()
        .route(MUTATE_PATH, post(review))
        .with_state(state)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(CatchPanicLayer::custom(move |_| {
            // Unreachable by design (the core returns errors, never panics); if it happens the
            // API server sees a 500 and admits the object unchanged under failurePolicy Ignore.
            panic_metrics
                .admission
                .requests
                .get_or_create(&AdmissionLabels {
                    kind: "other",
                    operation: "other",
                    outcome: "error",
                })
                .inc();
            tracing::error!("admission handler panicked; object admitted unchanged");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

async fn review(State(state): State<Arc<WebhookState>>, request: Request) -> Response {
    let started = Instant::now();
    let metrics = &state.metrics.admission;
    // The headers are looked at in place (a `HeaderMap` extractor would copy them) and the body
    // is read through the same extractor as before, so the body limit and its 413 still apply.
    let json = is_json(request.headers());
    let body = Bytes::from_request(request, &()).await;
    let body = match (json, body) {
        (false, _) => {
            metrics.count_invalid();
            let message = "expected Content-Type: application/json\n";
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response();
        }
        // Oversized (413) or a broken body stream: counted like any other unusable request.
        (true, Err(rejection)) => {
            metrics.count_invalid();
            tracing::warn!(error = %rejection, "refused an admission request body");
            return rejection.into_response();
        }
        (true, Ok(body)) => body,
    };

    let reviewed = match admission::review(&body, &state.policy(), OffsetDateTime::now_utc()) {
        Ok(reviewed) => reviewed,
        Err(err) => {
            metrics.count_invalid();
            // serde quotes the offending value, which can be megabytes: keep logs and answers short.
            let message = err.to_string();
            let message = crate::text::shorten_middle(&message, 256, 96);
            tracing::warn!(error = %message, bytes = body.len(), "refused an unanswerable admission request");
            return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response();
        }
    };
    record(&state.metrics, &reviewed);
    metrics.observe_duration(
        admission::kind_label(reviewed.target),
        started.elapsed().as_secs_f64(),
    );
    let content_type = HeaderValue::from_static("application/json");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        reviewed.body,
    )
        .into_response()
}

/// Counts and logs one answered review.
fn record(metrics: &Metrics, reviewed: &Reviewed) {
    let kind = admission::kind_label(reviewed.target);
    metrics
        .admission
        .count_review(kind, reviewed.operation.label(), reviewed.outcome.label());
    if reviewed.outcome == ReviewOutcome::Patched && reviewed.target == Some(Target::Pod) {
        let namespace = reviewed.namespace.clone().unwrap_or_default();
        metrics
            .proxy
            .injections
            .get_or_create(&NamespaceLabels { namespace })
            .inc();
    }
    // The rule travels with the review's answer: counted as decided, never decided again.
    if let (ReviewOutcome::Patched, Some(rule), false) = (
        reviewed.outcome,
        reviewed.mirror_rule.as_deref(),
        reviewed.dry_run,
    ) {
        metrics.mirror.count_rewrite(rule);
    }
    if let (ReviewOutcome::Patched, Some(shard), false) = (
        reviewed.outcome,
        reviewed.lane_shard.as_deref(),
        reviewed.dry_run,
    ) {
        metrics.lane.count_assignment(shard);
    }
    let kind = kind.value;
    let uid = reviewed.uid.as_str();
    let namespace = reviewed.namespace.as_deref().unwrap_or("");
    let name = reviewed.name.as_deref().unwrap_or("");
    match reviewed.outcome {
        ReviewOutcome::Error => {
            let error = reviewed.error.as_deref().unwrap_or("");
            tracing::error!(
                uid,
                kind,
                namespace,
                name,
                error,
                "admitted unchanged after an internal problem"
            );
        }
        // A user's setting overridden is worth a line; a routine patch is counted in metrics and
        // logged at debug only: a synchronous log write per request halved throughput and, behind
        // a slow stderr pipe, stalled every request on the worker (see BENCHMARKS.md).
        ReviewOutcome::Patched if !reviewed.warnings.is_empty() => {
            let warnings = reviewed.warnings.len();
            let dry_run = reviewed.dry_run;
            let mirror_rule = reviewed.mirror_rule.as_deref();
            tracing::info!(
                uid,
                kind,
                namespace,
                name,
                dry_run,
                warnings,
                mirror_rule,
                "patched, overriding the creator"
            );
        }
        ReviewOutcome::Patched => {
            let dry_run = reviewed.dry_run;
            let lane = reviewed.lane_shard.as_deref();
            tracing::debug!(uid, kind, namespace, name, dry_run, lane, "patched");
        }
        outcome => tracing::debug!(uid, kind, outcome = outcome.as_str(), "admitted"),
    }
}

/// The admission webhook's listener and policy.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// Run the exporter alone.
    #[arg(long, env = "FLUXGATE_NO_WEBHOOK", conflicts_with = "no_exporter")]
    pub no_webhook: bool,

    /// HTTPS address of the admission webhook (POST /mutate).
    #[arg(long, env = "FLUXGATE_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub webhook_addr: std::net::SocketAddr,

    /// Largest admission request body accepted (larger ones get 413).
    #[arg(long, env = "FLUXGATE_MAX_BODY_BYTES", default_value_t = 7 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Time allowed to receive and answer one admission request.
    #[arg(long, env = "FLUXGATE_REQUEST_TIMEOUT", default_value = "10s", value_parser = crate::duration::parse_flag)]
    pub request_timeout: Duration,

    #[command(flatten)]
    pub policy: crate::policy::PolicyArgs,
}

impl WebhookArgs {
    pub fn enabled(&self) -> bool {
        !self.no_webhook
    }

    pub fn limits(&self) -> WebhookLimits {
        WebhookLimits {
            max_body_bytes: self.max_body_bytes,
            request_timeout: self.request_timeout,
        }
    }
}
