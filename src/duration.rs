//! Flux duration strings (`60s`, `1m30s`, `500ms`), as the GitRepository CRD accepts them.
//!
//! `spec.timeout` must match `^([0-9]+(\.[0-9]+)?(ms|s|m))+$`: Go's duration syntax without the `h`
//! unit (and without `us`/`ns`). Parsing follows exactly that grammar, so a value fluxgate accepts is
//! one the API server accepts, and formatting never emits `h`. A value must also fit Go's
//! `time.Duration` (at most 2^63-1 ns, about 292 years), as source-controller decodes it with
//! `time.ParseDuration`: a longer one matches the CRD's pattern but the controller cannot read it.
//!
//! fluxgate's own flags read durations in humantime's syntax instead ([`parse_flag`]): they are
//! never written into a GitRepository, and `30days` reads better than `720h` there.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error(
        "invalid duration {0:?}: expected numbers with units ms, s or m, like 60s, 1m30s or 500ms"
    )]
    Syntax(String),
    #[error(
        "duration {0:?} is too large: Flux reads durations as Go's time.Duration, at most about 292 years"
    )]
    Overflow(String),
    #[error("duration of {0} characters: fluxgate reads at most {MAX_TIMEOUT_LEN}")]
    TooLong(usize),
}

/// A duration that fits `spec.timeout`: parsed from, and printed as, Flux's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FluxDuration(Duration);

impl FluxDuration {
    pub const fn from_duration(d: Duration) -> Self {
        Self(d)
    }

    pub const fn as_duration(self) -> Duration {
        self.0
    }
}

impl FromStr for FluxDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_timeout(s).map(Self)
    }
}

impl fmt::Display for FluxDuration {
    /// Minutes, seconds and milliseconds, largest first, zero parts left out: `5m`, `1m30s`,
    /// `500ms`, `90m` (never `1h30m`, which the CRD would reject).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total_ms = self.0.as_millis();
        if total_ms == 0 {
            return f.write_str("0s");
        }
        let minutes = total_ms / 60_000;
        let seconds = (total_ms % 60_000) / 1000;
        let millis = total_ms % 1000;
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        if seconds > 0 {
            write!(f, "{seconds}s")?;
        }
        if millis > 0 {
            write!(f, "{millis}ms")?;
        }
        Ok(())
    }
}

/// The longest duration Go's `time.Duration` holds, in nanoseconds.
pub const MAX_NANOS: u128 = i64::MAX as u128;

/// The longest duration text fluxgate reads. The CRD's pattern has no bound, but no real timeout
/// comes near one (Go prints the longest `time.Duration` in 24 characters), and the native
/// admission policy must not parse an unbounded string in kube-apiserver: there, CEL's cost grows
/// faster than the text (20,000 parts took 7 s to read on kube-apiserver v1.37, 40,000 ran out of
/// budget). A longer one is refused here as in the policy.
pub const MAX_TIMEOUT_LEN: usize = 64;

/// Parses a duration in the CRD's `spec.timeout` grammar. Fractions are allowed (`1.5m`); sub-
/// millisecond remainders are truncated, as they carry no meaning for a Git timeout. Fractions are
/// read to nanoseconds (9 digits at the unit's scale), and the sum of all parts must not exceed
/// [`MAX_NANOS`].
pub fn parse_timeout(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    if input.len() > MAX_TIMEOUT_LEN {
        return Err(DurationError::TooLong(input.len()));
    }
    let syntax = || DurationError::Syntax(input.to_owned());
    let overflow = || DurationError::Overflow(input.to_owned());
    let bytes = input.as_bytes();
    let mut pos = 0;
    let mut total_nanos: u128 = 0;
    while pos < bytes.len() {
        let int_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == int_start {
            return Err(syntax());
        }
        let int_part = &input[int_start..pos];
        let mut frac_part = "";
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            if pos == frac_start {
                return Err(syntax());
            }
            frac_part = &input[frac_start..pos];
        }
        let unit_nanos: u128 = if input[pos..].starts_with("ms") {
            pos += 2;
            1_000_000
        } else if input[pos..].starts_with('s') {
            pos += 1;
            1_000_000_000
        } else if input[pos..].starts_with('m') {
            pos += 1;
            60_000_000_000
        } else {
            return Err(syntax());
        };
        let whole: u128 = int_part.parse().map_err(|_| overflow())?;
        let mut nanos = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // Only the first 9 fractional digits can matter at nanosecond resolution.
        let frac_digits = &frac_part[..frac_part.len().min(9)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| syntax())?;
            let scale = 10u128.pow(frac_digits.len() as u32);
            nanos = nanos
                .checked_add(frac * unit_nanos / scale)
                .ok_or_else(overflow)?;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(overflow)?;
    }
    if total_nanos > MAX_NANOS {
        return Err(overflow());
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| overflow())?;
    let millis_nanos = (total_nanos % 1_000_000_000) / 1_000_000 * 1_000_000;
    // Below one second, so it fits.
    let millis_nanos = u32::try_from(millis_nanos).map_err(|_| overflow())?;
    Ok(Duration::new(secs, millis_nanos))
}

/// A duration on the command line, in humantime's syntax (`90s`, `10m`, `1h`, `7days`): the
/// value parser of every duration flag, kept here so that no flag group depends on the CLI.
pub fn parse_flag(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_the_forms_flux_documents() {
        assert_eq!(parse_timeout("60s"), Ok(ms(60_000)));
        assert_eq!(parse_timeout("5m"), Ok(ms(300_000)));
        assert_eq!(parse_timeout("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse_timeout("500ms"), Ok(ms(500)));
        assert_eq!(parse_timeout("1.5m"), Ok(ms(90_000)));
        assert_eq!(parse_timeout("0.5s"), Ok(ms(500)));
        assert_eq!(parse_timeout("2m2m"), Ok(ms(240_000)));
        assert_eq!(parse_timeout("1m0s250ms"), Ok(ms(60_250)));
    }

    #[test]
    fn refuses_what_the_crd_pattern_refuses() {
        for bad in [
            "", "5", "1h", "1h30m", "5 m", " 5m", "5m ", "-5m", "+5m", "m", "1.m", ".5m", "5M",
            "1us", "1ns", "1d", "5m1", "1.2.3s", "five",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn reports_overflow_instead_of_wrapping() {
        let huge = "99999999999999999999999999999999999999999m";
        assert!(matches!(
            parse_timeout(huge),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn the_limit_is_go_time_duration() {
        // 2^63-1 ns = 9223372036.854775807 s: the largest value source-controller can decode.
        assert_eq!(parse_timeout("153722867m"), Ok(ms(9_223_372_020_000)));
        assert!(parse_timeout("153722868m").is_err());
        assert_eq!(parse_timeout("9223372036854ms"), Ok(ms(9_223_372_036_854)));
        assert!(parse_timeout("9223372036855ms").is_err());
        assert!(parse_timeout("9223372036.854775807s").is_ok());
        assert!(matches!(
            parse_timeout("9223372036.854775808s"),
            Err(DurationError::Overflow(_))
        ));
        // The limit is on the sum, not on each part.
        assert!(parse_timeout("153722867m16s").is_ok());
        assert!(parse_timeout("153722867m17s").is_err());
        // Leading zeros do not count.
        assert_eq!(parse_timeout("0000000000000000000000001m"), Ok(ms(60_000)));
    }

    #[test]
    fn at_most_64_characters_are_read() {
        let longest = format!("{}1m", "0".repeat(62));
        assert_eq!(parse_timeout(&longest), Ok(ms(60_000)));
        assert_eq!(parse_timeout(&"1s".repeat(32)), Ok(ms(32_000)));
        assert_eq!(
            parse_timeout(&"1s".repeat(33)),
            Err(DurationError::TooLong(66))
        );
        assert_eq!(
            parse_timeout(&format!("0{longest}")),
            Err(DurationError::TooLong(65))
        );
    }

    #[test]
    fn formats_without_hours_and_round_trips() {
        let cases = [
            (ms(300_000), "5m"),
            (ms(90_000), "1m30s"),
            (ms(500), "500ms"),
            (ms(7_200_000), "120m"),
            (ms(61_001), "1m1s1ms"),
            (ms(0), "0s"),
        ];
        for (d, text) in cases {
            let flux = FluxDuration::from_duration(d);
            assert_eq!(flux.to_string(), text);
            assert_eq!(text.parse::<FluxDuration>().unwrap(), flux);
        }
    }

    #[test]
    fn flags_read_humantime_and_refuse_other_text_clearly() {
        assert_eq!(parse_flag("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_flag("30days"), Ok(Duration::from_secs(30 * 86_400)));
        let err = parse_flag("soon").unwrap_err();
        assert!(err.contains("expected number"), "{err}");
        assert!(parse_flag("").is_err());
    }
}
