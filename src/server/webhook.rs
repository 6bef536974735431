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

use crate::admission::{self, Outcome};
use crate::metrics::{AdmissionLabels, Metrics};
use crate::policy::Policy;

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
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn set_policy(&self, policy: Policy) {
        *self
            .policy
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(policy);
    }
}

pub fn router(state: Arc<WebhookState>, limits: WebhookLimits) -> Router {
    let panic_metrics = state.metrics.clone();
    Router::new()
        .route(MUTATE_PATH, post(mutate))
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

/// Cuts the middle out of a long error message, keeping its start (what went wrong) and its end
/// (where: serde's line and column).
fn shorten(message: &str) -> std::borrow::Cow<'_, str> {
    const HEAD: usize = 256;
    const TAIL: usize = 96;
    if message.len() <= HEAD + TAIL {
        return message.into();
    }
    let mut head = HEAD;
    while !message.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = message.len() - TAIL;
    while !message.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}…{}", &message[..head], &message[tail..]).into()
}

async fn mutate(State(state): State<Arc<WebhookState>>, request: Request) -> Response {
    let started = Instant::now();
    let metrics = &state.metrics.admission;
    // The headers are looked at in place (a `HeaderMap` extractor would copy them) and the body
    // is read through the same extractor as before, so the body limit and its 413 still apply.
    let json = is_json(request.headers());
    let body = Bytes::from_request(request, &()).await;
    if !json {
        metrics.count_invalid();
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json\n",
        )
            .into_response();
    }

    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            // Oversized (413) or a broken body stream: counted like any other unusable request.
            metrics.count_invalid();
            tracing::warn!(error = %rejection, "refused an admission request body");
            return rejection.into_response();
        }
    };

    let policy = state.policy();
    let reviewed = match admission::review(&body, &policy, OffsetDateTime::now_utc()) {
        Ok(reviewed) => reviewed,
        Err(err) => {
            metrics.count_invalid();
            // serde quotes the offending value, which can be megabytes: keep logs and answers short.
            let message = err.to_string();
            let message = shorten(&message);
            tracing::warn!(error = %message, bytes = body.len(), "refused an unanswerable admission request");
            return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response();
        }
    };

    let kind = reviewed.target.map_or("other", |t| t.as_str());
    metrics.count_review(reviewed.target, reviewed.operation, reviewed.outcome);
    if reviewed.outcome == Outcome::Patched && kind == "Pod" {
        state
            .metrics
            .proxy
            .injections
            .get_or_create(&crate::metrics::NamespaceLabels {
                namespace: reviewed.namespace.clone().unwrap_or_default(),
            })
            .inc();
    }
    match reviewed.outcome {
        Outcome::Error => tracing::error!(
            uid = %reviewed.uid,
            kind,
            namespace = reviewed.namespace.as_deref().unwrap_or(""),
            name = reviewed.name.as_deref().unwrap_or(""),
            error = reviewed.error.as_deref().unwrap_or(""),
            "admitted unchanged after an internal problem"
        ),
        // A user's setting overridden is worth a line; a routine patch is counted in metrics and
        // logged at debug only: a synchronous log write per request halved throughput and, behind
        // a slow stderr pipe, stalled every request on the worker (see BENCHMARKS.md).
        Outcome::Patched if !reviewed.warnings.is_empty() => tracing::info!(
            uid = %reviewed.uid,
            kind,
            namespace = reviewed.namespace.as_deref().unwrap_or(""),
            name = reviewed.name.as_deref().unwrap_or(""),
            dry_run = reviewed.dry_run,
            warnings = reviewed.warnings.len(),
            "patched, overriding the creator"
        ),
        Outcome::Patched => tracing::debug!(
            uid = %reviewed.uid,
            kind,
            namespace = reviewed.namespace.as_deref().unwrap_or(""),
            name = reviewed.name.as_deref().unwrap_or(""),
            dry_run = reviewed.dry_run,
            "patched"
        ),
        _ => {
            tracing::debug!(uid = %reviewed.uid, kind, outcome = reviewed.outcome.as_str(), "admitted")
        }
    }
    metrics.observe_duration(reviewed.target, started.elapsed().as_secs_f64());

    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        reviewed.body,
    )
        .into_response()
}
