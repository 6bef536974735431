#!/usr/bin/env python3
"""Writes examples/gitrepositories-incident.json: `kubectl get gitrepositories -A -o json` of a
cluster in the incident fluxgate exists for.

The platform creates a namespace per user project (proj-*) and GitRepositories in it. HTTPS to
github.com from the cluster times out, projects were abandoned, and source-controller's two
workers spend their time on clones that never finish:

- 130 GitRepositories: 129 in 30 project namespaces, plus flux-system's own source.
- 113 failed (87%): 96 github.com timeouts, 5 auth, 5 not found, 4 DNS, 3 TLS.
- 45 never reconciled successfully (observedGeneration -1), 5 of them still without any
  condition (pending: never picked up), and 1 progressing on a new generation.
- 3 suspended, 8 ready (over SSH, which still works), 3 of those test/demo/tmp repositories
  without a new artifact for over a week.

Times are relative to 2026-11-28T12:00:00Z, so

    fluxgate report -f examples/gitrepositories-incident.json --now 2026-11-28T12:00:00Z

is reproducible. Deterministic: re-running writes the same file.
"""

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
rng = random.Random(20261128)

PROJECTS = [
    "atlas", "billing", "catalog", "checkout", "crm", "dataplane", "docs", "edge", "forecast",
    "gateway", "helpdesk", "identity", "insights", "inventory", "ledger", "logistics", "mobile",
    "notify", "onboarding", "payments", "pricing", "reports", "search", "shipping", "storefront",
    "support", "telemetry", "vault", "webshop", "wiki",
]
SUFFIXES = ["app", "config", "infra", "charts", "api", "web", "worker", "docs", "jobs"]


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ago(**delta) -> datetime:
    return NOW - timedelta(**delta)


def sha(bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def uid() -> str:
    h = sha(128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


# --- Which repositories exist: 129 spread over the project namespaces, a few test-like names.
repos = []  # (namespace, name)
counts = [1] * len(PROJECTS)
for _ in range(129 - len(PROJECTS)):
    counts[rng.randrange(len(PROJECTS))] += 1
for project, count in zip(PROJECTS, counts):
    suffixes = rng.sample(SUFFIXES, min(count, len(SUFFIXES)))
    names = [f"{project}-{s}" for s in suffixes]
    names += [f"{project}-svc-{i}" for i in range(count - len(names))]
    repos += [(f"proj-{project}", name) for name in names]

# --- What state each one is in. Kinds are assigned in this order over a shuffled list.
PLAN = (
    [("timeout_never", 30), ("timeout_after", 66)]
    + [("auth", 5), ("notfound_never", 3), ("notfound_after", 2), ("dns", 4), ("tls", 3)]
    + [("pending", 5), ("suspended", 3), ("progressing", 1), ("ready", 4), ("stale_test", 3)]
)
kinds = [kind for kind, n in PLAN for _ in range(n)]
assert len(kinds) == len(repos) == 129
rng.shuffle(repos)
TEST_PREFIXES = ["test", "demo", "tmp"]
test_like = 0
renamed = []
for (namespace, name), kind in zip(repos, kinds):
    project = namespace.removeprefix("proj-")
    if kind == "stale_test":
        name = f"{TEST_PREFIXES[test_like % 3]}-{project}"
        test_like += 1
    elif kind in ("timeout_after", "timeout_never") and rng.random() < 0.06:
        # Failing test repositories: the failing rule takes them first.
        name = f"{rng.choice(TEST_PREFIXES)}-{project}-{rng.choice(SUFFIXES)}"
    renamed.append((namespace, name, kind))
assert len({(n, m) for n, m, _ in renamed}) == len(renamed), "names must be unique"

TIMEOUTS = [
    "dial tcp 140.82.112.3:443: i/o timeout",
    "dial tcp 140.82.121.4:443: i/o timeout",
    "context deadline exceeded",
    "Get \"{url}/info/refs?service=git-upload-pack\": net/http: TLS handshake timeout",
]


def condition(kind, status, reason, message, when, generation):
    return {"lastTransitionTime": ts(when), "message": message, "observedGeneration": generation,
            "reason": reason, "status": status, "type": kind}


def artifact(namespace, name, when):
    revision = sha(160)
    return {
        "digest": f"sha256:{sha(256)}",
        "lastUpdateTime": ts(when),
        "path": f"gitrepository/{namespace}/{name}/{revision}.tar.gz",
        "revision": f"main@sha1:{revision}",
        "size": rng.randint(4_000, 900_000),
        "url": f"http://source-controller.flux-system.svc.cluster.local./gitrepository/{namespace}/{name}/{revision}.tar.gz",
    }


def stored(art):
    return f"stored artifact for revision '{art['revision']}'"


items = []


def add(namespace, name, kind, url, created, generation, spec_extra=None, labels=None):
    metadata = {
        "creationTimestamp": ts(created),
        "generation": generation,
        "labels": labels or {"platform.example.com/project": namespace.removeprefix("proj-")},
        "name": name,
        "namespace": namespace,
        "resourceVersion": str(rng.randint(1_000_000, 9_999_999)),
        "uid": uid(),
    }
    spec = {"interval": "1m0s", "ref": {"branch": "main"}, "timeout": "60s", "url": url}
    spec.update(spec_extra or {})
    status = {"observedGeneration": -1}
    g = generation
    first = created + timedelta(seconds=rng.randint(20, 900))  # the controller's first look

    def fail(reason, message, since, succeeded_at=None):
        conditions = []
        if succeeded_at is None:
            conditions.append(condition("Reconciling", "True", "ProgressingWithRetry",
                                        f"processing object: new generation 0 -> {g}", first, g))
        conditions += [condition("Ready", "False", reason, message, since, g),
                       condition("FetchFailed", "True", reason, message, since, g)]
        if succeeded_at is not None:
            succeeded_at = max(succeeded_at, first)
            art = artifact(namespace, name, succeeded_at)
            conditions.append(condition("ArtifactInStorage", "True", "Succeeded", stored(art),
                                        min(succeeded_at, first), g))
            status.update(observedGeneration=g, artifact=art)
        status["conditions"] = conditions

    clone = "failed to checkout and determine revision: unable to clone '{url}': {error}"
    if kind in ("timeout_never", "timeout_after"):
        error = rng.choice(TIMEOUTS).format(url=url)
        message = clone.format(url=url, error=error)
        if kind == "timeout_never":
            fail("GitOperationFailed", message, first)
        else:
            since = max(first + timedelta(hours=1), ago(minutes=rng.randint(40, 16 * 24 * 60)))
            fail("GitOperationFailed", message, since,
                 succeeded_at=since - timedelta(minutes=rng.randint(5, 3 * 24 * 60)))
    elif kind == "auth":
        message = clone.format(url=url, error="ssh: handshake failed: ssh: unable to authenticate, "
                               "attempted methods [none publickey], no supported methods remain")
        since = max(first + timedelta(hours=1), ago(hours=rng.randint(30, 400)))
        fail("GitOperationFailed", message, since, succeeded_at=since - timedelta(hours=2))
    elif kind == "notfound_never":
        fail("GitOperationFailed", clone.format(url=url, error="repository not found"), first)
    elif kind == "notfound_after":
        message = clone.format(url=url, error="couldn't find remote ref \"refs/heads/main\"")
        since = max(first + timedelta(hours=1), ago(days=rng.randint(3, 12)))
        fail("GitOperationFailed", message, since, succeeded_at=since - timedelta(days=1))
    elif kind == "dns":
        host = url.split("/")[2]
        message = clone.format(url=url, error=f"dial tcp: lookup {host} on 10.96.0.10:53: no such host")
        fail("GitOperationFailed", message, first)
    elif kind == "tls":
        message = clone.format(url=url, error="Get \"" + url + "/info/refs?service=git-upload-pack\": "
                               "tls: failed to verify certificate: x509: certificate signed by unknown authority")
        fail("GitOperationFailed", message, first)
    elif kind == "pending":
        pass  # only the CRD's default; source-controller never got to it
    elif kind == "suspended":
        message = clone.format(url=url, error="context deadline exceeded")
        fail("GitOperationFailed", message, ago(days=rng.randint(4, 9)),
             succeeded_at=ago(days=rng.randint(10, 20)))
    elif kind == "progressing":
        art = artifact(namespace, name, ago(hours=30))
        moment = ago(seconds=rng.randint(5, 50))
        message = f"processing object: new generation {g - 1} -> {g}"
        status.update(observedGeneration=g - 1, artifact=art, conditions=[
            condition("Reconciling", "True", "Progressing", message, moment, g),
            condition("Ready", "Unknown", "Progressing", "building artifact", moment, g),
            condition("ArtifactInStorage", "True", "Succeeded", stored(art), ago(hours=30), g - 1),
        ])
    elif kind in ("ready", "stale_test"):
        updated = ago(days=rng.randint(9, 40)) if kind == "stale_test" else ago(minutes=rng.randint(2, 600))
        updated = max(updated, first)
        art = artifact(namespace, name, updated)
        status.update(observedGeneration=g, artifact=art, conditions=[
            condition("Ready", "True", "Succeeded", stored(art), updated, g),
            condition("ArtifactInStorage", "True", "Succeeded", stored(art), first, g),
        ])
    else:
        raise ValueError(kind)

    if status.get("conditions"):
        metadata["finalizers"] = ["finalizers.fluxcd.io"]
    items.append({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                  "metadata": metadata, "spec": spec, "status": status})


# flux-system's own source, applied by the flux-system Kustomization.
add("flux-system", "flux-system", "ready", "ssh://git@github.com/example-platform/fleet",
    ago(days=210), 1, spec_extra={"secretRef": {"name": "flux-system"}, "interval": "10m0s"},
    labels={"kustomize.toolkit.fluxcd.io/name": "flux-system",
            "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})

for namespace, name, kind in renamed:
    spec_extra = None
    if kind == "dns":
        url = f"https://git.corp.example/{namespace.removeprefix('proj-')}/{name}.git"
    elif kind == "tls":
        url = f"https://gitlab.internal.example/{namespace.removeprefix('proj-')}/{name}.git"
    elif kind in ("auth", "notfound_never", "notfound_after", "ready", "stale_test", "progressing"):
        # Over SSH (port 22), which still gets through.
        url = f"ssh://git@github.com/example-{namespace.removeprefix('proj-')}/{name}"
        spec_extra = {"secretRef": {"name": f"{name}-deploy-key"}}
    else:
        url = f"https://github.com/example-{namespace.removeprefix('proj-')}/{name}"
    if kind == "pending":
        created = ago(minutes=rng.randint(12, 95))
    elif kind == "stale_test":
        created = ago(days=rng.randint(45, 180))
    elif kind == "timeout_never" and rng.random() < 0.5:
        created = ago(hours=rng.randint(2, 23))
    elif kind in ("timeout_never", "notfound_never", "dns", "tls"):
        # Created since the problems began, and never worked.
        created = ago(days=rng.randint(1, 30), minutes=rng.randint(0, 1439))
    else:
        created = ago(days=rng.randint(2, 180), minutes=rng.randint(0, 1439))
    generation = 1 if kind in ("pending", "timeout_never", "notfound_never", "dns", "tls") \
        else rng.randint(1, 4) + (1 if kind == "progressing" else 0)
    if kind == "suspended":
        spec_extra = {"suspend": True}
    add(namespace, name, kind, url, created, generation, spec_extra)

items.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
document = {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}
out = Path(__file__).with_name("gitrepositories-incident.json")
# Keys sorted and indented by 4, as kubectl prints them.
out.write_text(json.dumps(document, indent=4, sort_keys=True) + "\n")
print(f"wrote {out} with {len(items)} GitRepositories")
