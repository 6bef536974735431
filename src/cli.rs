//! Command-line interface: every flag of `serve` also reads a `FLUXGATE_*` environment variable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration::FluxDuration;
use crate::janitor::{Action, JanitorConfig, Rule, Rules};
use crate::policy::proxy::ProxyValue;
use crate::policy::{GitRepositoryPolicy, Policy, ProxyPolicy, SuspendMode, TimeoutMode};
use crate::report::ReportFormat;

#[derive(Debug, Parser)]
#[command(
    name = "fluxgate",
    version,
    about = "Keeps Flux source-controller healthy: a GitRepository admission webhook, exporter and janitor"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log line format.
    #[arg(long, global = true, env = "FLUXGATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (RUST_LOG is honoured too).
    #[arg(long, global = true, env = "FLUXGATE_LOG", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the admission webhook (HTTPS) and metrics/health (HTTP), and run the exporter.
    Serve(Box<ServeArgs>),
    /// Print manifests as the webhook would leave them on CREATE (no cluster needed).
    Mutate(Box<MutateArgs>),
    /// Summarise GitRepository health from `kubectl get gitrepositories -A -o json`.
    Report(ReportArgs),
    /// Write a CA and a serving certificate (ca.crt, tls.crt, tls.key) for static setups.
    Certs(CertsArgs),
    /// Run the janitor once (`--once`, for a CronJob) or clean up one GitRepository by hand
    /// (`NAMESPACE/NAME`), with the caller's kubeconfig and RBAC.
    Cleanup(Box<CleanupArgs>),
    /// Undo an archive: unsuspend a GitRepository, clear fluxgate's marks, request a reconcile.
    Restore(RestoreArgs),
}

/// A rule threshold; `0`, `off` or `never` disable the rule (returned as zero).
fn parse_rule_duration(s: &str) -> Result<Duration, String> {
    match s {
        "0" | "off" | "never" => Ok(Duration::ZERO),
        _ => parse_duration(s),
    }
}

/// The janitor's rules, shared by `serve` and `cleanup`.
#[derive(Debug, Clone, Args)]
pub struct JanitorArgs {
    /// Archive GitRepositories failing (Ready=False) for longer than this; 0 disables the rule.
    #[arg(long, env = "FLUXGATE_JANITOR_FAILING_FOR", default_value = "24h", value_parser = parse_rule_duration)]
    pub failing_for: Duration,

    /// What to do with long-failing GitRepositories.
    #[arg(long, env = "FLUXGATE_JANITOR_FAILING_ACTION", value_enum, default_value_t = Action::Suspend)]
    pub failing_action: Action,

    /// Archive test repositories (see --test-name-tokens) with no new artifact for longer than
    /// this; 0 disables the rule.
    #[arg(long, env = "FLUXGATE_JANITOR_STALE_TEST_FOR", default_value = "7d", value_parser = parse_rule_duration)]
    pub stale_test_for: Duration,

    /// What to do with stale test repositories.
    #[arg(long, env = "FLUXGATE_JANITOR_STALE_TEST_ACTION", value_enum, default_value_t = Action::Suspend)]
    pub stale_test_action: Action,

    /// Name tokens (between -, . or _) that mark a test repository.
    #[arg(
        long,
        env = "FLUXGATE_JANITOR_TEST_NAME_TOKENS",
        value_delimiter = ',',
        default_value = "test,demo,tmp"
    )]
    pub test_name_tokens: Vec<String>,

    /// Namespaces the janitor never touches.
    #[arg(
        long,
        env = "FLUXGATE_JANITOR_EXCLUDE_NAMESPACES",
        value_delimiter = ',',
        default_value = "flux-system"
    )]
    pub janitor_exclude_namespaces: Vec<String>,

    /// Namespaces the janitor looks at (comma-separated); empty: all.
    #[arg(long, env = "FLUXGATE_JANITOR_NAMESPACES", value_delimiter = ',')]
    pub janitor_namespaces: Vec<String>,

    /// Most actions per run; the rest waits for the next run.
    #[arg(long, env = "FLUXGATE_JANITOR_MAX_ACTIONS", default_value_t = 100)]
    pub janitor_max_actions: usize,
}

impl JanitorArgs {
    pub fn config(&self, dry_run: bool) -> JanitorConfig {
        JanitorConfig {
            rules: Rules {
                failing: (!self.failing_for.is_zero()).then_some(Rule {
                    after: self.failing_for,
                    action: self.failing_action,
                }),
                stale_test: (!self.stale_test_for.is_zero()).then_some(Rule {
                    after: self.stale_test_for,
                    action: self.stale_test_action,
                }),
                test_tokens: self.test_name_tokens.clone(),
                excluded_namespaces: self.janitor_exclude_namespaces.clone(),
            },
            dry_run,
            namespaces: self.janitor_namespaces.clone(),
            max_actions_per_run: self.janitor_max_actions,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// One GitRepository to clean up now; without it, `--once` evaluates the rules.
    #[arg(value_name = "NAMESPACE/NAME", value_parser = parse_object_ref, required_unless_present = "once")]
    pub target: Option<(String, String)>,

    /// Evaluate the rules once over the cluster and act (for a CronJob).
    #[arg(long, conflicts_with = "target")]
    pub once: bool,

    /// Action for a manual cleanup.
    #[arg(long, value_enum, default_value_t = Action::Suspend, requires = "target")]
    pub action: Action,

    /// Report what would happen and change nothing.
    #[arg(long, env = "FLUXGATE_JANITOR_DRY_RUN")]
    pub dry_run: bool,

    #[command(flatten)]
    pub janitor: JanitorArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    #[arg(value_name = "NAMESPACE/NAME", value_parser = parse_object_ref)]
    pub target: (String, String),
}

fn parse_object_ref(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("{text:?}: expected NAMESPACE/NAME")),
    }
}

/// The admission policy, shared by `serve` and `mutate` so previews match the webhook.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// spec.timeout fluxgate enforces on new GitRepositories (units ms, s, m).
    #[arg(long, env = "FLUXGATE_GITREPOSITORY_TIMEOUT", default_value = "5m")]
    pub gitrepository_timeout: FluxDuration,

    /// floor: raise missing or shorter timeouts; force: always set the timeout.
    #[arg(long, env = "FLUXGATE_TIMEOUT_MODE", value_enum, default_value_t = TimeoutMode::Floor)]
    pub timeout_mode: TimeoutMode,

    /// force: spec.suspend is always false (with a warning when overriding true); preserve: keep
    /// an explicit true.
    #[arg(long, env = "FLUXGATE_SUSPEND_MODE", value_enum, default_value_t = SuspendMode::Force)]
    pub suspend_mode: SuspendMode,

    /// HTTPS_PROXY injected into source-controller Pods: a URL, or secret:NAME/KEY to reference a
    /// Secret in the Pod's namespace (for URLs with credentials). Unset: Pods are left alone.
    #[arg(long, env = "FLUXGATE_HTTPS_PROXY", hide_env_values = true, value_parser = ProxyValue::parse)]
    pub https_proxy: Option<ProxyValue>,

    /// HTTP_PROXY injected alongside (same forms as --https-proxy).
    #[arg(long, env = "FLUXGATE_HTTP_PROXY", hide_env_values = true, value_parser = ProxyValue::parse)]
    pub http_proxy: Option<ProxyValue>,

    /// Extra NO_PROXY entries (comma-separated); loopback, .cluster.local(.), .svc and the API
    /// server's ClusterIP are always added.
    #[arg(long, env = "FLUXGATE_NO_PROXY", value_delimiter = ',')]
    pub no_proxy: Vec<String>,

    /// The cluster's Service and Pod CIDRs (comma-separated), added to NO_PROXY.
    #[arg(long, env = "FLUXGATE_CLUSTER_CIDRS", value_delimiter = ',')]
    pub cluster_cidrs: Vec<String>,

    /// ClusterIP of default/kubernetes; `serve` discovers and tracks it, `mutate` uses it as given.
    #[arg(long, env = "FLUXGATE_KUBERNETES_SERVICE_IP")]
    pub kubernetes_service_ip: Option<String>,

    /// Namespaces whose Pods may get the proxy environment (comma-separated).
    #[arg(
        long,
        env = "FLUXGATE_PROXY_NAMESPACES",
        value_delimiter = ',',
        default_value = "flux-system"
    )]
    pub proxy_namespaces: Vec<String>,

    /// Labels a Pod must carry to get the proxy environment (comma-separated key=value).
    #[arg(long, env = "FLUXGATE_PROXY_SELECTOR", value_delimiter = ',', default_value = "app=source-controller", value_parser = parse_label)]
    pub proxy_selector: Vec<(String, String)>,

    /// Containers that get the proxy environment (comma-separated); init containers never do.
    #[arg(
        long,
        env = "FLUXGATE_PROXY_CONTAINERS",
        value_delimiter = ',',
        default_value = "manager"
    )]
    pub proxy_containers: Vec<String>,

    /// Replace proxy variables a Pod already sets (default: leave them alone).
    #[arg(long, env = "FLUXGATE_PROXY_OVERRIDE")]
    pub proxy_override: bool,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("{text:?}: expected key=value")),
    }
}

impl PolicyArgs {
    pub fn policy(&self) -> Policy {
        Policy {
            gitrepository: GitRepositoryPolicy {
                timeout: self.gitrepository_timeout,
                timeout_mode: self.timeout_mode,
                suspend_mode: self.suspend_mode,
            },
            proxy: ProxyPolicy {
                https_proxy: self.https_proxy.clone(),
                http_proxy: self.http_proxy.clone(),
                no_proxy: self.no_proxy.clone(),
                cluster_cidrs: self.cluster_cidrs.clone(),
                kubernetes_service_ip: self.kubernetes_service_ip.clone(),
                namespaces: self.proxy_namespaces.clone(),
                selector: self.proxy_selector.clone(),
                containers: self.proxy_containers.clone(),
                override_existing: self.proxy_override,
            },
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// HTTPS address of the admission webhook (POST /mutate).
    #[arg(long, env = "FLUXGATE_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub webhook_addr: SocketAddr,

    /// Plain HTTP address of /metrics, /healthz and /readyz.
    #[arg(long, env = "FLUXGATE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,

    /// PEM certificate chain served by the webhook; re-read when it changes.
    #[arg(
        long,
        env = "FLUXGATE_TLS_CERT_FILE",
        default_value = "/tmp/fluxgate-certs/tls.crt"
    )]
    pub tls_cert_file: PathBuf,

    /// PEM private key of the certificate.
    #[arg(
        long,
        env = "FLUXGATE_TLS_KEY_FILE",
        default_value = "/tmp/fluxgate-certs/tls.key"
    )]
    pub tls_key_file: PathBuf,

    /// How often the certificate files are checked for changes.
    #[arg(long, env = "FLUXGATE_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,

    /// Create the certificate in-cluster (CA in a Secret, caBundle patched into the webhook
    /// configuration) and write it to --tls-cert-file/--tls-key-file.
    #[arg(long, env = "FLUXGATE_CERT_BOOTSTRAP", default_value_t = false, action = clap::ArgAction::Set)]
    pub cert_bootstrap: bool,

    /// Secret holding the bootstrapped CA and serving pair.
    #[arg(long, env = "FLUXGATE_CERT_SECRET", default_value = "fluxgate-tls")]
    pub cert_secret: String,

    /// MutatingWebhookConfiguration whose caBundle the bootstrap maintains.
    #[arg(long, env = "FLUXGATE_WEBHOOK_CONFIG", default_value = "fluxgate")]
    pub webhook_config: String,

    /// Service the webhook configuration calls (names in the serving certificate).
    #[arg(long, env = "FLUXGATE_SERVICE_NAME", default_value = "fluxgate")]
    pub service_name: String,

    /// fluxgate's own namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "fluxgate")]
    pub namespace: String,

    /// Renew the bootstrapped serving certificate when less than this is left.
    #[arg(long, env = "FLUXGATE_CERT_RENEW_BEFORE", default_value = "30days", value_parser = parse_duration)]
    pub cert_renew_before: Duration,

    /// How often the bootstrap re-checks the Secret and caBundle.
    #[arg(long, env = "FLUXGATE_CERT_CHECK_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub cert_check_interval: Duration,

    /// Run the exporter alone.
    #[arg(long, env = "FLUXGATE_NO_WEBHOOK", conflicts_with = "no_exporter")]
    pub no_webhook: bool,

    /// Run the webhook alone (needs no cluster access at all).
    #[arg(long, env = "FLUXGATE_NO_EXPORTER")]
    pub no_exporter: bool,

    /// Namespaces whose GitRepositories are watched (comma-separated); empty: all.
    #[arg(long, env = "FLUXGATE_WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,

    /// How long the GitRepository watch may be broken before `/readyz` reports the exporter
    /// stale (its gauges may no longer be current).
    #[arg(long, env = "FLUXGATE_WATCH_STALE_AFTER", default_value = "60s", value_parser = parse_duration)]
    pub watch_stale_after: Duration,

    /// Largest admission request body accepted (larger ones get 413).
    #[arg(long, env = "FLUXGATE_MAX_BODY_BYTES", default_value_t = 7 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Time allowed to receive and answer one admission request.
    #[arg(long, env = "FLUXGATE_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// After SIGTERM, how long /readyz reports not-ready before listeners stop accepting.
    #[arg(long, env = "FLUXGATE_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Run the janitor in this process (on the replica holding the Lease).
    #[arg(long, env = "FLUXGATE_JANITOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub janitor: bool,

    /// How often the janitor evaluates its rules.
    #[arg(long, env = "FLUXGATE_JANITOR_INTERVAL", default_value = "1h", value_parser = parse_duration)]
    pub janitor_interval: Duration,

    /// The janitor reports what it would do and changes nothing.
    #[arg(long, env = "FLUXGATE_JANITOR_DRY_RUN")]
    pub janitor_dry_run: bool,

    /// Lease the janitor replicas elect a leader with (in --namespace).
    #[arg(
        long,
        env = "FLUXGATE_JANITOR_LEASE",
        default_value = "fluxgate-janitor"
    )]
    pub janitor_lease: String,

    /// This replica's identity in the Lease (the Pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    #[command(flatten)]
    pub janitor_rules: JanitorArgs,

    /// After the delay, how long in-flight requests may take to finish.
    #[arg(long, env = "FLUXGATE_DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MutateOutput {
    Yaml,
    Json,
    Patch,
}

#[derive(Debug, Clone, Args)]
pub struct MutateArgs {
    /// Manifest files (YAML, multi-document, or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "filename", default_value = "-")]
    pub files: Vec<PathBuf>,

    /// yaml or json: the objects as admitted; patch: the JSON Patch the webhook would return.
    #[arg(short, long, value_enum, default_value_t = MutateOutput::Yaml)]
    pub output: MutateOutput,

    /// Admission time to stamp into reconcile.fluxcd.io/requestedAt (RFC 3339; default now).
    #[arg(long)]
    pub now: Option<String>,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A GitRepository List as `kubectl get gitrepositories -A -o json` prints it; `-` reads
    /// standard input.
    #[arg(short = 'f', long = "filename", default_value = "-")]
    pub file: PathBuf,

    #[arg(short, long, value_enum, default_value_t = ReportFormat::Table)]
    pub output: ReportFormat,

    /// Evaluate ages as of this time (RFC 3339; default now).
    #[arg(long)]
    pub now: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, tls.crt and tls.key into.
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,

    /// DNS names of the serving certificate (default: localhost, plus the in-cluster Service
    /// names when --service is given).
    #[arg(long = "dns")]
    pub dns: Vec<String>,

    /// IP addresses of the serving certificate (default: 127.0.0.1).
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
}

/// Parses an RFC 3339 time given on the command line.
pub fn parse_now(value: Option<&str>) -> anyhow::Result<time::OffsetDateTime> {
    match value {
        None => Ok(time::OffsetDateTime::now_utc()),
        Some(text) => {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|e| anyhow::anyhow!("--now {text:?} is not an RFC 3339 time: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults_match_the_documented_ones() {
        let cli = Cli::try_parse_from(["fluxgate", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.webhook_addr.to_string(), "0.0.0.0:8443");
        assert_eq!(args.metrics_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(args.policy.gitrepository_timeout.to_string(), "5m");
        assert_eq!(args.policy.timeout_mode, TimeoutMode::Floor);
        assert_eq!(args.policy.suspend_mode, SuspendMode::Force);
        assert!(!args.cert_bootstrap);
        let policy = args.policy.policy();
        assert_eq!(policy.proxy, ProxyPolicy::default());
        assert!(!policy.proxy.is_enabled());
    }

    #[test]
    fn proxy_flags_build_the_proxy_policy() {
        let cli = Cli::try_parse_from([
            "fluxgate",
            "mutate",
            "--https-proxy",
            "secret:proxy/url",
            "--no-proxy",
            "a.example,b.example",
            "--proxy-selector",
            "app=source-controller,tier=flux",
            "--proxy-override",
        ])
        .unwrap();
        let Command::Mutate(args) = cli.command else {
            panic!("not mutate")
        };
        let proxy = args.policy.policy().proxy;
        assert!(proxy.is_enabled());
        assert_eq!(proxy.no_proxy, ["a.example", "b.example"]);
        assert_eq!(proxy.selector.len(), 2);
        assert!(proxy.override_existing);
        assert!(
            Cli::try_parse_from(["fluxgate", "mutate", "--proxy-selector", "novalue"]).is_err()
        );
    }

    #[test]
    fn janitor_flags() {
        let cli = Cli::try_parse_from([
            "fluxgate",
            "cleanup",
            "--once",
            "--failing-for",
            "0",
            "--stale-test-for",
            "3d",
        ])
        .unwrap();
        let Command::Cleanup(args) = cli.command else {
            panic!("not cleanup")
        };
        let config = args.janitor.config(args.dry_run);
        assert_eq!(config.rules.failing, None);
        assert_eq!(
            config.rules.stale_test.unwrap().after,
            Duration::from_secs(3 * 86_400)
        );
        let manual =
            Cli::try_parse_from(["fluxgate", "cleanup", "proj-1/repo", "--action", "delete"])
                .unwrap();
        let Command::Cleanup(args) = manual.command else {
            panic!("not cleanup")
        };
        assert_eq!(args.target, Some(("proj-1".into(), "repo".into())));
        assert_eq!(args.action, Action::Delete);
        assert!(Cli::try_parse_from(["fluxgate", "cleanup"]).is_err());
        assert!(Cli::try_parse_from(["fluxgate", "restore", "no-slash"]).is_err());
        let serve = Cli::try_parse_from(["fluxgate", "serve"]).unwrap();
        let Command::Serve(serve) = serve.command else {
            panic!("not serve")
        };
        let defaults = serve.janitor_rules.config(false);
        assert_eq!(defaults.rules, Rules::default());
        assert!(!serve.janitor);
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        let err = Cli::try_parse_from(["fluxgate", "mutate", "--gitrepository-timeout", "1h"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected numbers with units ms, s or m"),
            "{err}"
        );
        assert!(
            Cli::try_parse_from(["fluxgate", "serve", "--no-webhook", "--no-exporter"]).is_err()
        );
    }
}
