//! The two text formats `/metrics` speaks and the choice between them by the scraper's `Accept`
//! header.
//!
//! fluxgate encodes OpenMetrics (prometheus-client writes nothing else). Prometheus asks for it,
//! but `promtool check metrics` and other scrapers only read the Prometheus text format 0.0.4,
//! which has no `info` type, names counters' families by their `_total` samples and has no `# EOF`.
//! [`to_prometheus_text`] turns the OpenMetrics chunks into that format line by line as they
//! stream, so a scrape in either format holds one chunk at a time.

use bytes::Bytes;

/// Content type of OpenMetrics 1.0.0.
pub const OPENMETRICS_1_0_0: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of OpenMetrics 0.0.1; prometheus-client's text is valid for it too.
pub const OPENMETRICS_0_0_1: &str = "application/openmetrics-text; version=0.0.1; charset=utf-8";
/// Content type of the Prometheus text format.
pub const PROMETHEUS_TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A format `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetricsV1,
    OpenMetricsV0,
    PrometheusText,
}

impl Format {
    /// In the order ties between formats the client names are broken.
    const ALL: [Format; 3] = [
        Format::OpenMetricsV1,
        Format::OpenMetricsV0,
        Format::PrometheusText,
    ];

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetricsV1 => OPENMETRICS_1_0_0,
            Format::OpenMetricsV0 => OPENMETRICS_0_0_1,
            Format::PrometheusText => PROMETHEUS_TEXT_0_0_4,
        }
    }

    pub fn is_openmetrics(self) -> bool {
        self != Format::PrometheusText
    }

    fn media(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Format::OpenMetricsV1 => ("application", "openmetrics-text", "1.0.0"),
            Format::OpenMetricsV0 => ("application", "openmetrics-text", "0.0.1"),
            Format::PrometheusText => ("text", "plain", "0.0.4"),
        }
    }

    /// The format to answer a request whose `Accept` header values are `accept` (several headers
    /// count as one list), as exporters in the Prometheus ecosystem choose: the acceptable format
    /// of the highest q-value; between formats of the same q-value, one the client names
    /// (`type/subtype`) beats one it only reaches through a wildcard; between named ones
    /// OpenMetrics wins, between wildcard ones the text format. No header, nothing acceptable or
    /// an unreadable header gets the text format, which every scraper reads.
    pub fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>) -> Format {
        let ranges: Vec<MediaRange<'_>> = accept
            .into_iter()
            .flat_map(|value| value.split(','))
            .filter_map(MediaRange::parse)
            .collect();
        let mut best: Option<((u16, bool, usize), Format)> = None;
        for (order, format) in Format::ALL.into_iter().enumerate() {
            let Some((q, named)) = format.acceptance(&ranges) else {
                continue;
            };
            if q == 0 {
                continue;
            }
            let preference = if named {
                Format::ALL.len() - order
            } else {
                usize::from(format == Format::PrometheusText)
            };
            let key = (q, named, preference);
            if best.is_none_or(|(b, _)| key > b) {
                best = Some((key, format));
            }
        }
        best.map_or(Format::PrometheusText, |(_, format)| format)
    }

    /// The q-value (in thousandths) of the most specific range that matches this format, and
    /// whether that range names the media type rather than a wildcard.
    fn acceptance(self, ranges: &[MediaRange<'_>]) -> Option<(u16, bool)> {
        let (kind, subtype, version) = self.media();
        ranges
            .iter()
            .filter_map(|r| {
                let specificity = if r.kind == "*" {
                    0
                } else if !r.kind.eq_ignore_ascii_case(kind) {
                    return None;
                } else if r.subtype == "*" {
                    1
                } else if !r.subtype.eq_ignore_ascii_case(subtype) {
                    return None;
                } else {
                    match r.version {
                        None => 2,
                        Some(v) if v == version => 3,
                        Some(_) => return None,
                    }
                };
                Some((specificity, r.q))
            })
            // The first of the most specific ranges, as RFC 9110 leaves duplicates undefined.
            .fold(None, |best: Option<(u8, u16)>, (s, q)| match best {
                Some((b, _)) if b >= s => best,
                _ => Some((s, q)),
            })
            .map(|(specificity, q)| (q, specificity >= 2))
    }
}

/// One `type/subtype;param=value;q=0.5` element of an `Accept` header.
#[derive(Debug)]
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    version: Option<&'a str>,
    /// Thousandths.
    q: u16,
}

impl<'a> MediaRange<'a> {
    fn parse(element: &'a str) -> Option<Self> {
        let mut parts = element.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let (kind, subtype) = (kind.trim(), subtype.trim());
        if kind.is_empty() || subtype.is_empty() || (kind == "*" && subtype != "*") {
            return None;
        }
        let mut range = MediaRange {
            kind,
            subtype,
            version: None,
            q: 1000,
        };
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim() {
                n if n.eq_ignore_ascii_case("q") => range.q = parse_q(value)?,
                n if n.eq_ignore_ascii_case("version") => range.version = Some(value),
                _ => {}
            }
        }
        Some(range)
    }
}

/// A q-value in thousandths; `None` when it is not a number from 0 to 1.
fn parse_q(value: &str) -> Option<u16> {
    let q: f64 = value.parse().ok()?;
    // Rounded to RFC 9110's three decimals; the cast cannot overflow within [0, 1].
    (0.0..=1.0)
        .contains(&q)
        .then(|| (q * 1000.0).round() as u16)
}

/// The Prometheus text format of OpenMetrics `chunks`, converted as they are pulled.
pub fn to_prometheus_text<I>(chunks: I) -> impl Iterator<Item = Bytes> + Send + use<I>
where
    I: Iterator<Item = Bytes> + Send,
{
    let mut chunks = chunks.fuse();
    let mut converter = ToPrometheusText::default();
    let mut finished = false;
    std::iter::from_fn(move || {
        while !finished {
            let mut out = Vec::new();
            match chunks.next() {
                Some(chunk) => {
                    out.reserve(chunk.len() + 256);
                    converter.push(&chunk, &mut out);
                }
                None => {
                    converter.finish(&mut out);
                    finished = true;
                }
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
        }
        None
    })
}

/// Converts OpenMetrics text to the Prometheus text format 0.0.4, lines possibly split across
/// pushes. Exact for what prometheus-client and fluxgate's own families write:
///
/// - counters: `# HELP`/`# TYPE` name the family by its samples' `x_total` name;
/// - `info` becomes a `gauge` named `x_info`, `stateset` a `gauge`, `unknown` `untyped`;
/// - `# UNIT`, `# EOF`, `_created` samples and exemplars are dropped; a sample's timestamp goes
///   from seconds to milliseconds;
/// - `gaugehistogram` families, which the text format cannot carry, are left out with a comment.
///
/// Anything else (histograms, summaries, gauges, other comments) passes through as it is.
#[derive(Debug, Default)]
pub struct ToPrometheusText {
    /// The start of a line whose end is in a later push.
    partial: Vec<u8>,
    /// The family of the last `# TYPE` line: its OpenMetrics name and type.
    family: Vec<u8>,
    kind: Kind,
    /// A `# HELP` line (name, text) waiting for its family's `# TYPE`.
    help: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Kind {
    #[default]
    Unknown,
    Counter,
    Gauge,
    Histogram,
    Summary,
    Info,
    StateSet,
    /// A type the text format has no form for.
    Unsupported,
}

impl Kind {
    fn parse(name: &[u8]) -> Kind {
        match name {
            b"counter" => Kind::Counter,
            b"gauge" => Kind::Gauge,
            b"histogram" => Kind::Histogram,
            b"summary" => Kind::Summary,
            b"info" => Kind::Info,
            b"stateset" => Kind::StateSet,
            b"unknown" => Kind::Unknown,
            _ => Kind::Unsupported,
        }
    }

    /// The text format's type and the suffix its family name takes.
    fn prometheus_text(self) -> (&'static str, &'static str) {
        match self {
            Kind::Counter => ("counter", "_total"),
            Kind::Gauge | Kind::StateSet => ("gauge", ""),
            Kind::Info => ("gauge", "_info"),
            Kind::Histogram => ("histogram", ""),
            Kind::Summary => ("summary", ""),
            Kind::Unknown | Kind::Unsupported => ("untyped", ""),
        }
    }

    /// Whether OpenMetrics gives this type a `_created` sample.
    fn has_created(self) -> bool {
        matches!(self, Kind::Counter | Kind::Histogram | Kind::Summary)
    }
}

impl ToPrometheusText {
    /// Converts the complete lines of `chunk` (with the start kept from the last push) into
    /// `out`, and keeps an incomplete last line for the next push.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                self.partial.extend_from_slice(rest);
                return;
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&rest[..end]);
            self.line(&line, out);
            line.clear();
            self.partial = line;
            rest = &rest[end + 1..];
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.line(&rest[..end], out);
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    /// Converts what is left: a last line without its newline, a `# HELP` without a `# TYPE`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, out);
        }
        self.flush_help(out);
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        match line.strip_prefix(b"# ") {
            Some(comment) => self.comment(line, comment, out),
            None if line.is_empty() => {}
            None => self.sample(line, out),
        }
    }

    fn comment(&mut self, line: &[u8], comment: &[u8], out: &mut Vec<u8>) {
        let (keyword, rest) = split_space(comment);
        match keyword {
            b"HELP" => {
                let (name, text) = split_space(rest);
                if !self.family.is_empty() && name == self.family.as_slice() {
                    // After its family's TYPE.
                    if self.kind != Kind::Unsupported {
                        let suffix = self.kind.prometheus_text().1;
                        write_help(out, &[name, suffix.as_bytes()], text);
                    }
                } else {
                    self.flush_help(out);
                    self.help = Some((name.to_vec(), text.to_vec()));
                }
            }
            b"TYPE" => {
                let (name, kind) = split_space(rest);
                let help = match self.help.take() {
                    Some((help_name, text)) if help_name == name => Some(text),
                    other => {
                        self.help = other;
                        self.flush_help(out);
                        None
                    }
                };
                self.family.clear();
                self.family.extend_from_slice(name);
                self.kind = Kind::parse(kind);
                if self.kind == Kind::Unsupported {
                    for part in [
                        b"# " as &[u8],
                        name,
                        b" is an OpenMetrics ",
                        kind,
                        b", which the Prometheus text format cannot carry: left out\n",
                    ] {
                        out.extend_from_slice(part);
                    }
                    return;
                }
                let (text_type, suffix) = self.kind.prometheus_text();
                if let Some(text) = help {
                    write_help(out, &[name, suffix.as_bytes()], &text);
                }
                for part in [
                    b"# TYPE " as &[u8],
                    name,
                    suffix.as_bytes(),
                    b" ",
                    text_type.as_bytes(),
                    b"\n",
                ] {
                    out.extend_from_slice(part);
                }
            }
            b"UNIT" => {}
            b"EOF" if rest.is_empty() => self.flush_help(out),
            _ => {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
    }

    fn sample(&mut self, line: &[u8], out: &mut Vec<u8>) {
        self.flush_help(out);
        let name_end = line
            .iter()
            .position(|&b| b == b'{' || b == b' ')
            .unwrap_or(line.len());
        if !self.family.is_empty()
            && let Some(suffix) = line[..name_end].strip_prefix(self.family.as_slice())
            && (self.kind == Kind::Unsupported
                || (suffix == b"_created" && self.kind.has_created()))
        {
            return;
        }
        let Some(series_end) = series_end(line, name_end) else {
            // Not a sample OpenMetrics could have written; the scraper shall judge it.
            out.extend_from_slice(line);
            out.push(b'\n');
            return;
        };
        let rest = &line[series_end..];
        // Almost every line: ` value` and nothing after it.
        if rest.first() == Some(&b' ') && !rest[1..].contains(&b' ') {
            out.extend_from_slice(line);
            out.push(b'\n');
            return;
        }
        let mut tokens = rest.split(|&b| b == b' ').filter(|t| !t.is_empty());
        out.extend_from_slice(&line[..series_end]);
        if let Some(value) = tokens.next() {
            out.push(b' ');
            out.extend_from_slice(value);
        }
        // Then an optional timestamp in seconds, then an optional ` # {...} value` exemplar.
        if let Some(timestamp) = tokens.next().filter(|t| *t != b"#")
            && let Some(millis) = std::str::from_utf8(timestamp)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .map(|seconds| (seconds * 1000.0).round())
                .filter(|ms| ms.is_finite() && ms.abs() < 9.0e18)
        {
            out.push(b' ');
            // In range for i64 by the filter above.
            out.extend_from_slice(itoa::Buffer::new().format(millis as i64).as_bytes());
        }
        out.push(b'\n');
    }

    /// Writes a `# HELP` that no `# TYPE` followed: a family the text format reads as untyped.
    fn flush_help(&mut self, out: &mut Vec<u8>) {
        if let Some((name, text)) = self.help.take() {
            write_help(out, &[&name], &text);
        }
    }
}

/// `# HELP name text`, the text unescaped of `\"`, which OpenMetrics allows and the text format
/// does not (both escape `\\` and `\n` alike).
fn write_help(out: &mut Vec<u8>, name: &[&[u8]], text: &[u8]) {
    out.extend_from_slice(b"# HELP ");
    for part in name {
        out.extend_from_slice(part);
    }
    out.push(b' ');
    let mut escaped = false;
    for &b in text {
        if escaped {
            if b != b'"' {
                out.push(b'\\');
            }
            out.push(b);
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else {
            out.push(b);
        }
    }
    if escaped {
        out.push(b'\\');
    }
    out.push(b'\n');
}

/// `text` up to its first space, and after it.
fn split_space(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().position(|&b| b == b' ') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, &[]),
    }
}

/// Where a sample's name and labels end: `name_end`, or past the `}` closing the labels that
/// start there (quotes and escapes inside values respected). `None` for unclosed labels.
fn series_end(line: &[u8], name_end: usize) -> Option<usize> {
    if line.get(name_end) != Some(&b'{') {
        return Some(name_end);
    }
    let mut quoted = false;
    let mut i = name_end + 1;
    while let Some(&b) = line.get(i) {
        match b {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return Some(i + 1),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_2_42: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_2_49: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

    fn negotiate(accept: &[&str]) -> Format {
        Format::negotiate(accept.iter().copied())
    }

    #[test]
    fn prometheus_gets_openmetrics() {
        for accept in [PROMETHEUS_2_42, PROMETHEUS_2_49, PROMETHEUS_3] {
            assert_eq!(negotiate(&[accept]), Format::OpenMetricsV1, "{accept}");
        }
        // Prometheus with protobuf first (native histograms): protobuf is not on offer.
        let proto_first = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(negotiate(&[proto_first]), Format::OpenMetricsV1);
    }

    #[test]
    fn the_text_format_otherwise() {
        for accept in [
            &[][..],
            &[""],
            &["*/*"],
            &["text/plain"],
            &["text/plain;version=0.0.4"],
            &["text/plain; version=0.0.4; charset=utf-8"],
            &["text/*"],
            &["application/json"],
            &["garbage"],
            &["text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"],
            // Prometheus limited to the text format (scrape_protocols: [PrometheusText0.0.4]).
            &["text/plain;version=0.0.4;q=0.5,*/*;q=0.4"],
            &["application/openmetrics-text;version=1.0.0;q=0.2,text/plain;q=0.3"],
            &["application/openmetrics-text;q=0,*/*"],
            &["application/openmetrics-text;version=2.0.0"],
        ] {
            assert_eq!(negotiate(accept), Format::PrometheusText, "{accept:?}");
        }
    }

    #[test]
    fn openmetrics_when_named_or_preferred() {
        for (accept, expected) in [
            (&["application/openmetrics-text"][..], Format::OpenMetricsV1),
            (
                &["application/openmetrics-text; version=1.0.0"],
                Format::OpenMetricsV1,
            ),
            (
                &["application/openmetrics-text;version=0.0.1"],
                Format::OpenMetricsV0,
            ),
            (
                &["Application/OpenMetrics-Text;Version=\"1.0.0\";Q=1"],
                Format::OpenMetricsV1,
            ),
            // Ties between named formats prefer OpenMetrics.
            (
                &["text/plain;version=0.0.4,application/openmetrics-text"],
                Format::OpenMetricsV1,
            ),
            (
                &[
                    "application/openmetrics-text;version=0.0.1;q=0.9,application/openmetrics-text;version=1.0.0;q=0.8",
                ],
                Format::OpenMetricsV0,
            ),
            // Refusing the text format leaves OpenMetrics through the wildcard.
            (&["text/plain;q=0,*/*;q=0.1"], Format::OpenMetricsV1),
            // Several Accept headers are one list.
            (
                &[
                    "text/plain;version=0.0.4;q=0.3",
                    "application/openmetrics-text;q=0.5",
                ],
                Format::OpenMetricsV1,
            ),
        ] {
            assert_eq!(negotiate(accept), expected, "{accept:?}");
        }
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.001"), Some(1));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("-1"), None);
        assert_eq!(parse_q("NaN"), None);
        assert_eq!(parse_q("x"), None);
        // A range with an unreadable q-value is ignored, not taken at q=1.
        assert_eq!(
            negotiate(&["application/openmetrics-text;q=x"]),
            Format::PrometheusText
        );
    }

    fn convert(text: &str) -> String {
        let mut converter = ToPrometheusText::default();
        let mut out = Vec::new();
        converter.push(text.as_bytes(), &mut out);
        converter.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_type_as_prometheus_client_writes_it() {
        let openmetrics = "\
# HELP fluxgate_build fluxgate build information.
# TYPE fluxgate_build info
fluxgate_build_info{version=\"0.1.0\"} 1
# HELP fluxgate_admission_requests Admission reviews answered.
# TYPE fluxgate_admission_requests counter
fluxgate_admission_requests_total{kind=\"Pod\",operation=\"UPDATE\",outcome=\"skipped\"} 2
# HELP fluxgate_admission_duration_seconds Time to answer.
# TYPE fluxgate_admission_duration_seconds histogram
fluxgate_admission_duration_seconds_sum{kind=\"Pod\"} 0.001
fluxgate_admission_duration_seconds_count{kind=\"Pod\"} 1
fluxgate_admission_duration_seconds_bucket{le=\"0.001\",kind=\"Pod\"} 1
fluxgate_admission_duration_seconds_bucket{le=\"+Inf\",kind=\"Pod\"} 1
# HELP fluxgate_janitor_leader Whether this replica holds the Lease.
# TYPE fluxgate_janitor_leader gauge
fluxgate_janitor_leader 0
# HELP fluxgate_watcher_restarts Times the watch failed.
# TYPE fluxgate_watcher_restarts counter
fluxgate_watcher_restarts_total 3
# HELP fluxgate_mystery Something.
# TYPE fluxgate_mystery unknown
fluxgate_mystery 1.5
# EOF
";
        let expected = "\
# HELP fluxgate_build_info fluxgate build information.
# TYPE fluxgate_build_info gauge
fluxgate_build_info{version=\"0.1.0\"} 1
# HELP fluxgate_admission_requests_total Admission reviews answered.
# TYPE fluxgate_admission_requests_total counter
fluxgate_admission_requests_total{kind=\"Pod\",operation=\"UPDATE\",outcome=\"skipped\"} 2
# HELP fluxgate_admission_duration_seconds Time to answer.
# TYPE fluxgate_admission_duration_seconds histogram
fluxgate_admission_duration_seconds_sum{kind=\"Pod\"} 0.001
fluxgate_admission_duration_seconds_count{kind=\"Pod\"} 1
fluxgate_admission_duration_seconds_bucket{le=\"0.001\",kind=\"Pod\"} 1
fluxgate_admission_duration_seconds_bucket{le=\"+Inf\",kind=\"Pod\"} 1
# HELP fluxgate_janitor_leader Whether this replica holds the Lease.
# TYPE fluxgate_janitor_leader gauge
fluxgate_janitor_leader 0
# HELP fluxgate_watcher_restarts_total Times the watch failed.
# TYPE fluxgate_watcher_restarts_total counter
fluxgate_watcher_restarts_total 3
# HELP fluxgate_mystery Something.
# TYPE fluxgate_mystery untyped
fluxgate_mystery 1.5
";
        assert_eq!(convert(openmetrics), expected);
    }

    #[test]
    fn openmetrics_only_constructs() {
        let openmetrics = "\
# TYPE requests counter
# UNIT requests requests
# HELP requests Requests, \\\"quoted\\\" and a \\\\ backslash.
requests_total{path=\"/a b # {c}\"} 7 1700000000.5 # {trace_id=\"x y\"} 1 1700000000
requests_created{path=\"/a b # {c}\"} 1600000000
requests_total{path=\"/b\"} 8 # {trace_id=\"z\"} 1
# TYPE latency histogram
latency_bucket{le=\"+Inf\"} 1 # {trace_id=\"q\"} 0.2
latency_count 1
latency_sum 0.2
latency_created 1600000000
# TYPE queue gaugehistogram
queue_bucket{le=\"+Inf\"} 4
queue_gcount 4
queue_gsum 12
# HELP door The door.
# TYPE door stateset
door{door=\"open\"} 1
door{door=\"closed\"} 0
# HELP orphan Help without a type.
orphan 1
# a plain comment
# EOF
";
        let expected = "\
# TYPE requests_total counter
# HELP requests_total Requests, \"quoted\" and a \\\\ backslash.
requests_total{path=\"/a b # {c}\"} 7 1700000000500
requests_total{path=\"/b\"} 8
# TYPE latency histogram
latency_bucket{le=\"+Inf\"} 1
latency_count 1
latency_sum 0.2
# queue is an OpenMetrics gaugehistogram, which the Prometheus text format cannot carry: left out
# HELP door The door.
# TYPE door gauge
door{door=\"open\"} 1
door{door=\"closed\"} 0
# HELP orphan Help without a type.
orphan 1
# a plain comment
";
        assert_eq!(convert(openmetrics), expected);
    }

    #[test]
    fn lines_split_anywhere_across_chunks() {
        let openmetrics = "# HELP c A counter.\n# TYPE c counter\nc_total{a=\"}\\\"\"} 1 # {x=\"1\"} 1\nc_created 5\n# HELP g A gauge.\n# TYPE g gauge\ng 2\n# EOF\n";
        let whole = convert(openmetrics);
        assert_eq!(
            whole,
            "# HELP c_total A counter.\n# TYPE c_total counter\nc_total{a=\"}\\\"\"} 1\n# HELP g A gauge.\n# TYPE g gauge\ng 2\n"
        );
        for size in 1..openmetrics.len() {
            let chunks = openmetrics
                .as_bytes()
                .chunks(size)
                .map(Bytes::copy_from_slice)
                .collect::<Vec<_>>();
            let text: Vec<u8> = to_prometheus_text(chunks.into_iter()).flatten().collect();
            assert_eq!(String::from_utf8(text).unwrap(), whole, "chunks of {size}");
        }
    }

    #[test]
    fn a_last_line_without_newline_is_kept() {
        assert_eq!(convert("# TYPE g gauge\ng 1"), "# TYPE g gauge\ng 1\n");
        let none: Vec<Bytes> = to_prometheus_text(std::iter::empty()).collect();
        assert!(none.is_empty());
    }
}
