#!/usr/bin/env python3
"""Talks to the lab's kube-apiserver as the platform and as an observer.

  driver.py populate  create the project namespaces and their GitRepositories
  driver.py webhook   register fluxgate's mutating webhook by URL
  driver.py sample    create the probe GitRepositories on schedule and sample the cluster and
                      source-controller's process until the run ends
  driver.py lane-check  create a far-host GitRepository with dryRun=All (through the webhook)
                      and check the label the webhook gave it

Connection: --api URL and --pki DIR (ca.crt, admin.crt, admin.key of the lab control plane).
"""

import argparse
import base64
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request

GROUP = "source.toolkit.fluxcd.io"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Api:
    def __init__(self, url, pki):
        self.url = url.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))

    def request(self, method, path, body=None, timeout=20):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
            return json.load(r)

    def create(self, path, body, attempts=3):
        """POST; an object that already exists is fine (re-runs of a step, or an earlier attempt
        that timed out after the API server had stored it). A timeout is tried again, at most
        `attempts` times in all: on a loaded machine one slow answer must not end a run."""
        for attempt in range(attempts):
            try:
                return self.request("POST", path, body)
            except urllib.error.HTTPError as e:
                if e.code == 409:
                    return None
                raise RuntimeError(f"POST {path}: {e.code} {e.read()[:300]!r}") from e
            except (TimeoutError, urllib.error.URLError):
                if attempt == attempts - 1:
                    raise
                time.sleep(1)


def namespace(api, name):
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def gitrepository(name, ns, url, interval, timeout, project, annotations=None, labels=None):
    spec = {"interval": interval, "url": url, "ref": {"branch": "main"}}
    if timeout:
        spec["timeout"] = timeout
    metadata = {"name": name, "namespace": ns,
                "labels": {"platform.example.com/project": project, **(labels or {})}}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": f"{GROUP}/v1", "kind": "GitRepository", "metadata": metadata, "spec": spec}


def healthy_indices(total, healthy):
    """Healthy projects spread evenly among the failing ones, as on the platform."""
    return {int(j * total / healthy) + 1 for j in range(healthy)}


def create_project(api, i, url, args, annotations=None, labels=None):
    ns = f"proj-{i:03d}"
    namespace(api, ns)
    obj = gitrepository(f"project-{i:03d}", ns, url, args.repo_interval, args.timeout, f"{i:03d}",
                        annotations, labels)
    api.create(f"/apis/{GROUP}/v1/namespaces/{ns}/gitrepositories", obj)
    return ns


def cmd_populate(api, args):
    good = healthy_indices(args.total, args.healthy)
    failing_annotations = dict(kv.split("=", 1) for kv in args.failing_annotation)
    failing_labels = dict(kv.split("=", 1) for kv in args.failing_label)
    t0 = time.time()
    failing = []
    for i in range(1, args.total + 1):
        if i in good:
            create_project(api, i, f"{args.healthy_url}/platform/proj-{i:03d}.git", args)
        else:
            url = f"{args.failing_url}/example-org/proj-{i:03d}.git"
            create_project(api, i, url, args, failing_annotations, failing_labels)
            failing.append(f"example-org/proj-{i:03d}.git")
    # failing_repos: the far-host repositories' paths on the Git server (for the committer).
    print(json.dumps({"created": args.total, "failing": args.total - len(good),
                      "seconds": round(time.time() - t0, 2), "failing_repos": failing}))


def cmd_webhook(api, args):
    with open(args.ca, "rb") as f:
        ca = base64.b64encode(f.read()).decode()
    body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "fluxgate"},
        "webhooks": [{
            "name": "gitrepositories.fluxgate.io",
            "clientConfig": {"url": args.url, "caBundle": ca},
            "rules": [{
                "apiGroups": [GROUP], "apiVersions": ["*"], "resources": ["gitrepositories"],
                "operations": ["CREATE"], "scope": "Namespaced",
            }],
            # Project namespaces only, as the platform would scope it.
            "namespaceSelector": {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "NotIn",
                "values": ["fluxgate", "flux-system", "kube-system"],
            }]},
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded",
            "matchPolicy": "Equivalent",
            "admissionReviewVersions": ["v1"],
        }],
    }
    api.create("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", body)


def cmd_lane_check(api, args):
    """A GitRepository the platform creates after the lane rule, created with dryRun=All: the
    API server runs the mutating webhook and returns the object as it would store it."""
    obj = gitrepository("lane-check", args.namespace, args.url, "1m", "", "lane-check")
    got = api.request("POST", f"/apis/{GROUP}/v1/namespaces/{args.namespace}/gitrepositories?dryRun=All", obj)
    labels = got["metadata"].get("labels") or {}
    print(json.dumps({"url": args.url, "labels": labels, "timeout": got["spec"].get("timeout")}))
    if labels.get(args.key) != args.expect:
        print(f"lane-check: {args.key}={labels.get(args.key)!r}, expected {args.expect!r}", file=sys.stderr)
        return 1
    return 0


def proc_sample(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        rss = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        return cpu, rss
    except (OSError, IndexError, ValueError):
        return None, None


def condition(obj, kind):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return None


def url_host(url):
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0].lower()


def summarise(items):
    s = {"total": len(items), "unobserved": 0, "no_conditions": 0, "ready": 0, "failing": 0,
         "suspended": 0, "archived": 0, "quarantined": 0, "laned": 0, "sharded": 0, "hosts": {}}
    for o in items:
        # Per Git host: how many, Ready, with an artifact (served to consumers even when the
        # latest fetch failed), quarantined by fluxgate's breaker.
        h = s["hosts"].setdefault(url_host((o.get("spec") or {}).get("url", "")),
                                  {"total": 0, "ready": 0, "artifact": 0, "quarantined": 0,
                                   "laned": 0, "sharded": 0})
        h["total"] += 1
        labels = (o.get("metadata") or {}).get("labels") or {}
        # In a host lane (Flux's shard label), and moved there by fluxgate's breaker.
        if labels.get("sharding.fluxcd.io/key"):
            h["sharded"] += 1
            s["sharded"] += 1
        if labels.get("fluxgate.io/laned") == "true":
            h["laned"] += 1
            s["laned"] += 1
        if (o.get("status") or {}).get("artifact"):
            h["artifact"] += 1
        if ((o.get("metadata") or {}).get("labels") or {}).get("fluxgate.io/quarantined") == "true":
            h["quarantined"] += 1
            s["quarantined"] += 1
        st = o.get("status") or {}
        if st.get("observedGeneration", -1) == -1:
            s["unobserved"] += 1
        if not st.get("conditions"):
            s["no_conditions"] += 1
        r = condition(o, "Ready")
        if r and r.get("status") == "True":
            s["ready"] += 1
            h["ready"] += 1
        elif r and r.get("status") == "False":
            s["failing"] += 1
        if (o.get("spec") or {}).get("suspend"):
            s["suspended"] += 1
        if ((o.get("metadata") or {}).get("labels") or {}).get("fluxgate.io/archived") == "true":
            s["archived"] += 1
    return s


def artifact_revisions(items):
    """Each GitRepository's artifact: name -> (revision, url), or None without one."""
    out = {}
    for o in items:
        a = (o.get("status") or {}).get("artifact")
        key = f"{o['metadata']['namespace']}/{o['metadata']['name']}"
        out[key] = (a.get("revision"), a.get("url")) if a else None
    return out


def cmd_sample(api, args):
    start = args.start or time.time()
    end = start + args.duration
    schedule = [float(x) for x in args.probes.split(",")] if args.probes else []
    created = {}
    seen = {}
    out = open(args.out, "a", buffering=1)
    n = 0
    # Bounded: one iteration per --sample-interval until the run's end, plus the final dump.
    while True:
        now = time.time()
        if now >= end:
            break
        for k, at in enumerate(schedule):
            i = args.first_probe + k
            if i not in created and now - start >= at:
                base = args.probe_url or args.healthy_url
                create_project(api, i, f"{base}/{args.probe_path}/proj-{i:03d}.git", args)
                created[i] = time.time()
                out.write(json.dumps({"t": created[i] - start, "event": "probe_created",
                                      "name": f"proj-{i:03d}/project-{i:03d}"}) + "\n")
        try:
            items = api.request("GET", f"/apis/{GROUP}/v1/gitrepositories")["items"]
            summary = summarise(items)
            # Every change of an artifact (a new revision, or a new URL: another controller's
            # storage) as an event; with a sample every 5 s and a commit per repository at most
            # every --commit-every seconds, none is missed.
            for key, art in artifact_revisions(items).items():
                if art is not None and seen.get(key) != art:
                    out.write(json.dumps({"t": round(time.time() - start, 3), "event": "artifact",
                                          "name": key, "revision": art[0], "url": art[1]}) + "\n")
                seen[key] = art
            probes = {}
            for o in items:
                ns = o["metadata"]["namespace"]
                if int(ns.split("-")[1]) >= args.first_probe:
                    r = condition(o, "Ready")
                    probes[ns] = r.get("status") if r else None
        except (OSError, RuntimeError, urllib.error.URLError) as e:
            summary, probes = {"error": str(e)}, {}
        # One or more source-controller processes (a lane's too): CPU and RSS summed.
        cpu, rss = None, None
        for pid in args.pid:
            c, r = proc_sample(pid)
            if c is not None:
                cpu, rss = (cpu or 0) + c, (rss or 0) + r
        with open("/proc/loadavg") as f:
            load1 = float(f.read().split()[0])
        out.write(json.dumps({"t": round(now - start, 3), "cluster": summary, "probes": probes,
                              "sc_cpu_seconds": cpu, "sc_rss_kib": rss, "load1": load1}) + "\n")
        n += 1
        time.sleep(max(0.0, min(args.sample_interval - (time.time() - now), end - time.time())))
    for attempt in range(3):
        try:
            items = api.request("GET", f"/apis/{GROUP}/v1/gitrepositories")
            break
        except (TimeoutError, urllib.error.URLError):
            if attempt == 2:
                raise
            time.sleep(1)
    with open(args.final, "w") as f:
        json.dump(items, f)
    print(json.dumps({"samples": n, "probes_created": len(created)}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--api", required=True)
    p.add_argument("--pki", required=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("populate", "sample"):
        s = sub.add_parser(name)
        s.add_argument("--healthy-url", required=True)
        s.add_argument("--repo-interval", default="1m", help="spec.interval of every GitRepository")
        s.add_argument("--timeout", default="", help="spec.timeout as the platform sets it (empty: none)")
        if name == "populate":
            s.add_argument("--failing-url", required=True)
            s.add_argument("--failing-annotation", action="append", default=[], metavar="KEY=VALUE",
                           help="an annotation on every failing GitRepository (repeatable)")
            s.add_argument("--failing-label", action="append", default=[], metavar="KEY=VALUE",
                           help="a label on every failing GitRepository (repeatable)")
            s.add_argument("--total", type=int, default=130)
            s.add_argument("--healthy", type=int, default=17)
        else:
            s.add_argument("--pid", type=int, action="append", required=True,
                           help="source-controller's pid (repeatable: a lane's instance too)")
            s.add_argument("--start", type=float, default=0, help="unix time of t=0")
            s.add_argument("--duration", type=float, required=True)
            s.add_argument("--sample-interval", type=float, default=5)
            s.add_argument("--probes", default="", help="seconds after t=0, comma-separated")
            s.add_argument("--first-probe", type=int, default=131)
            s.add_argument("--probe-url", default="",
                           help="Git server of the new GitRepositories (default: --healthy-url)")
            s.add_argument("--probe-path", default="platform", help="their path prefix on it")
            s.add_argument("--out", required=True)
            s.add_argument("--final", required=True)
    w = sub.add_parser("webhook")
    w.add_argument("--url", required=True)
    w.add_argument("--ca", required=True)
    c = sub.add_parser("lane-check")
    c.add_argument("--url", required=True, help="a far-host repository URL")
    c.add_argument("--namespace", required=True)
    c.add_argument("--key", default="sharding.fluxcd.io/key")
    c.add_argument("--expect", required=True, help="the label value the webhook must set")
    args = p.parse_args()
    api = Api(args.api, args.pki)
    cmds = {"populate": cmd_populate, "webhook": cmd_webhook, "sample": cmd_sample, "lane-check": cmd_lane_check}
    return cmds[args.cmd](api, args)


if __name__ == "__main__":
    sys.exit(main())
