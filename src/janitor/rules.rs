//! The janitor's rules, pure: which GitRepositories to act on, and why, as of `now`.

use std::time::Duration;

use time::OffsetDateTime;

use crate::flux::Removal;

/// What the rules need to know about one GitRepository (filled from the shared health model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    /// `Ready=False` and not suspended, since this time (`lastTransitionTime`).
    pub failing_since: Option<OffsetDateTime>,
    /// A short description of the failure (class and host), for the archive reason.
    pub failure: String,
    pub suspended: bool,
    /// When it last produced an artifact, or its creation time if it never did.
    pub last_activity: Option<OffsetDateTime>,
    /// Applied by a Flux Kustomization or HelmRelease: deleting it would only get it re-applied.
    pub gitops_managed: bool,
    /// Carries `fluxgate.io/janitor: "false"`.
    pub opted_out: bool,
    /// When `fluxgate restore` last brought it back: the clocks of the rules restart there, so a
    /// restored repository gets a full period before it can be archived again.
    pub restored_at: Option<OffsetDateTime>,
}

/// A rule's threshold and what to do when it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub after: Duration,
    pub removal: Removal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Failing (Ready=False) for longer than this.
    pub failing: Option<Rule>,
    /// Test-like repositories with no new artifact for longer than this.
    pub stale_test: Option<Rule>,
    /// Name tokens (split at `-`, `.`, `_`) that mark a test repository.
    pub test_tokens: Vec<String>,
    pub excluded_namespaces: Vec<String>,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            failing: Some(Rule {
                after: Duration::from_secs(24 * 3600),
                removal: Removal::Suspend,
            }),
            stale_test: Some(Rule {
                after: Duration::from_secs(7 * 24 * 3600),
                removal: Removal::Suspend,
            }),
            test_tokens: ["test", "demo", "tmp"].map(str::to_owned).to_vec(),
            excluded_namespaces: vec!["flux-system".to_owned()],
        }
    }
}

/// One match: the subject, the rule that matched, the action to take and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub rule: &'static str,
    pub removal: Removal,
    pub reason: String,
    /// Set when a `delete` was turned into a `suspend` for a GitOps-managed object.
    pub downgraded: bool,
}

impl Rules {
    /// Whether `name` looks like a test repository: a whole token, so `latest` or `contest` do not.
    pub fn is_test_name(&self, name: &str) -> bool {
        name.split(['-', '.', '_']).any(|token| {
            self.test_tokens
                .iter()
                .any(|t| t.eq_ignore_ascii_case(token))
        })
    }

    /// The rules in words, for reports: `failing > 24h (suspend), test/demo/tmp names without a
    /// new artifact for 7d (suspend)`.
    pub fn describe(&self) -> String {
        let age = |d: Duration| human_age(time::Duration::seconds_f64(d.as_secs_f64()));
        let failing = self.failing.as_ref().map_or_else(
            || "failing rule off".to_owned(),
            |r| format!("failing > {} ({})", age(r.after), r.removal.as_str()),
        );
        let stale = self.stale_test.as_ref().map_or_else(
            || "stale test rule off".to_owned(),
            |r| {
                format!(
                    "{} names without a new artifact for {} ({})",
                    self.test_tokens.join("/"),
                    age(r.after),
                    r.removal.as_str()
                )
            },
        );
        if self.excluded_namespaces.is_empty() {
            format!("rules: {failing}, {stale}")
        } else {
            let excluded = self.excluded_namespaces.join(", ");
            format!("rules: {failing}, {stale}; never in {excluded}")
        }
    }

    /// The first rule that matches `subject` (failing before stale), or `None`.
    pub fn evaluate(&self, subject: &Subject, now: OffsetDateTime) -> Option<Verdict> {
        if subject.suspended
            || subject.opted_out
            || self.excluded_namespaces.contains(&subject.namespace)
        {
            return None;
        }
        let since_restore = |t: Option<OffsetDateTime>| match (t, subject.restored_at) {
            (Some(t), Some(r)) => Some(t.max(r)),
            (t, _) => t,
        };
        let failing_since = since_restore(subject.failing_since);
        let last_activity = since_restore(subject.last_activity);
        let older_than = |since: OffsetDateTime, limit: Duration| {
            let age = now - since;
            age.is_positive() && age.unsigned_abs() > limit
        };
        let (rule, spec, reason) = if let (Some(rule), Some(since)) = (&self.failing, failing_since)
            && older_than(since, rule.after)
        {
            (
                "failing",
                rule,
                format!(
                    "failing for {} ({})",
                    human_age(now - since),
                    subject.failure
                ),
            )
        } else if let (Some(rule), Some(last)) = (&self.stale_test, last_activity)
            && self.is_test_name(&subject.name)
            && older_than(last, rule.after)
        {
            (
                "stale_test",
                rule,
                format!(
                    "test repository with no new artifact for {}",
                    human_age(now - last)
                ),
            )
        } else {
            return None;
        };
        let (removal, downgrade) = spec.removal.for_object(subject.gitops_managed);
        let reason = match downgrade {
            Some(note) => format!("{reason}; {note}"),
            None => reason,
        };
        Some(Verdict {
            rule,
            removal,
            reason,
            downgraded: downgrade.is_some(),
        })
    }
}

/// `26h`, `8d`, `90m`: the largest unit that still gives a number of at least 3.
pub fn human_age(age: time::Duration) -> String {
    let seconds = age.whole_seconds().max(0);
    match seconds {
        s if s >= 3 * 86_400 => format!("{}d", s / 86_400),
        s if s >= 3 * 3600 => format!("{}h", s / 3600),
        s if s >= 3 * 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

    fn subject(name: &str) -> Subject {
        Subject {
            namespace: "proj-1".into(),
            name: name.into(),
            uid: "u".into(),
            resource_version: "1".into(),
            failing_since: None,
            failure: "timeout, github.com".into(),
            suspended: false,
            last_activity: Some(NOW - time::Duration::hours(1)),
            gitops_managed: false,
            opted_out: false,
            restored_at: None,
        }
    }

    #[test]
    fn a_restored_repository_gets_a_full_period_again() {
        let rules = Rules::default();
        let mut s = subject("test-shop");
        s.failing_since = Some(NOW - time::Duration::days(5));
        s.restored_at = Some(NOW - time::Duration::hours(2));
        assert_eq!(
            rules.evaluate(&s, NOW),
            None,
            "failing clock restarts at the restore"
        );
        s.restored_at = Some(NOW - time::Duration::hours(25));
        assert_eq!(rules.evaluate(&s, NOW).unwrap().rule, "failing");

        let mut stale = subject("test-shop");
        stale.last_activity = Some(NOW - time::Duration::days(30));
        stale.restored_at = Some(NOW - time::Duration::days(1));
        assert_eq!(rules.evaluate(&stale, NOW), None);
    }

    #[test]
    fn failing_for_more_than_a_day_is_suspended() {
        let rules = Rules::default();
        let mut s = subject("project-a");
        s.failing_since = Some(NOW - time::Duration::hours(26));
        let verdict = rules.evaluate(&s, NOW).unwrap();
        assert_eq!(verdict.rule, "failing");
        assert_eq!(verdict.removal, Removal::Suspend);
        assert_eq!(verdict.reason, "failing for 26h (timeout, github.com)");

        s.failing_since = Some(NOW - time::Duration::hours(23));
        assert_eq!(rules.evaluate(&s, NOW), None);
        s.failing_since = Some(NOW - time::Duration::hours(24));
        assert_eq!(
            rules.evaluate(&s, NOW),
            None,
            "exactly 24h is not more than 24h"
        );
        s.failing_since = Some(NOW + time::Duration::hours(1));
        assert_eq!(
            rules.evaluate(&s, NOW),
            None,
            "a clock in the future is not old"
        );
    }

    #[test]
    fn stale_test_repositories_by_whole_name_token() {
        let rules = Rules::default();
        for (name, matches) in [
            ("test-shop", true),
            ("demo-shop", true),
            ("tmp-shop", true),
            ("shop-test", true),
            ("my.tmp.repo", true),
            ("TEST-shop", true),
            ("latest-shop", false),
            ("contest", false),
            ("shop", false),
        ] {
            let mut s = subject(name);
            s.last_activity = Some(NOW - time::Duration::days(8));
            assert_eq!(rules.evaluate(&s, NOW).is_some(), matches, "{name}");
        }
        let mut recent = subject("test-shop");
        recent.last_activity = Some(NOW - time::Duration::days(6));
        assert_eq!(rules.evaluate(&recent, NOW), None);
        let mut never = subject("test-shop");
        never.last_activity = None;
        assert_eq!(rules.evaluate(&never, NOW), None);
    }

    #[test]
    fn failing_wins_over_stale_when_both_match() {
        let mut s = subject("test-shop");
        s.failing_since = Some(NOW - time::Duration::days(2));
        s.last_activity = Some(NOW - time::Duration::days(30));
        assert_eq!(Rules::default().evaluate(&s, NOW).unwrap().rule, "failing");
    }

    #[test]
    fn suspended_opted_out_and_excluded_are_left_alone() {
        let rules = Rules::default();
        let mut s = subject("project-a");
        s.failing_since = Some(NOW - time::Duration::days(3));
        assert!(rules.evaluate(&s, NOW).is_some());
        for change in [
            |s: &mut Subject| s.suspended = true,
            |s: &mut Subject| s.opted_out = true,
            |s: &mut Subject| s.namespace = "flux-system".into(),
        ] {
            let mut t = s.clone();
            change(&mut t);
            assert_eq!(rules.evaluate(&t, NOW), None, "{t:?}");
        }
    }

    #[test]
    fn delete_is_downgraded_for_gitops_managed_objects() {
        let rules = Rules {
            failing: Some(Rule {
                after: Duration::from_secs(3600),
                removal: Removal::Delete,
            }),
            ..Rules::default()
        };
        let mut s = subject("project-a");
        s.failing_since = Some(NOW - time::Duration::hours(2));
        assert_eq!(rules.evaluate(&s, NOW).unwrap().removal, Removal::Delete);
        s.gitops_managed = true;
        let verdict = rules.evaluate(&s, NOW).unwrap();
        assert_eq!(verdict.removal, Removal::Suspend);
        assert!(verdict.downgraded);
        assert!(
            verdict.reason.contains("would re-apply it"),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn disabled_rules_never_match() {
        let rules = Rules {
            failing: None,
            stale_test: None,
            ..Rules::default()
        };
        let mut s = subject("test-a");
        s.failing_since = Some(NOW - time::Duration::days(30));
        s.last_activity = Some(NOW - time::Duration::days(30));
        assert_eq!(rules.evaluate(&s, NOW), None);
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(human_age(time::Duration::seconds(59)), "59s");
        assert_eq!(human_age(time::Duration::minutes(90)), "90m");
        assert_eq!(human_age(time::Duration::hours(26)), "26h");
        assert_eq!(human_age(time::Duration::days(8)), "8d");
        assert_eq!(human_age(time::Duration::seconds(-5)), "0s");
    }
}
