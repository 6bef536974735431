//! The breaker's flags: its thresholds and pacing (shared by `serve` and `report`) and whether
//! `serve` runs it.

use std::time::Duration;

use clap::Args;

use super::Settings;
use crate::duration::parse_flag;

/// When a host's breaker trips, and how it probes and releases.
#[derive(Debug, Clone, Args)]
pub struct TripArgs {
    /// A host trips when at least this many of its GitRepositories fail with a transport error
    /// (timeout, DNS, connection, TLS) ...
    #[arg(long, env = "FLUXGATE_BREAKER_MIN_FAILING", default_value_t = 4)]
    pub breaker_min_failing: usize,

    /// ... and they are at least this fraction of the host's GitRepositories that
    /// source-controller has tried ...
    #[arg(long, env = "FLUXGATE_BREAKER_FAILING_RATIO", default_value_t = 0.5, value_parser = parse_ratio)]
    pub breaker_failing_ratio: f64,

    /// ... without a break for this long.
    #[arg(long, env = "FLUXGATE_BREAKER_WINDOW", default_value = "10m", value_parser = parse_flag)]
    pub breaker_window: Duration,

    /// How often fluxgate probes an open host itself (one bounded request of its own, no
    /// source-controller worker); also the first wait before a canary, which goes out only just
    /// after the host answered. The canary's wait doubles after each failed canary, up to
    /// --breaker-probe-interval-max.
    #[arg(long, env = "FLUXGATE_BREAKER_PROBE_INTERVAL", default_value = "1m", value_parser = parse_flag)]
    pub breaker_probe_interval: Duration,

    /// The longest wait between two canaries of a host whose canaries failed; and a host that
    /// answers every probe for this long gets its canary whatever its wait.
    #[arg(long, env = "FLUXGATE_BREAKER_PROBE_INTERVAL_MAX", default_value = "10m", value_parser = parse_flag)]
    pub breaker_probe_interval_max: Duration,

    /// The longest wait between two canaries of a flapping host, one that answered the probe
    /// and then failed its canary or its release; also how long a host must stay closed to
    /// count as recovered.
    #[arg(long, env = "FLUXGATE_BREAKER_FLAPPING_PROBE_INTERVAL_MAX", default_value = "1h", value_parser = parse_flag)]
    pub breaker_flapping_probe_interval_max: Duration,

    /// How long a released canary may take to become Ready before the probe counts as failed;
    /// also the least wait before the next canary of a flapping host.
    #[arg(long, env = "FLUXGATE_BREAKER_CANARY_TIMEOUT", default_value = "10m", value_parser = parse_flag)]
    pub breaker_canary_timeout: Duration,

    /// The most released GitRepositories source-controller has not tried yet, across all hosts
    /// (batches start at 2 and double); the next batch goes out as soon as half of what is out
    /// has been tried ...
    #[arg(long, env = "FLUXGATE_BREAKER_RELEASE_BATCH", default_value_t = 20)]
    pub breaker_release_batch: usize,

    /// ... and at least this long after the previous batch (0: paced by source-controller alone).
    #[arg(long, env = "FLUXGATE_BREAKER_RELEASE_EVERY", default_value = "0s", value_parser = parse_flag)]
    pub breaker_release_every: Duration,

    /// Most changes the breaker makes in one pass over one host.
    #[arg(long, env = "FLUXGATE_BREAKER_MAX_ACTIONS", default_value_t = 100)]
    pub breaker_max_actions: usize,

    /// Git hosts the breaker never quarantines (comma-separated); what it quarantined on them
    /// before is released.
    #[arg(long, env = "FLUXGATE_BREAKER_EXCLUDE_HOSTS", value_delimiter = ',')]
    pub breaker_exclude_hosts: Vec<String>,
}

impl TripArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            min_failing: self.breaker_min_failing,
            failing_ratio: self.breaker_failing_ratio,
            window: self.breaker_window,
            probe_interval: self.breaker_probe_interval,
            probe_interval_max: self
                .breaker_probe_interval_max
                .max(self.breaker_probe_interval),
            flapping_probe_interval_max: self
                .breaker_flapping_probe_interval_max
                .max(self.breaker_probe_interval_max)
                .max(self.breaker_probe_interval),
            canary_timeout: self.breaker_canary_timeout,
            release_batch: self.breaker_release_batch.max(1),
            release_every: self.breaker_release_every,
            max_actions_per_pass: self.breaker_max_actions.max(1),
            lane: false,
        }
    }

    /// Whether `host` (a breaker's host, [`crate::health::host_key`]) is left out: entries are
    /// `host` or `host:port` (the port is not part of a breaker's host), compared without letter
    /// case or a trailing dot, and whatever the transport (HTTPS and SSH alike).
    pub fn excludes(&self, host: &str) -> bool {
        let host = crate::health::host_name(host).trim_end_matches('.');
        self.breaker_exclude_hosts.iter().any(|entry| {
            let entry = entry.trim();
            let name = if let Some(bracketed) = entry.strip_prefix('[') {
                // `[v6]` or `[v6]:port`.
                bracketed.split(']').next().unwrap_or("")
            } else {
                match entry.rsplit_once(':') {
                    // `host:port`, not a bare IPv6 address (which has more colons).
                    Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => {
                        name
                    }
                    _ => entry,
                }
            };
            name.trim_end_matches('.').eq_ignore_ascii_case(host)
        })
    }
}

/// The flags' defaults, for callers that judge without a command line (tests, a report built
/// in code).
impl Default for TripArgs {
    fn default() -> Self {
        let settings = Settings::default();
        Self {
            breaker_min_failing: settings.min_failing,
            breaker_failing_ratio: settings.failing_ratio,
            breaker_window: settings.window,
            breaker_probe_interval: settings.probe_interval,
            breaker_probe_interval_max: settings.probe_interval_max,
            breaker_flapping_probe_interval_max: settings.flapping_probe_interval_max,
            breaker_canary_timeout: settings.canary_timeout,
            breaker_release_batch: settings.release_batch,
            breaker_release_every: settings.release_every,
            breaker_max_actions: settings.max_actions_per_pass,
            breaker_exclude_hosts: Vec::new(),
        }
    }
}

/// The breaker inside `serve`.
#[derive(Debug, Clone, Args)]
pub struct BreakerArgs {
    /// Run the host circuit breaker (on the replica holding the Lease; needs the exporter).
    #[arg(id = "breaker", long = "breaker", env = "FLUXGATE_BREAKER", default_value_t = false, action = clap::ArgAction::Set)]
    pub enabled: bool,

    /// Longest time between two passes; a change the watch sees starts one within a second.
    #[arg(long, env = "FLUXGATE_BREAKER_PASS_INTERVAL", default_value = "10s", value_parser = parse_flag)]
    pub breaker_pass_interval: Duration,

    /// The most one probe of a host may take, from its connect to its answer.
    #[arg(long, env = "FLUXGATE_BREAKER_PROBE_TIMEOUT", default_value = "10s", value_parser = parse_flag)]
    pub breaker_probe_timeout: Duration,

    /// How many hosts are probed at once.
    #[arg(long, env = "FLUXGATE_BREAKER_PROBE_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub breaker_probe_concurrency: u16,

    /// Move a tripped host's GitRepositories into this host lane (Flux shard: the label
    /// `sharding.fluxcd.io/key: SHARD`, served by its own source-controller, see deploy/lanes/)
    /// instead of suspending them; they move back, paced, once the host answers again and they
    /// are Ready there.
    #[arg(long, env = "FLUXGATE_BREAKER_LANE", value_name = "SHARD", value_parser = parse_shard)]
    pub breaker_lane: Option<String>,

    #[command(flatten)]
    pub trip: TripArgs,
}

fn parse_shard(text: &str) -> Result<String, String> {
    crate::policy::lane::check_label_value(text)?;
    Ok(text.to_owned())
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    let ratio: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if ratio > 0.0 && ratio <= 1.0 {
        Ok(ratio)
    } else {
        Err(format!("{text:?} must be above 0 and at most 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excluded_host_may_carry_a_port_case_or_a_trailing_dot() {
        let trip = TripArgs {
            breaker_exclude_hosts: vec![
                " GitHub.com:443 ".into(),
                "git.corp.example.".into(),
                "[2001:db8::1]:22".into(),
                "2001:db8::2".into(),
            ],
            ..TripArgs::default()
        };
        for host in [
            "github.com",
            "git.corp.example",
            "2001:db8::1",
            "2001:db8::2",
        ] {
            assert!(trip.excludes(host), "{host}");
        }
        for host in ["gitlab.com", "corp.example", "github.com.evil"] {
            assert!(!trip.excludes(host), "{host}");
        }
    }

    #[test]
    fn the_default_is_what_the_flags_default_to() {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            trip: TripArgs,
        }
        let parsed = <Flags as clap::Parser>::try_parse_from(["fluxgate"])
            .unwrap()
            .trip;
        let default = TripArgs::default();
        assert_eq!(parsed.settings(), default.settings());
        assert_eq!(parsed.breaker_exclude_hosts, default.breaker_exclude_hosts);
        assert!(!default.excludes("github.com"));
    }

    #[test]
    fn ratios_outside_zero_to_one_are_refused() {
        assert_eq!(parse_ratio("0.5"), Ok(0.5));
        assert_eq!(parse_ratio("1"), Ok(1.0));
        for bad in ["0", "-0.1", "1.5", "NaN", "half"] {
            assert!(parse_ratio(bad).is_err(), "{bad}");
        }
    }
}
