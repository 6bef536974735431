//! The janitor's flags: its rules (shared by `serve`, `cleanup` and `report`) and how `serve`
//! runs it.

use std::time::Duration;

use clap::Args;

use super::{JanitorConfig, Removal, Rule, Rules};
use crate::duration::parse_flag;

/// A rule threshold; `0`, `off` or `never` disable the rule (returned as zero).
fn parse_rule_duration(s: &str) -> Result<Duration, String> {
    match s {
        "0" | "off" | "never" => Ok(Duration::ZERO),
        _ => parse_flag(s),
    }
}

/// The janitor's rules, shared by `serve`, `cleanup` and `report`.
#[derive(Debug, Clone, Args)]
pub struct RuleArgs {
    /// Archive GitRepositories failing (Ready=False) for longer than this; 0 disables the rule.
    #[arg(long, env = "FLUXGATE_JANITOR_FAILING_FOR", default_value = "24h", value_parser = parse_rule_duration)]
    pub failing_for: Duration,

    /// What to do with long-failing GitRepositories.
    #[arg(long, env = "FLUXGATE_JANITOR_FAILING_ACTION", value_enum, default_value_t = Removal::Suspend)]
    pub failing_action: Removal,

    /// Archive test repositories (see --test-name-tokens) with no new artifact for longer than
    /// this; 0 disables the rule.
    #[arg(long, env = "FLUXGATE_JANITOR_STALE_TEST_FOR", default_value = "7d", value_parser = parse_rule_duration)]
    pub stale_test_for: Duration,

    /// What to do with stale test repositories.
    #[arg(long, env = "FLUXGATE_JANITOR_STALE_TEST_ACTION", value_enum, default_value_t = Removal::Suspend)]
    pub stale_test_action: Removal,

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

impl RuleArgs {
    pub fn rules(&self) -> Rules {
        Rules {
            failing: (!self.failing_for.is_zero()).then_some(Rule {
                after: self.failing_for,
                removal: self.failing_action,
            }),
            stale_test: (!self.stale_test_for.is_zero()).then_some(Rule {
                after: self.stale_test_for,
                removal: self.stale_test_action,
            }),
            test_tokens: self.test_name_tokens.clone(),
            excluded_namespaces: self.janitor_exclude_namespaces.clone(),
        }
    }

    /// The rules, scope and limits of one janitor run.
    pub fn config(&self, dry_run: bool) -> JanitorConfig {
        JanitorConfig {
            rules: self.rules(),
            dry_run,
            namespaces: self.janitor_namespaces.clone(),
            max_actions_per_run: self.janitor_max_actions,
        }
    }
}

/// The janitor inside `serve`.
#[derive(Debug, Clone, Args)]
pub struct JanitorArgs {
    /// Run the janitor in this process (on the replica holding the Lease).
    #[arg(id = "janitor", long = "janitor", env = "FLUXGATE_JANITOR", default_value_t = false, action = clap::ArgAction::Set)]
    pub enabled: bool,

    /// How often the janitor evaluates its rules.
    #[arg(long, env = "FLUXGATE_JANITOR_INTERVAL", default_value = "1h", value_parser = parse_flag)]
    pub janitor_interval: Duration,

    /// The janitor reports what it would do and changes nothing.
    #[arg(long, env = "FLUXGATE_JANITOR_DRY_RUN")]
    pub janitor_dry_run: bool,

    /// Lease the replicas elect a leader with (in --namespace); the janitor acts on the leader.
    #[arg(
        long,
        env = "FLUXGATE_JANITOR_LEASE",
        default_value = "fluxgate-janitor"
    )]
    pub janitor_lease: String,

    #[command(flatten)]
    pub rules: RuleArgs,
}
