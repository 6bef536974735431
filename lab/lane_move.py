#!/usr/bin/env python3
"""Moves GitRepositories between two source-controllers by their sharding label and records what
each controller does. Run by lab/lane_move.sh, which starts the control plane, the Git server,
the tarpit and the two source-controllers.

Four GitRepositories in namespace lane-move: `ready` (the in-house Git server), `missing` (a
path the server does not have: "repository not found"), `hanging` (the tarpit, with
--hang-timeout) and `stale` (a far host that serves until --down-file exists, then tarpits;
--hang-timeout too). Steps:

  1. created without the label (main instance); wait until ready and stale are Ready, missing
     has failed and the main instance's worker is inside an attempt at hanging; then stale's
     host goes down (the down file);
  2. label all three sharding.fluxcd.io/key=far while that attempt still hangs;
  3. a new commit, and a reconcile request on ready, so the lane's instance stores a new
     revision;
  4. remove the label again while the lane's attempt at hanging hangs;
  5. delete ready.

After each step, until the state settles or a bound: the objects' status (artifact URL and
revision, conditions, finalizers), the status writes per instance (the API server's audit log,
told apart by User-Agent), each instance's log lines about the object, the artifact files in
each storage directory, and an HTTP GET of status.artifact.url (and of the previous URL), as a
consumer such as kustomize-controller fetches it. Ends with checks of what the lab's
deploy/lanes/README.md says; exit 1 when one fails.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from driver import GROUP, Api, condition  # noqa: E402

NS = "lane-move"
NAMES = ("ready", "missing", "hanging", "stale")
KEY = "sharding.fluxcd.io/key"
T0 = time.time()


def now():
    return round(time.time() - T0, 1)


def say(msg):
    print(f"[lane-move t={now():6.1f}] {msg}", flush=True)


class Lab:
    def __init__(self, a):
        self.a = a
        self.api = Api(a.api, a.pki)
        self.base = f"/apis/{GROUP}/v1/namespaces/{NS}/gitrepositories"
        self.events = []

    def get(self, name):
        try:
            return self.api.request("GET", f"{self.base}/{name}")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def label(self, name, value):
        body = json.dumps({"metadata": {"labels": {KEY: value}}}).encode()
        req = urllib.request.Request(f"{self.api.url}{self.base}/{name}", data=body, method="PATCH")
        req.add_header("Content-Type", "application/merge-patch+json")
        with urllib.request.urlopen(req, context=self.api.ctx, timeout=20) as r:
            return json.load(r)

    def annotate(self, name, key, value):
        body = json.dumps({"metadata": {"annotations": {key: value}}}).encode()
        req = urllib.request.Request(f"{self.api.url}{self.base}/{name}", data=body, method="PATCH")
        req.add_header("Content-Type", "application/merge-patch+json")
        with urllib.request.urlopen(req, context=self.api.ctx, timeout=20) as r:
            return json.load(r)

    def delete(self, name):
        req = urllib.request.Request(f"{self.api.url}{self.base}/{name}", method="DELETE")
        with urllib.request.urlopen(req, context=self.api.ctx, timeout=20) as r:
            return json.load(r)


def view(o):
    """The parts of a GitRepository this experiment looks at."""
    if o is None:
        return None
    st = o.get("status") or {}
    art = st.get("artifact") or {}
    r = condition(o, "Ready") or {}
    rec = condition(o, "Reconciling") or {}
    return {
        "label": (o["metadata"].get("labels") or {}).get(KEY),
        "finalizers": o["metadata"].get("finalizers") or [],
        "deleting": bool(o["metadata"].get("deletionTimestamp")),
        "artifact_url": art.get("url"),
        "artifact_revision": art.get("revision"),
        "artifact_digest": art.get("digest"),
        "ready": r.get("status"),
        "ready_reason": r.get("reason"),
        "ready_message": (r.get("message") or "")[:160],
        "reconciling": rec.get("status"),
        "observed_generation": st.get("observedGeneration"),
        "last_handled_reconcile_at": st.get("lastHandledReconcileAt"),
    }


def fetch(url):
    """A consumer's GET of an artifact URL: status and the body's sha256."""
    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read()
            return {"url": url, "status": r.status, "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body)}
    except urllib.error.HTTPError as e:
        return {"url": url, "status": e.code}
    except (OSError, urllib.error.URLError) as e:
        return {"url": url, "status": None, "error": str(e)[:120]}


def files(root):
    out = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n.endswith(".tar.gz"):
                out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


def log_lines(path, name, since):
    """source-controller's JSON log lines about NS/name after unix time `since`."""
    out = []
    try:
        f = open(path, errors="replace")
    except OSError:
        return out
    with f:
        for line in f:
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            obj = rec.get("GitRepository") or {}
            if obj.get("name") != name or obj.get("namespace") != NS:
                continue
            ts = rec.get("ts")
            t = ts if isinstance(ts, (int, float)) else parse_time(ts)
            if t is None or t < since:
                continue
            msg = rec.get("msg", "")
            if rec.get("error"):
                msg += ": " + str(rec["error"])[:140]
            out.append((round(t - T0, 1), rec.get("level"), msg[:220]))
    return out


def parse_time(s):
    if not s:
        return None
    from datetime import datetime

    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def status_writes(path, name, since):
    """Writes to the object (and its status) from the audit log: (t, verb, subresource, agent)."""
    out = []
    try:
        f = open(path, errors="replace")
    except OSError:
        return out
    with f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            ref = e.get("objectRef") or {}
            if ref.get("resource") != "gitrepositories" or ref.get("namespace") != NS or ref.get("name") != name:
                continue
            if e.get("verb") not in ("update", "patch", "delete"):
                continue
            t = parse_time(e.get("requestReceivedTimestamp"))
            if t is None or t < since:
                continue
            agent = (e.get("userAgent") or "").split("/", 1)[0]
            code = (e.get("responseStatus") or {}).get("code")
            out.append((round(t - T0, 1), e["verb"], ref.get("subresource") or "", agent, code))
    return out


def tarpit_conns(path, since):
    out = []
    try:
        for line in open(path):
            t, ev, detail = line.rstrip("\n").split(",", 2)
            if float(t) >= since and ev in ("accept", "close"):
                out.append((round(float(t) - T0, 1), ev, detail))
    except OSError:
        pass
    return out


def wait_for(lab, what, pred, bound):
    """Polls every 0.5 s until pred(views) or `bound` seconds; returns the views and the time."""
    end = time.time() + bound
    while True:
        views = {n: view(lab.get(n)) for n in NAMES}
        if pred(views):
            say(f"{what}: yes")
            return views, True
        if time.time() >= end:
            say(f"{what}: not within {bound} s")
            return views, False
        time.sleep(0.5)


def watch(lab, seconds, names=NAMES):
    """Every change of each object's view for `seconds`: [(t, name, view)]."""
    changes = []
    last = {}
    end = time.time() + seconds
    while time.time() < end:
        for n in names:
            v = view(lab.get(n))
            if v != last.get(n, "unset"):
                changes.append((now(), n, v))
                last[n] = v
        time.sleep(0.5)
    return changes


def commit(repo, n):
    def git(*argv, stdin=None):
        return subprocess.run(["git", "-c", "user.name=platform", "-c", "user.email=platform@lab.test",
                               "--git-dir", repo, *argv], input=stdin, capture_output=True, timeout=30,
                              check=True).stdout.decode().strip()

    blob = git("hash-object", "-w", "--stdin", stdin=(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n" f"  revision: \"{n}\"\n").encode())
    tree = git("mktree", stdin=f"100644 blob {blob}\tapp.yaml\n".encode())
    parent = git("rev-parse", "refs/heads/main")
    sha = git("commit-tree", tree, "-p", parent, "-m", f"revision {n}")
    git("update-ref", "refs/heads/main", sha, parent)
    return sha


def snapshot(lab, a, step, since, prev_urls=None):
    objs = {n: view(lab.get(n)) for n in NAMES}
    snap = {
        "step": step,
        "t": now(),
        "objects": objs,
        "files_main": files(a.main_storage),
        "files_lane": files(a.lane_storage),
        "consumer_current": fetch((objs["ready"] or {}).get("artifact_url")),
        "consumer_previous": [fetch(u) for u in (prev_urls or []) if u],
        "writes": {n: status_writes(a.audit_log, n, since) for n in objs},
        "log_main": {n: log_lines(a.main_log, n, since) for n in objs},
        "log_lane": {n: log_lines(a.lane_log, n, since) for n in objs},
        "tarpit": tarpit_conns(a.tarpit_log, since),
    }
    return snap


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    for k in ("api", "pki", "ready-url", "missing-url", "hanging-url", "stale-url", "down-file", "hang-timeout", "repo", "main-storage",
              "lane-storage", "main-addr", "lane-addr", "main-log", "lane-log", "audit-log", "tarpit-log", "out"):
        p.add_argument(f"--{k}", required=True)
    a = p.parse_args()
    hang = float(a.hang_timeout.rstrip("s"))
    lab = Lab(a)
    api = lab.api
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    for name, url, timeout in (("ready", a.ready_url, None), ("missing", a.missing_url, None),
                               ("hanging", a.hanging_url, a.hang_timeout), ("stale", a.stale_url, a.hang_timeout)):
        spec = {"interval": "1m", "url": url, "ref": {"branch": "main"}}
        if timeout:
            spec["timeout"] = timeout
        api.create(lab.base, {"apiVersion": f"{GROUP}/v1", "kind": "GitRepository",
                              "metadata": {"name": name, "namespace": NS}, "spec": spec})
    say("created ready, missing, hanging, stale (no label: the main instance's)")
    snaps = []
    timeline = []

    # 1. settled in the main instance, and an attempt at hanging under way
    since = time.time()
    wait_for(lab, "ready and stale Ready, missing failed", lambda v: v["ready"]["ready"] == "True"
             and v["stale"]["ready"] == "True" and v["missing"]["ready"] == "False", 60)
    open(a.down_file, "w").close()
    say("stale's host is down from now on")
    for _ in range(120):
        if any(ev == "accept" for _, ev, _ in tarpit_conns(a.tarpit_log, since)):
            break
        time.sleep(0.5)
    # Move a few seconds into the attempt, well before its timeout.
    time.sleep(min(5.0, hang / 4))
    snaps.append(snapshot(lab, a, "1 in main", since))
    url_main_ready = snaps[-1]["objects"]["ready"]["artifact_url"]
    url_main_stale = snaps[-1]["objects"]["stale"]["artifact_url"]

    # 2. main -> lane
    t_move1 = time.time()
    for n in NAMES:
        lab.label(n, "far")
    say("labelled far (main -> lane)")
    timeline += [(t, n, v, "main->lane") for t, n, v in watch(lab, hang + 15)]
    snaps.append(snapshot(lab, a, "2 after main -> lane", t_move1, [url_main_ready, url_main_stale]))
    url_lane_ready = snaps[-1]["objects"]["ready"]["artifact_url"]

    # 3. a new revision while in the lane
    sha = commit(a.repo, 1)
    lab.annotate("ready", "reconcile.fluxcd.io/requestedAt", str(time.time()))
    say(f"commit {sha[:8]} and a reconcile request on ready")
    t_commit = time.time()
    wait_for(lab, "ready at the new revision", lambda v: sha in (v["ready"]["artifact_revision"] or ""), 60)
    snaps.append(snapshot(lab, a, "3 new revision in the lane", t_commit, [url_main_ready, url_lane_ready]))
    url_lane_ready2 = snaps[-1]["objects"]["ready"]["artifact_url"]

    # 4. lane -> main, while the lane's attempt at hanging hangs
    since = time.time()
    for _ in range(int(hang * 2) + 20):
        conns = tarpit_conns(a.tarpit_log, since - hang)
        opened = [t for t, ev, _ in conns if ev == "accept"]
        if opened and now() - max(opened) < hang - 5:
            break
        time.sleep(0.5)
    t_move2 = time.time()
    for n in NAMES:
        lab.label(n, None)
    say("label removed (lane -> main)")
    timeline += [(t, n, v, "lane->main") for t, n, v in watch(lab, hang + 15)]
    snaps.append(snapshot(lab, a, "4 after lane -> main", t_move2,
                          [url_main_ready, url_lane_ready, url_lane_ready2, url_main_stale]))

    # 5. delete ready (in the main instance now)
    t_del = time.time()
    lab.delete("ready")
    for _ in range(60):
        if lab.get("ready") is None:
            break
        time.sleep(0.5)
    say(f"ready deleted: gone={lab.get('ready') is None}")
    time.sleep(2)
    snaps.append(snapshot(lab, a, "5 after deleting ready", t_del, [url_main_ready, url_lane_ready2]))

    leases = api.request("GET", "/apis/coordination.k8s.io/v1/namespaces/flux-system/leases")["items"]
    lease_view = [{"name": x["metadata"]["name"], "holder": x["spec"].get("holderIdentity")} for x in leases]

    result = {"t_move_to_lane": round(t_move1 - T0, 1), "t_move_to_main": round(t_move2 - T0, 1),
              "t_commit": round(t_commit - T0, 1), "t_delete": round(t_del - T0, 1), "hang_timeout_s": hang,
              "main_addr": a.main_addr, "lane_addr": a.lane_addr, "leases": lease_view,
              "timeline": timeline, "snapshots": snaps}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "moves.json"), "w") as f:
        json.dump(result, f, indent=1)
    report, failed = render(result)
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write(report)
    print(report)
    return 1 if failed else 0


def first(timeline, name, direction, pred):
    for t, n, v, d in timeline:
        if n == name and d == direction and v is not None and pred(v):
            return t
    return None


def render(r):
    s = r["snapshots"]
    main_addr, lane_addr = r["main_addr"], r["lane_addr"]
    tl = r["timeline"]
    lines = [f"# GitRepositories changing lane (lab/lane_move.sh)", "",
             f"Main instance's artifacts at {main_addr}, the lane's at {lane_addr}. "
             f"t in seconds from the script's start; moved to the lane at t = {r['t_move_to_lane']}, "
             f"a new commit at t = {r['t_commit']}, back to main at t = {r['t_move_to_main']}, "
             f"ready deleted at t = {r['t_delete']}. spec.timeout of hanging: {r['hang_timeout_s']:g} s.", ""]
    lines.append("Leases in flux-system: " + ", ".join(f"`{x['name']}`" for x in r["leases"]))
    lines.append("")
    for snap in s:
        lines.append(f"## {snap['step']} (t = {snap['t']})")
        lines.append("")
        for n, v in snap["objects"].items():
            if v is None:
                lines.append(f"- **{n}**: gone")
                continue
            lines.append(f"- **{n}**: label `{v['label']}`, finalizers {v['finalizers']}, Ready {v['ready']} "
                         f"({v['ready_reason']}: {v['ready_message'][:100]}), artifact `{v['artifact_url']}`")
        lines.append(f"- files in the main storage: {snap['files_main']}")
        lines.append(f"- files in the lane's storage: {snap['files_lane']}")
        cur = snap["consumer_current"]
        lines.append(f"- consumer GET of ready's status.artifact.url: {cur}")
        for prev in snap["consumer_previous"]:
            lines.append(f"- consumer GET of an earlier URL: {prev}")
        for n in NAMES:
            w = snap["writes"][n]
            if w:
                lines.append(f"- writes to {n} (t, verb, subresource, User-Agent, code): {w}")
            for who in ("main", "lane"):
                ll = snap[f"log_{who}"][n]
                if ll:
                    shown = ll[:6] + ([("…", "", f"{len(ll) - 8} more")] + ll[-2:] if len(ll) > 8 else ll[6:])
                    lines.append(f"- {who} instance's log about {n}: {shown}")
        if snap["tarpit"]:
            lines.append(f"- tarpit connections: {snap['tarpit']}")
        lines.append("")

    # Checks: what deploy/lanes/README.md states, as observed here.
    checks = []

    def check(what, ok, detail=""):
        checks.append((what, bool(ok), detail))

    s1, s2, s3, s4, s5 = s
    lane_ready_t = first(tl, "ready", "main->lane", lambda v: (v["artifact_url"] or "").startswith(f"http://{lane_addr}/"))
    main_ready_t = first(tl, "ready", "lane->main", lambda v: (v["artifact_url"] or "").startswith(f"http://{main_addr}/"))
    check("the two instances hold different Leases", len({x["name"] for x in r["leases"]}) >= 2,
          ", ".join(x["name"] for x in r["leases"]))
    check("main -> lane: ready's artifact URL moves to the lane's storage",
          lane_ready_t is not None, f"at t = {lane_ready_t} ({lane_ready_t - r['t_move_to_lane']:.1f} s after the label)"
          if lane_ready_t else "")
    check("lane -> main: ready's artifact URL moves back to the main storage",
          main_ready_t is not None, f"at t = {main_ready_t} ({main_ready_t - r['t_move_to_main']:.1f} s after the label)"
          if main_ready_t else "")
    check("the finalizer stays through both moves",
          all(x["objects"][n] is None or x["objects"][n]["finalizers"] for x in s[:4] for n in x["objects"]))
    for d, t_move in (("main->lane", r["t_move_to_lane"]), ("lane->main", r["t_move_to_main"])):
        gone = first(tl, "ready", d, lambda v: not v["artifact_url"])
        back = first(tl, "ready", d, lambda v: v["artifact_url"] and v["ready"] == "True")
        check(f"{d}: ready has no status.artifact and Ready=Unknown until the new instance has cloned it, "
              "then Ready again", gone is not None and back is not None and back - t_move < 10,
              f"artifact gone at t = {gone}, Ready with an artifact at t = {back}")
    gone = first(tl, "stale", "main->lane", lambda v: not v["artifact_url"])
    check("main -> lane with its host down: stale's status.artifact is removed at once",
          gone is not None and gone - r["t_move_to_lane"] < 5, f"at t = {gone}")
    check("… and it has none while in the lane (host still down)",
          s2["objects"]["stale"]["artifact_url"] is None and s3["objects"]["stale"]["artifact_url"] is None,
          f"Ready {s2['objects']['stale']['ready']}: {s2['objects']['stale']['ready_message'][:80]}")
    check("… nor after moving back to main, whose storage still held its file",
          s4["objects"]["stale"]["artifact_url"] is None, str([f for f in s4["files_main"] if "/stale/" in f]))
    check("… while the main instance's old URL for it still answers 200",
          any(p.get("status") == 200 and "/stale/" in p["url"] for p in s2["consumer_previous"]))
    check("back in main at a newer revision: main's garbage collection removed its file from before "
          "the move (that URL answers 404)", s4["consumer_previous"][0].get("status") == 404,
          str(s4["consumer_previous"][0]))
    check("a consumer gets the artifact from status.artifact.url after each move",
          all((x["consumer_current"] or {}).get("status") == 200 for x in (s2, s3, s4)))
    check("the main instance's old artifact is still served after the move to the lane",
          s2["consumer_previous"] and s2["consumer_previous"][0].get("status") == 200)
    ready_main_files_after_move = [f for f in s2["files_main"] if "/ready/" in f]
    check("the main instance keeps its artifact file while the object is in the lane",
          ready_main_files_after_move and all(f in s3["files_main"] for f in ready_main_files_after_move),
          str(ready_main_files_after_move))
    lane_files_back = [f for f in s4["files_lane"] if "/ready/" in f]
    check("the lane keeps its artifact files after the object went back to main", lane_files_back, str(lane_files_back))
    check("deleting the object (in main) leaves the lane's files for it",
          [f for f in s5["files_lane"] if "/ready/" in f], str([f for f in s5["files_lane"] if "/ready/" in f]))
    check("deleting the object (in main) removes the main instance's files for it",
          not [f for f in s5["files_main"] if "/ready/" in f], str([f for f in s5["files_main"] if "/ready/" in f]))
    # Who writes the status of the hanging one after the move, and when.
    for step, snap, old, new in (("main -> lane", s2, "source-controller", "source-controller-far"),
                                 ("lane -> main", s4, "source-controller-far", "source-controller")):
        t_move = r["t_move_to_lane"] if step == "main -> lane" else r["t_move_to_main"]
        w = [x for x in snap["writes"]["hanging"] if x[2] == "status"]
        old_w = [x[0] for x in w if x[3] == old]
        new_w = [x[0] for x in w if x[3] == new]
        check(f"{step}: hanging: the new instance writes its status",
              new_w, f"first at t = {min(new_w) if new_w else None} ({(min(new_w) - t_move) if new_w else float('nan'):.1f} s after the label)")
        late = [t for t in old_w if t - t_move > 5]
        check(f"{step}: hanging: the old instance's attempt runs on to spec.timeout, then it writes the "
              "status of an object it no longer watches", late,
              f"at t = {late} ({(late[0] - t_move) if late else float('nan'):.1f} s after the label)")
        lines.append(f"- {step}, hanging: status writes by the old instance at t = {old_w}, by the new one at t = {new_w[:6]}")
        for n in ("ready", "missing"):
            w = [x for x in snap["writes"][n] if x[2] == "status"]
            lines.append(f"- {step}, {n}: status writes by the old instance at t = {[x[0] for x in w if x[3] == old]}, "
                         f"by the new one at t = {[x[0] for x in w if x[3] == new][:6]}")
    lines.append("")
    lines.append("## Checks")
    lines.append("")
    for what, ok, detail in checks:
        lines.append(f"- {'PASS' if ok else 'FAIL'}: {what}{': ' + detail if detail else ''}")
    lines.append("")
    return "\n".join(lines), [c for c in checks if not c[1]]


if __name__ == "__main__":
    sys.exit(main())
