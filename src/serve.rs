//! `fluxgate serve`: the parts that run in one replica (webhook, exporter, janitor, the
//! operations listener), each configured by its own flag group and started here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio::task::JoinSet;

use crate::breaker::args::BreakerArgs;
use crate::breaker::probe::{Prober, ProberConfig, ProxyRoutes};
use crate::breaker::runtime::{BreakerDuty, Breakers};
use crate::certs::{CertArgs, bootstrap};
use crate::discovery;
use crate::election::{self, Candidate, Leadership};
use crate::exporter::{Exporter, ExporterArgs};
use crate::janitor::{self, JanitorArgs};
use crate::metrics::Metrics;
use crate::server::ops::{self, OpsArgs, Readiness};
use crate::server::webhook::{self, WebhookArgs};
use crate::server::{self, ConnectionLimits, RunningServer, ShutdownArgs, tls};

/// How often the API server's ClusterIP is re-read for NO_PROXY.
const SERVICE_IP_REFRESH: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub webhook: WebhookArgs,

    #[command(flatten)]
    pub certs: CertArgs,

    #[command(flatten)]
    pub exporter: ExporterArgs,

    #[command(flatten)]
    pub janitor: JanitorArgs,

    #[command(flatten)]
    pub breaker: BreakerArgs,

    #[command(flatten)]
    pub ops: OpsArgs,

    #[command(flatten)]
    pub shutdown: ShutdownArgs,

    /// fluxgate's own namespace (its certificate Secret and Lease live there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "fluxgate")]
    pub namespace: String,

    /// This replica's identity in the Lease (the Pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

impl ServeArgs {
    fn identity(&self) -> String {
        self.identity
            .clone()
            .unwrap_or_else(|| format!("fluxgate-{}", std::process::id()))
    }
}

/// `fluxgate serve`: starts every enabled part, then waits for SIGTERM and drains.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.breaker.enabled && !args.exporter.enabled() {
        anyhow::bail!("--breaker reads the exporter's watch: it cannot run with --no-exporter");
    }
    // Rules that cannot be meant (overlapping mirror rules, a host in two lanes) stop the start
    // before anything runs.
    if args.webhook.enabled() {
        args.webhook.policy.policy()?;
    }
    let mut metrics = Metrics::new();
    let exporter = args
        .exporter
        .enabled()
        .then(|| Exporter::new(&mut metrics, args.exporter.config()));
    let store = exporter.as_ref().map(Exporter::store);
    let metrics = Arc::new(metrics);
    let readiness = Readiness::new(args.webhook.enabled());
    let client = cluster_client(&args, exporter.is_some()).await?;
    let mut tasks = JoinSet::new();
    let mut servers = Vec::new();

    if args.webhook.enabled() {
        servers.push(start_webhook(&args, client.as_ref(), &metrics, &mut tasks).await?);
        readiness.set_webhook_listening();
    }
    if let (Some(exporter), Some(client)) = (exporter, &client) {
        readiness.set_exporter(exporter.status());
        tasks.spawn(log_end("exporter", exporter.run(client.clone())));
    }
    if let Some(client) = &client {
        start_elected(&args, client, store, &metrics, &mut tasks).await?;
    }
    // The operations listener goes last so /readyz stays answerable (false) during the drain.
    servers.push(start_ops(&args, &metrics, &readiness).await?);

    let shutdown = &args.shutdown;
    let signal = server::shutdown_signal();
    let (delay, drain) = (shutdown.shutdown_delay, shutdown.drain_timeout);
    let result = server::drain_on(signal, &readiness, delay, drain, servers).await;
    tasks.shutdown().await;
    tracing::info!("stopped");
    result.context("draining")
}

/// `/metrics`, `/healthz` and `/readyz`, plain HTTP.
async fn start_ops(
    args: &ServeArgs,
    metrics: &Arc<Metrics>,
    readiness: &Arc<Readiness>,
) -> anyhow::Result<RunningServer> {
    let router = ops::router(metrics.clone(), readiness.clone());
    let addr = args.ops.metrics_addr;
    let ops_server = server::spawn_plain(addr, router, ConnectionLimits::default())
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(addr = %ops_server.addr, "metrics and health serving HTTP");
    Ok(ops_server)
}

/// The parts that act once per cluster, on the replica holding the Lease: the janitor and the
/// host circuit breaker share one election.
async fn start_elected(
    args: &ServeArgs,
    client: &kube::Client,
    store: Option<Arc<crate::exporter::Store>>,
    metrics: &Metrics,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    if !args.breaker.enabled {
        watch_unattended_quarantines(client, metrics, tasks);
    }
    if !args.janitor.enabled && !args.breaker.enabled {
        return Ok(());
    }
    let leadership = join_election(args, client).await?;
    if args.janitor.enabled {
        start_janitor(args, client, metrics, leadership.clone(), tasks);
    }
    if let (true, Some(store)) = (args.breaker.enabled, store) {
        start_breaker(args, client, store, metrics, leadership, tasks)?;
    }
    Ok(())
}

/// A Kubernetes client when a part needs one. The webhook works without any cluster access, so
/// a missing configuration is fatal only for the parts that need it.
async fn cluster_client(args: &ServeArgs, exporter: bool) -> anyhow::Result<Option<kube::Client>> {
    let needs_client = exporter
        || args.janitor.enabled
        || args.breaker.enabled
        || (args.certs.cert_bootstrap && args.webhook.enabled());
    if needs_client {
        let client = kube::Client::try_default().await.context(
            "no Kubernetes client configuration (needed by the exporter, the janitor or --cert-bootstrap)",
        )?;
        return Ok(Some(client));
    }
    if !args.webhook.policy.proxy_configured() {
        return Ok(None);
    }
    // Only for tracking the API server's ClusterIP; without it NO_PROXY uses the address the
    // Pod was given at start.
    match kube::Client::try_default().await {
        Ok(client) => Ok(Some(client)),
        Err(err) => {
            tracing::warn!(error = %err, "no Kubernetes client; the API server's ClusterIP is not tracked");
            Ok(None)
        }
    }
}

/// The webhook: its certificate (bootstrapped in-cluster when asked), its policy, and its TLS
/// listener.
async fn start_webhook(
    args: &ServeArgs,
    client: Option<&kube::Client>,
    metrics: &Arc<Metrics>,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<RunningServer> {
    let certs = &args.certs;
    if let (true, Some(client)) = (certs.cert_bootstrap, client) {
        let config = certs.bootstrap(&args.namespace);
        bootstrap::ensure(client, &config)
            .await
            .context("bootstrapping the webhook certificate")?;
        let interval = certs.cert_check_interval;
        tasks.spawn(bootstrap::keep_current(client.clone(), config, interval));
    }
    let tls = tls::ReloadingTls::load(
        &certs.tls_cert_file,
        &certs.tls_key_file,
        metrics.tls.clone(),
    )
    .context("loading the webhook certificate")?;

    let mut policy = args.webhook.policy.policy()?;
    for rule in policy.gitrepository.mirror.rules() {
        metrics.mirror.declare(rule.label());
        tracing::info!(rule = %rule, "mirror rule for new GitRepositories");
    }
    for shard in policy.gitrepository.lanes.shards() {
        metrics.lane.declare(&shard);
    }
    for rule in policy.gitrepository.lanes.rules() {
        tracing::info!(rule = %rule, "lane rule for new GitRepositories");
    }
    let proxy = &mut policy.proxy;
    let track_service_ip = proxy.is_enabled() && proxy.kubernetes_service_ip.is_none();
    if proxy.is_enabled() && proxy.kubernetes_service_ip.is_none() {
        proxy.kubernetes_service_ip = discovery::kubernetes_service_ip_from_env();
    }
    if proxy.is_enabled() {
        tracing::info!(
            https_proxy = ?proxy.https_proxy,
            http_proxy = ?proxy.http_proxy,
            no_proxy = %proxy.no_proxy_value(),
            "proxy injection enabled for source-controller Pods"
        );
    }
    let state = webhook::WebhookState::new(policy, metrics.clone());
    if let (true, Some(client)) = (track_service_ip, client) {
        let tracking =
            discovery::track_kubernetes_service(client.clone(), state.clone(), SERVICE_IP_REFRESH);
        tasks.spawn(tracking);
    }

    let router = webhook::router(state, args.webhook.limits());
    let addr = args.webhook.webhook_addr;
    let running = server::spawn_tls(
        addr,
        tls.rustls_config(),
        router,
        ConnectionLimits::default(),
    )
    .await
    .with_context(|| format!("listening on {addr}"))?;
    tracing::info!(addr = %running.addr, path = webhook::MUTATE_PATH, "webhook serving HTTPS");
    tasks.spawn(tls.watch(certs.tls_reload_interval));
    Ok(running)
}

/// The Lease the janitor and the breaker act under: one election per replica.
async fn join_election(args: &ServeArgs, client: &kube::Client) -> anyhow::Result<Leadership> {
    let candidate = Candidate {
        namespace: args.namespace.clone(),
        lease: args.janitor.janitor_lease.clone(),
        identity: args.identity(),
    };
    election::join(client.clone(), candidate)
        .await
        .context("joining the leader election")
}

/// The janitor, on the replica that holds the Lease.
fn start_janitor(
    args: &ServeArgs,
    client: &kube::Client,
    metrics: &Metrics,
    leadership: Leadership,
    tasks: &mut JoinSet<()>,
) {
    let config = args.janitor.rules.config(args.janitor.janitor_dry_run);
    let interval = args.janitor.janitor_interval;
    tracing::info!(?config, ?interval, "janitor enabled");
    let duty = janitor::JanitorDuty {
        client: client.clone(),
        config,
        metrics: metrics.janitor.clone(),
        instance: args.identity(),
    };
    let run = election::run_while_leading("janitor", leadership, interval, duty);
    tasks.spawn(log_end("janitor", run));
}

/// The host circuit breaker, on the replica that holds the Lease, over the exporter's records.
fn start_breaker(
    args: &ServeArgs,
    client: &kube::Client,
    store: Arc<crate::exporter::Store>,
    metrics: &Metrics,
    leadership: Leadership,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let trip = args.breaker.trip.clone();
    tracing::info!(settings = ?trip.settings(), excluded = ?trip.breaker_exclude_hosts, lane = ?args.breaker.breaker_lane, "host circuit breaker enabled");
    let prober = host_prober(args)?;
    let breakers =
        Breakers::new(trip, metrics.breaker.clone()).in_lane(args.breaker.breaker_lane.clone());
    let duty = BreakerDuty::probed(client.clone(), store, breakers, args.identity(), prober);
    let every = args.breaker.breaker_pass_interval;
    let run = election::run_while_leading("breaker", leadership, every, duty);
    tasks.spawn(log_end("breaker", run));
    Ok(())
}

/// fluxgate's own probe of open hosts, through the proxy source-controller is given.
fn host_prober(args: &ServeArgs) -> anyhow::Result<Prober> {
    let policy = args.webhook.policy.policy()?;
    let proxy = ProxyRoutes::from_policy(&policy.proxy).context(
        "the host circuit breaker probes hosts through source-controller's proxy and cannot \
         read one kept in a Secret: give the proxy as a URL, or run with --breaker=false",
    )?;
    let config = ProberConfig {
        timeout: args.breaker.breaker_probe_timeout,
        concurrency: usize::from(args.breaker.breaker_probe_concurrency),
        proxy,
        ..ProberConfig::default()
    };
    Prober::new(config).context("building the host probe")
}

/// How often `serve --breaker=false` counts what the breaker left quarantined.
const UNATTENDED_RECOUNT: Duration = Duration::from_secs(600);

/// With the breaker off, nobody releases what it quarantined before (an earlier install, or a
/// replica that ran with it on): say so at start, with the command that brings them back, and
/// keep the count in `fluxgate_quarantined_without_breaker` for an alert.
fn watch_unattended_quarantines(client: &kube::Client, metrics: &Metrics, tasks: &mut JoinSet<()>) {
    let client = client.clone();
    let gauge = metrics.breaker.quarantined_without_breaker.clone();
    tasks.spawn(async move {
        let mut warned = false;
        loop {
            match crate::marks::count_quarantined(&client).await {
                Ok(count) => {
                    gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
                    if count > 0 && !warned {
                        tracing::warn!(
                            count,
                            "the host circuit breaker is off (--breaker=false) but GitRepositories are still quarantined by it; nobody will release them: run `fluxgate restore --quarantined`"
                        );
                        warned = true;
                    }
                }
                Err(err) => tracing::warn!(error = %err, "counting quarantined GitRepositories failed"),
            }
            tokio::time::sleep(UNATTENDED_RECOUNT).await;
        }
    });
}

/// Runs a part until it ends, logging why it ended.
async fn log_end(part: &'static str, run: impl Future<Output = anyhow::Result<()>>) {
    if let Err(err) = run.await {
        tracing::error!(error = %err, part, "stopped");
    }
}
