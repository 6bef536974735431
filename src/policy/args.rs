//! The admission policy's flags, shared by `serve` and `mutate` so previews match the webhook.

use clap::Args;

use super::lane::{LaneError, LaneRule, LaneRules};
use super::mirror::{MirrorRule, MirrorRules, RuleError};
use super::proxy::ProxyValue;
use super::{GitRepositoryPolicy, Policy, ProxyPolicy, SuspendMode, TimeoutMode};
use crate::duration::FluxDuration;

/// What fluxgate changes on admission.
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

    /// Mirror rule FROM=TO[;credentials=carry][;git-suffix=add|strip]: new GitRepositories whose
    /// spec.url is under FROM get it under TO, the original kept in fluxgate.io/original-url
    /// (repeatable; comma-separated in the variable).
    #[arg(long = "mirror", value_name = "FROM=TO", env = "FLUXGATE_MIRROR", value_delimiter = ',', value_parser = MirrorRule::parse)]
    pub mirror: Vec<MirrorRule>,

    /// Lane rule HOST=SHARD: new GitRepositories whose spec.url is on HOST (any scheme, port or
    /// user; after the mirror rules) get the label sharding.fluxcd.io/key=SHARD, for a
    /// source-controller started with --watch-label-selector=sharding.fluxcd.io/key=SHARD
    /// (repeatable; comma-separated in the variable).
    #[arg(long = "lane", value_name = "HOST=SHARD", env = "FLUXGATE_LANE", value_delimiter = ',', value_parser = LaneRule::parse)]
    pub lane: Vec<LaneRule>,

    /// Namespaces whose GitRepositories keep their URLs whatever the mirror rules (comma-separated).
    #[arg(
        long,
        env = "FLUXGATE_MIRROR_EXCLUDE_NAMESPACES",
        value_delimiter = ','
    )]
    pub mirror_exclude_namespaces: Vec<String>,

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

/// Why the flags cannot describe a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Mirror(#[from] RuleError),
    #[error(transparent)]
    Lane(#[from] LaneError),
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
    /// Whether a proxy is to be injected into source-controller Pods.
    pub fn proxy_configured(&self) -> bool {
        self.https_proxy.is_some() || self.http_proxy.is_some()
    }

    /// The policy these flags describe; rules that cannot be meant together (overlapping mirror
    /// rules, one rewriting another's mirror, a host in two lanes) are refused here, at start.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let mirror = MirrorRules::new(
            self.mirror.clone(),
            self.mirror_exclude_namespaces
                .iter()
                .map(|ns| ns.trim().to_owned())
                .filter(|ns| !ns.is_empty())
                .collect(),
        )?;
        Ok(Policy {
            gitrepository: GitRepositoryPolicy {
                timeout: self.gitrepository_timeout,
                timeout_mode: self.timeout_mode,
                suspend_mode: self.suspend_mode,
                mirror,
                lanes: LaneRules::new(self.lane.clone())?,
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    fn parse(args: &[&str]) -> Result<Flags, String> {
        Flags::try_parse_from(std::iter::once("fluxgate").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn lane_rules_repeat_or_come_comma_separated() {
        let flags = parse(&[
            "--lane",
            "github.com=far",
            "--lane",
            "gitlab.com=slow,x.org=far",
        ])
        .unwrap();
        let lanes = flags.policy.policy().unwrap().gitrepository.lanes;
        let rules: Vec<String> = lanes.rules().iter().map(|r| r.to_string()).collect();
        assert_eq!(rules, ["github.com=far", "gitlab.com=slow", "x.org=far"]);
        let env = Flags::command()
            .get_arguments()
            .find(|a| a.get_id() == "lane")
            .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()));
        assert_eq!(env.as_deref(), Some("FLUXGATE_LANE"));
    }

    #[test]
    fn bad_lane_rules_stop_the_start_with_the_reason() {
        let err = parse(&["--lane", "https://github.com/=far"]).unwrap_err();
        assert!(err.contains("is a URL"), "{err}");
        // Each rule parses, the set is refused.
        let flags = parse(&["--lane", "github.com=far", "--lane", "GitHub.com.=near"]).unwrap();
        let err = flags.policy.policy().unwrap_err().to_string();
        assert!(
            err.contains("lane rule \"github.com=near\"")
                && err.contains("already in the lane far"),
            "{err}"
        );
    }
}
