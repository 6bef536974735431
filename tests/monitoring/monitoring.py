#!/usr/bin/env python3
"""Helpers for tests/monitoring/check.sh (stdlib + PyYAML only).

  monitoring.py prometheusrule [--write]
      Checks that alerts/prometheusrule.yaml holds exactly the groups of alerts/fluxgate-rules.yaml
      (compared as parsed YAML); --write regenerates it from the plain file, comments included.
  monitoring.py dashboard-lint DASHBOARD
      Structural checks of a Grafana dashboard (schema, the datasource, cluster, job, instance and
      namespace variables, panel ids, targets).
  monitoring.py dashboard-rules DASHBOARD OUT
      Writes every PromQL query of the dashboard, Grafana variables substituted, into OUT as
      recording rules (one group per panel, named after it) for `promtool check rules`.
  monitoring.py metric-names RULES DASHBOARD
      Fails on any fluxgate_* metric name that fluxgate does not export.
"""
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAIN = ROOT / "alerts" / "fluxgate-rules.yaml"
OPERATOR = ROOT / "alerts" / "prometheusrule.yaml"

PROMETHEUSRULE_HEADER = """\
# Generated from alerts/fluxgate-rules.yaml by
# `python3 tests/monitoring/monitoring.py prometheusrule --write`: edit that file, then regenerate.
# tests/monitoring/check.sh fails when the two differ.
#
# The same alerting rules as a prometheus-operator PrometheusRule. A Prometheus whose
# ruleSelector requires a label (kube-prometheus-stack: `release: <its release name>`) needs that
# label added here or by a kustomize patch.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: fluxgate
  namespace: fluxgate
  labels:
    app.kubernetes.io/name: fluxgate
    app.kubernetes.io/component: alerts
spec:
"""

# The metric contract: what fluxgate exports (histograms also as _bucket, _sum, _count).
FLUXGATE_METRICS = {
    "fluxgate_admission_requests_total",
    "fluxgate_admission_duration_seconds",
    "fluxgate_webhook_certificate_expiry_timestamp_seconds",
    "fluxgate_webhook_certificate_reloads_total",
    "fluxgate_proxy_injections_total",
    "fluxgate_mirror_rewrites_total",
    "fluxgate_lane_assignments_total",
    "fluxgate_gitrepositories",
    "fluxgate_gitrepositories_failed",
    "fluxgate_gitrepositories_unobserved",
    "fluxgate_gitrepositories_oldest_pending_timestamp_seconds",
    "fluxgate_gitrepository_first_reconcile_seconds",
    "fluxgate_gitrepository_failing_since_timestamp_seconds",
    "fluxgate_watcher_last_event_timestamp_seconds",
    "fluxgate_watcher_restarts_total",
    "fluxgate_watcher_objects",
    "fluxgate_watcher_synced",
    "fluxgate_build_info",
    "fluxgate_janitor_actions_total",
    "fluxgate_janitor_leader",
    "fluxgate_janitor_candidates",
    "fluxgate_gitrepositories_quarantined",
    "fluxgate_host_breaker_state",
    "fluxgate_host_breaker_transitions_total",
    "fluxgate_host_breaker_actions_total",
    "fluxgate_host_breaker_probes_total",
    "fluxgate_host_breaker_pass_duration_seconds",
    "fluxgate_quarantined_without_breaker",
    "fluxgate_breaker_cluster_wide_failure",
    "fluxgate_lane_gitrepositories",
    "fluxgate_lane_oldest_pending_timestamp_seconds",
}
FLUXGATE_HISTOGRAMS = {
    "fluxgate_admission_duration_seconds",
    "fluxgate_gitrepository_first_reconcile_seconds",
    "fluxgate_host_breaker_pass_duration_seconds",
}

# Grafana's variables, replaced by values that keep the query valid PromQL.
GRAFANA_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
    "namespace": ".*",
    "cluster": ".*",
    "job": ".+",
    "instance": ".+",
}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")


class Failure(Exception):
    pass


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def describe_difference(a, b, where="groups"):
    """First place where two parsed YAML values differ, for a readable failure."""
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{where}.{key}: only in {'the plain file' if key in a else 'the PrometheusRule'}"
            found = describe_difference(a[key], b[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b)):
            found = describe_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{where}: {len(a)} vs {len(b)} entries"
        return None
    return None if a == b else f"{where}: {a!r} vs {b!r}"


def render_prometheusrule():
    lines = PLAIN.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = ["  " + line if line.strip() else "" for line in lines[start:]]
    return PROMETHEUSRULE_HEADER + "\n".join(body) + "\n"


def cmd_prometheusrule(args):
    if args == ["--write"]:
        OPERATOR.write_text(render_prometheusrule(), encoding="utf-8")
        print(f"wrote {OPERATOR.relative_to(ROOT)}")
        return
    if args:
        raise Failure("usage: prometheusrule [--write]")
    plain = load_yaml(PLAIN)
    rule = load_yaml(OPERATOR)
    if rule.get("apiVersion") != "monitoring.coreos.com/v1" or rule.get("kind") != "PrometheusRule":
        raise Failure(f"{OPERATOR.name} is not a monitoring.coreos.com/v1 PrometheusRule")
    meta = rule.get("metadata") or {}
    if meta.get("name") != "fluxgate" or meta.get("namespace") != "fluxgate":
        raise Failure(f"{OPERATOR.name}: expected metadata fluxgate/fluxgate, got {meta.get('namespace')}/{meta.get('name')}")
    if set(plain) != {"groups"}:
        raise Failure(f"{PLAIN.name} has top-level keys besides groups: {sorted(plain)}")
    spec = rule.get("spec") or {}
    if set(spec) != {"groups"}:
        raise Failure(f"{OPERATOR.name}: spec has keys besides groups: {sorted(spec)}")
    difference = describe_difference(plain["groups"], spec["groups"])
    if difference:
        raise Failure(
            f"{OPERATOR.name} differs from {PLAIN.name} at {difference}\n"
            "regenerate it: python3 tests/monitoring/monitoring.py prometheusrule --write"
        )
    names = [r.get("alert") or r.get("record") for g in plain["groups"] for r in g["rules"]]
    print(f"PrometheusRule in sync: {len(plain['groups'])} group(s), {len(names)} rules")


def all_panels(panels):
    for panel in panels or []:
        yield panel
        # Collapsed rows keep their panels inside.
        yield from all_panels(panel.get("panels"))


def dashboard_queries(dashboard):
    """(label, expr) for every Prometheus query: panel targets and query variables."""
    for panel in all_panels(dashboard.get("panels")):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                # promtool quotes group names with escapes: keep quotes out of the label.
                label = f'panel {panel.get("id")}: {panel.get("title", "")}, query {target.get("refId")}'
                yield label, target["expr"]
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        query = (query or var.get("definition") or "").strip()
        label = f'variable {var.get("name")}'
        # Grafana's variable functions wrap a selector or a query; check what is inside.
        m = re.fullmatch(r"label_values\((.*?)(?:,\s*\w+)?\)", query) or re.fullmatch(
            r"query_result\((.*)\)", query)
        if m and m.group(1).strip():
            yield label, m.group(1)
        elif re.fullmatch(r"label_values\(\s*\w+\s*\)|label_names\(\)", query):
            continue
        else:
            raise Failure(f"{label}: unsupported variable query {query!r}")


def substitute(label, expr):
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in GRAFANA_VARIABLES:
            raise Failure(f"{label}: unknown Grafana variable ${name} in {expr!r}")
        return GRAFANA_VARIABLES[name]

    return VARIABLE.sub(repl, expr)


def cmd_dashboard_rules(args):
    if len(args) != 2:
        raise Failure("usage: dashboard-rules DASHBOARD OUT")
    dashboard = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    groups = []
    for i, (label, expr) in enumerate(dashboard_queries(dashboard), start=1):
        groups.append({
            "name": label,
            "rules": [{"record": f"dashboard:query_{i}", "expr": substitute(label, expr)}],
        })
    if not groups:
        raise Failure("the dashboard has no queries")
    Path(args[1]).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000),
                             encoding="utf-8")
    print(f"{len(groups)} queries")


def cmd_dashboard_lint(args):
    if len(args) != 1:
        raise Failure("usage: dashboard-lint DASHBOARD")
    dashboard = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    problems = []
    if "__inputs" in dashboard or "__requires" in dashboard:
        problems.append("export-for-sharing sections (__inputs/__requires) present")
    if not isinstance(dashboard.get("schemaVersion"), int) or dashboard["schemaVersion"] < 36:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')!r} is too old")
    if not dashboard.get("uid") or not dashboard.get("title"):
        problems.append("uid and title are required")
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or []}
    ds = variables.get("datasource") or {}
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("a `datasource` variable of type datasource/prometheus is required")
    # The install selectors, as Grafana's dashboard linter wants them: query variables on
    # ${datasource}, multi-value with All, refreshed on time range change; job and instance with
    # the linter's labels and an All of ".+" (every series has both), cluster with ".*" (it also
    # matches series without a cluster label, a single cluster's Prometheus).
    for name, label, all_value in (("cluster", "Cluster", ".*"), ("job", "Job", ".+"),
                                   ("instance", "Instance", ".+"), ("namespace", "Namespace", ".*")):
        var = variables.get(name) or {}
        if var.get("type") != "query":
            problems.append(f"a `{name}` query variable is required")
            continue
        if not (var.get("multi") and var.get("includeAll")) or var.get("allValue") != all_value:
            problems.append(f"the {name} variable must be multi-value with All = {all_value!r}")
        if var.get("label") != label:
            problems.append(f"the {name} variable must be labelled {label!r}")
        if var.get("refresh") != 2:
            problems.append(f"the {name} variable must refresh on time range change (2)")
        if (var.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"the {name} variable must query ${{datasource}}")
    if dashboard.get("editable") is not False:
        problems.append("editable must be false (provisioned dashboards are changed in the file)")
    ids = {}
    for panel in all_panels(dashboard.get("panels")):
        where = f'panel {panel.get("id")} "{panel.get("title", "")}"'
        if panel.get("id") in ids:
            problems.append(f"{where}: id also used by \"{ids[panel['id']]}\"")
        ids[panel.get("id")] = panel.get("title", "")
        if not panel.get("title"):
            problems.append(f"{where}: no title")
        grid = panel.get("gridPos") or {}
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")) or grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: bad gridPos {grid}")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no queries")
        for uid_holder in [panel] + targets:
            uid = (uid_holder.get("datasource") or {}).get("uid")
            if uid != "${datasource}":
                problems.append(f"{where}: datasource {uid!r} instead of ${{datasource}}")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or None in refs:
            problems.append(f"{where}: refIds must be present and distinct: {refs}")
    if problems:
        raise Failure("\n".join(problems))
    print(f"{len(ids)} panels")


METRIC = re.compile(r"\b(fluxgate_[a-zA-Z0-9_]*)")


def cmd_metric_names(args):
    if len(args) != 2:
        raise Failure("usage: metric-names RULES DASHBOARD")
    used = {}
    for group in load_yaml(args[0])["groups"]:
        for rule in group["rules"]:
            texts = [rule["expr"]] + list((rule.get("annotations") or {}).values())
            for text in texts:
                for name in METRIC.findall(text):
                    used.setdefault(name, f'rule {rule.get("alert") or rule.get("record")}')
    dashboard = json.loads(Path(args[1]).read_text(encoding="utf-8"))
    for label, expr in dashboard_queries(dashboard):
        for name in METRIC.findall(expr):
            used.setdefault(name, label)
    unknown = []
    for name, where in sorted(used.items()):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name in FLUXGATE_METRICS or (base in FLUXGATE_HISTOGRAMS and base != name):
            continue
        unknown.append(f"{name} ({where})")
    if unknown:
        raise Failure("not exported by fluxgate: " + ", ".join(unknown))
    print(f"{len(used)} fluxgate metric names, all exported")


COMMANDS = {
    "prometheusrule": cmd_prometheusrule,
    "dashboard-lint": cmd_dashboard_lint,
    "dashboard-rules": cmd_dashboard_rules,
    "metric-names": cmd_metric_names,
}


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        COMMANDS[argv[0]](argv[1:])
    except Failure as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
