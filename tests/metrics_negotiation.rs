//! `/metrics` over HTTP on loopback answers each scraper in the format it asks for: Prometheus
//! gets OpenMetrics, `promtool`, curl and other scrapers of the Prometheus text format get that,
//! both carrying the same samples of a full registry (webhook, exporter holding failing
//! GitRepositories, janitor).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fluxgate::exposition_format::{OPENMETRICS_1_0_0, PROMETHEUS_TEXT_0_0_4};
use fluxgate::server::{self, ConnectionLimits, ops};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// What Prometheus 2.49 to 2.55 sends (scrape_protocols' defaults).
const PROMETHEUS: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
/// What Prometheus 2.42 (Debian 12's) sends.
const PROMETHEUS_2_42: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

struct Scrape {
    content_type: String,
    body: String,
}

async fn scrape(addr: SocketAddr, accept: Option<&str>) -> Scrape {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = hyper::Request::get("/metrics").header("host", addr.to_string());
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = sender
        .send_request(request.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["vary"], "Accept");
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    Scrape {
        content_type,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// The samples of an exposition, `series value` with the value as a number, `_created` left out
/// (the text format has none).
fn samples(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter(|l| !l.split(['{', ' ']).next().unwrap().ends_with("_created"))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            (series.to_owned(), value.to_string())
        })
        .collect()
}

/// Reads the text format as its parser does and returns each family's type: every sample
/// belongs to the family of the `# TYPE` before it (a histogram's by its `_bucket`, `_sum` and
/// `_count` suffixes), no family is described twice, `# HELP` comes first, and nothing is
/// OpenMetrics only.
fn text_format_families(text: &str) -> BTreeMap<String, String> {
    let mut families = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut helped = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name.to_owned()), "second HELP for {name}");
            assert!(!families.contains_key(name), "HELP after TYPE for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(helped.contains(name), "no HELP for {name}");
            let previous = families.insert(name.to_owned(), kind.to_owned());
            assert!(previous.is_none(), "second TYPE for {name}");
            current = Some((name.to_owned(), kind.to_owned()));
        } else {
            assert!(!line.starts_with('#'), "an OpenMetrics line: {line}");
            let name = line.split(['{', ' ']).next().unwrap();
            let (family, kind) = current.as_ref().expect("a sample before any TYPE");
            let belongs = name == family
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(family)));
            assert!(belongs, "{name} after TYPE {family} {kind}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
    }
    families
}

#[tokio::test]
async fn each_scraper_gets_the_format_it_asks_for() {
    let metrics = Arc::new(support::exposition::full_metrics());
    let router = ops::router(metrics.clone(), ops::Readiness::new(false));
    let server = server::spawn_plain(
        "127.0.0.1:0".parse().unwrap(),
        router,
        ConnectionLimits::default(),
    )
    .await
    .unwrap();

    // Prometheus, old and new: OpenMetrics, exactly as encoded.
    let openmetrics = scrape(server.addr, Some(PROMETHEUS)).await;
    assert_eq!(openmetrics.content_type, OPENMETRICS_1_0_0);
    assert_eq!(openmetrics.body, metrics.encode());
    assert!(openmetrics.body.ends_with("# EOF\n"));
    assert!(openmetrics.body.contains("# TYPE fluxgate_build info\n"));
    let old = scrape(server.addr, Some(PROMETHEUS_2_42)).await;
    assert_eq!(old.content_type, OPENMETRICS_1_0_0);
    assert_eq!(old.body, openmetrics.body);

    // Asked for the text format, or for nothing in particular (curl, a browser): the text format.
    let text = scrape(server.addr, Some("text/plain;version=0.0.4")).await;
    assert_eq!(text.content_type, PROMETHEUS_TEXT_0_0_4);
    for accept in [None, Some("*/*")] {
        let other = scrape(server.addr, accept).await;
        assert_eq!(other.content_type, PROMETHEUS_TEXT_0_0_4, "{accept:?}");
        assert_eq!(other.body, text.body, "{accept:?}");
    }

    let families = text_format_families(&text.body);
    for (name, kind) in [
        ("fluxgate_build_info", "gauge"),
        ("fluxgate_admission_requests_total", "counter"),
        ("fluxgate_admission_duration_seconds", "histogram"),
        (
            "fluxgate_webhook_certificate_expiry_timestamp_seconds",
            "gauge",
        ),
        ("fluxgate_webhook_certificate_reloads_total", "counter"),
        ("fluxgate_proxy_injections_total", "counter"),
        ("fluxgate_janitor_actions_total", "counter"),
        ("fluxgate_janitor_leader", "gauge"),
        ("fluxgate_janitor_candidates", "gauge"),
        ("fluxgate_gitrepositories", "gauge"),
        ("fluxgate_gitrepositories_failed", "gauge"),
        (
            "fluxgate_gitrepository_first_reconcile_seconds",
            "histogram",
        ),
        (
            "fluxgate_gitrepository_failing_since_timestamp_seconds",
            "gauge",
        ),
        ("fluxgate_watcher_restarts_total", "counter"),
        ("fluxgate_watcher_synced", "gauge"),
    ] {
        assert_eq!(families.get(name).map(String::as_str), Some(kind), "{name}");
    }

    // The same samples in both, the failing GitRepositories' included.
    let text_samples = samples(&text.body);
    assert_eq!(text_samples, samples(&openmetrics.body));
    let failing = text_samples
        .iter()
        .filter(|(s, _)| s.starts_with("fluxgate_gitrepository_failing_since_timestamp_seconds{"))
        .count();
    assert!(failing > 50, "{failing} failing GitRepositories");

    server.shutdown(Duration::from_secs(1)).await.unwrap();
}
