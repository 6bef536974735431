#!/usr/bin/env python3
"""Writes examples/gitrepositories-incident.json: a `kubectl get gitrepositories -A -o json` of a
cluster like the one in the incident. 130 GitRepositories, one per project namespace; 113 fail
(87%), mostly because github.com times out; 45 were never processed (observedGeneration -1),
5 of them new ones that are still waiting for source-controller. Times are relative to
2026-11-28T12:00:00Z, so

    fluxgate report -f examples/gitrepositories-incident.json --now 2026-11-28T12:00:00Z

is reproducible. Deterministic: re-running writes the same file.
"""

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
rng = random.Random(1042)


def ts(delta: timedelta) -> str:
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def uid(i: int) -> str:
    return f"6f1c{i:04x}-2b7e-4d1a-9c3e-{rng.getrandbits(48):012x}"


GITHUB_TIMEOUTS = [
    "failed to checkout and determine revision: unable to clone 'https://github.com/example-org/{name}': "
    "dial tcp 140.82.112.3:443: i/o timeout",
    "failed to checkout and determine revision: unable to clone 'https://github.com/example-org/{name}': "
    "context deadline exceeded",
    "failed to checkout and determine revision: unable to clone 'https://github.com/example-org/{name}': "
    "Get \"https://github.com/example-org/{name}/info/refs?service=git-upload-pack\": net/http: TLS handshake timeout",
]

# (count, kind) in order; names are project-NNNN, a few test/demo/tmp ones among them.
PLAN = (
    [("timeout_never", 31)]  # failing since creation: observedGeneration -1
    + [("timeout_after_success", 69)]  # worked once, then GitHub started timing out
    + [("dns", 4), ("auth", 4), ("not_found", 5)]
    + [("pending", 5), ("suspended", 3), ("ready", 9)]
)
TEST_NAMES = {3: "test-checkout", 17: "demo-landing", 41: "tmp-migration", 88: "test-payments",
              120: "demo-shop", 126: "tmp-experiment"}

items = []
index = 0
for kind, count in PLAN:
    for _ in range(count):
        index += 1
        number = 1000 + index
        name = TEST_NAMES.get(index, f"project-{number}")
        namespace = f"proj-{number}"
        host = "github.com"
        url = f"https://github.com/example-org/{name}"
        if kind == "dns":
            host = "git.corp.example"
            url = f"https://git.corp.example/platform/{name}.git"
        if kind == "ready" and index % 2 == 0:
            url = f"https://gitee.com/example-org/{name}.git"
        if kind == "auth" and index % 2 == 0:
            url = f"ssh://git@github.com/example-org/{name}"

        age_days = rng.uniform(2, 60) if kind != "pending" else 0
        created = timedelta(days=age_days, minutes=rng.randint(0, 600))
        if kind == "pending":
            created = timedelta(minutes=rng.randint(12, 95))
        generation = 1 if kind in ("pending", "timeout_never", "dns", "not_found") else rng.randint(1, 3)
        metadata = {
            "name": name,
            "namespace": namespace,
            "uid": uid(index),
            "resourceVersion": str(100000 + index * 37),
            "generation": generation,
            "creationTimestamp": ts(created),
            "labels": {"platform.example.com/project": str(number)},
            "annotations": {"reconcile.fluxcd.io/requestedAt": ts(created)},
        }
        spec = {
            "interval": "1m0s",
            "ref": {"branch": "main"},
            "timeout": "60s",
            "url": url,
        }
        if kind == "suspended":
            spec["suspend"] = True

        def condition(ctype, status, reason, message, since):
            return {"type": ctype, "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": ts(since), "observedGeneration": generation}

        status = {"observedGeneration": -1}
        if kind.startswith("timeout") or kind in ("dns", "auth", "not_found"):
            # When it started failing: between 20 minutes and 10 days ago, never before creation.
            since = min(created - timedelta(minutes=1),
                        timedelta(minutes=rng.randint(20, 10 * 24 * 60)))
            since = max(since, timedelta(minutes=5))
            if kind.startswith("timeout"):
                message = rng.choice(GITHUB_TIMEOUTS).format(name=name)
                reason = "GitOperationFailed"
            elif kind == "dns":
                message = (f"failed to checkout and determine revision: unable to clone '{url}': "
                           "dial tcp: lookup git.corp.example on 10.96.0.10:53: no such host")
                reason = "GitOperationFailed"
            elif kind == "auth":
                message = (f"failed to checkout and determine revision: unable to clone '{url}': "
                           "authentication required")
                reason = "AuthenticationFailed" if index % 2 == 0 else "GitOperationFailed"
            else:
                message = (f"failed to checkout and determine revision: unable to clone '{url}': "
                           "repository not found")
                reason = "GitOperationFailed"
            status["conditions"] = [
                condition("Reconciling", "True", "ProgressingWithRetry",
                          f"reconciliation in progress: {message[:60]}", since),
                condition("Ready", "False", reason, message, since),
                condition("FetchFailed", "True", reason, message, since),
            ]
            if kind == "timeout_after_success" or kind == "auth":
                last_artifact = since + timedelta(minutes=rng.randint(1, 300))
                status["observedGeneration"] = generation
                status["artifact"] = {
                    "path": f"gitrepository/{namespace}/{name}/{rng.getrandbits(40):010x}.tar.gz",
                    "url": f"http://source-controller.flux-system.svc.cluster.local./gitrepository/{namespace}/{name}/latest.tar.gz",
                    "revision": f"main@sha1:{rng.getrandbits(160):040x}",
                    "digest": f"sha256:{rng.getrandbits(256):064x}",
                    "lastUpdateTime": ts(last_artifact),
                    "size": rng.randint(2_000, 900_000),
                }
                status["conditions"].append(
                    condition("ArtifactInStorage", "True", "Succeeded",
                              "stored artifact for revision 'main@sha1:...'", last_artifact))
        elif kind == "ready":
            # Test repositories nobody touched for weeks; the rest updated recently.
            idle = timedelta(days=rng.uniform(8, 20)) if name.split("-")[0] in ("test", "demo", "tmp") \
                else timedelta(minutes=rng.randint(1, 50))
            idle = min(idle, created - timedelta(minutes=1))
            status["observedGeneration"] = generation
            status["conditions"] = [
                condition("Ready", "True", "Succeeded", "stored artifact for revision 'main@sha1:...'", idle),
                condition("ArtifactInStorage", "True", "Succeeded", "stored artifact", idle),
            ]
            status["artifact"] = {
                "path": f"gitrepository/{namespace}/{name}/latest.tar.gz",
                "url": f"http://source-controller.flux-system.svc.cluster.local./gitrepository/{namespace}/{name}/latest.tar.gz",
                "revision": f"main@sha1:{rng.getrandbits(160):040x}",
                "digest": f"sha256:{rng.getrandbits(256):064x}",
                "lastUpdateTime": ts(idle),
                "size": rng.randint(2_000, 900_000),
            }
        elif kind == "suspended":
            status["observedGeneration"] = generation
            status["conditions"] = [condition("Ready", "False", "GitOperationFailed",
                                              "unable to clone: context deadline exceeded",
                                              timedelta(days=3))]
        # pending: only the CRD's default observedGeneration, no conditions.

        items.append({
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "GitRepository",
            "metadata": metadata,
            "spec": spec,
            "status": status,
        })

document = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}
out = Path(__file__).with_name("gitrepositories-incident.json")
out.write_text(json.dumps(document, indent=2) + "\n")
print(f"wrote {out} with {len(items)} GitRepositories")
