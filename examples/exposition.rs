//! Prints what `/metrics` answers for an `Accept` header, from a registry as a running fluxgate
//! fills it (webhook, exporter holding the incident snapshot's failing GitRepositories, janitor),
//! through the real operations router. The body goes to stdout, its content type to stderr.
//! `tests/monitoring/check.sh` runs promtool on it.
//!
//! ```sh
//! cargo run --example exposition                                  # no Accept: the text format
//! cargo run --example exposition -- 'text/plain;version=0.0.4'
//! cargo run --example exposition -- 'application/openmetrics-text;version=1.0.0'
//! ```

use std::io::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use fluxgate::server::ops::{Readiness, router};
use tower::ServiceExt as _;

#[path = "../tests/support/exposition.rs"]
mod fixture;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let accept = std::env::args().nth(1);
    let router = router(Arc::new(fixture::full_metrics()), Readiness::new(false));
    let mut request = Request::get("/metrics");
    if let Some(accept) = &accept {
        request = request.header(header::ACCEPT, accept);
    }
    let response = router
        .oneshot(request.body(Body::empty()).expect("a valid request"))
        .await
        .expect("the router answers");
    assert!(response.status().is_success(), "{}", response.status());
    let content_type = response.headers()[header::CONTENT_TYPE].clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the whole body");
    eprintln!("content-type: {}", content_type.to_str().unwrap_or("?"));
    std::io::stdout()
        .write_all(&body)
        .expect("writing the exposition");
}
