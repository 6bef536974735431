//! Command-line interface: every flag of `serve` also reads a `FLUXGATE_*` environment variable.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::flux::{Removal, parse_object_ref};
use crate::janitor::RuleArgs;
use crate::policy::PolicyArgs;
use crate::report::ReportFormat;
pub use crate::restore::RestoreArgs;
use crate::serve::ServeArgs;

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
    /// Print the admission policy as MutatingAdmissionPolicy manifests (Kubernetes >= 1.36), for
    /// kube-apiserver to apply itself instead of calling the webhook.
    AdmissionPolicy(Box<AdmissionPolicyArgs>),
    /// Summarise GitRepository health from `kubectl get gitrepositories -A -o json`.
    Report(Box<ReportArgs>),
    /// Write a CA and a serving certificate (ca.crt, tls.crt, tls.key) for static setups.
    Certs(CertsArgs),
    /// Run the janitor once (`--once`, for a CronJob) or clean up one GitRepository by hand
    /// (`NAMESPACE/NAME`), with the caller's kubeconfig and RBAC.
    Cleanup(Box<CleanupArgs>),
    /// Let GitRepositories run again: unsuspend, lift fluxgate's archive or quarantine, request a
    /// reconcile; one by name, or all that the breaker (`--quarantined`) or the janitor
    /// (`--archived`) holds. A restored quarantine is left alone by the breaker until its host
    /// answers again.
    Restore(Box<RestoreArgs>),
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
    #[arg(long, value_enum, default_value_t = Removal::Suspend, requires = "target")]
    pub action: Removal,

    /// Report what would happen and change nothing.
    #[arg(long, env = "FLUXGATE_JANITOR_DRY_RUN")]
    pub dry_run: bool,

    #[command(flatten)]
    pub janitor: RuleArgs,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyOutput {
    Yaml,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct AdmissionPolicyArgs {
    /// Namespaces whose GitRepositories the policy leaves alone (comma-separated; "" for none),
    /// as the webhook registration in deploy/ does.
    #[arg(long, value_delimiter = ',', default_value = "fluxgate,kube-system")]
    pub exclude_namespaces: Vec<String>,

    /// yaml: documents for kubectl apply; json: one List.
    #[arg(short, long, value_enum, default_value_t = PolicyOutput::Yaml)]
    pub output: PolicyOutput,

    /// The same policy flags and FLUXGATE_* variables as `serve` and `mutate`; with a proxy,
    /// --kubernetes-service-ip is required (the webhook discovers it, a manifest cannot).
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

    /// The janitor's rules to report candidates for (the same flags as `serve` and `cleanup`).
    #[command(flatten)]
    pub janitor: RuleArgs,

    /// The breaker's thresholds to judge hosts by (the same flags as `serve`).
    #[command(flatten)]
    pub breaker: crate::breaker::args::TripArgs,
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
    use crate::janitor::Rules;
    use crate::policy::{ProxyPolicy, SuspendMode, TimeoutMode};
    use clap::CommandFactory;
    use std::time::Duration;

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
        assert_eq!(args.webhook.webhook_addr.to_string(), "0.0.0.0:8443");
        assert_eq!(args.ops.metrics_addr.to_string(), "0.0.0.0:8080");
        let policy_args = &args.webhook.policy;
        assert_eq!(policy_args.gitrepository_timeout.to_string(), "5m");
        assert_eq!(policy_args.timeout_mode, TimeoutMode::Floor);
        assert_eq!(policy_args.suspend_mode, SuspendMode::Force);
        assert!(!args.certs.cert_bootstrap);
        let policy = policy_args.policy().unwrap();
        assert_eq!(policy.proxy, ProxyPolicy::default());
        assert!(!policy.proxy.is_enabled());
    }

    #[test]
    fn mirror_rules_come_from_flags_or_the_variable_and_bad_sets_are_refused() {
        let cli = Cli::try_parse_from([
            "fluxgate",
            "mutate",
            "--mirror",
            "https://github.com/=https://gitee.com/acme-mirror/",
            "--mirror",
            "ssh://git@github.com/=ssh://git@gitea.internal/m/;credentials=carry",
            "--mirror-exclude-namespaces",
            "platform,flux-system",
        ])
        .unwrap();
        let Command::Mutate(args) = cli.command else {
            panic!("not mutate")
        };
        let policy = args.policy.policy().unwrap();
        assert_eq!(policy.gitrepository.mirror.rules().len(), 2);

        // One rule that is not a URL: refused by the parser, naming the rule.
        let err = Cli::try_parse_from(["fluxgate", "mutate", "--mirror", "https://=x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no host"), "{err}");

        // Overlapping rules parse one by one and are refused together.
        let cli = Cli::try_parse_from([
            "fluxgate",
            "serve",
            "--mirror",
            "https://github.com/=https://a.internal/,https://github.com/acme/=https://b.internal/",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let err = args.webhook.policy.policy().unwrap_err().to_string();
        assert!(err.contains("overlaps"), "{err}");
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
        let proxy = args.policy.policy().unwrap().proxy;
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
        assert_eq!(args.action, Removal::Delete);
        assert!(Cli::try_parse_from(["fluxgate", "cleanup"]).is_err());
        assert!(Cli::try_parse_from(["fluxgate", "restore", "no-slash"]).is_err());
        let serve = Cli::try_parse_from(["fluxgate", "serve"]).unwrap();
        let Command::Serve(serve) = serve.command else {
            panic!("not serve")
        };
        let defaults = serve.janitor.rules.config(false);
        assert_eq!(defaults.rules, Rules::default());
        assert!(!serve.janitor.enabled);
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
