#!/usr/bin/env bash
# Offline checks of the shipped monitoring: alert rules and their unit tests (promtool), pint's
# offline lint of the rules, the PrometheusRule copy, the Alertmanager example (amtool) and the
# Grafana dashboard: Grafana's dashboard schema (the Grafana Foundation SDK's typed models,
# tests/monitoring/dashboard-schema/), the install variables, and every query valid PromQL.
# Writes nothing into the repository.
#   tests/monitoring/check.sh
# Ends with "monitoring: N passed, M failed" (", K skipped" when a tool cannot be installed);
# exits non-zero on any failure.
#
# Go tools are built once per pinned version into ${XDG_CACHE_HOME:-~/.cache}/fluxgate-tools/bin
# (GOFLAGS=-buildvcs=false GOWORK=off): pint (alerts/README.md) and the dashboard schema check
# (dashboards/README.md, with its build time). pint is skipped, and counted so, when `go install`
# cannot fetch it.
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

# --- alert rules -----------------------------------------------------------------------------
check "promtool check rules alerts/fluxgate-rules.yaml" promtool check rules alerts/fluxgate-rules.yaml
check "promtool test rules alerts/fluxgate-rules.test.yaml" promtool test rules alerts/fluxgate-rules.test.yaml
# pint's offline checks (no Prometheus to query), failing on warnings too. Only the plain rules
# file: alerts/prometheusrule.yaml holds the same groups (checked below), and the .test.yaml is a
# promtool test file, not rules.
if pint=$(go_tool pint "$PINT_MODULE" 2>"$work/pint-install"); then
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
