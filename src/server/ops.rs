//! Plain-HTTP operational endpoints: `/metrics`, `/healthz`, `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;

use crate::exporter::WatchStatus;
use crate::exposition_format::Format;
use crate::metrics::Metrics;

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

/// The plain-HTTP operations listener.
#[derive(Debug, Clone, clap::Args)]
pub struct OpsArgs {
    /// Plain HTTP address of /metrics, /healthz and /readyz.
    #[arg(long, env = "FLUXGATE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
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

/// How long a scrape's body may take to send. Prometheus gives up after its scrape timeout (10 s
/// by default); a client that stops reading would otherwise keep the scrape's snapshot (5 MB at
/// 100k GitRepositories) for as long as it keeps the connection open.
pub const SCRAPE_DEADLINE: Duration = Duration::from_secs(60);

/// Streams the exposition in the format the `Accept` header asks for (OpenMetrics for
/// Prometheus, the Prometheus text format for other scrapers): at 100k GitRepositories it is
/// 18 MB, of which only the chunk being sent is in memory.
async fn serve_metrics(State(state): State<OpsState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get_all(header::ACCEPT);
    let format = Format::negotiate(accept.iter().filter_map(|v| v.to_str().ok()));
    let chunks = with_deadline(state.metrics.exposition_as(format), SCRAPE_DEADLINE);
    (
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::VARY, "Accept"),
        ],
        Body::from_stream(chunks),
    )
}

#[derive(Debug, thiserror::Error)]
#[error("the scrape was not read within {0:?}")]
pub struct ScrapeExpired(Duration);

/// Aborts the deadline's timer when the response is done with.
struct TimerGuard(tokio::task::AbortHandle);

impl Drop for TimerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `chunks` as a body stream that a timer can take away: at the deadline the remaining chunks
/// (and the snapshot they encode) are dropped even while the connection is stalled and nothing
/// polls the body, and the next read fails, so the client sees a cut-off response rather than
/// an exposition that looks complete.
pub fn with_deadline<I>(
    chunks: I,
    deadline: Duration,
) -> impl futures::Stream<Item = Result<Bytes, ScrapeExpired>> + Send + 'static
where
    I: Iterator<Item = Bytes> + Send + 'static,
{
    let shared = Arc::new(Mutex::new(Some(chunks)));
    let expiring = Arc::downgrade(&shared);
    let timer = tokio::spawn(async move {
        tokio::time::sleep(deadline).await;
        if let Some(chunks) = expiring.upgrade() {
            let taken = chunks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            drop(taken);
        }
    });
    let guard = TimerGuard(timer.abort_handle());
    futures::stream::unfold(Some((shared, guard)), move |state| async move {
        let (shared, guard) = state?;
        let next = match shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            Some(chunks) => chunks.next().map(Ok),
            None => Some(Err(ScrapeExpired(deadline))),
        };
        match next {
            Some(Ok(chunk)) => Some((Ok(chunk), Some((shared, guard)))),
            Some(Err(expired)) => Some((Err(expired), None)),
            None => None,
        }
    })
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
        get_accepting(router, uri, "*/*").await
    }

    async fn get_accepting(router: &Router, uri: &str, accept: &str) -> (StatusCode, String) {
        let response = router
            .clone()
            .oneshot(
                axum::http::Request::get(uri)
                    .header(header::ACCEPT, accept)
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

    /// Chunks that report when they are dropped.
    struct Tracked {
        _snapshot: Arc<()>,
        chunks: std::ops::Range<u8>,
    }

    impl Iterator for Tracked {
        type Item = Bytes;
        fn next(&mut self) -> Option<Bytes> {
            self.chunks.next().map(|i| Bytes::from(vec![b'a' + i; 4]))
        }
    }

    #[tokio::test]
    async fn a_scrape_within_its_deadline_gets_every_chunk() {
        use futures::StreamExt as _;
        let token = Arc::new(());
        let chunks: Vec<_> = with_deadline(
            Tracked {
                _snapshot: token.clone(),
                chunks: 0..3,
            },
            Duration::from_secs(30),
        )
        .collect()
        .await;
        let chunks: Vec<Bytes> = chunks.into_iter().map(Result::unwrap).collect();
        assert_eq!(chunks, [&b"aaaa"[..], b"bbbb", b"cccc"]);
        assert_eq!(
            Arc::strong_count(&token),
            1,
            "the snapshot is dropped with the body"
        );
    }

    #[tokio::test]
    async fn a_stalled_scrape_loses_its_snapshot_at_the_deadline() {
        use futures::StreamExt as _;
        let token = Arc::new(());
        let stream = with_deadline(
            Tracked {
                _snapshot: token.clone(),
                chunks: 0..3,
            },
            Duration::from_millis(50),
        );
        let mut stream = std::pin::pin!(stream);
        assert_eq!(stream.next().await.unwrap().unwrap(), &b"aaaa"[..]);
        // Nothing reads for a while: the snapshot goes although the body is still alive.
        let mut waited = 0;
        while Arc::strong_count(&token) > 1 && waited < 100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            waited += 1;
        }
        assert_eq!(Arc::strong_count(&token), 1);
        let next = stream.next().await.expect("an error, not a clean end");
        assert!(next.is_err());
        assert!(stream.next().await.is_none());
    }

    /// A family of many chunks, as the exporter's is at scale.
    #[derive(Debug)]
    struct ManyChunks;

    impl crate::metrics::ChunkedFamily for ManyChunks {
        fn chunks(&self) -> Box<dyn Iterator<Item = Bytes> + Send> {
            let header =
                "# HELP fluxgate_test_series One per object.\n# TYPE fluxgate_test_series gauge\n";
            let lines = (0..20_000)
                .map(|i| Bytes::from(format!("fluxgate_test_series{{n=\"{i}\"}} {i}\n")));
            Box::new(std::iter::once(Bytes::from_static(header.as_bytes())).chain(lines))
        }
    }

    #[tokio::test]
    async fn a_chunked_family_is_served_whole_before_eof() {
        let mut metrics = Metrics::new();
        metrics.register_chunked(Arc::new(ManyChunks));
        let metrics = Arc::new(metrics);
        let router = router(metrics.clone(), Readiness::new(false));
        let (status, body) =
            get_accepting(&router, "/metrics", "application/openmetrics-text").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, metrics.encode());
        assert!(body.contains("fluxgate_build_info"));
        assert!(body.contains("fluxgate_test_series{n=\"19999\"} 19999\n# EOF\n"));
        assert_eq!(body.matches("# EOF").count(), 1);

        // Converted chunk by chunk, the text format holds every series too.
        let (status, body) = get(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, metrics.encode_as(Format::PrometheusText));
        assert!(body.contains("# TYPE fluxgate_test_series gauge\n"));
        assert!(body.ends_with("fluxgate_test_series{n=\"19999\"} 19999\n"));
        assert_eq!(body.matches("fluxgate_test_series{").count(), 20_000);
    }

    #[tokio::test]
    async fn metrics_are_negotiated() {
        let router = router(Arc::new(Metrics::new()), Readiness::new(false));
        for (accept, content_type, build) in [
            (
                Some("application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.2"),
                crate::exposition_format::OPENMETRICS_1_0_0,
                "# TYPE fluxgate_build info\n",
            ),
            (
                None,
                crate::exposition_format::PROMETHEUS_TEXT_0_0_4,
                "# TYPE fluxgate_build_info gauge\n",
            ),
        ] {
            let mut request = axum::http::Request::get("/metrics");
            if let Some(accept) = accept {
                request = request.header(header::ACCEPT, accept);
            }
            let response = router
                .clone()
                .oneshot(request.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["content-type"], content_type);
            assert_eq!(response.headers()["vary"], "Accept");
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            assert!(String::from_utf8_lossy(&body).contains(build), "{accept:?}");
        }
    }
}
