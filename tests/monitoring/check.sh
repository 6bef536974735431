#!/usr/bin/env bash
# Offline checks of the shipped monitoring: /metrics in the Prometheus text format through
# promtool, alert rules and their unit tests (promtool), pint's offline lint of the rules, the
# PrometheusRule copy, the Alertmanager example (amtool) and the Grafana dashboard: Grafana's
# dashboard schema (the Grafana Foundation SDK's typed models, tests/monitoring/dashboard-schema/),
# the install variables, and every query valid PromQL.
# Writes nothing into the repository but cargo's build of examples/exposition.rs (target/, or
# $CARGO_TARGET_DIR).
#   tests/monitoring/check.sh
# Ends with "monitoring: N passed, M failed" (", K skipped" when a tool cannot be installed);
# exits non-zero on any failure.
#
# Go tools are built once per pinned version into ${XDG_CACHE_HOME:-~/.cache}/fluxgate-tools/bin
# (GOFLAGS=-buildvcs=false GOWORK=off): pint (alerts/README.md) and the dashboard schema check
# (dashboards/README.md, with its build time). pint is skipped, and counted so, when neither
# `go install` nor a wrapper module (tests/go-tool.sh) can fetch it.
set -uo pipefail
cd "$(dirname "$0")/../.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- tools: Debian's promtool (prometheus), amtool (prometheus-alertmanager), PyYAML ---------
pick_python() {
  local py
  for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import yaml' 2>/dev/null; then
      command -v "$py"
      return
    fi
  done
}
python=$(pick_python)
if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null || [[ -z "$python" ]]; then
  echo "installing prometheus, prometheus-alertmanager, python3-yaml (apt)" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      prometheus prometheus-alertmanager python3-yaml >/dev/null; } || {
    echo "monitoring: cannot install the Debian packages the checks need" >&2
    echo "monitoring: 0 passed, 1 failed"
    exit 1
  }
  # Only the tools are wanted; where an init system started the services, stop them.
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    service "$svc" stop >/dev/null 2>&1 || true
  done
  python=$(pick_python)
fi
monitoring_py=tests/monitoring/monitoring.py

# Pinned Go tools.
PINT_MODULE=github.com/cloudflare/pint/cmd/pint@v0.87.0
# shellcheck source=tests/go-tool.sh
source tests/go-tool.sh

passed=0
failed=0
skipped=0
# check NAME COMMAND...: runs COMMAND, prints its output only when it fails.
check() {
  local name=$1
  shift
  if "$@" >"$work/out" 2>&1; then
    passed=$((passed + 1))
    printf 'ok   %s\n' "$name"
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$name"
    sed 's/^/     /' "$work/out"
  fi
}
# check_fails NAME COMMAND...: the check passes when COMMAND fails (proves a check bites).
check_fails() {
  local name=$1
  shift
  if "$@" >"$work/out" 2>&1; then
    failed=$((failed + 1))
    printf 'FAIL %s (expected a failure, got success)\n' "$name"
    sed 's/^/     /' "$work/out"
  else
    passed=$((passed + 1))
    printf 'ok   %s\n' "$name"
  fi
}

# skip NAME REASON: a check that could not run here, counted apart.
skip() {
  skipped=$((skipped + 1))
  printf 'skip %s\n' "$1"
  sed 's/^/     /' <<<"$2"
}

# --- /metrics --------------------------------------------------------------------------------
# promtool reads only the Prometheus text format: what /metrics answers a scraper that does not
# ask for OpenMetrics must pass its parser and its lint. examples/exposition.rs prints what
# /metrics answers for an Accept header, from a registry with every family fluxgate registers:
# the webhook's, the janitor's and the exporter's, holding the incident snapshot's failing
# GitRepositories.
PROMETHEUS_ACCEPT='application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2'
exposition() { # ACCEPT OUT: the body /metrics answers for ACCEPT, into OUT
  command -v cargo >/dev/null || { echo "cargo not found: examples/exposition.rs makes the exposition"; return 1; }
  cargo run --quiet --locked --example exposition -- "$1" >"$2"
}
metrics_text_ok() {
  exposition 'text/plain;version=0.0.4' "$work/metrics.txt" || return 1
  # A full exposition, not an empty one that would pass anyway.
  local family
  for family in fluxgate_build_info fluxgate_admission_requests_total \
      fluxgate_admission_duration_seconds fluxgate_janitor_actions_total fluxgate_janitor_leader \
      fluxgate_gitrepositories_failed fluxgate_gitrepository_failing_since_timestamp_seconds; do
    grep -q "^# TYPE $family " "$work/metrics.txt" || { echo "no $family in the exposition"; return 1; }
  done
  grep -q '^fluxgate_gitrepository_failing_since_timestamp_seconds{' "$work/metrics.txt" ||
    { echo "no failing GitRepository in the exposition"; return 1; }
  promtool check metrics <"$work/metrics.txt"
}
check "promtool check metrics: /metrics in the Prometheus text format (webhook, exporter, janitor)" metrics_text_ok
# What Prometheus gets is OpenMetrics, which promtool cannot read: proof the check above is needed.
openmetrics_not_for_promtool() {
  exposition "$PROMETHEUS_ACCEPT" "$work/metrics.om" || return 1
  tail -n1 "$work/metrics.om" | grep -qx '# EOF' || { echo "Prometheus was not answered in OpenMetrics"; return 1; }
  if promtool check metrics <"$work/metrics.om" >"$work/om.out" 2>&1; then
    echo "promtool now accepts OpenMetrics: this check can go"
    return 1
  fi
  grep -F 'unknown metric type "info"' "$work/om.out"
}
check "promtool rejects what Prometheus is answered (OpenMetrics)" openmetrics_not_for_promtool

# --- alert rules -----------------------------------------------------------------------------
check "promtool check rules alerts/fluxgate-rules.yaml" promtool check rules alerts/fluxgate-rules.yaml
check "promtool test rules alerts/fluxgate-rules.test.yaml" promtool test rules alerts/fluxgate-rules.test.yaml
# pint's offline checks (no Prometheus to query), failing on warnings too. Only the plain rules
# file: alerts/prometheusrule.yaml holds the same groups (checked below), and the .test.yaml is a
# promtool test file, not rules.
if pint=$(go_tool pint "$PINT_MODULE" github.com/cloudflare/pint 2>"$work/pint-install"); then
  check "pint --offline lint alerts/fluxgate-rules.yaml" \
    "$pint" --no-color --offline lint --min-severity=info --fail-on=warning alerts/fluxgate-rules.yaml
else
  skip "pint --offline lint alerts/fluxgate-rules.yaml" \
    "$PINT_MODULE cannot be installed here: $(grep -m1 -iE 'error|forbidden|not available|no go' "$work/pint-install" || tail -n1 "$work/pint-install")"
fi
check "PrometheusRule spec.groups equal the rules file's groups" "$python" "$monitoring_py" prometheusrule
check "alert rules and dashboard use only metrics fluxgate exports" \
  "$python" "$monitoring_py" metric-names alerts/fluxgate-rules.yaml dashboards/fluxgate.json

# The unit tests must tell 50 from 51: with the threshold moved either way they have to fail.
mutant_tests() { # PATTERN REPLACEMENT: runs the unit tests against a changed copy of the rules
  mkdir -p "$work/mutant"
  sed "s/$1/$2/" alerts/fluxgate-rules.yaml >"$work/mutant/fluxgate-rules.yaml"
  cmp -s alerts/fluxgate-rules.yaml "$work/mutant/fluxgate-rules.yaml" && {
    echo "pattern $1 not found in the rules"
    return 0 # "passing" here makes check_fails report the stale pattern
  }
  cp alerts/fluxgate-rules.test.yaml "$work/mutant/"
  promtool test rules "$work/mutant/fluxgate-rules.test.yaml"
}
check_fails "unit tests catch a threshold of >= 50" mutant_tests ') > 50$' ') >= 50'
check_fails "unit tests catch a threshold of > 51" mutant_tests ') > 50$' ') > 51'
check_fails "unit tests catch a stuck-worker threshold of >= 600" mutant_tests ') > 600$' ') >= 600'
check_fails "unit tests catch a stuck-worker threshold of > 601" mutant_tests ') > 600$' ') > 601'

# --- Alertmanager example ----------------------------------------------------------------------
check "amtool check-config alerts/alertmanager-example.yaml" amtool check-config alerts/alertmanager-example.yaml
routes_ok() {
  local alert status=0
  for alert in $(sed -n 's/^ *- alert: *//p' alerts/fluxgate-rules.yaml | sort -u); do
    amtool config routes test --config.file=alerts/alertmanager-example.yaml \
      --verify.receivers=fluxgate "alertname=$alert" severity=warning || status=1
  done
  amtool config routes test --config.file=alerts/alertmanager-example.yaml \
    --verify.receivers=default alertname=KubePodCrashLooping || status=1
  return $status
}
check "every alert routes to the fluxgate receiver, others do not" routes_ok

# --- dashboard ---------------------------------------------------------------------------------
# Grafana's dashboard schema, strictly, through the Grafana Foundation SDK's typed models.
dashboard_schema() { # DASHBOARD...
  [[ -x "$work/dashboard-schema" ]] || {
    command -v go >/dev/null || { echo "go not found: the schema check is a Go program"; return 1; }
    (cd tests/monitoring/dashboard-schema &&
      GOFLAGS=-buildvcs=false GOWORK=off go build -o "$work/dashboard-schema" .) || return 1
  }
  "$work/dashboard-schema" "$@"
}
check "dashboards/fluxgate.json is valid against Grafana's dashboard schema" dashboard_schema dashboards/fluxgate.json
# It must bite: an unknown panel field, a misspelt option and a query without a data source type.
schema_mutant() { # PYTHON-STATEMENT run on `panel`, the first panel with queries
  "$python" - dashboards/fluxgate.json "$work/schema-mutant.json" "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
panel = next(p for p in d["panels"] if p.get("targets"))
exec(sys.argv[3])
json.dump(d, open(sys.argv[2], "w"))
EOF
  dashboard_schema "$work/schema-mutant.json"
}
check_fails "the schema check rejects an unknown panel field" schema_mutant 'panel["colour"] = "red"'
check_fails "the schema check rejects a misspelt panel option" schema_mutant 'panel["options"]["colourMode"] = "value"'
check_fails "the schema check rejects a query of no known data source" schema_mutant 'del panel["targets"][0]["datasource"]'
check "dashboards/fluxgate.json parses and is well-formed" "$python" "$monitoring_py" dashboard-lint dashboards/fluxgate.json
dashboard_queries_ok() { # DASHBOARD: every query, variables substituted, through promtool
  "$python" "$monitoring_py" dashboard-rules "$1" "$work/dashboard-rules.yaml" &&
    promtool check rules "$work/dashboard-rules.yaml"
}
check "every dashboard query is valid PromQL" dashboard_queries_ok dashboards/fluxgate.json

# The query check must name a broken panel: break one query in a copy and expect that.
broken_dashboard_named() {
  local panel
  panel=$("$python" - dashboards/fluxgate.json "$work/broken.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
panel = next(p for p in d["panels"] if p.get("targets"))
panel["targets"][0]["expr"] += ")"
json.dump(d, open(sys.argv[2], "w"))
print(f'panel {panel["id"]}: {panel["title"]},')
EOF
  ) || return 1
  if dashboard_queries_ok "$work/broken.json" >"$work/broken.out" 2>&1; then
    echo "a broken query passed"
    return 1
  fi
  grep -F "$panel" "$work/broken.out" || {
    echo "the failure does not name \"$panel\":"
    cat "$work/broken.out"
    return 1
  }
}
check "a broken dashboard query fails and names its panel" broken_dashboard_named

echo
if ((skipped)); then
  echo "monitoring: $passed passed, $failed failed, $skipped skipped"
else
  echo "monitoring: $passed passed, $failed failed"
fi
((failed == 0))
