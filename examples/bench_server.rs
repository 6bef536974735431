//! Benchmark baseline: the webhook's exact HTTPS stack (fluxgate's `spawn_tls`, rustls config,
//! connection limits, body limit, timeout and panic layers) with a handler that does nothing but
//! read the body and return a fixed allowed AdmissionReview. Comparing it with `fluxgate serve`
//! isolates what the admission work itself costs. Used by `tests/load/webhook-vs-noop.sh`.
//!
//! ```sh
//! cargo run --release --example bench_server -- --cert certs/tls.crt --key certs/tls.key \
//!     --addr 127.0.0.1:9443 [--handler noop|floor|webhook]
//! ```
//!
//! `--handler webhook` serves fluxgate's real admission router on the same stack but without a log
//! subscriber, to tell the cost of logging from the cost of reviewing.
//!
//! `--handler floor` parses the body into a `serde_json::Value` and serialises it back before
//! returning the same fixed allowed response: the least any webhook that reads the review as JSON
//! does (the "floor" of `benches/admission.rs`), on the same stack. A body that is not JSON gets
//! 400, as it would from a webhook.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use fluxgate::metrics::Metrics;
use fluxgate::policy::Policy;
use fluxgate::server::{self, ConnectionLimits, tls::ReloadingTls, webhook};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

const ALLOWED: &[u8] =
    br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true}}"#;

fn allowed() -> axum::response::Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        ALLOWED,
    )
        .into_response()
}

#[derive(Clone, Copy, PartialEq)]
enum Handler {
    /// Reads the body, returns the fixed response.
    Noop,
    /// Parses the body into a `serde_json::Value` and serialises it back, then returns the fixed
    /// response.
    Floor,
    /// fluxgate's admission router.
    Webhook,
}

/// The same layers as `webhook::router`, around a handler that does no admission work (`Noop`)
/// or only the JSON round trip every JSON webhook does (`Floor`).
fn baseline_router(limits: webhook::WebhookLimits, handler: Handler) -> Router {
    let route = if handler == Handler::Floor {
        post(|body: Bytes| async move {
            let value: serde_json::Value = match serde_json::from_slice(std::hint::black_box(&body))
            {
                Ok(value) => value,
                Err(_) => return StatusCode::BAD_REQUEST.into_response(),
            };
            std::hint::black_box(serde_json::to_vec(&value).expect("a Value always serialises"));
            allowed()
        })
    } else {
        post(|body: Bytes| async move {
            std::hint::black_box(&body);
            allowed()
        })
    };
    Router::new()
        .route(webhook::MUTATE_PATH, route)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(CatchPanicLayer::new())
}

struct Args {
    addr: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    handler: Handler,
}

fn parse_args() -> Args {
    let mut args = Args {
        addr: "127.0.0.1:9443".parse().unwrap(),
        cert: PathBuf::from("tls.crt"),
        key: PathBuf::from("tls.key"),
        handler: Handler::Noop,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--addr" => args.addr = value().parse().unwrap_or_else(|e| usage(&format!("{e}"))),
            "--cert" => args.cert = value().into(),
            "--key" => args.key = value().into(),
            "--handler" => match value().as_str() {
                "noop" => args.handler = Handler::Noop,
                "floor" => args.handler = Handler::Floor,
                "webhook" => args.handler = Handler::Webhook,
                other => usage(&format!("unknown handler {other}")),
            },
            other => usage(&format!("unknown argument {other}")),
        }
    }
    args
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\nusage: bench_server [--addr ADDR] [--cert FILE] [--key FILE] [--handler noop|floor|webhook]"
    );
    std::process::exit(2)
}

fn main() {
    let args = parse_args();
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Same runtime as `fluxgate serve`: multi-threaded, one worker per available core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let tls = ReloadingTls::load(&args.cert, &args.key, metrics.tls.clone())
            .unwrap_or_else(|e| usage(&e.to_string()));
        let limits = webhook::WebhookLimits::default();
        let router = match args.handler {
            Handler::Webhook => webhook::router(
                webhook::WebhookState::new(Policy::default(), metrics),
                limits,
            ),
            handler => baseline_router(limits, handler),
        };
        let running = server::spawn_tls(
            args.addr,
            tls.rustls_config(),
            router,
            ConnectionLimits::default(),
        )
        .await
        .unwrap_or_else(|e| usage(&format!("listening on {}: {e}", args.addr)));
        println!("listening on {}", running.addr);
        server::shutdown_signal().await;
        let _ = running.shutdown(std::time::Duration::from_secs(5)).await;
    });
}
