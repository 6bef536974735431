//! Benchmark tool for the exporter at scale (`tests/load/exporter/run.sh`): fills a real API server
//! with GitRepositories whose status looks like source-controller's, then measures exporters
//! against it.
//!
//! ```sh
//! # 10 000 GitRepositories in 1 000 namespaces (80 % failing, 5 % never reconciled) plus a probe
//! # namespace of 10 failing ones; status goes through the status subresource.
//! cargo run --release --example populate -- create --count 10000 --namespaces 1000
//! # Seconds from a status write to the exporter's gauge showing it, over 200 writes.
//! cargo run --release --example populate -- probe --metrics-url http://127.0.0.1:8080/metrics
//! # Until /metrics holds 10 010 GitRepositories (or /readyz answers 200), printing the wait.
//! cargo run --release --example populate -- wait --url http://127.0.0.1:8080/metrics \
//!     --sum fluxgate_gitrepositories --count 10010
//! ```
//!
//! Uses KUBECONFIG (or the in-cluster config) like kubectl. Every loop is bounded by a count and a
//! deadline; the only addresses it talks to are the API server and the metrics URL given.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser)]
#[command(about = "Populate a cluster with GitRepositories and measure an exporter against it")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create namespaces and GitRepositories, then write each one's status.
    Create(CreateArgs),
    /// Flip probe objects between failing and ready; time until /metrics shows each flip.
    Probe(ProbeArgs),
    /// Poll a URL until it answers 200 or its metrics reach a count; print the seconds waited.
    Wait(WaitArgs),
}

#[derive(clap::Args)]
struct CreateArgs {
    /// GitRepositories to create (besides the probe namespace's).
    #[arg(long)]
    count: usize,
    /// Namespaces to spread them over, round-robin.
    #[arg(long)]
    namespaces: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
    /// Namespace name prefix: `<prefix>-00042`, and `<prefix>-probe` for the probe objects.
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Percentage of objects whose last reconcile failed.
    #[arg(long, default_value_t = 80)]
    failing_percent: u64,
    /// Percentage of objects source-controller never picked up (no status at all).
    #[arg(long, default_value_t = 5)]
    pending_percent: u64,
    /// Objects in the probe namespace (all failing); 0 creates none.
    #[arg(long, default_value_t = 10)]
    probe_objects: usize,
    /// GitRepositories of this host get `http://` URLs instead of `https://`, so that a
    /// benchmark can route that host to a local stand-in through an HTTP proxy setting.
    #[arg(long)]
    plain_http_host: Option<String>,
    /// GitRepositories of this host that its breaker would quarantine (failing with a transport
    /// error, or never reconciled) are created quarantined already, with the breaker's marks and
    /// `spec.suspend: true`, as an earlier leader would have left them: a benchmark of the
    /// release can start from there.
    #[arg(long)]
    quarantined_host: Option<String>,
}

/// `--quarantined-host`, set once before any object is built.
static QUARANTINED_HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `--plain-http-host`, set once before any object is built.
static PLAIN_HTTP_HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Exporter {
    /// `fluxgate_gitrepositories{namespace, state}` counts.
    Fluxgate,
    /// kube-state-metrics' `gotk_resource_info{name, exported_namespace, ready}` per object.
    Ksm,
}

#[derive(clap::Args)]
struct ProbeArgs {
    /// The exporter's metrics endpoint (plain HTTP).
    #[arg(long)]
    metrics_url: String,
    #[arg(long, value_enum, default_value_t = Exporter::Fluxgate)]
    exporter: Exporter,
    /// Namespace holding the probe objects (`create` makes `<prefix>-probe`).
    #[arg(long, default_value = "bench-probe")]
    namespace: String,
    /// Status writes to time.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// fluxgate's `state` label value for a Ready=True GitRepository.
    #[arg(long, default_value = "ready")]
    ready_state: String,
    /// Pause between two scrapes while waiting for a change.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    poll: Duration,
    /// Pause after a change was seen, before the next write.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    gap: Duration,
    /// A change not seen within this counts as a timeout.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(clap::Args)]
struct WaitArgs {
    /// Plain-HTTP URL to poll.
    #[arg(long)]
    url: String,
    /// Done when the URL answers 200 (e.g. /readyz).
    #[arg(long, conflicts_with_all = ["sum", "lines"])]
    status_ok: bool,
    /// Done when the values of this metric's samples add up to --count.
    #[arg(long, requires = "count")]
    sum: Option<String>,
    /// Done when this many samples of this metric are present.
    #[arg(long, requires = "count")]
    lines: Option<String>,
    #[arg(long)]
    count: Option<u64>,
    /// Only samples with this label value count (`name=value`; repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Start of the wait as Unix milliseconds (when the exporter was started); default: now.
    #[arg(long)]
    since_ms: Option<u64>,
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    poll: Duration,
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected name=value, got {s:?}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // kube uses rustls; more than one provider may be linked, so pick one explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Create(args) => create(args).await,
        Command::Probe(args) => probe(args).await,
        Command::Wait(args) => wait(args).await,
    }
}

fn gitrepository_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "GitRepository"),
        "gitrepositories",
    )
}

// ---------------------------------------------------------------------------------------------
// create

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Health {
    /// Never reconciled: no status at all.
    Pending,
    /// Cloning fails and never succeeded: observedGeneration stays -1, no artifact.
    FailingNew,
    /// Cloning fails now but succeeded before: an artifact from the last good revision.
    FailingStale,
    Ready,
}

/// Which object is which, deterministic so that repeated runs build the same population.
fn health_of(index: usize, failing_percent: u64, pending_percent: u64) -> Health {
    let h = mix(index as u64);
    let bucket = h % 100;
    if bucket < pending_percent {
        Health::Pending
    } else if bucket < pending_percent + failing_percent {
        // A quarter of failing repositories worked once (credentials revoked, host moved).
        if (h >> 8).is_multiple_of(4) {
            Health::FailingStale
        } else {
            Health::FailingNew
        }
    } else {
        Health::Ready
    }
}

/// splitmix64: a cheap, well-spread hash so hosts and states are not striped by namespace.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn host_of(index: usize) -> &'static str {
    match (mix(index as u64) >> 16) % 10 {
        0..=6 => "github.com",
        7 | 8 => "gitlab.com",
        _ => "git.corp.example.com",
    }
}

fn rfc3339(secs_ago: u64) -> String {
    let t = time::OffsetDateTime::now_utc() - Duration::from_secs(secs_ago);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "2026-01-01T00:00:00Z".to_owned())
}

fn hex40(seed: u64) -> String {
    format!(
        "{:016x}{:016x}{:08x}",
        mix(seed),
        mix(seed ^ 1),
        mix(seed ^ 2) as u32
    )
}

fn spec_of(name: &str, index: usize) -> Value {
    let host = host_of(index);
    let scheme = if PLAIN_HTTP_HOST.get().is_some_and(|h| h == host) {
        "http"
    } else {
        "https"
    };
    // As fluxgate's webhook admits them: timeout 5m, suspend false.
    json!({
        "interval": "5m",
        "timeout": "5m",
        "suspend": false,
        "url": format!("{scheme}://{host}/example-org/{name}"),
        "ref": { "branch": "main" },
    })
}

/// Whether `--quarantined-host`'s breaker would have quarantined this object: a transport
/// failure (see [`failure`]) or never reconciled.
fn quarantined(index: usize, health: Health) -> bool {
    let transport = (mix(index as u64) >> 24) % 10 <= 7;
    QUARANTINED_HOST.get().is_some_and(|h| h == host_of(index))
        && match health {
            Health::Pending => true,
            Health::FailingNew | Health::FailingStale => transport,
            Health::Ready => false,
        }
}

fn object(namespace: &str, name: &str, index: usize, health: Health) -> DynamicObject {
    let mut object = object_json(namespace, name, index);
    if quarantined(index, health) {
        // Ten minutes ago: recent, as a quarantine of the outage the benchmark stands for.
        let at = rfc3339(600);
        object["metadata"]["labels"]["fluxgate.io/quarantined"] = json!("true");
        let annotations = &mut object["metadata"]["annotations"];
        annotations["fluxgate.io/quarantined-host"] = json!(host_of(index));
        annotations["fluxgate.io/quarantined-at"] = json!(at);
        annotations["fluxgate.io/quarantine-reason"] =
            json!("created quarantined by the benchmark's population");
        object["spec"]["suspend"] = json!(true);
    }
    serde_json::from_value(object).expect("static object shape")
}

fn object_json(namespace: &str, name: &str, index: usize) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { "platform.example.com/project": index.to_string() },
            "annotations": { "reconcile.fluxcd.io/requestedAt": rfc3339(31 * 86_400) },
        },
        "spec": spec_of(name, index),
    })
}

fn artifact(namespace: &str, name: &str, index: usize, age_secs: u64) -> Value {
    let sha = hex40(index as u64);
    json!({
        "path": format!("gitrepository/{namespace}/{name}/{sha}.tar.gz"),
        "url": format!(
            "http://source-controller.flux-system.svc.cluster.local./gitrepository/{namespace}/{name}/{sha}.tar.gz"
        ),
        "revision": format!("main@sha1:{sha}"),
        "digest": format!("sha256:{}{}", hex40(!(index as u64)), &hex40(index as u64 ^ 7)[..24]),
        "lastUpdateTime": rfc3339(age_secs),
        "size": 20_000 + (mix(index as u64) % 2_000_000),
    })
}

/// A failure message as source-controller writes it: the Git error, with the URL.
fn failure(url: &str, index: usize) -> (&'static str, String) {
    match (mix(index as u64) >> 24) % 10 {
        0..=5 => (
            "GitOperationFailed",
            format!(
                "failed to checkout and determine revision: unable to clone '{url}': context deadline exceeded"
            ),
        ),
        6 | 7 => (
            "GitOperationFailed",
            format!(
                "failed to checkout and determine revision: unable to clone '{url}': dial tcp: lookup {} on 10.96.0.10:53: i/o timeout",
                url.split('/').nth(2).unwrap_or("host")
            ),
        ),
        _ => (
            "AuthenticationFailed",
            format!(
                "failed to checkout and determine revision: unable to clone '{url}': authentication required"
            ),
        ),
    }
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, since: &str) -> Value {
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 1,
        "lastTransitionTime": since,
    })
}

/// The status source-controller would have written for `health`; `None` for Pending.
fn status_of(namespace: &str, name: &str, index: usize, health: Health) -> Option<Value> {
    let url = spec_of(name, index)["url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Spread over the last 30 days, so failing-since and artifact ages vary.
    let age = 60 + mix(index as u64 ^ 0x5eed) % (30 * 86_400);
    let since = rfc3339(age);
    match health {
        Health::Pending => None,
        Health::Ready => {
            let revision = format!("main@sha1:{}", hex40(index as u64));
            let message = format!("stored artifact for revision '{revision}'");
            Some(json!({
                "observedGeneration": 1,
                "conditions": [
                    condition("Ready", "True", "Succeeded", &message, &since),
                    condition("ArtifactInStorage", "True", "Succeeded", &message, &since),
                ],
                "artifact": artifact(namespace, name, index, age),
            }))
        }
        Health::FailingNew | Health::FailingStale => {
            let (reason, message) = failure(&url, index);
            let mut status = json!({
                "observedGeneration": -1,
                "conditions": [
                    condition("Reconciling", "True", "ProgressingWithRetry",
                        "building artifact: retrying after error", &since),
                    condition("Ready", "False", reason, &message, &since),
                    condition("FetchFailed", "True", reason, &message, &since),
                ],
            });
            if health == Health::FailingStale {
                status["observedGeneration"] = json!(1);
                status["artifact"] = artifact(namespace, name, index, age + 86_400);
                status["conditions"]
                    .as_array_mut()
                    .expect("array")
                    .push(condition(
                        "ArtifactInStorage",
                        "True",
                        "Succeeded",
                        "stored artifact for an older revision",
                        &since,
                    ));
            }
            Some(status)
        }
    }
}

/// Retries transient API errors (429, 5xx, connection resets) a bounded number of times.
async fn with_retry<T, F, Fut>(what: &str, mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=8 {
        match op().await {
            Ok(value) => return Ok(value),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                return Err(kube::Error::Api(status).into());
            }
            Err(kube::Error::Api(status)) if status.code < 429 || status.code == 501 => {
                return Err(kube::Error::Api(status)).with_context(|| what.to_owned());
            }
            Err(err) if attempt == 8 => return Err(err).with_context(|| what.to_owned()),
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    unreachable!("the last attempt returns")
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    if args.namespaces == 0 || args.parallel == 0 {
        bail!("--namespaces and --parallel must be at least 1");
    }
    if args.failing_percent + args.pending_percent > 100 {
        bail!("--failing-percent + --pending-percent exceeds 100");
    }
    if let Some(host) = &args.plain_http_host {
        PLAIN_HTTP_HOST.set(host.clone()).ok();
    }
    if let Some(host) = &args.quarantined_host {
        QUARANTINED_HOST.set(host.clone()).ok();
    }
    let client = kube::Client::try_default().await?;
    let started = Instant::now();

    let mut namespaces: Vec<String> = (0..args.namespaces)
        .map(|i| format!("{}-{i:05}", args.prefix))
        .collect();
    let probe_ns = format!("{}-probe", args.prefix);
    if args.probe_objects > 0 {
        namespaces.push(probe_ns.clone());
    }
    let ns_api = Api::<Namespace>::all(client.clone());
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(namespaces.iter().cloned())
        .map(|name| {
            let api = ns_api.clone();
            async move {
                let ns: Namespace =
                    serde_json::from_value(json!({ "metadata": { "name": name } }))?;
                let params = PostParams::default();
                let result =
                    with_retry(&format!("namespace {name}"), || api.create(&params, &ns)).await;
                match result {
                    Ok(_) => Ok(()),
                    Err(err) => match err.downcast_ref::<kube::Error>() {
                        Some(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                        _ => Err(err),
                    },
                }
            }
        })
        .buffer_unordered(args.parallel)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let ns_done = started.elapsed();
    eprintln!(
        "populate: {} namespaces in {:.1}s",
        namespaces.len(),
        ns_done.as_secs_f64()
    );

    // (namespace, name, index, health): the population, then the probe objects (all failing).
    let mut items: Vec<(String, String, usize, Health)> = (0..args.count)
        .map(|i| {
            (
                namespaces[i % args.namespaces].clone(),
                format!("project-{i:06}"),
                i,
                health_of(i, args.failing_percent, args.pending_percent),
            )
        })
        .collect();
    for i in 0..args.probe_objects {
        items.push((
            probe_ns.clone(),
            format!("probe-{i:02}"),
            args.count + i,
            Health::FailingNew,
        ));
    }

    let total = items.len();
    let done = Arc::new(AtomicU64::new(0));
    let resource = gitrepository_resource();
    let progress_every = (total / 20).max(1) as u64;
    let results: Vec<anyhow::Result<Health>> = futures::stream::iter(items)
        .map(|(namespace, name, index, health)| {
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace, &resource);
            let done = done.clone();
            async move {
                let obj = object(&namespace, &name, index, health);
                let post = PostParams::default();
                let created = with_retry(&format!("create {namespace}/{name}"), || {
                    api.create(&post, &obj)
                })
                .await;
                if let Err(err) = created {
                    match err.downcast_ref::<kube::Error>() {
                        Some(kube::Error::Api(s)) if s.code == 409 => {}
                        _ => return Err(err),
                    }
                }
                if let Some(status) = status_of(&namespace, &name, index, health) {
                    let body = json!({ "status": status });
                    let patch = Patch::Merge(&body);
                    let params = PatchParams::default();
                    with_retry(&format!("status {namespace}/{name}"), || {
                        api.patch_status(&name, &params, &patch)
                    })
                    .await?;
                }
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(progress_every) {
                    eprintln!(
                        "populate: {n}/{total} after {:.1}s",
                        started.elapsed().as_secs_f64()
                    );
                }
                Ok(health)
            }
        })
        .buffer_unordered(args.parallel)
        .collect()
        .await;

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for result in results {
        let label = match result? {
            Health::Pending => "pending",
            Health::FailingNew => "failing (never succeeded)",
            Health::FailingStale => "failing (stale artifact)",
            Health::Ready => "ready",
        };
        *counts.entry(label).or_default() += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("populate: {counts:?}");
    // Machine-readable last line for run.sh.
    println!(
        "created={total} namespaces={} seconds={secs:.1} objects_per_second={:.0}",
        namespaces.len(),
        total as f64 / (secs - ns_done.as_secs_f64()).max(0.001)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// metrics over plain HTTP

/// GETs `url` (http://host:port/path) with HTTP/1.0, so the body is never chunked; returns the
/// status code and body.
async fn http_get(url: &str, limit: Duration) -> anyhow::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::with_capacity(64 * 1024);
        stream.read_to_end(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = tokio::time::timeout(limit, exchange)
        .await
        .context("HTTP request timed out")??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    Ok((code, body.to_owned()))
}

/// Labels and value of one exposition line of `metric` (exact name), or None.
fn parse_sample<'a>(line: &'a str, metric: &str) -> Option<(Vec<(&'a str, &'a str)>, f64)> {
    let rest = line.strip_prefix(metric)?;
    let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
        let end = rest.rfind('}')?;
        (&rest[..end], rest[end + 1..].trim())
    } else if rest.starts_with(' ') {
        ("", rest.trim())
    } else {
        return None; // another metric sharing the prefix
    };
    let value = value.split_whitespace().next()?.parse().ok()?;
    let mut pairs = Vec::new();
    // Label values here never contain `",`; enough for these exporters' output.
    for part in labels.split("\",") {
        let part = part.trim().trim_end_matches('"').trim_start_matches(',');
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once("=\"")?;
        pairs.push((k.trim(), v));
    }
    Some((pairs, value))
}

fn label<'a>(labels: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

// ---------------------------------------------------------------------------------------------
// probe

/// Whether `body` shows the probe namespace in the expected state.
fn observed(body: &str, args: &ProbeArgs, object: &str, ready: bool, ready_count: u64) -> bool {
    match args.exporter {
        Exporter::Fluxgate => {
            let mut value = 0.0;
            for line in body.lines() {
                if let Some((labels, v)) = parse_sample(line, "fluxgate_gitrepositories")
                    && label(&labels, "namespace") == Some(args.namespace.as_str())
                    && label(&labels, "state") == Some(args.ready_state.as_str())
                {
                    value += v;
                }
            }
            value as u64 == ready_count
        }
        Exporter::Ksm => {
            let want = if ready { "True" } else { "False" };
            body.lines().any(|line| {
                parse_sample(line, "gotk_resource_info").is_some_and(|(labels, _)| {
                    label(&labels, "name") == Some(object)
                        && (label(&labels, "exported_namespace")
                            .or_else(|| label(&labels, "namespace"))
                            == Some(args.namespace.as_str()))
                        && label(&labels, "ready") == Some(want)
                })
            })
        }
    }
}

fn ready_status(namespace: &str, name: &str, index: usize) -> Value {
    status_of(namespace, name, index, Health::Ready).expect("ready has a status")
}

fn failing_status(namespace: &str, name: &str, index: usize) -> Value {
    // Ready=True leaves an artifact behind; a merge patch keeps fields it does not name.
    let mut status =
        status_of(namespace, name, index, Health::FailingNew).expect("failing has a status");
    status["artifact"] = Value::Null;
    status
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank: the smallest sample with at least p of all samples at or below it.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client, &args.namespace, &gitrepository_resource());
    let mut names: Vec<String> = api
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    names.sort();
    if names.is_empty() {
        bail!(
            "no GitRepositories in {} (populate create makes them)",
            args.namespace
        );
    }
    let scrape_limit = Duration::from_secs(30);

    // Start from a known state: every probe object failing, and the exporter showing it.
    for (i, name) in names.iter().enumerate() {
        let patch = json!({ "status": failing_status(&args.namespace, name, 1_000_000 + i) });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let settle = Instant::now() + args.timeout;
    loop {
        let (_, body) = http_get(&args.metrics_url, scrape_limit).await?;
        let all_failing = names.iter().all(|n| observed(&body, &args, n, false, 0));
        if all_failing {
            break;
        }
        if Instant::now() > settle {
            bail!("the exporter never showed the probe objects as failing");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut latencies = Vec::with_capacity(args.samples);
    // From the write to the start of the scrape that showed it: the exporter computes its
    // series when a scrape arrives, so the gauge had changed by then. With a large /metrics this
    // separates the exporter's update from the time the scrape itself takes.
    let mut starts = Vec::with_capacity(args.samples);
    let mut writes = Vec::with_capacity(args.samples);
    let mut scrapes = Vec::new();
    let mut timeouts = 0usize;
    let mut ready_count = 0u64;
    let round = names.len();
    for sample in 0..args.samples {
        // Objects go ready one by one, then failing one by one, and so on.
        let slot = sample % round;
        let to_ready = (sample / round).is_multiple_of(2);
        let name = &names[slot];
        let index = 1_000_000 + slot;
        let status = if to_ready {
            ready_status(&args.namespace, name, index)
        } else {
            failing_status(&args.namespace, name, index)
        };
        let patch = json!({ "status": status });
        let expected = if to_ready {
            ready_count + 1
        } else {
            ready_count - 1
        };

        let t0 = Instant::now();
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        writes.push(t0.elapsed().as_secs_f64());
        let deadline = t0 + args.timeout;
        let mut seen = None;
        while Instant::now() < deadline {
            let s0 = Instant::now();
            let (_, body) = http_get(&args.metrics_url, scrape_limit).await?;
            scrapes.push(s0.elapsed().as_secs_f64());
            if observed(&body, &args, name, to_ready, expected) {
                // Conservative: when the scrape that showed it finished.
                seen = Some((t0.elapsed().as_secs_f64(), (s0 - t0).as_secs_f64()));
                break;
            }
            tokio::time::sleep(args.poll).await;
        }
        ready_count = expected;
        match seen {
            Some((latency, start)) => {
                latencies.push(latency);
                starts.push(start);
            }
            None => {
                timeouts += 1;
                eprintln!(
                    "probe: sample {sample} ({name}) not seen within {:?}",
                    args.timeout
                );
            }
        }
        tokio::time::sleep(args.gap).await;
    }

    latencies.sort_by(f64::total_cmp);
    starts.sort_by(f64::total_cmp);
    writes.sort_by(f64::total_cmp);
    scrapes.sort_by(f64::total_cmp);
    let ms = |v: f64| v * 1000.0;
    println!(
        "samples={} timeouts={timeouts} p50_ms={:.0} p90_ms={:.0} p99_ms={:.0} max_ms={:.0} \
         start_p50_ms={:.0} start_p99_ms={:.0} \
         write_p50_ms={:.0} write_p99_ms={:.0} scrape_p50_ms={:.1} scrape_p99_ms={:.1}",
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or(f64::NAN)),
        ms(percentile(&starts, 50.0)),
        ms(percentile(&starts, 99.0)),
        ms(percentile(&writes, 50.0)),
        ms(percentile(&writes, 99.0)),
        ms(percentile(&scrapes, 50.0)),
        ms(percentile(&scrapes, 99.0)),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// wait

async fn wait(args: WaitArgs) -> anyhow::Result<()> {
    let now_ms = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64
    };
    let since = args.since_ms.unwrap_or_else(now_ms);
    let deadline = Instant::now() + args.timeout;
    let mut last: String;
    let mut scrapes = 0u64;
    loop {
        let scrape_started = now_ms();
        scrapes += 1;
        match http_get(&args.url, Duration::from_secs(60)).await {
            Ok((code, body)) => {
                let done = if args.status_ok {
                    last = format!("HTTP {code}");
                    code == 200
                } else {
                    let (metric, summing) = match (&args.sum, &args.lines) {
                        (Some(m), _) => (m.as_str(), true),
                        (_, Some(m)) => (m.as_str(), false),
                        _ => bail!("give --status-ok, --sum or --lines"),
                    };
                    let mut total = 0.0;
                    for line in body.lines() {
                        if let Some((labels, v)) = parse_sample(line, metric)
                            && args
                                .labels
                                .iter()
                                .all(|(k, want)| label(&labels, k) == Some(want.as_str()))
                        {
                            total += if summing { v } else { 1.0 };
                        }
                    }
                    last = format!("{metric}: {total} of {}", args.count.unwrap_or(0));
                    code == 200 && total as u64 >= args.count.unwrap_or(0)
                };
                if done {
                    let end = now_ms();
                    // The scrape that showed it began no earlier than scrape_started.
                    println!(
                        "seconds={:.2} scrape_started_seconds={:.2} body_bytes={} scrapes={scrapes}",
                        end.saturating_sub(since) as f64 / 1000.0,
                        scrape_started.saturating_sub(since) as f64 / 1000.0,
                        body.len()
                    );
                    return Ok(());
                }
            }
            Err(err) => last = format!("{err:#}"),
        }
        if Instant::now() > deadline {
            bail!("gave up after {:?}: {last}", args.timeout);
        }
        tokio::time::sleep(args.poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exposition_lines() {
        let (labels, v) = parse_sample(
            r#"fluxgate_gitrepositories{namespace="a",state="failed"} 3"#,
            "fluxgate_gitrepositories",
        )
        .unwrap();
        assert_eq!(labels, vec![("namespace", "a"), ("state", "failed")]);
        assert_eq!(v, 3.0);
        assert!(
            parse_sample(
                "fluxgate_gitrepositories_failed{a=\"b\"} 1",
                "fluxgate_gitrepositories"
            )
            .is_none()
        );
        let (labels, _) = parse_sample(
            r#"gotk_resource_info{customresource_kind="GitRepository",name="probe-01",ready="True",url="https://x/y"} 1"#,
            "gotk_resource_info",
        )
        .unwrap();
        assert_eq!(label(&labels, "ready"), Some("True"));
        assert_eq!(label(&labels, "url"), Some("https://x/y"));
    }

    #[test]
    fn population_is_mostly_failing() {
        let failing = (0..10_000)
            .filter(|&i| {
                matches!(
                    health_of(i, 80, 5),
                    Health::FailingNew | Health::FailingStale
                )
            })
            .count();
        assert!((7_700..8_300).contains(&failing), "{failing}");
    }
}
