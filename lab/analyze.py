#!/usr/bin/env python3
"""Turns the lab's runs into the figures per setup: a table (stdout, summary.md, summary.json),
the data behind it (CSV per setup) and the plots (waits.png, gauges.png, unobserved.png).

  analyze.py --lab-dir target/lab --results lab/results a b c d
  analyze.py --lab-dir target/lab --results lab/results a-2 b-2 f-1 f-2 g-1 g-2

A run label "f-2" is setup f, run 2 (target/lab/run-f-2, lab/results/f-2/). Runs of the breaker's
setups (f, g) add a second table, the breaker's figures with the spread between runs of a setup,
and a plot per run (breaker.png in its results directory).
"""

import argparse
import csv
import json
import math
import re
import os
import shutil
import statistics
from collections import defaultdict
from datetime import datetime

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TITLES = {
    "a": "a: Flux defaults",
    "b": "b: webhook timeout 5m",
    "c": "c: janitor, failing-for 3m",
    "c2": "c2: janitor, failing-for 1m",
    "d": "d: proxy injected",
    "e": "e: webhook 5m + janitor",
    "f": "f: webhook 5m + breaker, outage that ends",
    "fl": "fl: webhook 5m + breaker moving into a lane, outage that ends",
    "g": "g: webhook 5m + breaker, flaky host",
    "h": "h: webhook 5m + breaker, egress fails for every host",
    "m": "m: webhook 5m + breaker + mirror rule",
    "n": "n: webhook 5m + breaker, no mirror rule",
    "l": "l: webhook 5m + host lane, far host down",
    "lg": "lg: webhook 5m + host lane, flaky host",
    "ag": "ag: Flux defaults, flaky host",
}
SHORT = {"a": "a\ndefaults", "b": "b\ntimeout 5m", "c": "c\njanitor 3m", "c2": "c2\njanitor 1m",
         "d": "d\nproxy", "e": "e\n5m + janitor", "f": "f\n5m + breaker\noutage ends",
         "fl": "fl\n5m + breaker lane\noutage ends",
         "g": "g\n5m + breaker\nflaky", "h": "h\n5m + breaker\negress down", "m": "m\n5m + breaker\n+ mirror", "n": "n\n5m + breaker\nno mirror",
         "l": "l\n5m + lane\nhost down", "lg": "lg\n5m + lane\nflaky", "ag": "ag\ndefaults\nflaky"}
COLORS = {"a": "#d62728", "b": "#9467bd", "c": "#8c564b", "c2": "#2ca02c", "d": "#1f77b4", "e": "#ff7f0e",
          "f": "#17becf", "fl": "#9edae5", "g": "#bcbd22", "h": "#aec7e8", "m": "#e377c2", "n": "#7f7f7f",
          "l": "#393b79", "lg": "#637939", "ag": "#843c39"}
FAR_SERVERS = ("tarpit", "farhost")


def base(label):
    """The setup of a run label: "f-2" -> "f"."""
    return label.split("-", 1)[0]


def title(label):
    return TITLES[base(label)] + (f" (run {label.split('-', 1)[1]})" if "-" in label else "")


def short(label):
    return SHORT[base(label)] + (f" #{label.split('-', 1)[1]}" if "-" in label else "")


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def load_run(d):
    meta = json.load(open(os.path.join(d, "meta.json")))
    samples = [json.loads(x) for x in open(os.path.join(d, "samples.jsonl"))]
    samples = [s for s in samples if "cluster" in s]
    final = json.load(open(os.path.join(d, "final.json")))["items"]
    prom = defaultdict(lambda: defaultdict(list))
    with open(os.path.join(d, "prometheus.csv")) as f:
        for row in csv.DictReader(f):
            prom[row["query"]][row["labels"]].append((float(row["t"]), float(row["value"])))
    conns = {}
    for name in ("git", "tarpit", "proxy", "farhost", "neargate"):
        p = os.path.join(d, f"{name}.csv")
        if os.path.exists(p):
            rows = [line.rstrip("\n").split(",", 2) for line in open(p)]
            conns[name] = [(float(r[0]) - meta["t0"], r[1], r[2]) for r in rows if len(r) == 3]
    # The far host, whichever server played it.
    conns["far"] = [c for name in FAR_SERVERS for c in conns.get(name, [])]
    meta["breaker_log"] = breaker_log(os.path.join(d, "fluxgate.log"), meta["t0"])
    return meta, samples, final, prom, conns


def breaker_log(path, t0):
    """The breaker's state changes and probes from fluxgate's JSON log: (t, kind, fields)."""
    out = []
    if not os.path.exists(path):
        return out
    for line in open(path, errors="replace"):
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        f = rec.get("fields", {})
        msg = f.get("message")
        if msg not in ("host breaker changed state", "host probed", "breaker acted", "probed the host",
                       "changed a GitRepository"):
            continue
        # Builds since the probed breaker log each write as "changed a GitRepository" (change=...).
        if msg == "changed a GitRepository":
            msg, f = "breaker acted", {**f, "action": f.get("change")}
        out.append((ts(rec["timestamp"]) - t0, msg, f))
    return out


def probe_waits(meta, final):
    end = meta["t0"] + meta["run_seconds"]
    out = []
    for o in final:
        ns = o["metadata"]["namespace"]
        if int(ns.split("-")[1]) <= meta["total"]:
            continue
        created = ts(o["metadata"]["creationTimestamp"])
        ready = None
        for c in (o.get("status") or {}).get("conditions") or []:
            if c["type"] == "Ready" and c["status"] == "True":
                ready = ts(c["lastTransitionTime"])
        out.append({
            "name": f"{ns}/{o['metadata']['name']}",
            "created_t": round(created - meta["t0"], 1),
            "ready": ready is not None,
            # Not Ready by the end: the wait is at least this long.
            "wait_seconds": round((ready if ready else end) - created, 1),
            "timeout": (o.get("spec") or {}).get("timeout"),
        })
    return sorted(out, key=lambda p: p["created_t"])


def existing_waits(meta, final):
    """Healthy GitRepositories that existed when source-controller started: t=0 to Ready."""
    end = meta["t0"] + meta["run_seconds"]
    out = []
    for o in final:
        ns = o["metadata"]["namespace"]
        if int(ns.split("-")[1]) > meta["total"] or meta["far_host"] in o["spec"]["url"]:
            continue
        ready = None
        for c in (o.get("status") or {}).get("conditions") or []:
            if c["type"] == "Ready" and c["status"] == "True":
                ready = ts(c["lastTransitionTime"])
        out.append({"name": f"{ns}/{o['metadata']['name']}", "ready": ready is not None,
                    "wait_seconds": round((ready if ready else end) - meta["t0"], 1)})
    return out


def wait_stats(waits):
    """Median and max, each flagged when it is only a lower bound (a GitRepository that was
    not Ready when the run ended)."""
    if not waits:
        return None
    w = sorted(waits, key=lambda p: p["wait_seconds"])
    mid = w[(len(w) - 1) // 2: len(w) // 2 + 1]
    return {
        "n": len(w),
        "ready": sum(p["ready"] for p in w),
        "median": statistics.median(p["wait_seconds"] for p in w),
        "median_lower_bound": any(not p["ready"] for p in mid),
        "max": w[-1]["wait_seconds"],
        "max_lower_bound": any(not p["ready"] for p in w),
    }


def last(series):
    return series[-1][1] if series else None


def one(prom, q):
    """The single series of query q (or an empty list)."""
    s = prom.get(q, {})
    return next(iter(s.values())) if s else []


def summarise(setup, meta, samples, final, prom, conns):
    run = meta["run_seconds"]
    minutes = run / 60
    waits = probe_waits(meta, final)
    existing = existing_waits(meta, final)
    good = [s for s in samples if "error" not in s["cluster"]]
    unobs = [(s["t"], s["cluster"]["unobserved"]) for s in good]
    cpu = [(s["t"], s["sc_cpu_seconds"]) for s in samples if s["sc_cpu_seconds"] is not None]
    rss = [s["sc_rss_kib"] for s in samples if s["sc_rss_kib"]]
    loads = [s["load1"] for s in samples if "load1" in s]

    def accepts(name):
        return [t for t, ev, _ in conns.get(name, []) if ev == "accept" and 0 <= t <= run]

    tarpit_durations = []
    for t, ev, detail in conns.get("far", []):
        if ev == "close" and 0 <= t <= run + 5:
            tarpit_durations.append(float(detail.split()[1].rstrip("s")))

    depth = [v for _, v in one(prom, "sc_workqueue_depth")]
    recon = {}
    for labels, series in prom.get("sc_reconcile_total", {}).items():
        result = json.loads(labels).get("result", "?")
        # The counters start at zero with source-controller, at t=0.
        recon[result] = series[-1][1]
    alerts = {}
    for labels, series in prom.get("alerts", {}).items():
        lab = json.loads(labels)
        if lab.get("alertstate") != "firing":
            continue
        on = [t for t, v in series if v == 1]
        if on:
            name = lab["alertname"]
            alerts[name] = min(alerts.get(name, 1e9), min(on))
    janitor_all = {labels: s[-1][1] for labels, s in prom.get("fg_janitor_actions", {}).items()}
    fg_failed = one(prom, "fg_failed")
    fg_unobs = one(prom, "fg_unobserved")
    pending = one(prom, "fg_pending")
    oldest = one(prom, "fg_oldest_pending_age")
    proxy_forwards = len([1 for t, ev, _ in conns.get("proxy", []) if ev in ("forward", "connect")])
    proxy_api = len([1 for t, ev, d in conns.get("proxy", []) if ev in ("forward", "connect")
                     and f":{meta['apiserver_port']}" in d])
    final_sum = good[-1]["cluster"] if good else {}
    return {
        "setup": setup,
        "base": base(setup),
        "title": title(setup),
        "run_seconds": run,
        "scale": meta["scale"],
        "timeout_far": meta["timeout_default"] if base(setup) not in ("b", "e", "f", "fl", "g", "h", "m", "n", "l", "lg") else meta["timeout_webhook"],
        "probes": waits,
        "new_wait": wait_stats(waits),
        "existing": existing,
        "existing_wait": wait_stats(existing),
        "unobserved_start": unobs[0][1] if unobs else None,
        "unobserved_end": unobs[-1][1] if unobs else None,
        "unobserved_max": max(v for _, v in unobs) if unobs else None,
        "ready_end": final_sum.get("ready"),
        "failing_end": final_sum.get("failing"),
        "suspended_end": final_sum.get("suspended"),
        "sc_cpu_cores_avg": round((cpu[-1][1] - cpu[0][1]) / (cpu[-1][0] - cpu[0][0]), 3) if len(cpu) > 1 else None,
        "sc_rss_mib_max": round(max(rss) / 1024, 1) if rss else None,
        "tarpit_conns_per_min": round(len(accepts("far")) / minutes, 1),
        "tarpit_hold_median_s": round(statistics.median(tarpit_durations), 2) if tarpit_durations else None,
        "git_conns_per_min": round(len(accepts("git")) / minutes, 1),
        "proxy_requests": proxy_forwards,
        "proxy_requests_to_apiserver": proxy_api,
        "workqueue_depth_mean": round(statistics.mean(depth), 1) if depth else None,
        "workqueue_depth_max": max(depth) if depth else None,
        "reconciles": {k: int(v) for k, v in sorted(recon.items())},
        "reconciles_per_min": round(sum(recon.values()) / minutes, 1) if recon else None,
        "fg_failed_max": max((v for _, v in fg_failed), default=None),
        "fg_failed_end": last(fg_failed),
        "fg_unobserved_end": last(fg_unobs),
        "fg_pending_max": max((v for _, v in pending), default=0),
        "fg_oldest_pending_max_s": round(max((v for _, v in oldest), default=0), 1),
        "janitor_actions": janitor_all,
        "alerts_firing": {k: round(v, 0) for k, v in sorted(alerts.items())},
        "load1_median": statistics.median(loads) if loads else None,
        "load1_max": max(loads) if loads else None,
    }


def fmt_stats(st):
    if not st:
        return "-", "-", "-"

    def v(x, lower):
        return f"{'≥ ' if lower else ''}{x:.1f} s"

    return v(st["median"], st["median_lower_bound"]), v(st["max"], st["max_lower_bound"]), f"{st['ready']} of {st['n']}"


def table(summaries):
    cols = [s["title"] for s in summaries]
    rows = []

    def row(name, f):
        rows.append([name] + [f(s) for s in summaries])

    row("spec.timeout of the far-host GitRepositories (lab)", lambda s: s["timeout_far"])
    row("new healthy GitRepository, created during the run → Ready: median", lambda s: fmt_stats(s["new_wait"])[0])
    row("… max", lambda s: fmt_stats(s["new_wait"])[1])
    row("… Ready within the run", lambda s: fmt_stats(s["new_wait"])[2])
    row("healthy GitRepository present at the start → Ready: median", lambda s: fmt_stats(s["existing_wait"])[0])
    row("… max", lambda s: fmt_stats(s["existing_wait"])[1])
    row("… Ready within the run", lambda s: fmt_stats(s["existing_wait"])[2])
    row("`observedGeneration: -1`: at start → end of run", lambda s: f"{s['unobserved_start']} → {s['unobserved_end']}")
    row("Ready / failing / suspended at the end", lambda s: f"{s['ready_end']} / {s['failing_end']} / {s['suspended_end']}")
    row("source-controller CPU (cores, mean)", lambda s: f"{s['sc_cpu_cores_avg']}")
    row("source-controller RSS (MiB, max)", lambda s: f"{s['sc_rss_mib_max']}")
    row("connections/min to the far host (tarpit, or f/g's far host)", lambda s: f"{s['tarpit_conns_per_min']}")
    row("… how long each was held (median s)", lambda s: f"{s['tarpit_hold_median_s'] if s['tarpit_hold_median_s'] is not None else '-'}")
    row("connections/min to the Git server", lambda s: f"{s['git_conns_per_min']}")
    row("requests through the proxy (to the API server)", lambda s: f"{s['proxy_requests']} ({s['proxy_requests_to_apiserver']})" if s["base"] == "d" else "-")
    row("`workqueue_depth{name=\"gitrepository\"}` mean / max", lambda s: f"{s['workqueue_depth_mean']} / {s['workqueue_depth_max']:.0f}" if s["workqueue_depth_max"] is not None else "-")
    row("`controller_runtime_reconcile_total` in the run", lambda s: ", ".join(f"{r} {n}" for r, n in s["reconciles"].items()) or "-")
    row("fluxgate_gitrepositories_failed max → end", lambda s: f"{s['fg_failed_max']:.0f} → {s['fg_failed_end']:.0f}" if s["fg_failed_max"] is not None else "-")
    row("fluxgate_gitrepositories_unobserved at end", lambda s: f"{s['fg_unobserved_end']:.0f}" if s["fg_unobserved_end"] is not None else "-")
    row("fluxgate pending max / oldest pending (s)", lambda s: f"{s['fg_pending_max']:.0f} / {s['fg_oldest_pending_max_s']:.0f}")
    row("janitor actions", lambda s: ", ".join(f"{json.loads(l).get('action')}:{json.loads(l).get('outcome')} {v:.0f}" for l, v in s["janitor_actions"].items()) or "-")
    row("alerts firing (first at t = s)", lambda s: ", ".join(f"{n} ({t:.0f})" for n, t in s["alerts_firing"].items()) or "none")
    row("machine load (1-min, median / max)", lambda s: f"{s['load1_median']:.1f} / {s['load1_max']:.1f}")
    lines = ["| figure | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def plot_waits(summaries, path):
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    panels = [
        ("probes", "new_wait", "New healthy GitRepository (created during the run)"),
        ("existing", "existing_wait", "Healthy GitRepositories present when\nsource-controller (re)started"),
    ]
    for ax, (key, stat, title) in zip(axes, panels):
        for x, s in enumerate(summaries):
            c = COLORS[s["base"]]
            pts = s[key]
            # Small horizontal spread so equal waits stay visible.
            for j, p in enumerate(sorted(pts, key=lambda p: p["wait_seconds"])):
                dx = (j / max(len(pts) - 1, 1) - 0.5) * 0.4
                if p["ready"]:
                    ax.plot(x + dx, p["wait_seconds"], "o", color=c, ms=6, alpha=0.8)
                else:
                    ax.plot(x + dx, p["wait_seconds"], "^", color=c, ms=8, mfc="none", mew=1.8)
            st = s[stat]
            if st:
                ax.hlines(st["median"], x - 0.3, x + 0.3, color="black", lw=1.8)
        ax.set_xticks(range(len(summaries)), [short(s["setup"]) for s in summaries], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("seconds until Ready (lab clock)")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    axes[0].plot([], [], "o", color="grey", label="Ready")
    axes[0].plot([], [], "^", color="grey", mfc="none", mew=1.8, label="not Ready when the run ended")
    axes[0].plot([], [], "-", color="black", label="median")
    axes[0].legend(fontsize=8, loc="center left")
    k = summaries[0]["scale"]
    fig.suptitle(f"Time to Ready, lab clock: the far host's timeouts are 1/{k:g} of the platform's "
                 f"({summaries[0]['timeout_far']} stands for 60s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_unobserved(runs, path):
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for setup, (meta, samples, *_rest) in runs.items():
        pts = [(s["t"], s["cluster"]["unobserved"]) for s in samples if "error" not in s["cluster"]]
        ls = "--" if setup.endswith("-2") else "-"
        ax.plot([t / 60 for t, _ in pts], [v for _, v in pts], ls, color=COLORS[base(setup)], lw=2, label=title(setup))
    ax.set_xlabel("lab minutes since source-controller started")
    ax.set_ylabel("GitRepositories with observedGeneration -1")
    ax.set_title("Never successfully reconciled GitRepositories over the run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_gauges(runs, path):
    n = len(runs)
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.6 * n + 0.6), sharex=True, squeeze=False)
    for ax, (setup, (meta, samples, final, prom, conns)) in zip(axes[:, 0], runs.items()):
        series = {
            "failed": one(prom, "fg_failed"),
            "unobserved": one(prom, "fg_unobserved"),
            "pending": one(prom, "fg_pending"),
            "ready": one(prom, "fg_ready"),
            "suspended": one(prom, "fg_suspended"),
            "sc workqueue depth": one(prom, "sc_workqueue_depth"),
        }
        styles = {"failed": ("#d62728", "-"), "unobserved": ("#7f7f7f", "-"), "pending": ("#ff7f0e", "-"),
                  "ready": ("#2ca02c", "-"), "suspended": ("#17becf", "-"), "sc workqueue depth": ("black", ":")}
        for name, pts in series.items():
            if pts:
                c, ls = styles[name]
                ax.plot([t / 60 for t, _ in pts], [v for _, v in pts], ls, color=c, lw=1.8, label=name)
        # Alert firing spans, stacked under the curves.
        firing = defaultdict(list)
        for labels, pts in prom.get("alerts", {}).items():
            lab = json.loads(labels)
            if lab.get("alertstate") == "firing":
                firing[lab["alertname"]] += [t for t, v in pts if v == 1]
        for i, (name, times) in enumerate(sorted(firing.items())):
            times = sorted(times)
            ax.broken_barh([(t / 60, 5 / 60) for t in times], (-8 - 7 * i, 5), color="#e377c2", alpha=0.8)
            ax.text(-0.1, -8 - 7 * i + 2.5, re.sub(r"^FluxGitRepositor(y|ies)", "", name), fontsize=7,
                    va="center", ha="right")
        ax.axhline(50, color="#d62728", lw=0.6, ls="--", alpha=0.5)
        ax.set_title(title(setup), fontsize=10, loc="left")
        ax.set_ylabel("GitRepositories")
        ax.set_ylim(bottom=-10 - 7 * max(len(firing), 1))
        ax.set_xlim(left=-1.7)
        ax.set_xticks([t for t in ax.get_xticks() if t >= 0])
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, ncol=6, loc="upper center", bbox_to_anchor=(0.5, 0.975))
    axes[-1, 0].set_xlabel("lab minutes since source-controller started; pink: alert firing "
                           "(rules time-scaled); dashed: the failing alert's threshold, 50")
    fig.suptitle("fluxgate's gauges (fluxgate_gitrepositories*), source-controller's queue, and alerts",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def export_data(setup, d, results, meta, samples, summary):
    out = os.path.join(results, setup)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "samples.csv"), "w", newline="") as f:
        w = csv.writer(f)
        keys = ["total", "unobserved", "no_conditions", "ready", "failing", "suspended", "archived"]
        far_keys = ["total", "ready", "artifact", "quarantined"]
        w.writerow(["t"] + keys + ["quarantined"] + [f"far_{k}" for k in far_keys]
                   + ["sc_cpu_seconds", "sc_rss_kib", "load1"])
        for s in samples:
            if "error" in s["cluster"]:
                continue
            far = s["cluster"].get("hosts", {}).get(meta["far_host"], {})
            w.writerow([s["t"]] + [s["cluster"].get(k) for k in keys] + [s["cluster"].get("quarantined")]
                       + [far.get(k) for k in far_keys]
                       + [s["sc_cpu_seconds"], s["sc_rss_kib"], s.get("load1")])
    with open(os.path.join(out, "waits.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "name", "created_t", "ready", "wait_seconds", "timeout"])
        for p in summary["probes"]:
            w.writerow(["new", p["name"], p["created_t"], p["ready"], p["wait_seconds"], p["timeout"]])
        for p in summary["existing"]:
            w.writerow(["existing", p["name"], 0, p["ready"], p["wait_seconds"], ""])
    shutil.copy(os.path.join(d, "prometheus.csv"), os.path.join(out, "prometheus.csv"))
    with open(os.path.join(out, "connections.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["server", "t", "event", "detail"])
        for name in ("git", "tarpit", "proxy", "farhost", "neargate"):
            p = os.path.join(d, f"{name}.csv")
            if os.path.exists(p):
                for line in open(p):
                    t, ev, detail = line.rstrip("\n").split(",", 2)
                    if ev in ("accept", "close", "forward", "connect", "error", "refused",
                              "serve", "tarpit", "done", "return", "down", "listen"):
                        w.writerow([name, round(float(t) - meta["t0"], 3), ev, detail])
    shutil.copy(os.path.join(d, "meta.json"), os.path.join(out, "meta.json"))
    if os.path.exists(os.path.join(d, "source-controller.env")):
        shutil.copy(os.path.join(d, "source-controller.env"), os.path.join(out, "source-controller.env"))


# --------------------------------------------------------------------------------------------
# the breaker's setups (f, g), beside a and b

STATE_LEVEL = {"closed": 0, "half_open": 1, "open": 2}


def far_events(conns, run):
    """The far host's connections: accept times, those answered and tarpitted, and the clone
    attempts (GET .../info/refs) answered and tarpitted."""
    evs = [(t, ev, d) for t, ev, d in conns.get("far", []) if 0 <= t <= run]
    accepts = sorted(t for t, ev, _ in evs if ev == "accept")
    served = sorted(t for t, ev, _ in evs if ev == "serve")
    # The plain tarpit logs no decision: every connection it accepts is tarpitted.
    decided = any(ev in ("serve", "tarpit") for _, ev, _ in evs)
    tarpitted = sorted(t for t, ev, _ in evs if ev == "tarpit") if decided else accepts

    def clones(kind):
        # fluxgate's own probes (marked " probe") are no clone attempt.
        return sum(1 for _, ev, d in evs if ev == kind and " GET " in d and "/info/refs" in d
                   and not d.endswith(" probe"))

    return accepts, served, tarpitted, clones("serve"), clones("tarpit")


def lab_seconds(text):
    """A Flux/fluxgate duration string of the lab ("3s", "500ms", "1m") in seconds."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)] if m else None


def breaker_flag(meta, flag):
    words = (meta.get("breaker") or "").split()
    return words[words.index(flag) + 1] if flag in words else None


def fluxgate_probes(meta, conns, blog, far, first_open, down_end):
    """While the far host's breaker was open and the host down: source-controller's connections
    to it and fluxgate's own probes (the far host marks a probe's request), apart; and, once
    the host was back, when a probe first found it answering."""
    period = lab_seconds(breaker_flag(meta, "--breaker-probe-interval") or "")
    decided = [(t, ev, d) for t, ev, d in conns.get("far", []) if ev in ("serve", "tarpit")]
    probes = sorted(t for t, _, d in decided if d.endswith(" probe"))
    sc = sorted(t for t, _, d in decided if not d.endswith(" probe"))
    out = {"probe_interval_lab_s": period, "fluxgate_probe_conns_total": len(probes)}
    if first_open is None or first_open >= down_end:
        return out
    # Clones source-controller had started before the breaker opened still end at their timeout;
    # a connection opened after the opening is one the breaker let through (a canary).
    open_s = down_end - first_open
    sc_open = [t for t in sc if first_open < t < down_end]
    pr_open = [t for t in probes if first_open < t < down_end]
    gaps = [b - a for a, b in zip(pr_open, pr_open[1:])]
    # Arrival times at the far host jitter by a few ms around fluxgate's schedule (a probe starts
    # once the period has passed since the last one started): count within the period less 50 ms.
    worst = max((count_in(pr_open, t, t + period - 0.05) for t in pr_open), default=0) if period else None
    logged = [(t, f) for t, m, f in blog if m == "probed the host" and f.get("host") == far]
    verdicts = defaultdict(int)
    for t, f in logged:
        if first_open < t < down_end:
            verdicts[f.get("verdict")] += 1
    last_before = max((t for t in probes if t < down_end), default=None)
    first_answer = next((t for t, f in logged if t >= down_end and f.get("answered")), None)
    released = next((t for t, m, f in blog if m == "breaker acted" and t >= down_end
                     and f.get("action") == "release"), None)
    out.update({
        "sc_conns_while_open": len(sc_open),
        "sc_conns_while_open_times": [round(t, 1) for t in sc_open],
        "fluxgate_probe_conns_while_open": len(pr_open),
        "fluxgate_probe_conns_per_period_while_open": round(len(pr_open) / (open_s / period), 2) if period else None,
        "fluxgate_probe_conns_max_in_one_period": worst,
        "fluxgate_probe_gap_min_median_max": [round(min(gaps), 3), round(statistics.median(gaps), 3), round(max(gaps), 3)] if gaps else None,
        "fluxgate_probe_verdicts_while_open": dict(verdicts),
        "return_after_last_probe_s": round(down_end - last_before, 2) if last_before is not None else None,
        "first_answered_probe_after_return_s": round(first_answer - down_end, 2) if first_answer is not None else None,
        "first_release_after_return_s": round(released - down_end, 2) if released is not None else None,
    })
    return out


def egress_summary(label, meta, samples, final, prom, conns, summary):
    """h: every host down between two times. Whether anything was quarantined, the guard's gauge
    and the alert's expression over the scraped series, and what is left marked at the end."""
    k = meta["scale"]
    start, end = meta["egress_window"]
    blog = meta.get("breaker_log", [])
    trans = [(round(t, 1), f.get("host"), f.get("from"), f.get("to")) for t, m, f in blog
             if m == "host breaker changed state"]
    actions = defaultdict(int)
    action_times = defaultdict(list)
    for t, m, f in blog:
        if m == "breaker acted":
            actions[f.get("action")] += 1
            action_times[f.get("action")].append(t)
    good = [x for x in samples if "error" not in x["cluster"]]
    gauge = one(prom, "fg_cluster_wide_failure")
    on = [t for t, v in gauge if v == 1]
    # The alert: the expression true at every evaluation for `for` (5m at the platform's clock).
    hold = 300 / k
    expr = sorted(t for t, v in one(prom, "fg_egress_alert_expr"))
    step = 5
    fires = None
    run_start = None
    for i, t in enumerate(expr):
        if run_start is None or t - expr[i - 1] > step + 0.5:
            run_start = t
        if t - run_start >= hold:
            fires = t
            break
    expr_runs = []
    for t in expr:
        if expr_runs and t - expr_runs[-1][1] <= step + 0.5:
            expr_runs[-1][1] = t
        else:
            expr_runs.append([t, t])
    marks = []
    for o in final:
        md = o["metadata"]
        keys = [x for x in list((md.get("labels") or {})) + list((md.get("annotations") or {}))
                if x.startswith("fluxgate.io/")]
        if keys or (o.get("spec") or {}).get("suspend"):
            marks.append({"name": f"{md['namespace']}/{md['name']}", "marks": sorted(keys),
                          "suspend": bool((o.get("spec") or {}).get("suspend"))})
    mark_keys = defaultdict(int)
    for m in marks:
        for x in m["marks"]:
            mark_keys[x] += 1
    existed = [o for o in final if ts(o["metadata"]["creationTimestamp"]) - meta["t0"] <= end]
    all_ready_at = None
    if all(any(c["type"] == "Ready" and c["status"] == "True" for c in (o.get("status") or {}).get("conditions") or [])
           for o in final):
        all_ready_at = max(ts(c["lastTransitionTime"]) for o in existed
                           for c in o["status"]["conditions"] if c["type"] == "Ready") - meta["t0"]
    failing_in = [x["cluster"]["failing"] for x in good if start <= x["t"] <= end]
    return {
        "label": label, "setup": "h", "run_seconds": meta["run_seconds"], "scale": k,
        "egress_window": [start, end], "egress_mode": meta.get("egress_mode"),
        "failing_max_in_window": max(failing_in, default=None),
        "suspended_max": max((x["cluster"].get("suspended", 0) for x in good), default=None),
        "quarantined_max": max((x["cluster"].get("quarantined", 0) for x in good), default=None),
        "suspended_end": good[-1]["cluster"].get("suspended") if good else None,
        "breaker_transitions": trans,
        "breaker_actions": dict(actions),
        "quarantine_first_last_t": [round(min(action_times["quarantine"]), 2), round(max(action_times["quarantine"]), 2)]
        if action_times["quarantine"] else None,
        "release_first_last_t": [round(min(action_times["release"]), 2), round(max(action_times["release"]), 2)]
        if action_times["release"] else None,
        "probes_logged": [(round(t, 2), f.get("answered"), f.get("verdict")) for t, m, f in blog
                          if m == "probed the host"][:20],
        "cluster_wide_gauge_first_1": min(on) if on else None,
        "cluster_wide_gauge_last_1": max(on) if on else None,
        "cluster_wide_gauge_1_samples": len(on),
        "cluster_wide_gauge_samples_in_window": sum(1 for t, _ in gauge if start <= t <= end),
        "cluster_wide_gauge_1_outside_window": [t for t in on if not (start <= t <= end + 30)],
        "alert_expr_true_runs": expr_runs,
        "alert_for_lab_s": hold,
        "alert_would_fire_at": fires,
        "marked_at_end": len(marks),
        "marks_at_end_by_key": dict(mark_keys),
        "all_ready_at": round(all_ready_at, 1) if all_ready_at is not None else None,
        "all_ready_after_recovery_s": round(all_ready_at - end, 1) if all_ready_at is not None else None,
        "not_ready_end": sum(1 for o in final if not any(c["type"] == "Ready" and c["status"] == "True"
                                                          for c in (o.get("status") or {}).get("conditions") or [])),
        "total_end": len(final),
    }


def count_in(times, a, b):
    return sum(1 for t in times if a <= t < b)


def breaker_summary(label, meta, samples, final, prom, conns, summary):
    run, k = meta["run_seconds"], meta["scale"]
    far = meta["far_host"]
    outage_end = meta.get("outage_end")
    setup = base(label)
    blog = meta.get("breaker_log", [])
    trans = [(t, f.get("from"), f.get("to")) for t, m, f in blog
             if m == "host breaker changed state" and f.get("host") == far]
    probes = defaultdict(int)
    for t, m, f in blog:
        if m == "host probed" and f.get("host") == far:
            probes[f.get("outcome")] += 1
    actions = defaultdict(int)
    for t, m, f in blog:
        if m == "breaker acted":
            actions[f.get("action")] += 1
    prom_trans = sum(series[-1][1] for series in prom.get("fg_breaker_transitions", {}).values())
    first_open = next((t for t, _, to in trans if to == "open"), None)
    # The far host's own record of its return (it may come back at a probe, not at the file's
    # time); the figures count from it.
    returns = [float(d.split()[0]) - meta["t0"] for _, ev, d in conns.get("farhost", []) if ev == "return"]
    planned_end = outage_end
    if outage_end is not None and returns:
        outage_end = round(returns[0], 3)
    own = fluxgate_probes(meta, conns, blog, far, first_open, outage_end if outage_end is not None else run)

    accepts, served, tarpitted, clones_served, clones_tarpitted = far_events(conns, run)
    # The outage: all of the run, or until the host came back (f).
    down_end = outage_end if outage_end is not None else run
    before_end = first_open if first_open is not None and first_open < down_end else down_end
    baseline = count_in(accepts, 0, before_end) / (before_end / 60) if before_end > 0 else None
    while_open = None
    if first_open is not None and first_open < down_end:
        while_open = count_in(accepts, first_open, down_end) / ((down_end - first_open) / 60)
    # When the far host's connections over the preceding lab minute first fell to 10 % of the
    # rate before the breaker acted, within the outage.
    drop_at = None
    if baseline:
        for t in range(60, int(down_end) + 1):
            if count_in(accepts, t - 60, t) <= 0.1 * baseline:
                drop_at = t
                break
    per_minute = [count_in(accepts, m * 60, (m + 1) * 60) for m in range(int(math.ceil(run / 60)))]

    # Every GitRepository Ready after the host came back (f): all of those that existed when it
    # came back (a new one created later does not count), from their Ready=True times, which
    # hold when every one is still Ready at the end; checked against the 5 s samples.
    all_ready_at, all_ready_sampled = None, None
    items = final
    not_ready = [o for o in items if not any(c["type"] == "Ready" and c["status"] == "True"
                                             for c in (o.get("status") or {}).get("conditions") or [])]
    not_ready_end = len(not_ready)
    if outage_end is not None and not not_ready:
        # The far host's GitRepositories that existed at the return (the healthy ones were Ready
        # throughout; one that failed and came back later for its own reasons, as proj-123 did in
        # f-3 of the probed breaker on a full disk, would otherwise be taken for the return's).
        existed = [o for o in items if ts(o["metadata"]["creationTimestamp"]) - meta["t0"] <= outage_end
                   and url_host(o["spec"]["url"]).split(":")[0] == far]
        all_ready_at = max(ts(c["lastTransitionTime"]) for o in existed
                           for c in o["status"]["conditions"] if c["type"] == "Ready") - meta["t0"]
        all_ready_sampled = next((x["t"] for x in samples if "error" not in x["cluster"]
                                  and x["t"] >= outage_end and x["cluster"]["ready"] == x["cluster"]["total"]), None)
    good = [x for x in samples if "error" not in x["cluster"]]
    far_ready = [(x["t"], x["cluster"].get("hosts", {}).get(far, {}).get("ready", 0)) for x in good]
    far_artifact = [(x["t"], x["cluster"].get("hosts", {}).get(far, {}).get("artifact", 0)) for x in good]
    quarantined = [(x["t"], x["cluster"].get("quarantined", 0)) for x in good]
    after_open = [v for t, v in far_ready if first_open is not None and t >= first_open]
    platform_hours = run * k / 3600
    return {
        "label": label, "setup": setup, "run_seconds": run, "scale": k, "outage_end": outage_end,
        "outage_end_planned": planned_end, **own,
        # With --return-after-probe the host comes back only at a probe; without one, never.
        "returned": bool(returns) or meta.get("return_after_probe") is None,
        "flaky_success": meta.get("flaky_success"),
        "far_conns_per_min_total": round(len(accepts) / (run / 60), 1),
        "far_conns_per_min_before_open": round(baseline, 1) if baseline is not None else None,
        "far_conns_per_min_while_open": round(while_open, 1) if while_open is not None else None,
        "far_conns_drop_pct": round(100 * (1 - while_open / baseline), 0) if while_open is not None and baseline else None,
        "far_conns_drop_to_10pct_at": drop_at,
        "far_conns_per_minute": per_minute,
        "far_clones_answered": clones_served,
        "far_clones_tarpitted": clones_tarpitted,
        "breaker_first_open_t": round(first_open, 1) if first_open is not None else None,
        "breaker_transitions": len(trans),
        "breaker_transitions_prometheus": int(prom_trans),
        "breaker_transition_list": [(round(t, 1), a, b) for t, a, b in trans],
        "breaker_transitions_per_platform_hour": round(len(trans) / platform_hours, 2),
        "breaker_transitions_per_platform_hour_after_open":
            round(len(trans) / ((run - first_open) * k / 3600), 2) if first_open is not None and run > first_open else None,
        "breaker_probes": dict(probes),
        "breaker_actions": dict(actions),
        "quarantined_max": max((v for _, v in quarantined), default=0),
        "quarantined_end": quarantined[-1][1] if quarantined else None,
        "all_ready_at": round(all_ready_at, 1) if all_ready_at is not None else None,
        "all_ready_after_return_s": round(all_ready_at - outage_end, 1) if all_ready_at is not None and outage_end is not None else None,
        "all_ready_first_sample_t": all_ready_sampled,
        "not_ready_end": not_ready_end,
        "total_end": len(items),
        "far_ready_after_open_mean": round(statistics.mean(after_open), 1) if after_open else None,
        "far_ready_after_open_min": min(after_open) if after_open else None,
        "far_ready_end": far_ready[-1][1] if far_ready else None,
        "far_artifact_end": far_artifact[-1][1] if far_artifact else None,
        "healthy_existing_median": summary["existing_wait"]["median"] if summary["existing_wait"] else None,
        "healthy_existing_median_lower_bound": summary["existing_wait"]["median_lower_bound"] if summary["existing_wait"] else None,
    }


def breaker_table(summaries, bsums):
    """The breaker's figures per run, with the spread (min–max) of the runs of each setup."""
    by = {s["setup"]: s for s in summaries}
    ref = next((s for s in summaries if s["base"] == "a"), None)
    cols = [s["setup"] for s in summaries]
    groups = defaultdict(list)
    for c in cols:
        groups[base(c)].append(c)
    spread_of = {g: ls for g, ls in groups.items() if len(ls) > 1}
    # One column per run; after the last run of a setup with several, its spread.
    order = []
    for c in cols:
        order.append(("run", c))
        g = base(c)
        if g in spread_of and c == spread_of[g][-1]:
            order.append(("spread", g))
    rows = []

    def fmt(v, unit=""):
        if v is None:
            return "-"
        if isinstance(v, float):
            v = round(v, 1)
        return f"{v}{unit}"

    def row(name, f, unit=""):
        cells = []
        for kind, c in order:
            if kind == "run":
                v = f(c)
                cells.append(v if isinstance(v, str) else fmt(v, unit))
            else:
                vals = [f(x) for x in spread_of[c]]
                nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
                cells.append(f"{fmt(min(nums), unit)} – {fmt(max(nums), unit)}" if len(nums) == len(vals) and nums else "")
        rows.append([name] + cells)

    def bs(c, key):
        return bsums[c].get(key) if c in bsums else None

    ws = lambda c, st, key: by[c][st][key] if by[c][st] else None  # noqa: E731
    row("run length (lab s)", lambda c: by[c]["run_seconds"])
    row("far host", lambda c: {"f": f"down until t = {bs(c, 'outage_end')} s, then serving",
                                "fl": f"down until t = {bs(c, 'outage_end')} s, then serving" if bs(c, "returned")
                                else f"down to the end: due back at fluxgate's first probe after t = {bs(c, 'outage_end')} s, none came",
                                "g": f"answers {bs(c, 'flaky_success')} of the attempts"}.get(
        base(c), "flaky (as g)" if base(c) in ("lg", "ag") else "down for good"))
    def bound(c, st, key, flag):
        """A number, or a string "≥ n" when it is only a lower bound (spreads skip those)."""
        v = ws(c, st, key)
        return f"≥ {fmt(v)}" if by[c][st] and by[c][st][flag] else v

    row("healthy GitRepository present at the start → Ready: median (lab s)",
        lambda c: bound(c, "existing_wait", "median", "median_lower_bound"))
    if ref:
        row(f"… as a multiple of {ref['setup']}'s median",
            lambda c: ("≥ " if ws(c, "existing_wait", "median_lower_bound") else "")
            + f"{ws(c, 'existing_wait', 'median') / ref['existing_wait']['median']:.2f}×"
            + (" (target ≤ 1.5×)" if base(c) in ("f", "fl") else ""))
    row("… max (lab s)", lambda c: bound(c, "existing_wait", "max", "max_lower_bound"))
    row("… Ready within the run", lambda c: f"{ws(c, 'existing_wait', 'ready')} of {ws(c, 'existing_wait', 'n')}")
    row("new healthy GitRepository → Ready: median / max (lab s)",
        lambda c: f"{fmt(ws(c, 'new_wait', 'median'))} / {fmt(ws(c, 'new_wait', 'max'))}")
    row("far-host connections/min (lab), whole run", lambda c: bs(c, "far_conns_per_min_total") if c in bsums else by[c]["tarpit_conns_per_min"])
    row("… during the outage, before the breaker opened", lambda c: bs(c, "far_conns_per_min_before_open"))
    row("… during the outage, once it had opened (every connection, fluxgate's probes included)", lambda c: bs(c, "far_conns_per_min_while_open"))
    row("… drop", lambda c: bs(c, "far_conns_drop_pct"), " %")
    row("breaker first opened at t (lab s)", lambda c: bs(c, "breaker_first_open_t"))
    row("source-controller's connections to the far host while open and down (after the opening)",
        lambda c: bs(c, "sc_conns_while_open"))
    row("fluxgate's probe connections while open and down: count / per probe period / most in one period",
        lambda c: f"{bs(c, 'fluxgate_probe_conns_while_open')} / {fmt(bs(c, 'fluxgate_probe_conns_per_period_while_open'))} / {bs(c, 'fluxgate_probe_conns_max_in_one_period')}"
        if bs(c, "fluxgate_probe_conns_while_open") is not None else "-")
    row("… gap between probes: min / median / max (lab s)",
        lambda c: " / ".join(str(x) for x in bs(c, "fluxgate_probe_gap_min_median_max")) if bs(c, "fluxgate_probe_gap_min_median_max") else "-")
    row("first t (lab s) at which the preceding lab minute had ≤ 10 % of that rate (target: by W + one pass, 31 s)",
        lambda c: bs(c, "far_conns_drop_to_10pct_at") if c in bsums else None)
    row("quarantined: max / at the end", lambda c: f"{bs(c, 'quarantined_max')} / {bs(c, 'quarantined_end')}" if c in bsums else "-")
    row("probes (by outcome)", lambda c: ", ".join(f"{k} {v}" for k, v in sorted((bs(c, 'breaker_probes') or {}).items())) or "-")
    row("breaker actions (quarantine / release / acknowledge)",
        lambda c: " / ".join(str((bs(c, "breaker_actions") or {}).get(a, 0)) for a in ("quarantine", "release", "acknowledge_override")) if c in bsums else "-")
    row("breaker state changes (log; Prometheus counter)",
        lambda c: f"{bs(c, 'breaker_transitions')} ({bs(c, 'breaker_transitions_prometheus')})" if c in bsums else "-")
    row("… per platform hour, whole run", lambda c: bs(c, "breaker_transitions_per_platform_hour"))
    row("… per platform hour, from the first opening", lambda c: bs(c, "breaker_transitions_per_platform_hour_after_open"))
    row("host back at t (lab s) / after the last probe before it (lab s)",
        lambda c: f"{bs(c, 'outage_end')} / {fmt(bs(c, 'return_after_last_probe_s'))}" if base(c) in ("f", "fl") else "-")
    row("host back → first probe answered / first release (lab s)",
        lambda c: f"{fmt(bs(c, 'first_answered_probe_after_return_s'))} / {fmt(bs(c, 'first_release_after_return_s'))}" if base(c) in ("f", "fl") else "-")
    row("host back → every far-host GitRepository Ready, from their Ready times (lab s)", lambda c: bs(c, "all_ready_after_return_s")
        if base(c) in ("f", "fl") and bs(c, "all_ready_after_return_s") is not None
        else (f"not by the end ({bs(c, 'not_ready_end')} not Ready)" if base(c) in ("f", "fl") else "-"))
    row("… in platform minutes (target ≤ 10)", lambda c: round(bs(c, "all_ready_after_return_s") * by[c]["scale"] / 60, 1)
        if base(c) in ("f", "fl") and bs(c, "all_ready_after_return_s") is not None else "-")
    row("… first 5 s sample with every GitRepository Ready, after the return (lab s)",
        lambda c: round(bs(c, "all_ready_first_sample_t") - bs(c, "outage_end"), 1)
        if base(c) in ("f", "fl") and bs(c, "all_ready_first_sample_t") is not None else "-")
    if any(base(c) == "fl" for c in cols):
        lane_rows(row, bs, cols)
    row("far-host clone attempts answered / tarpitted", lambda c: f"{bs(c, 'far_clones_answered')} / {bs(c, 'far_clones_tarpitted')}"
        if c in bsums else "-")
    row("far-host GitRepositories Ready after the first opening: mean / min", lambda c:
        f"{bs(c, 'far_ready_after_open_mean')} / {bs(c, 'far_ready_after_open_min')}" if bs(c, "far_ready_after_open_mean") is not None else "-")
    row("far-host GitRepositories Ready / with an artifact, at the end", lambda c:
        f"{bs(c, 'far_ready_end')} / {bs(c, 'far_artifact_end')}" if c in bsums else "-")
    row("Ready / failing / suspended at the end (of 135)", lambda c: f"{by[c]['ready_end']} / {by[c]['failing_end']} / {by[c]['suspended_end']}")
    row("source-controller CPU (cores, mean)", lambda c: f"{by[c]['sc_cpu_cores_avg']}")
    row("machine load (1-min, median / max)", lambda c: f"{by[c]['load1_median']:.1f} / {by[c]['load1_max']:.1f}")
    heads = [c if kind == "run" else f"{c}: spread" for kind, c in order]
    lines = ["| figure | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def lane_return_summary(d, meta, samples, final, bsum):
    """fl: the breaker moves the far host's GitRepositories into the lane and back. When each
    was back on the main source-controller after the host returned: no shard label, Ready, its
    artifact on the main instance's storage (the first artifact event with that address)."""
    far, t0 = meta["far_host"], meta["t0"]
    ret = bsum.get("outage_end")
    main_addr = f"127.0.0.1:{meta['storage_port']}"
    lane_addr = f"127.0.0.1:{meta['lane_storage_port']}"
    far_objs = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in final
                if url_host(o["spec"]["url"]).split(":")[0] == far}
    existed = {k for k, o in far_objs.items() if ret is not None and ts(o["metadata"]["creationTimestamp"]) - t0 <= ret}
    back_at, on_lane_storage = {}, set()
    for line in open(os.path.join(d, "samples.jsonl")):
        e = json.loads(line)
        if e.get("event") != "artifact" or e["name"] not in far_objs:
            continue
        addr = e["url"].split("/", 3)[2] if e.get("url") else None
        if addr == lane_addr:
            on_lane_storage.add(e["name"])
        if addr == main_addr and ret is not None and e["t"] >= ret:
            back_at.setdefault(e["name"], e["t"])

    def on_main(o):
        labels = o["metadata"].get("labels") or {}
        art = (o.get("status") or {}).get("artifact") or {}
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in (o.get("status") or {}).get("conditions") or [])
        return (not labels.get("sharding.fluxcd.io/key") and labels.get("fluxgate.io/laned") != "true"
                and ready and art.get("url", "").split("/", 3)[2:3] == [main_addr])

    good = [x for x in samples if "error" not in x["cluster"]]
    hosts = [(x["t"], x["cluster"].get("hosts", {}).get(far, {})) for x in good]
    laned = [h.get("laned", 0) for _, h in hosts]
    sharded = [h.get("sharded", 0) for _, h in hosts]
    first_clear = next((t for t, h in hosts if ret is not None and t >= ret and h.get("sharded", 0) == 0
                        and h.get("ready", 0) == h.get("total", -1)), None)
    missing = sorted(existed - set(back_at))
    all_back = max((back_at[k] for k in existed), default=None) if not missing else None
    k = meta["scale"]
    return {
        "lane_moved_max": max(laned, default=0),
        "lane_moved_end": laned[-1] if laned else None,
        "lane_sharded_max": max(sharded, default=0),
        "far_ever_on_lane_storage": len(on_lane_storage),
        "suspended_max": max((x["cluster"].get("suspended", 0) for x in good), default=None),
        "far_on_main_end": sum(1 for o in far_objs.values() if on_main(o)),
        "far_total_end": len(far_objs),
        "far_existing_at_return": len(existed),
        "all_back_on_main_after_return_s": round(all_back - ret, 1) if all_back is not None else None,
        "all_back_on_main_platform_min": round((all_back - ret) * k / 60, 1) if all_back is not None else None,
        "not_back_on_main": missing[:10],
        "not_back_on_main_n": len(missing),
        "back_on_main_after_return_median_s": round(statistics.median(back_at[x] - ret for x in existed if x in back_at), 1)
        if any(x in back_at for x in existed) else None,
        "first_sample_all_back_after_return_s": round(first_clear - ret, 1) if first_clear is not None else None,
    }


def lane_rows(row, bs, cols):
    """fl's rows of the breaker table."""
    fl = lambda c, f: f(c) if base(c) == "fl" else "-"  # noqa: E731
    row("breaker's lane: far-host GitRepositories moved there at once, max / at the end",
        lambda c: fl(c, lambda c: f"{bs(c, 'lane_moved_max')} / {bs(c, 'lane_moved_end')}"))
    row("… with an artifact on the lane's storage at some point", lambda c: fl(c, lambda c: bs(c, "far_ever_on_lane_storage")))
    row("suspended: max in the run", lambda c: fl(c, lambda c: bs(c, "suspended_max")))
    row("host back → every far-host GitRepository back on the main source-controller (no shard label, Ready, "
        "artifact on main's storage): last / median (lab s)",
        lambda c: fl(c, lambda c: f"{bs(c, 'all_back_on_main_after_return_s')} / {bs(c, 'back_on_main_after_return_median_s')}"
                     if bs(c, "all_back_on_main_after_return_s") is not None
                     else f"not by the end ({bs(c, 'not_back_on_main_n')} not back)"))
    row("… in platform minutes (target ≤ 10)", lambda c: fl(c, lambda c: bs(c, "all_back_on_main_platform_min")
                                                             if bs(c, "all_back_on_main_platform_min") is not None else "-"))
    row("… first 5 s sample with no far-host GitRepository in the lane and all Ready, after the return (lab s)",
        lambda c: fl(c, lambda c: bs(c, "first_sample_all_back_after_return_s")))
    row("far-host GitRepositories on the main source-controller at the end",
        lambda c: fl(c, lambda c: f"{bs(c, 'far_on_main_end')} of {bs(c, 'far_total_end')}"))


def url_host(url):
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0].rsplit("@", 1)[-1].lower()


def mirror_summary(label, meta, final, prom, report, summary):
    """Setups m and n: what became of the GitRepositories created for the far host during the
    run (rewritten to the mirror in m, left as written in n)."""
    new = []
    for o in final:
        ns = o["metadata"]["namespace"]
        if int(ns.split("-")[1]) <= meta["total"]:
            continue
        annotations = o["metadata"].get("annotations") or {}
        new.append({
            "name": ns,
            "stored_host": url_host(o["spec"]["url"]),
            "original_url": annotations.get("fluxgate.io/original-url"),
            "quarantined": (o["metadata"].get("labels") or {}).get("fluxgate.io/quarantined") == "true",
        })
    rewrites = sum(series[-1][1] for series in prom.get("fg_mirror_rewrites", {}).values() if series)
    opened = next((t for t, msg, f in meta["breaker_log"]
                   if msg == "host breaker changed state" and f.get("to") == "open"), None)
    mirrored = [{k: g.get(k) for k in ("original_host", "mirror_host", "total", "ready", "failed")}
                for g in (report or {}).get("mirrored", [])]
    return {
        "setup": label,
        "new": new,
        "new_on_mirror": sum(1 for n in new if n["stored_host"].startswith(meta["mirror_host"])),
        "new_with_original_url": sum(1 for n in new if n["original_url"]),
        "new_quarantined_end": sum(1 for n in new if n["quarantined"]),
        "new_wait": summary["new_wait"],
        "existing_wait": summary["existing_wait"],
        "rewrites_counted": int(rewrites),
        "report_mirrored": mirrored,
        "breaker_opened_t": round(opened, 1) if opened is not None else None,
        "far_conns_per_min": summary["tarpit_conns_per_min"],
        "mirror_rule": meta.get("mirror_rule") or None,
    }


# --------------------------------------------------------------------------------------------
# host lanes (l, lg) beside the proxy (d), Flux defaults (a, ag) and the breaker (g)


def lane_summary(label, d, meta, final, prom, summary):
    """Where the far host's GitRepositories got to: the revisions that reached them while the
    Git server added commits (g, lg, ag), and each source-controller's queue."""
    run = meta["run_seconds"]
    far = meta["far_host"]
    commit_n = defaultdict(dict)   # repo path -> sha -> n (the root commit: 0)
    commits = []                   # (t, repo, n)
    p = os.path.join(d, "commits.csv")
    if os.path.exists(p):
        for line in open(p):
            t, ev, detail = line.rstrip("\n").split(",", 2)
            parts = detail.split()
            if ev == "reset":
                commit_n[parts[0]][parts[1]] = 0
            elif ev == "commit":
                commit_n[parts[0]][parts[2]] = int(parts[1])
                commits.append((float(t) - meta["t0"], parts[0], int(parts[1])))

    def repo_of(o):
        return "example-org/" + o["spec"]["url"].rstrip("/").rsplit("/", 1)[-1]

    def n_of(o_repo, revision):
        sha = (revision or "").rsplit(":", 1)[-1]
        return commit_n[o_repo].get(sha)

    far_objs = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in final
                if far in o["spec"]["url"] and int(o["metadata"]["namespace"].split("-")[1]) <= meta["total"]}
    seen = defaultdict(set)
    first_new = {}
    urls = defaultdict(set)
    for line in open(os.path.join(d, "samples.jsonl")):
        e = json.loads(line)
        if e.get("event") != "artifact" or e["name"] not in far_objs or not 0 <= e["t"] <= run:
            continue
        n = n_of(repo_of(far_objs[e["name"]]), e["revision"])
        urls[e["name"]].add(e["url"].split("/", 3)[2] if e.get("url") else None)
        if n:
            seen[e["name"]].add(n)
            first_new.setdefault(e["name"], e["t"])
    made = [c for c in commits if c[0] <= run]
    latest = defaultdict(int)
    for t, r, n in made:
        latest[r] = max(latest[r], n)
    lags = []
    with_artifact = 0
    for key, o in far_objs.items():
        art = (o.get("status") or {}).get("artifact")
        if not art:
            continue
        with_artifact += 1
        n = n_of(repo_of(o), art.get("revision"))
        if n is not None and made:
            lags.append(latest[repo_of(o)] - n)
    lane_storage = f"127.0.0.1:{meta.get('lane_storage_port')}"
    on_lane = sum(1 for o in far_objs.values()
                  if ((o.get("status") or {}).get("artifact") or {}).get("url", "").split("/", 3)[2:3] == [lane_storage])
    labelled = sum(1 for o in far_objs.values()
                   if ((o["metadata"].get("labels") or {}).get("sharding.fluxcd.io/key") == "far"))
    lane_recon = {json.loads(lab).get("result", "?"): int(series[-1][1])
                  for lab, series in prom.get("lane_reconcile_total", {}).items() if series}
    main_depth = [v for _, v in one(prom, "sc_workqueue_depth")]
    lane_depth = [v for _, v in one(prom, "lane_workqueue_depth")]
    lane_check = None
    lc = os.path.join(d, "lane-check.json")
    if os.path.exists(lc) and os.path.getsize(lc):
        lane_check = json.load(open(lc))
    timeouts = sorted({(o.get("spec") or {}).get("timeout", "60s") for o in far_objs.values()})
    lane_args = (meta.get("lane_args") or "").split()
    settings = [a.split("=", 1)[1] for a in lane_args
                if a.split("=", 1)[0] in ("--concurrent", "--min-retry-delay", "--max-retry-delay")]
    return {
        "setup": label,
        "lane_settings": " / ".join(settings) if settings else None,
        "far_timeouts": timeouts,
        "lane": bool(meta.get("lane")),
        "commit_every": meta.get("commit_every", 0),
        "far_total": len(far_objs),
        "far_labelled": labelled,
        "commits_made": len(made),
        "far_with_new_revision": len(seen),
        "far_revisions_delivered": sum(len(v) for v in seen.values()),
        "far_first_new_revision_median_t": round(statistics.median(first_new.values()), 1) if first_new else None,
        "far_with_artifact_end": with_artifact,
        "far_artifact_on_lane_storage_end": on_lane,
        "far_commits_behind_end_mean": round(statistics.mean(lags), 2) if lags else None,
        "far_commits_behind_end_max": max(lags) if lags else None,
        "far_conns_per_min": summary["tarpit_conns_per_min"],
        "far_hold_median_s": summary["tarpit_hold_median_s"],
        "existing_wait": summary["existing_wait"],
        "new_wait": summary["new_wait"],
        "suspended_end": summary["suspended_end"],
        "ready_end": summary["ready_end"],
        "main_depth_mean": round(statistics.mean(main_depth), 1) if main_depth else None,
        "main_depth_max": max(main_depth) if main_depth else None,
        "lane_depth_mean": round(statistics.mean(lane_depth), 1) if lane_depth else None,
        "lane_depth_max": max(lane_depth) if lane_depth else None,
        "main_reconciles": summary["reconciles"],
        "lane_reconciles": lane_recon,
        "lane_check": lane_check,
        "load1_median": summary["load1_median"],
        "load1_max": summary["load1_max"],
        "run_seconds": run,
    }


def lane_table(lsums):
    cols = list(lsums)
    refs = {base(c): lsums[c] for c in cols if base(c) == "d"}
    rows = []

    def row(name, f):
        rows.append([name] + [f(lsums[c]) for c in cols])

    def wait(st, key):
        if not st:
            return "-"
        return f"{'≥ ' if st[key + '_lower_bound'] else ''}{st[key]:.1f}"

    d_medians = [c["existing_wait"]["median"] for c in refs.values() if c["existing_wait"]]
    row("run length (lab s)", lambda m: str(m["run_seconds"]))
    row("host lane (far host's GitRepositories labelled / of)", lambda m: f"yes ({m['far_labelled']} / {m['far_total']})" if m["lane"] else "no")
    row("spec.timeout of the far-host GitRepositories (lab)", lambda m: ", ".join(m["far_timeouts"]))
    row("lane's source-controller: --concurrent / --min-retry-delay / --max-retry-delay (lab)",
        lambda m: m.get("lane_settings") or "-")
    row("webhook's label on a new far-host GitRepository (dryRun create)",
        lambda m: (m["lane_check"] or {}).get("labels", {}).get("sharding.fluxcd.io/key", "-") if m["lane_check"] else "-")
    row("healthy GitRepository present at the start → Ready: median / max (lab s)",
        lambda m: f"{wait(m['existing_wait'], 'median')} / {wait(m['existing_wait'], 'max')}")
    if d_medians:
        row("… median as a multiple of d's (d's runs in this table)",
            lambda m: f"{m['existing_wait']['median'] / statistics.mean(d_medians):.2f}×" if m["existing_wait"] else "-")
    row("new healthy GitRepository → Ready: median / max (lab s)",
        lambda m: f"{wait(m['new_wait'], 'median')} / {wait(m['new_wait'], 'max')}")
    row("suspended at the end", lambda m: str(m["suspended_end"]))
    row("commits added to the far-host repositories in the run", lambda m: str(m["commits_made"]) if m["commit_every"] else "none")
    row("far-host GitRepositories that got a new revision", lambda m: f"{m['far_with_new_revision']} of {m['far_total']}" if m["commit_every"] else "-")
    row("… new revisions delivered, all far-host GitRepositories", lambda m: str(m["far_revisions_delivered"]) if m["commit_every"] else "-")
    row("… commits behind at the end: mean / max (those with an artifact)",
        lambda m: f"{m['far_commits_behind_end_mean']} / {m['far_commits_behind_end_max']}" if m["far_commits_behind_end_mean"] is not None else "-")
    row("far-host GitRepositories with an artifact at the end (on the lane's storage)",
        lambda m: f"{m['far_with_artifact_end']} ({m['far_artifact_on_lane_storage_end']})" if m["lane"] else str(m["far_with_artifact_end"]))
    row("far-host connections/min (lab)", lambda m: str(m["far_conns_per_min"]))
    row("… held (median s)", lambda m: str(m["far_hold_median_s"]) if m["far_hold_median_s"] is not None else "-")
    row("main source-controller: workqueue depth mean / max",
        lambda m: f"{m['main_depth_mean']} / {m['main_depth_max']:.0f}" if m["main_depth_max"] is not None else "-")
    row("lane's source-controller: workqueue depth mean / max",
        lambda m: f"{m['lane_depth_mean']} / {m['lane_depth_max']:.0f}" if m["lane_depth_max"] is not None else "-")
    row("reconciles, main (lane)", lambda m: ", ".join(f"{k} {v}" for k, v in m["main_reconciles"].items())
        + (" (" + ", ".join(f"{k} {v}" for k, v in m["lane_reconciles"].items()) + ")" if m["lane"] else ""))
    row("machine load (1-min, median / max)", lambda m: f"{m['load1_median']:.1f} / {m['load1_max']:.1f}")
    out = ["| figure | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def mirror_table(msums):
    cols = list(msums)
    rows = []

    def row(name, f):
        rows.append([name] + [f(msums[c]) for c in cols])

    def wait(st, key):
        if not st:
            return "-"
        return f"{'≥ ' if st[key + '_lower_bound'] else ''}{st[key]:.1f}"

    row("mirror rule", lambda m: f"`{m['mirror_rule']}`" if m["mirror_rule"] else "none")
    row("new far-host GitRepositories: created / stored with the mirror's URL / carrying "
        "fluxgate.io/original-url", lambda m: f"{len(m['new'])} / {m['new_on_mirror']} / {m['new_with_original_url']}")
    row("… Ready by the end", lambda m: f"{m['new_wait']['ready']} of {m['new_wait']['n']}" if m["new_wait"] else "-")
    row("… creation → Ready: median / max (lab s)",
        lambda m: f"{wait(m['new_wait'], 'median')} / {wait(m['new_wait'], 'max')}")
    row("… quarantined at the end", lambda m: str(m["new_quarantined_end"]))
    row("fluxgate_mirror_rewrites_total", lambda m: str(m["rewrites_counted"]))
    row("fluxgate report, Mirrored: original → mirror (total, Ready, failed)",
        lambda m: "; ".join(f"{g['original_host']} → {g['mirror_host']} ({g['total']}, {g['ready']}, {g['failed']})"
                            for g in m["report_mirrored"]) or "none")
    row("healthy GitRepository present at the start → Ready: median (lab s)",
        lambda m: wait(m["existing_wait"], "median"))
    row("breaker opened at t (lab s)", lambda m: "-" if m["breaker_opened_t"] is None else str(m["breaker_opened_t"]))
    row("far-host connections/min (lab), whole run", lambda m: str(m["far_conns_per_min"]))
    out = ["| figure | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def plot_breaker(label, meta, samples, conns, bsum, path):
    run = meta["run_seconds"]
    far = meta["far_host"]
    fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True, gridspec_kw={"height_ratios": [2, 2, 1]})
    step = 10
    bins = [i * step for i in range(int(math.ceil(run / step)) + 1)]
    evs = conns.get("far", [])
    srv = [t for t, ev, d in evs if ev == "serve"]
    tar = [t for t, ev, d in evs if ev == "tarpit"] or [t for t, ev, _ in evs if ev == "accept"]
    xs = [b / 60 for b in bins[:-1]]
    s_counts = [count_in(srv, b, b + step) for b in bins[:-1]]
    t_counts = [count_in(tar, b, b + step) for b in bins[:-1]]
    ax = axes[0]
    ax.bar(xs, t_counts, width=step / 60, align="edge", color="#d62728", alpha=0.8, label="tarpitted")
    ax.bar(xs, s_counts, width=step / 60, align="edge", bottom=t_counts, color="#2ca02c", alpha=0.8,
           label="answered (relayed to Git)")
    # Log-like above 10: the outage's few connections stay visible beside the relayed clones.
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"far-host connections\nper {step} s")
    ax.legend(fontsize=8, loc="upper right")
    good = [x for x in samples if "error" not in x["cluster"]]
    t = [x["t"] / 60 for x in good]
    ax = axes[1]
    ax.plot(t, [x["cluster"]["ready"] for x in good], color="black", lw=1.5, label="Ready (all hosts)")
    ax.plot(t, [x["cluster"].get("hosts", {}).get(far, {}).get("ready", 0) for x in good], color="#2ca02c", lw=1.8,
            label="far host: Ready")
    ax.plot(t, [x["cluster"].get("hosts", {}).get(far, {}).get("artifact", 0) for x in good], ":", color="#2ca02c",
            lw=1.5, label="far host: with an artifact")
    ax.plot(t, [x["cluster"].get("quarantined", 0) for x in good], color="#17becf", lw=1.8, label="quarantined")
    ax.set_ylabel("GitRepositories")
    ax.legend(fontsize=8, loc="center right")
    ax = axes[2]
    pts = [(0, 0)]
    for tt, a, b in bsum["breaker_transition_list"]:
        pts.append((tt, STATE_LEVEL.get(a, 0)))
        pts.append((tt, STATE_LEVEL.get(b, 0)))
    pts.append((run, pts[-1][1]))
    ax.plot([p[0] / 60 for p in pts], [p[1] for p in pts], color="#9467bd", lw=1.8)
    ax.set_yticks([0, 1, 2], ["closed", "half-open", "open"])
    ax.set_ylim(-0.4, 2.4)
    ax.set_ylabel("breaker")
    ax.set_xlabel("lab minutes since source-controller started (× 20: platform minutes)")
    for a in axes:
        a.grid(alpha=0.3)
        if bsum["outage_end"] is not None:
            a.axvline(bsum["outage_end"] / 60, color="#2ca02c", ls="--", lw=1.2)
        for p in [float(x) for x in meta["probes"].split(",") if x]:
            a.axvline(p / 60, color="grey", ls=":", lw=0.8)
    what = (f"far host down until t = {bsum['outage_end']:.0f} s (dashed)" if bsum["outage_end"] is not None
            else f"far host answers {bsum['flaky_success']} of the attempts")
    fig.suptitle(f"{title(label)}: {what}; dotted: new GitRepositories", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lab-dir", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--name", default=None,
                   help="suffix of the combined files (summary-NAME.md, waits-NAME.png, ...); default "
                        "none for setups a-e only, 'breaker' when f or g or a run label is among them")
    p.add_argument("setups", nargs="+")
    a = p.parse_args()
    if a.name is None:
        plain = all(x in ("a", "b", "c", "c2", "d", "e") for x in a.setups)
        mirror = all(base(x) in ("m", "n") for x in a.setups)
        lanes = any(base(x) in ("l", "lg", "ag") for x in a.setups)
        a.name = "" if plain else ("mirror" if mirror else ("lanes" if lanes else "breaker"))
    sfx = f"-{a.name}" if a.name else ""
    os.makedirs(a.results, exist_ok=True)
    runs, summaries, bsums, msums, lsums = {}, [], {}, {}, {}
    for setup in a.setups:
        d = os.path.join(a.lab_dir, f"run-{setup}")
        runs[setup] = load_run(d)
        s = summarise(setup, *runs[setup])
        summaries.append(s)
        export_data(setup, d, a.results, runs[setup][0], runs[setup][1], s)
        if base(setup) in ("f", "fl", "g"):
            meta, samples, final, prom, conns = runs[setup]
            bsums[setup] = breaker_summary(setup, meta, samples, final, prom, conns, s)
            if base(setup) == "fl":
                bsums[setup].update(lane_return_summary(d, meta, samples, final, bsums[setup]))
            s["breaker"] = bsums[setup]
            plot_breaker(setup, meta, samples, conns, bsums[setup], os.path.join(a.results, setup, "breaker.png"))
            with open(os.path.join(a.results, setup, "far_host_per_minute.csv"), "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["lab_minute", "connections"])
                for m, n in enumerate(bsums[setup]["far_conns_per_minute"]):
                    w.writerow([m, n])
            json.dump(bsums[setup], open(os.path.join(a.results, setup, "breaker.json"), "w"), indent=1)
        if base(setup) == "h":
            meta, samples, final, prom, conns = runs[setup]
            esum = egress_summary(setup, meta, samples, final, prom, conns, s)
            s["egress"] = esum
            json.dump(esum, open(os.path.join(a.results, setup, "egress.json"), "w"), indent=1)
            print(json.dumps({k: v for k, v in esum.items() if k != "breaker_transitions"}, indent=1))
        if base(setup) in ("m", "n"):
            meta, samples, final, prom, conns = runs[setup]
            report_path = os.path.join(d, "report.json")
            report = json.load(open(report_path)) if os.path.getsize(report_path) else None
            msums[setup] = mirror_summary(setup, meta, final, prom, report, s)
            json.dump(msums[setup], open(os.path.join(a.results, setup, "mirror.json"), "w"), indent=1)
        if any(base(x) in ("l", "lg", "ag") for x in a.setups) and base(setup) in ("a", "d", "g", "l", "lg", "ag"):
            meta, samples, final, prom, conns = runs[setup]
            lsums[setup] = lane_summary(setup, d, meta, final, prom, s)
            json.dump(lsums[setup], open(os.path.join(a.results, setup, "lane.json"), "w"), indent=1)
            for name in ("commits.csv", "lane-check.json"):
                if os.path.exists(os.path.join(d, name)):
                    shutil.copy(os.path.join(d, name), os.path.join(a.results, setup, name))
    md = table(summaries)
    print(md)
    if msums:
        mmd = mirror_table(msums)
        print()
        print(mmd)
        with open(os.path.join(a.results, "summary-mirror-table.md"), "w") as f:
            f.write(mmd + "\n")
    if lsums:
        lmd = lane_table(lsums)
        print()
        print(lmd)
        with open(os.path.join(a.results, f"summary{sfx}-lanes.md"), "w") as f:
            f.write(lmd + "\n")
    if bsums:
        bmd = breaker_table(summaries, bsums)
        print()
        print(bmd)
        with open(os.path.join(a.results, f"summary{sfx}-table2.md"), "w") as f:
            f.write(bmd + "\n")
    # Keep the summaries of setups run earlier when only some are re-run.
    path = os.path.join(a.results, "summary.json")
    old = {}
    if os.path.exists(path):
        old = {s["setup"]: s for s in json.load(open(path))}
    for s in summaries:
        old[s["setup"]] = s
    json.dump([old[k] for k in sorted(old)], open(path, "w"), indent=1)
    with open(os.path.join(a.results, f"summary{sfx}.md"), "w") as f:
        f.write(md + "\n")
    plot_waits(summaries, os.path.join(a.results, f"waits{sfx}.png"))
    plot_unobserved(runs, os.path.join(a.results, f"unobserved{sfx}.png"))
    plot_gauges(runs, os.path.join(a.results, f"gauges{sfx}.png"))


if __name__ == "__main__":
    main()
