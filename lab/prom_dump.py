#!/usr/bin/env python3
"""Dumps the run's series from the lab's Prometheus into one CSV (t, query, labels, value).

t is seconds after --start (source-controller's start).
"""

import argparse
import csv
import json
import urllib.parse
import urllib.request

QUERIES = {
    # source-controller's own view
    "sc_workqueue_depth": 'workqueue_depth{job="source-controller",name="gitrepository"}',
    "sc_reconcile_total": 'sum by (result) (controller_runtime_reconcile_total{job="source-controller",controller="gitrepository"})',
    "sc_active_workers": 'controller_runtime_active_workers{job="source-controller",controller="gitrepository"}',
    "sc_retries_total": 'workqueue_retries_total{job="source-controller",name="gitrepository"}',
    "sc_longest_running_seconds": 'workqueue_longest_running_processor_seconds{job="source-controller",name="gitrepository"}',
    # the lane's source-controller (setups l, lg)
    "lane_workqueue_depth": 'workqueue_depth{job="source-controller-far",name="gitrepository"}',
    "lane_reconcile_total": 'sum by (result) (controller_runtime_reconcile_total{job="source-controller-far",controller="gitrepository"})',
    "lane_active_workers": 'controller_runtime_active_workers{job="source-controller-far",controller="gitrepository"}',
    "lane_up": 'up{job="source-controller-far"}',
    "fg_lane_assignments": "sum by (shard) (fluxgate_lane_assignments_total)",
    "fg_lane_pending": 'sum by (lane) (fluxgate_lane_gitrepositories{state="pending"})',
    "fg_lane_oldest_pending_age": "time() - min by (lane) (fluxgate_lane_oldest_pending_timestamp_seconds)",
    # fluxgate's gauges (one replica here, so no deduplication is needed)
    # `or vector(0)`: the exporter drops a namespace's series when its count falls to zero.
    "fg_ready": 'sum(fluxgate_gitrepositories{state="ready"}) or vector(0)',
    "fg_pending": 'sum(fluxgate_gitrepositories{state="pending"}) or vector(0)',
    "fg_suspended": 'sum(fluxgate_gitrepositories{state="suspended"}) or vector(0)',
    "fg_progressing": 'sum(fluxgate_gitrepositories{state="progressing"}) or vector(0)',
    "fg_failed": "sum(fluxgate_gitrepositories_failed) or vector(0)",
    "fg_unobserved": "sum(fluxgate_gitrepositories_unobserved) or vector(0)",
    "fg_oldest_pending_age": "time() - min(fluxgate_gitrepositories_oldest_pending_timestamp_seconds)",
    "fg_first_reconcile_count": "sum(fluxgate_gitrepository_first_reconcile_seconds_count)",
    "fg_janitor_actions": "sum by (rule, action, outcome) (fluxgate_janitor_actions_total)",
    "fg_admission": "sum by (outcome) (fluxgate_admission_requests_total)",
    # the host circuit breaker (setups f and g)
    "fg_quarantined": 'sum(fluxgate_gitrepositories{state="quarantined"}) or vector(0)',
    "fg_breaker_state": "fluxgate_host_breaker_state",
    "fg_breaker_transitions": "sum by (host, from, to) (fluxgate_host_breaker_transitions_total)",
    "fg_breaker_probes": "sum by (host, outcome) (fluxgate_host_breaker_probes_total)",
    "fg_breaker_actions": "sum by (action, outcome) (fluxgate_host_breaker_actions_total)",
    # the cluster-wide failure guard, and the expression of the alert FluxGitEgressFailing
    # (its `for: 5m` is applied by analyze.py, at the lab's scale)
    "fg_cluster_wide_failure": "max by (cluster) (fluxgate_breaker_cluster_wide_failure)",
    "fg_egress_alert_expr": "max by (cluster) (fluxgate_breaker_cluster_wide_failure) == 1",
    # mirror rules (setup m)
    "fg_mirror_rewrites": "sum by (rule) (fluxgate_mirror_rewrites_total)",
    "fg_up": 'up{job="fluxgate"}',
    "sc_up": 'up{job="source-controller"}',
    # the shipped alert rules (time-scaled), as Prometheus evaluated them
    "alerts": "ALERTS",
}


def query_range(url, q, start, end, step):
    params = urllib.parse.urlencode({"query": q, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{q}: {body}")
    return body["data"]["result"]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--start", type=float, required=True)
    p.add_argument("--end", type=float, required=True)
    p.add_argument("--step", type=float, default=5)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    with open(a.out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "query", "labels", "value"])
        for name, q in QUERIES.items():
            for series in query_range(a.url, q, a.start, a.end, a.step):
                labels = {k: v for k, v in series["metric"].items() if k not in ("instance", "job")}
                lab = json.dumps(labels, sort_keys=True)
                for ts, v in series["values"]:
                    w.writerow([round(float(ts) - a.start, 1), name, lab, v])


if __name__ == "__main__":
    main()
