//! A **simulation** of Flux's source-controller and of a Git host, for measuring how fast the host
//! circuit breaker releases a host's quarantined GitRepositories (`tests/load/exporter/run.sh`
//! with `BENCH_BREAKER=1`). Nothing here clones anything; it is not source-controller.
//!
//! - **Git host stand-in** (`--git-host-listen`): a loopback HTTP listener that answers every
//!   request with 200 and an empty smart-HTTP advertisement, as a Git host answers the discovery
//!   request `GET <repo>/info/refs?service=git-upload-pack`. fluxgate reaches it as its HTTP
//!   proxy (`--http-proxy`), so the benchmark's `http://github.com/...` URLs stay as they are
//!   and nothing leaves the machine: the stand-in forwards nothing.
//! - **Simulated source-controller**: watches GitRepositories and reconciles each one the
//!   breaker released (carries `fluxgate.io/breaker-released-at`, is not suspended, and its
//!   `reconcile.fluxcd.io/requestedAt` is not yet its `status.lastHandledReconcileAt`) at a fixed
//!   throughput of `--per-second` objects, in the order released. Each reconcile is the status
//!   source-controller writes after a successful fetch, through the status subresource:
//!   `observedGeneration` and `lastHandledReconcileAt` set, `Ready=True` and
//!   `ArtifactInStorage=True` for the current generation, an artifact. The rest of the population
//!   has no simulated host and is left alone.
//!
//! Bounded: stops after `--count` reconciles or `--timeout`, whichever comes first, then prints
//! one line: `reconciled=N first_release_ms=T last_ready_ms=T ...` (Unix milliseconds).
//!
//! ```sh
//! cargo run --release --example simulated_source_controller -- \
//!     --per-second 40 --count 48000 --timeout 40m --git-host-listen 127.0.0.1:18080
//! ```
//!
//! Uses KUBECONFIG like kubectl; talks only to the API server and listens on loopback only.

use std::collections::HashSet;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, Notify, Semaphore};

const RELEASED_AT: &str = "fluxgate.io/breaker-released-at";
const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

#[derive(Parser)]
#[command(
    about = "A simulated source-controller (and Git host stand-in) for the breaker's release"
)]
struct Args {
    /// Reconciles per second: the simulated controller's throughput.
    #[arg(long)]
    per_second: f64,
    /// Stop after this many reconciles.
    #[arg(long)]
    count: usize,
    /// Stop after this long, done or not.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Serve the Git host stand-in here (loopback only), once the watch's first list is done:
    /// until then the host does not answer, and no release starts while the simulation is still
    /// reading the cluster.
    #[arg(long)]
    git_host_listen: Option<SocketAddr>,
    /// Status writes in flight at once, so the API server's latency does not lower the rate.
    #[arg(long, default_value_t = 8)]
    parallel: usize,
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn rfc3339_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A released GitRepository waiting for its simulated reconcile.
#[derive(Clone)]
struct Request {
    namespace: String,
    name: String,
    generation: i64,
    requested_at: String,
}

/// Released GitRepositories in the order seen, one entry per object (a newer event replaces
/// what an older one said).
#[derive(Default)]
struct Queue {
    order: VecDeque<String>,
    waiting: HashMap<String, Request>,
    /// (uid, requestedAt) of every request taken: reconciled once, whatever the watch repeats.
    taken: HashSet<(String, String)>,
    first_seen_ms: Option<u128>,
}

/// The request the breaker's release makes of source-controller, if `object` carries one.
fn released_request(object: &DynamicObject) -> Option<(String, Request)> {
    let meta = &object.metadata;
    let annotations = meta.annotations.as_ref()?;
    annotations.get(RELEASED_AT)?;
    let requested_at = annotations.get(REQUESTED_AT)?;
    let suspended = object.data["spec"]["suspend"].as_bool().unwrap_or(false);
    let handled = object.data["status"]["lastHandledReconcileAt"].as_str();
    if suspended || handled == Some(requested_at.as_str()) {
        return None;
    }
    Some((
        meta.uid.clone()?,
        Request {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            generation: meta.generation.unwrap_or(1),
            requested_at: requested_at.clone(),
        },
    ))
}

/// What source-controller writes after a successful reconcile of `request`.
fn ready_status(request: &Request) -> Value {
    let now = rfc3339_now();
    let h = fnv(&request.name);
    let digest = format!("{h:016x}{:016x}{:08x}", h.rotate_left(17), h as u32);
    let revision = format!("main@sha1:{digest}");
    let message = format!("stored artifact for revision '{revision}'");
    let condition = |kind: &str| {
        json!({
            "type": kind,
            "status": "True",
            "reason": "Succeeded",
            "message": message,
            "observedGeneration": request.generation,
            "lastTransitionTime": now,
        })
    };
    let (ns, name) = (&request.namespace, &request.name);
    json!({
        "status": {
            "observedGeneration": request.generation,
            "lastHandledReconcileAt": request.requested_at,
            "conditions": [condition("Ready"), condition("ArtifactInStorage")],
            "artifact": {
                "path": format!("gitrepository/{ns}/{name}/{digest}.tar.gz"),
                "url": format!("http://source-controller.flux-system.svc.cluster.local./gitrepository/{ns}/{name}/{digest}.tar.gz"),
                "revision": revision,
                "digest": format!("sha256:{digest}{}", &digest[..24]),
                "lastUpdateTime": now,
                "size": 20_000,
            },
        }
    })
}

/// FNV-1a: a stable made-up commit per name.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The Git host stand-in: 200 and an empty advertisement to every request, until `deadline`.
async fn serve_git_host(addr: SocketAddr, deadline: Instant) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("--git-host-listen must be a loopback address");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    const BODY: &[u8] = b"001e# service=git-upload-pack\n00000000";
    loop {
        let accepted = tokio::time::timeout_at(deadline.into(), listener.accept()).await;
        let Ok(Ok((mut socket, _))) = accepted else {
            return Ok(());
        };
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(1024);
            let mut buf = [0_u8; 1024];
            // The request head only; a probe sends no body. Bounded in size and time.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16_384 {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
            });
            if read.await.is_err() {
                return;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                BODY.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(BODY).await;
            let _ = socket.shutdown().await;
        });
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.per_second.is_nan() || args.per_second <= 0.0 || args.count == 0 || args.parallel == 0 {
        bail!("--per-second, --count and --parallel must be positive");
    }
    let started = Instant::now();
    let deadline = started + args.timeout;
    if let Some(addr) = args.git_host_listen
        && !addr.ip().is_loopback()
    {
        bail!("--git-host-listen must be a loopback address");
    }
    let client = kube::Client::try_default().await?;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "GitRepository"),
        "gitrepositories",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let queue = Arc::new(Mutex::new(Queue::default()));
    let woken = Arc::new(Notify::new());

    // The watch: enqueue what the breaker released.
    let watch = {
        let (api, queue, woken) = (api.clone(), queue.clone(), woken.clone());
        let mut git_host = args.git_host_listen;
        async move {
            let config = watcher::Config::default().page_size(500);
            let mut events = watcher::watcher(api, config).boxed();
            loop {
                let event = match events.try_next().await {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    // The watcher starts over by itself (a re-list); the deadline bounds it all.
                    Err(err) => {
                        eprintln!("watch: {err}; retrying in 1s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if matches!(event, Event::InitDone)
                    && let Some(addr) = git_host.take()
                {
                    eprintln!("listed; the Git host stand-in answers on {addr} from now on");
                    tokio::spawn(async move {
                        if let Err(err) = serve_git_host(addr, deadline).await {
                            eprintln!("git host stand-in: {err:#}");
                            std::process::exit(1);
                        }
                    });
                }
                let (Event::Apply(object) | Event::InitApply(object)) = event else {
                    continue;
                };
                let Some((uid, request)) = released_request(&object) else {
                    continue;
                };
                let mut queue = queue.lock().await;
                if queue
                    .taken
                    .contains(&(uid.clone(), request.requested_at.clone()))
                {
                    continue;
                }
                queue.first_seen_ms.get_or_insert_with(unix_ms);
                if queue.waiting.insert(uid.clone(), request).is_none() {
                    queue.order.push_back(uid);
                }
                woken.notify_one();
            }
            anyhow::Ok(())
        }
    };

    let done = Arc::new(AtomicUsize::new(0));
    let last_ready_ms = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    // The workers: one reconcile per tick, at most `parallel` writes in flight.
    let work = async {
        let resource = resource.clone();
        let slots = Arc::new(Semaphore::new(args.parallel));
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / args.per_second));
        // A controller with nothing to do does not save its capacity for later.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut started_writes = 0;
        while started_writes < args.count {
            let next = { queue.lock().await.pop() };
            let Some(request) = next else {
                woken.notified().await;
                continue;
            };
            ticks.tick().await;
            let permit = slots.clone().acquire_owned().await?;
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &request.namespace, &resource);
            let (done, last_ready_ms, failed) =
                (done.clone(), last_ready_ms.clone(), failed.clone());
            started_writes += 1;
            tokio::spawn(async move {
                let patch = Patch::Merge(ready_status(&request));
                let params = PatchParams::default();
                match api.patch_status(&request.name, &params, &patch).await {
                    Ok(_) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        last_ready_ms.fetch_max(
                            u64::try_from(unix_ms()).unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        );
                    }
                    Err(err) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("status of {}/{}: {err}", request.namespace, request.name);
                    }
                }
                drop(permit);
            });
        }
        // The last writes finish.
        let _ = slots.acquire_many(u32::try_from(args.parallel)?).await?;
        anyhow::Ok(())
    };

    let timed_out = tokio::select! {
        result = work => { result?; false }
        result = watch => { result?; bail!("the watch ended") }
        () = tokio::time::sleep_until(deadline.into()) => true,
    };
    let first = queue.lock().await.first_seen_ms.unwrap_or(0);
    println!(
        "reconciled={} failed={} first_release_ms={first} last_ready_ms={} per_second={} \
         timed_out={timed_out}",
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        last_ready_ms.load(Ordering::Relaxed),
        args.per_second
    );
    Ok(())
}

impl Queue {
    fn pop(&mut self) -> Option<Request> {
        while let Some(uid) = self.order.pop_front() {
            if let Some(request) = self.waiting.remove(&uid) {
                self.taken.insert((uid, request.requested_at.clone()));
                return Some(request);
            }
        }
        None
    }
}
