#!/usr/bin/env python3
"""Turns the lab's runs into the figures per setup: a table (stdout, summary.md, summary.json),
the data behind it (CSV per setup) and the plots (waits.png, gauges.png, unobserved.png).

  analyze.py --lab-dir target/lab --results lab/results a b c d
"""

import argparse
import csv
import json
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
}
SHORT = {"a": "a\ndefaults", "b": "b\ntimeout 5m", "c": "c\njanitor 3m", "c2": "c2\njanitor 1m",
         "d": "d\nproxy", "e": "e\n5m + janitor"}
COLORS = {"a": "#d62728", "b": "#9467bd", "c": "#8c564b", "c2": "#2ca02c", "d": "#1f77b4", "e": "#ff7f0e"}


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
    for name in ("git", "tarpit", "proxy"):
        p = os.path.join(d, f"{name}.csv")
        if os.path.exists(p):
            rows = [line.rstrip("\n").split(",", 2) for line in open(p)]
            conns[name] = [(float(r[0]) - meta["t0"], r[1], r[2]) for r in rows if len(r) == 3]
    return meta, samples, final, prom, conns


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
    for t, ev, detail in conns.get("tarpit", []):
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
        "title": TITLES[setup],
        "run_seconds": run,
        "scale": meta["scale"],
        "timeout_far": meta["timeout_default"] if setup not in ("b", "e") else meta["timeout_webhook"],
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
        "tarpit_conns_per_min": round(len(accepts("tarpit")) / minutes, 1),
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
    row("connections/min to the far host (tarpit)", lambda s: f"{s['tarpit_conns_per_min']}")
    row("… how long each was held (median s)", lambda s: f"{s['tarpit_hold_median_s'] if s['tarpit_hold_median_s'] is not None else '-'}")
    row("connections/min to the Git server", lambda s: f"{s['git_conns_per_min']}")
    row("requests through the proxy (to the API server)", lambda s: f"{s['proxy_requests']} ({s['proxy_requests_to_apiserver']})" if s["setup"] == "d" else "-")
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
            c = COLORS[s["setup"]]
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
        ax.set_xticks(range(len(summaries)), [SHORT[s["setup"]] for s in summaries], fontsize=8)
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
        ax.plot([t / 60 for t, _ in pts], [v for _, v in pts], color=COLORS[setup], lw=2, label=TITLES[setup])
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
        ax.set_title(TITLES[setup], fontsize=10, loc="left")
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
        w.writerow(["t"] + keys + ["sc_cpu_seconds", "sc_rss_kib", "load1"])
        for s in samples:
            if "error" in s["cluster"]:
                continue
            w.writerow([s["t"]] + [s["cluster"].get(k) for k in keys]
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
        for name in ("git", "tarpit", "proxy"):
            p = os.path.join(d, f"{name}.csv")
            if os.path.exists(p):
                for line in open(p):
                    t, ev, detail = line.rstrip("\n").split(",", 2)
                    if ev in ("accept", "close", "forward", "connect", "error", "refused"):
                        w.writerow([name, round(float(t) - meta["t0"], 3), ev, detail])
    shutil.copy(os.path.join(d, "meta.json"), os.path.join(out, "meta.json"))
    if os.path.exists(os.path.join(d, "source-controller.env")):
        shutil.copy(os.path.join(d, "source-controller.env"), os.path.join(out, "source-controller.env"))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--lab-dir", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("setups", nargs="+")
    a = p.parse_args()
    os.makedirs(a.results, exist_ok=True)
    runs, summaries = {}, []
    for setup in a.setups:
        d = os.path.join(a.lab_dir, f"run-{setup}")
        runs[setup] = load_run(d)
        s = summarise(setup, *runs[setup])
        summaries.append(s)
        export_data(setup, d, a.results, runs[setup][0], runs[setup][1], s)
    md = table(summaries)
    print(md)
    # Keep the summaries of setups run earlier when only some are re-run.
    path = os.path.join(a.results, "summary.json")
    old = {}
    if os.path.exists(path):
        old = {s["setup"]: s for s in json.load(open(path))}
    for s in summaries:
        old[s["setup"]] = s
    json.dump([old[k] for k in sorted(old)], open(path, "w"), indent=1)
    with open(os.path.join(a.results, "summary.md"), "w") as f:
        f.write(md + "\n")
    plot_waits(summaries, os.path.join(a.results, "waits.png"))
    plot_unobserved(runs, os.path.join(a.results, "unobserved.png"))
    plot_gauges(runs, os.path.join(a.results, "gauges.png"))


if __name__ == "__main__":
    main()
