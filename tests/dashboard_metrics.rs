//! Every `fluxgate_*` series the shipped dashboard and alert rules query is one a running fluxgate
//! really exports: the registry is built as `serve` builds it, every family gets a sample, and
//! the names and types are read from the encoded `/metrics` text, not from a list kept by hand.
//!
//! The dashboard's conventions (dashboards/README.md) are checked query by query, so a new panel
//! passes exactly when it follows them: the install variables on every selector, rates over
//! `$__rate_interval`, counters only through rate()/increase(), and gauges that every replica
//! exports alike never added up across replicas.

use std::collections::{BTreeMap, BTreeSet};

use fluxgate::exporter::{Exporter, ExporterConfig};
use fluxgate::health::classify;
use fluxgate::metrics::{
    AdmissionLabels, BreakerActionLabels, HostOutcomeLabels, HostStateLabels, HostTransitionLabels,
    JanitorActionLabels, KindLabels, Metrics, NamespaceLabels, OutcomeLabels, RuleLabels,
};
use serde_json::json;

/// Every exported series name with the type of its family (`counter`, `gauge`, `histogram`,
/// `info`, ...), from the `# TYPE` lines of the encoded text.
fn exported_series() -> BTreeMap<String, String> {
    let mut metrics = Metrics::new();
    let exporter = Exporter::new(&mut metrics, ExporterConfig::default());
    let store = exporter.store();
    store.relist_start(0);
    for (name, status) in [
        (
            "failing",
            json!({ "conditions": [{ "type": "Ready", "status": "False", "reason": "GitOperationFailed",
                                             "message": "i/o timeout", "lastTransitionTime": "2026-11-28T10:00:00Z" }] }),
        ),
        ("waiting", json!({ "observedGeneration": -1 })),
        ("quarantined", json!({ "observedGeneration": -1 })),
        ("laned", json!({ "observedGeneration": -1 })),
    ] {
        let quarantined = name == "quarantined";
        let lane = if name == "laned" { "far" } else { "" };
        let object = json!({
            "metadata": { "name": name, "namespace": "proj", "uid": name, "creationTimestamp": "2026-11-28T09:00:00Z",
                          "labels": { "fluxgate.io/quarantined": if quarantined { "true" } else { "false" },
                                      "sharding.fluxcd.io/key": lane } },
            "spec": { "url": "https://github.com/o/r", "suspend": quarantined },
            "status": status,
        });
        store.relist_apply(0, &classify(&object).unwrap());
    }
    store.relist_done(0, true, 0);
    store.first_reconcile().observe(1.0);
    metrics
        .admission
        .requests
        .get_or_create(&AdmissionLabels {
            kind: "GitRepository",
            operation: "CREATE",
            outcome: "patched",
        })
        .inc();
    let host = || "github.com".to_owned();
    metrics
        .breaker
        .state
        .get_or_create(&HostStateLabels {
            host: host(),
            state: "open",
        })
        .set(1);
    metrics
        .breaker
        .transitions
        .get_or_create(&HostTransitionLabels {
            host: host(),
            from: "closed",
            to: "open",
        })
        .inc();
    metrics
        .breaker
        .actions
        .get_or_create(&BreakerActionLabels {
            action: "quarantine",
            outcome: "done",
        })
        .inc();
    metrics
        .breaker
        .probes
        .get_or_create(&HostOutcomeLabels {
            host: host(),
            outcome: "failed",
        })
        .inc();
    metrics
        .admission
        .duration
        .get_or_create(&KindLabels {
            kind: "GitRepository",
        })
        .observe(0.001);
    metrics
        .tls
        .reloads
        .get_or_create(&OutcomeLabels { outcome: "success" })
        .inc();
    metrics
        .proxy
        .injections
        .get_or_create(&NamespaceLabels {
            namespace: "flux-system".into(),
        })
        .inc();
    metrics
        .janitor
        .actions
        .get_or_create(&JanitorActionLabels {
            rule: "failing",
            action: "suspend",
            outcome: "done",
        })
        .inc();
    metrics
        .janitor
        .candidates
        .get_or_create(&RuleLabels { rule: "failing" })
        .set(1);
    let mut series = BTreeMap::new();
    let mut family_type = String::new();
    for line in metrics.encode().lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family_type = rest.rsplit(' ').next().unwrap_or_default().to_owned();
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next()
        {
            series.insert(name.to_owned(), family_type.clone());
        }
    }
    series
}

fn referenced(path: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap();
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("fluxgate_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |e| start + e);
        if before_ok {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn dashboard_and_rules_use_only_exported_series() {
    let exported = exported_series();
    assert!(
        exported.contains_key("fluxgate_gitrepositories_failed"),
        "{exported:?}"
    );
    for path in ["dashboards/fluxgate.json", "alerts/fluxgate-rules.yaml"] {
        let used = referenced(path);
        assert!(!used.is_empty(), "{path} queries no fluxgate series");
        let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains_key(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{path} queries series fluxgate does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
}

// --- the dashboard's conventions -------------------------------------------------------------

/// The matchers that pick one install, on every selector of a fluxgate series.
const INSTALL_MATCHERS: [(&str, &str); 3] = [
    ("cluster", "$cluster"),
    ("job", "$job"),
    ("instance", "$instance"),
];
/// Functions whose range must be `$__rate_interval`, and through which counters are read.
const RATE_FUNCTIONS: [&str; 3] = ["rate", "irate", "increase"];
/// PromQL's aggregation operators (a name followed by `(` or by `by`/`without` is one of these
/// or a function).
const AGGREGATIONS: [&str; 13] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
];
/// Aggregations that may take a gauge straight from the replicas: the same value counted twice
/// changes neither an extreme nor a count of distinct series.
const REPLICA_SAFE: [&str; 4] = ["max", "min", "count", "group"];

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(String),
    Variable(String),
    Punct(String),
}

fn tokenize(expr: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let mut value = String::new();
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(format!("unterminated string in {expr:?}"));
                };
                i += 1;
                if d == c {
                    break;
                }
                if d == '\\' && c != '`' {
                    value.push(*chars.get(i).unwrap_or(&'\\'));
                    i += 1;
                } else {
                    value.push(d);
                }
            }
            tokens.push(Token::Str(value));
        } else if c == '$' {
            i += 1;
            let name: String = if chars.get(i) == Some(&'{') {
                let end = chars[i..]
                    .iter()
                    .position(|&d| d == '}')
                    .ok_or(format!("unterminated ${{ in {expr:?}"))?;
                let inner: String = chars[i + 1..i + end].iter().collect();
                i += end + 1;
                inner.split(':').next().unwrap_or_default().to_owned()
            } else {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                chars[start..i].iter().collect()
            };
            tokens.push(Token::Variable(name));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            tokens.push(Token::Number(chars[start..i].iter().collect()));
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && word(chars[i]) {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = if ["==", "!=", "=~", "!~", ">=", "<="].contains(&two.as_str()) {
                two
            } else {
                c.to_string()
            };
            i += op.chars().count();
            tokens.push(Token::Punct(op));
        }
    }
    Ok(tokens)
}

#[derive(Debug, Clone)]
struct Aggregation {
    op: String,
    /// The `by (...)` labels; `None` without a `by` clause.
    by: Option<Vec<String>>,
    without: bool,
}

/// One series selector of a query, with what surrounds it.
#[derive(Debug)]
struct Selector {
    metric: String,
    /// (label, operator, value)
    matchers: Vec<(String, String, String)>,
    /// The text inside `[...]` right after the selector.
    range: Option<String>,
    /// The function the selector (or its range) is the direct argument of.
    function: Option<String>,
    /// The innermost aggregation around the selector, as an index into `aggregations`.
    aggregation: Option<usize>,
}

#[derive(Debug)]
struct Query {
    selectors: Vec<Selector>,
    aggregations: Vec<Aggregation>,
}

enum Frame {
    Aggregation(usize),
    Call(String),
    Paren,
}

fn is_punct(token: Option<&Token>, p: &str) -> bool {
    matches!(token, Some(Token::Punct(q)) if q == p)
}

fn is_keyword(token: Option<&Token>, words: &[&str]) -> bool {
    matches!(token, Some(Token::Ident(w)) if words.contains(&w.to_ascii_lowercase().as_str()))
}

/// Reads `( label, ... )` at `tokens[*i]`.
fn label_list(tokens: &[Token], i: &mut usize) -> Result<Vec<String>, String> {
    if !is_punct(tokens.get(*i), "(") {
        return Err(format!("expected a label list at token {i}"));
    }
    *i += 1;
    let mut labels = Vec::new();
    loop {
        match tokens.get(*i) {
            Some(Token::Punct(p)) if p == ")" => {
                *i += 1;
                return Ok(labels);
            }
            Some(Token::Punct(p)) if p == "," => *i += 1,
            Some(Token::Ident(l) | Token::Str(l)) => {
                labels.push(l.clone());
                *i += 1;
            }
            other => return Err(format!("unexpected {other:?} in a label list")),
        }
    }
}

/// Reads `{ label op "value", ... }` at `tokens[*i]`.
fn matchers(tokens: &[Token], i: &mut usize) -> Result<Vec<(String, String, String)>, String> {
    *i += 1; // {
    let mut out = Vec::new();
    loop {
        match tokens.get(*i) {
            Some(Token::Punct(p)) if p == "}" => {
                *i += 1;
                return Ok(out);
            }
            Some(Token::Punct(p)) if p == "," => *i += 1,
            Some(Token::Ident(label) | Token::Str(label)) => {
                let (Some(Token::Punct(op)), Some(Token::Str(value))) =
                    (tokens.get(*i + 1), tokens.get(*i + 2))
                else {
                    return Err(format!("bad matcher after {label:?}"));
                };
                out.push((label.clone(), op.clone(), value.clone()));
                *i += 3;
            }
            other => return Err(format!("unexpected {other:?} in a selector")),
        }
    }
}

/// Reads `[ ... ]` at `tokens[*i]` back as text (a range, or a subquery's range and step).
fn bracket(tokens: &[Token], i: &mut usize) -> Result<String, String> {
    *i += 1; // [
    let mut text = String::new();
    loop {
        match tokens.get(*i) {
            None => return Err("unterminated [".into()),
            Some(Token::Punct(p)) if p == "]" => {
                *i += 1;
                return Ok(text);
            }
            Some(Token::Variable(v)) => text.push_str(&format!("${v}")),
            Some(Token::Ident(t) | Token::Number(t) | Token::Punct(t) | Token::Str(t)) => {
                text.push_str(t)
            }
        }
        *i += 1;
    }
}

/// Finds every selector of a PromQL query (Grafana variables left in) and what surrounds it.
/// Only as much PromQL as the conventions need: selectors, ranges, functions, aggregations with
/// their `by`/`without` (before or after the argument), and the keywords between them.
fn parse_query(expr: &str) -> Result<Query, String> {
    let tokens = tokenize(expr)?;
    let mut query = Query {
        selectors: Vec::new(),
        aggregations: Vec::new(),
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let next = tokens.get(i + 1);
        match &tokens[i] {
            Token::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                if ["on", "ignoring", "group_left", "group_right"].contains(&lower.as_str()) {
                    i += 1;
                    if is_punct(tokens.get(i), "(") {
                        label_list(&tokens, &mut i)?;
                    }
                } else if ["and", "or", "unless", "bool", "atan2", "inf", "nan"]
                    .contains(&lower.as_str())
                {
                    i += 1;
                } else if lower == "offset" {
                    i += 1;
                    if is_punct(tokens.get(i), "-") {
                        i += 1;
                    }
                    i += 1; // the duration
                } else if AGGREGATIONS.contains(&lower.as_str())
                    && (is_punct(next, "(") || is_keyword(next, &["by", "without"]))
                {
                    let mut aggregation = Aggregation {
                        op: lower,
                        by: None,
                        without: false,
                    };
                    i += 1;
                    if is_keyword(tokens.get(i), &["by", "without"]) {
                        aggregation.without = is_keyword(tokens.get(i), &["without"]);
                        i += 1;
                        aggregation.by = Some(label_list(&tokens, &mut i)?);
                    }
                    if !is_punct(tokens.get(i), "(") {
                        return Err(format!("expected ( after {}", aggregation.op));
                    }
                    i += 1;
                    query.aggregations.push(aggregation);
                    stack.push(Frame::Aggregation(query.aggregations.len() - 1));
                } else if is_punct(next, "(") {
                    stack.push(Frame::Call(lower));
                    i += 2;
                } else {
                    i += 1;
                    let mut found = Vec::new();
                    if is_punct(tokens.get(i), "{") {
                        found = matchers(&tokens, &mut i)?;
                    }
                    push_selector(&mut query, &stack, name.clone(), found, &tokens, &mut i)?;
                }
            }
            Token::Punct(p) if p == "{" => {
                let found = matchers(&tokens, &mut i)?;
                let name = found
                    .iter()
                    .find(|(l, op, _)| l == "__name__" && op == "=")
                    .map(|(_, _, v)| v.clone())
                    .unwrap_or_default();
                push_selector(&mut query, &stack, name, found, &tokens, &mut i)?;
            }
            Token::Punct(p) if p == "(" => {
                stack.push(Frame::Paren);
                i += 1;
            }
            Token::Punct(p) if p == ")" => {
                let frame = stack.pop().ok_or("unbalanced )")?;
                i += 1;
                if let Frame::Aggregation(index) = frame
                    && is_keyword(tokens.get(i), &["by", "without"])
                {
                    query.aggregations[index].without = is_keyword(tokens.get(i), &["without"]);
                    i += 1;
                    query.aggregations[index].by = Some(label_list(&tokens, &mut i)?);
                }
            }
            Token::Punct(p) if p == "[" => {
                bracket(&tokens, &mut i)?; // a subquery's range
            }
            _ => i += 1,
        }
    }
    if !stack.is_empty() {
        return Err("unbalanced (".into());
    }
    Ok(query)
}

fn push_selector(
    query: &mut Query,
    stack: &[Frame],
    metric: String,
    matchers: Vec<(String, String, String)>,
    tokens: &[Token],
    i: &mut usize,
) -> Result<(), String> {
    let range = if is_punct(tokens.get(*i), "[") {
        Some(bracket(tokens, i)?)
    } else {
        None
    };
    let function = match stack.last() {
        Some(Frame::Call(name)) => Some(name.clone()),
        _ => None,
    };
    let aggregation = stack.iter().rev().find_map(|f| match f {
        Frame::Aggregation(index) => Some(*index),
        _ => None,
    });
    query.selectors.push(Selector {
        metric,
        matchers,
        range,
        function,
        aggregation,
    });
    Ok(())
}

/// What a query breaks of the conventions; `foreign` is set when it reads series fluxgate does
/// not export (source-controller's), which follow the cluster variable only.
struct Verdict {
    problems: Vec<String>,
    foreign: bool,
}

fn check_query(expr: &str, exported: &BTreeMap<String, String>) -> Verdict {
    let mut verdict = Verdict {
        problems: Vec::new(),
        foreign: false,
    };
    let query = match parse_query(expr) {
        Ok(query) => query,
        Err(err) => {
            verdict
                .problems
                .push(format!("cannot read the query: {err}"));
            return verdict;
        }
    };
    if query.selectors.is_empty() {
        verdict.problems.push("no series selector".into());
    }
    let has = |s: &Selector, label: &str, value: &str| {
        s.matchers
            .iter()
            .any(|(l, op, v)| l == label && op == "=~" && v == value)
    };
    for s in &query.selectors {
        let name = &s.metric;
        if !has(s, "cluster", "$cluster") {
            verdict
                .problems
                .push(format!("{name}: no cluster=~\"$cluster\""));
        }
        let Some(kind) = exported.get(name) else {
            verdict.foreign = true;
            continue;
        };
        for (label, value) in INSTALL_MATCHERS {
            if !has(s, label, value) {
                verdict
                    .problems
                    .push(format!("{name}: no {label}=~\"{value}\""));
            }
        }
        let through_rate = s
            .function
            .as_deref()
            .is_some_and(|f| RATE_FUNCTIONS.contains(&f));
        if through_rate && s.range.as_deref() != Some("$__rate_interval") {
            verdict.problems.push(format!(
                "{name}: {}() over [{}], not [$__rate_interval]",
                s.function.as_deref().unwrap_or_default(),
                s.range.as_deref().unwrap_or_default()
            ));
        }
        match kind.as_str() {
            "counter" | "histogram" => {
                if !through_rate {
                    verdict.problems.push(format!(
                        "{name}: a {kind} series read without rate()/irate()/increase()"
                    ));
                }
            }
            _ => {
                // A gauge: every replica may export the same value.
                let Some(index) = s.aggregation else {
                    continue;
                };
                let a = &query.aggregations[index];
                let by = a.by.clone().unwrap_or_default();
                let keeps = |label: &str| by.iter().any(|l| l == label);
                if !REPLICA_SAFE.contains(&a.op.as_str()) {
                    verdict.problems.push(format!(
                        "{name}: {}() straight over a gauge adds the replicas up; take max/min by (cluster, job, ...) first",
                        a.op
                    ));
                } else if a.without {
                    verdict.problems.push(format!(
                        "{name}: {} without (...) keeps the replicas' own labels; use by (...)",
                        a.op
                    ));
                } else if a.by.is_some()
                    && !keeps("instance")
                    && !(keeps("cluster") && keeps("job"))
                    && a.op != "count"
                {
                    verdict.problems.push(format!(
                        "{name}: {} by ({}) merges installs; keep cluster and job (or instance)",
                        a.op,
                        by.join(", ")
                    ));
                }
            }
        }
    }
    verdict
}

fn read_json(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn panels(list: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for panel in list.as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panels(&panel["panels"]));
    }
    out
}

/// The panels whose queries Grafana's dashboard linter is told (dashboards/.lint) not to check
/// for job/instance matchers, rule by rule.
fn linter_exclusions() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/.lint"),
    )
    .unwrap();
    let config: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let mut out = BTreeMap::new();
    for (rule, entry) in config["exclusions"].as_object().into_iter().flatten() {
        assert!(
            entry["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "dashboards/.lint: {rule} excluded without a reason"
        );
        let titles = entry["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["panel"].as_str().expect("entries name panels").to_owned())
            .collect();
        out.insert(rule.clone(), titles);
    }
    out
}

#[test]
fn every_dashboard_query_follows_the_conventions() {
    let exported = exported_series();
    let dashboard = read_json("dashboards/fluxgate.json");
    let mut problems = Vec::new();
    let mut foreign_panels = BTreeSet::new();
    let mut queries = 0;
    for panel in panels(&dashboard["panels"]) {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        let where_ = format!("panel {} {title:?}", panel["id"]);
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{where_}: datasource is not ${{datasource}}"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{where_}: no queries"));
        }
        for target in targets {
            queries += 1;
            let expr = target["expr"].as_str().unwrap_or_default();
            let at = format!("{where_} query {}", target["refId"]);
            if target["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{at}: datasource is not ${{datasource}}"));
            }
            let verdict = check_query(expr, &exported);
            if verdict.foreign {
                foreign_panels.insert(title.clone());
            }
            problems.extend(
                verdict
                    .problems
                    .iter()
                    .map(|p| format!("{at}: {p}\n    {expr}")),
            );
        }
    }
    assert!(queries > 0);
    assert!(
        problems.is_empty(),
        "{} problem(s), see dashboards/README.md for the conventions:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Panels of other components' series are exactly the ones the linter is told about.
    let exclusions = linter_exclusions();
    for rule in ["target-job-rule", "target-instance-rule"] {
        assert_eq!(
            exclusions.get(rule).cloned().unwrap_or_default(),
            foreign_panels,
            "dashboards/.lint {rule} must list exactly the panels that read series fluxgate does not export"
        );
    }
}

#[test]
fn dashboard_variables_select_one_install() {
    let dashboard = read_json("dashboards/fluxgate.json");
    assert_eq!(
        dashboard["editable"], false,
        "provisioned dashboards are not editable"
    );
    let list = dashboard["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        list.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for (name, label, all, selector) in [
        ("cluster", "Cluster", ".*", ""),
        ("job", "Job", ".+", "cluster=~\"$cluster\""),
        (
            "instance",
            "Instance",
            ".+",
            "cluster=~\"$cluster\", job=~\"$job\"",
        ),
    ] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["label"], label, "{name}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
        assert_eq!(v["multi"], true, "{name}");
        assert_eq!(v["includeAll"], true, "{name}");
        assert_eq!(v["allValue"], all, "{name}");
        assert_eq!(v["refresh"], 2, "{name}: refresh on time range change");
        // Chained: each lists the values within the ones chosen before it.
        let query = v["query"]["query"].as_str().unwrap();
        let inner = if selector.is_empty() {
            String::new()
        } else {
            format!("{{{selector}}}")
        };
        assert_eq!(
            query,
            format!("label_values(fluxgate_build_info{inner}, {name})"),
            "{name}"
        );
        assert_eq!(v["definition"], query, "{name}");
    }
    let ns = var("namespace");
    assert!(
        ns["query"]["query"]
            .as_str()
            .unwrap()
            .contains("cluster=~\"$cluster\", job=~\"$job\", instance=~\"$instance\""),
        "the namespace variable lists the selected installs' namespaces"
    );
}

#[test]
fn the_convention_checks_bite() {
    let exported = exported_series();
    let install = "cluster=~\"$cluster\", job=~\"$job\", instance=~\"$instance\"";
    let problems = |expr: &str| check_query(expr, &exported).problems;
    // What the dashboard does passes.
    for good in [
        format!("sum(max by (cluster, job, namespace) (fluxgate_gitrepositories{{{install}}}))"),
        format!("sum(max(fluxgate_gitrepositories{{{install}}}) by (cluster, job, namespace))"),
        format!(
            "time() - min(fluxgate_gitrepositories_oldest_pending_timestamp_seconds{{{install}}})"
        ),
        format!("count by (version) (fluxgate_build_info{{{install}}})"),
        format!("max by (cluster, job, instance) (fluxgate_watcher_synced{{{install}}}) == 1"),
        format!(
            "histogram_quantile(0.9, sum by (le) (rate(fluxgate_admission_duration_seconds_bucket{{{install}}}[$__rate_interval])))"
        ),
        format!(
            "sum by (outcome) (increase(fluxgate_webhook_certificate_reloads_total{{{install}}}[$__rate_interval]))"
        ),
    ] {
        assert_eq!(problems(&good), Vec::<String>::new(), "{good}");
    }
    // Each break of a convention is named.
    for (bad, expected) in [
        (
            "sum(max by (cluster, job) (fluxgate_gitrepositories{cluster=~\"$cluster\", job=~\"$job\"}))".to_owned(),
            "no instance",
        ),
        (
            format!("sum(fluxgate_gitrepositories{{{install}}})"),
            "adds the replicas up",
        ),
        (
            format!("sum(max by (namespace) (fluxgate_gitrepositories{{{install}}}))"),
            "merges installs",
        ),
        (
            format!("sum(max(fluxgate_gitrepositories{{{install}}}) by (namespace))"),
            "merges installs",
        ),
        (
            format!("max without (pod) (fluxgate_gitrepositories{{{install}}})"),
            "use by",
        ),
        (
            format!("sum(rate(fluxgate_admission_requests_total{{{install}}}[5m]))"),
            "not [$__rate_interval]",
        ),
        (
            format!("sum(fluxgate_admission_requests_total{{{install}}})"),
            "without rate()",
        ),
        (
            "sum(workqueue_depth{name=\"gitrepository\"})".to_owned(),
            "no cluster",
        ),
    ] {
        let found = problems(&bad);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{bad}: expected a problem with {expected:?}, got {found:?}"
        );
    }
    assert!(check_query("sum(workqueue_depth{cluster=~\"$cluster\"})", &exported).foreign);
}
