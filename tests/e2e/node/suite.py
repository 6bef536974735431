#!/usr/bin/env python3
"""fluxgate installed for real on the test node (tests/e2e/node.sh), as the README says:

  install        `kubectl apply -k` of deploy/ (image replaced only): both replicas Ready
                 through their probes, running as 65532 on a read-only root, the bootstrap's
                 caBundle, a GitRepository patched through the Service, /metrics from a Pod IP
  rollout        `kubectl rollout restart` while GitRepositories are created: every create
                 succeeds and is patched; then two evictions at once: the PDB refuses the second
  proxy          the real source-controller in flux-system; fluxgate given --https-proxy; after a
                 restart the running container has HTTPS_PROXY/NO_PROXY, still reaches the API
                 server, and a GitRepository on the host's Git server becomes Ready through the proxy
  components     deploy/monitoring and deploy/cert-manager built and applied (with their CRDs)

Run by tests/e2e/node-run.sh, which brings the node up and loads the images. Every request loop
is bounded in count and time; all traffic goes to 127.0.0.1 or the node's own Pod bridge.
Ends with "node: N passed, M failed"; exits non-zero on any failure.
"""

import base64
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from urllib.parse import urlsplit

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
KUBECTL = os.environ["FLUXGATE_E2E_KUBECTL"]
KUBECONFIG = os.environ["FLUXGATE_E2E_KUBECONFIG"]
CP_DIR = os.environ["FLUXGATE_E2E_DIR"]
NODE_DIR = os.environ["FLUXGATE_NODE_DIR"]
GATEWAY = os.environ["FLUXGATE_NODE_GATEWAY"]
CTR = os.environ["FLUXGATE_NODE_CTR"].split()
APISERVER = os.environ["FLUXGATE_E2E_APISERVER_URL"]
FIGURES = {}


def log(msg):
    print(f"[node-suite] {msg}", file=sys.stderr, flush=True)


def kubectl(*args, input=None, check=True, timeout=240):
    p = subprocess.run([KUBECTL, f"--kubeconfig={KUBECONFIG}", *args], input=input,
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {p.stderr.strip()}")
    return p.stdout


def kjson(*args):
    return json.loads(kubectl(*args, "-o", "json"))


class Api:
    """A small HTTPS client of the kube-apiserver as the admin user (one connection per thread)."""

    def __init__(self):
        u = urlsplit(APISERVER)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=os.path.join(CP_DIR, "pki", "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(CP_DIR, "pki", "admin.crt"),
                                 os.path.join(CP_DIR, "pki", "admin.key"))
        self.local = threading.local()

    def request(self, method, path, body=None):
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=30)
                self.local.conn = conn
            try:
                conn.request(method, path, body=json.dumps(body) if body is not None else None,
                             headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                return r.status, json.loads(data) if data else None
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise


API = Api()


def wait_for(what, fn, timeout=180, interval=1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - shown if it never succeeds
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def gitrepository(name, ns, url="https://example.invalid/repo.git", **spec):
    return {"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"url": url, "interval": "10m", **spec}}


def patched(obj):
    return (obj["spec"].get("timeout") == "5m"
            and "reconcile.fluxcd.io/requestedAt" in (obj["metadata"].get("annotations") or {}))


def create_namespace(name):
    status, body = API.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status in (201, 409), (status, body)


def running_pid(pod, ns, container):
    """Host pid of a running container of a Pod, through the node's containerd."""
    p = kjson("-n", ns, "get", "pod", pod)
    for cs in p["status"].get("containerStatuses") or []:
        if cs["name"] == container and cs.get("containerID", "").startswith("containerd://"):
            cid = cs["containerID"].split("//", 1)[1]
            out = subprocess.run([*CTR, "tasks", "ls"], capture_output=True, text=True, check=True).stdout
            for line in out.splitlines()[1:]:
                f = line.split()
                if f and f[0] == cid:
                    return int(f[1])
    raise AssertionError(f"no running task for {ns}/{pod}/{container}")


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def root_mount_options(pid):
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == "/":
                return fields[5].split(",")
    raise AssertionError("no root mount")


def environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        return dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if b"=" in e)


def fluxgate_pods():
    pods = kjson("-n", "fluxgate", "get", "pods", "-l", "app.kubernetes.io/name=fluxgate")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


# --------------------------------------------------------------------------------------------


def test_install():
    overlay = os.path.join(REPO, "tests", "e2e", "node")
    start = time.monotonic()
    kubectl("apply", "-k", overlay)
    kubectl("-n", "fluxgate", "rollout", "status", "deployment/fluxgate", "--timeout=240s", timeout=260)
    # `rollout status` can return a moment before the kubelet's last status write is visible.
    def both_ready():
        pods = fluxgate_pods()
        ok = len(pods) == 2 and all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
            and all(cs["ready"] for cs in p["status"].get("containerStatuses") or [{"ready": False}])
            for p in pods)
        return pods if ok else None
    pods = wait_for("both replicas Ready", both_ready, timeout=60, interval=0.5)
    FIGURES["install_to_ready_s"] = round(time.monotonic() - start, 1)
    for p in pods:
        assert p["spec"]["containers"][0]["image"] == "ghcr.io/fluxgate/fluxgate:e2e"
        cs = p["status"]["containerStatuses"][0]
        assert cs["restartCount"] == 0, cs
        pid = running_pid(p["metadata"]["name"], "fluxgate", "fluxgate")
        st = proc_status(pid)
        assert st["Uid"].split()[:2] == ["65532", "65532"], st["Uid"]
        assert st["Gid"].split()[:2] == ["65532", "65532"], st["Gid"]
        assert st["CapEff"] == "0000000000000000", st["CapEff"]
        assert "ro" in root_mount_options(pid), "root filesystem is not read-only"
        log(f"pod {p['metadata']['name']} {p['status']['podIP']}: Ready, uid 65532, read-only root, no capabilities")

    # The certificate bootstrap, inside the Pods, wrote the caBundle of both webhooks.
    mwc = kjson("get", "mutatingwebhookconfiguration", "fluxgate")
    bundles = {w["name"]: w["clientConfig"].get("caBundle") for w in mwc["webhooks"]}
    assert all(bundles.values()), f"caBundle missing: {list(bundles)}"
    secret = kjson("-n", "fluxgate", "get", "secret", "fluxgate-tls")
    ca = base64.b64decode(bundles["gitrepositories.fluxgate.io"]).decode()
    assert "BEGIN CERTIFICATE" in ca
    assert any(base64.b64decode(v).decode(errors="replace").strip() in ca
               for v in secret["data"].values() if "BEGIN CERTIFICATE" in base64.b64decode(v).decode(errors="replace")), \
        "caBundle is not the CA kept in Secret fluxgate/fluxgate-tls"

    # A GitRepository created through the API is patched by a Pod behind the Service.
    create_namespace("e2e-node-install")
    status, obj = API.request("POST", "/apis/source.toolkit.fluxcd.io/v1/namespaces/e2e-node-install/gitrepositories",
                              gitrepository("first", "e2e-node-install", timeout="30s", suspend=True))
    assert status == 201, (status, obj)
    assert patched(obj) and obj["spec"]["suspend"] is False, obj["spec"]

    # /metrics from each Pod IP.
    for p in pods:
        ip = p["status"]["podIP"]
        conn = http.client.HTTPConnection(ip, 8080, timeout=10)
        conn.request("GET", "/metrics")
        r = conn.getresponse()
        text = r.read().decode()
        assert r.status == 200, r.status
        assert "fluxgate_" in text, text[:200]
        admissions = [line for line in text.splitlines() if line.startswith("fluxgate_admission")]
        log(f"/metrics from {ip}: {len(text.splitlines())} lines, {len(admissions)} admission series")


def test_rollout():
    ns = "e2e-node-rollout"
    create_namespace(ns)
    results = []
    stop = threading.Event()

    def creator():
        api = Api()
        i = 0
        deadline = time.monotonic() + 300
        while not stop.is_set() and i < 3000 and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                status, obj = api.request("POST", f"/apis/source.toolkit.fluxcd.io/v1/namespaces/{ns}/gitrepositories",
                                          gitrepository(f"r-{i:04d}", ns))
                results.append((i, status, status == 201 and patched(obj), time.monotonic() - t0))
            except Exception as e:  # noqa: BLE001 - counted as a failed create
                results.append((i, repr(e), False, time.monotonic() - t0))
            i += 1
            time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))

    before = {p["metadata"]["name"] for p in fluxgate_pods()}
    th = threading.Thread(target=creator)
    th.start()
    try:
        time.sleep(3)
        t0 = time.monotonic()
        kubectl("-n", "fluxgate", "rollout", "restart", "deployment/fluxgate")
        kubectl("-n", "fluxgate", "rollout", "status", "deployment/fluxgate", "--timeout=240s", timeout=260)
        rollout_s = time.monotonic() - t0
        # The old Pods' shutdown (5 s not ready, then a 20 s drain) outlasts the rollout status.
        wait_for("old Pods gone", lambda: not (before & {p["metadata"]["name"] for p in kjson(
            "-n", "fluxgate", "get", "pods", "-l", "app.kubernetes.io/name=fluxgate")["items"]}), timeout=90)
        gone_s = time.monotonic() - t0
        time.sleep(3)

        # Two evictions at once while the creates go on: the PDB (minAvailable 1) lets one through.
        # First the disruption controller must have counted both new replicas healthy.
        wait_for("PDB fluxgate allowing one disruption", lambda: (
            (st := kjson("-n", "fluxgate", "get", "pdb", "fluxgate").get("status", {}))
            .get("currentHealthy") == 2 and st.get("disruptionsAllowed") == 1), timeout=60)
        pods = fluxgate_pods()
        assert len(pods) == 2
        codes = []
        for p in pods:
            name = p["metadata"]["name"]
            status, body = API.request("POST", f"/api/v1/namespaces/fluxgate/pods/{name}/eviction",
                                       {"apiVersion": "policy/v1", "kind": "Eviction",
                                        "metadata": {"name": name, "namespace": "fluxgate"}})
            codes.append(status)
        assert sorted(codes) == [201, 429], f"evictions answered {codes}, expected one 201 and one 429"
        kubectl("-n", "fluxgate", "rollout", "status", "deployment/fluxgate", "--timeout=240s", timeout=260)
        wait_for("2 Ready replicas", lambda: len([p for p in fluxgate_pods() if all(
            c["ready"] for c in p["status"].get("containerStatuses") or [{"ready": False}])]) == 2, timeout=120)
        time.sleep(5)
    finally:
        stop.set()
        th.join()
    failed = [r for r in results if r[1] != 201]
    unpatched = [r for r in results if r[1] == 201 and not r[2]]
    latencies = sorted(r[3] for r in results)
    FIGURES["rollout"] = {
        "creates": len(results), "failed": len(failed), "unpatched": len(unpatched),
        "rollout_status_s": round(rollout_s, 1), "old_pods_gone_s": round(gone_s, 1),
        "create_p50_ms": round(1000 * latencies[len(latencies) // 2]),
        "create_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)]),
        "create_max_ms": round(1000 * latencies[-1]), "evictions": codes,
    }
    log(f"rollout: {FIGURES['rollout']}")
    assert len(results) >= 100, f"only {len(results)} creates"
    assert not failed, f"{len(failed)} creates failed: {failed[:5]}"
    assert not unpatched, f"{len(unpatched)} creates not patched: {[r[0] for r in unpatched[:20]]}"
    # And what the API server stored is patched too.
    items = kjson("-n", ns, "get", "gitrepositories")["items"]
    assert len(items) == len(results)
    assert all(patched(o) for o in items)


def make_git_repo(root):
    bare = os.path.join(root, "fluxgate-e2e.git")
    work = os.path.join(root, "work")
    env = {**os.environ, "GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@example.invalid",
           "GIT_COMMITTER_NAME": "e2e", "GIT_COMMITTER_EMAIL": "e2e@example.invalid", "HOME": root}
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", bare], check=True, env=env)
    subprocess.run(["git", "init", "-q", "-b", "main", work], check=True, env=env)
    with open(os.path.join(work, "configmap.yaml"), "w") as f:
        f.write("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-git\n")
    subprocess.run(["git", "-C", work, "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", work, "commit", "-q", "-m", "first"], check=True, env=env)
    subprocess.run(["git", "-C", work, "push", "-q", bare, "main"], check=True, env=env)


def free_port(host="127.0.0.1"):
    import socket
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def condition(obj, kind="Ready"):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return c
    return None


def test_proxy():
    tmp = tempfile.mkdtemp(prefix="fluxgate-node-git-")
    procs = []
    try:
        make_git_repo(tmp)
        git_port, proxy_port = free_port(), free_port(GATEWAY)
        netlab = os.path.join(REPO, "lab", "netlab.py")
        logs = os.path.join(NODE_DIR, "logs")
        # The Git server stays on loopback; only the proxy listens on the Pod bridge, and it
        # reaches nothing but the Git server.
        procs.append(subprocess.Popen([sys.executable, netlab, "git", "--port", str(git_port), "--root", tmp,
                                       "--log", os.path.join(logs, "git.csv"), "--max-seconds", "900"]))
        procs.append(subprocess.Popen([sys.executable, netlab, "proxy", "--host", GATEWAY, "--port", str(proxy_port),
                                       "--map", f"git.fluxgate-e2e.test:80=127.0.0.1:{git_port}", "--only-mapped",
                                       "--log", os.path.join(logs, "proxy.csv"), "--max-seconds", "900"]))
        proxy_url = f"http://{GATEWAY}:{proxy_port}"

        # source-controller without the proxy first: it runs, and writes statuses.
        kubectl("apply", "-f", os.path.join(REPO, "tests", "e2e", "node", "source-controller.yaml"))
        kubectl("-n", "flux-system", "rollout", "status", "deployment/source-controller", "--timeout=180s", timeout=200)
        create_namespace("e2e-node-proxy")
        git_url = "http://git.fluxgate-e2e.test/fluxgate-e2e.git"
        status, obj = API.request("POST", "/apis/source.toolkit.fluxcd.io/v1/namespaces/e2e-node-proxy/gitrepositories",
                                  gitrepository("before-proxy", "e2e-node-proxy", url=git_url, interval="1m",
                                                ref={"branch": "main"}))
        assert status == 201, (status, obj)
        # No DNS in the Pods and no proxy yet: the clone fails, and the status says so.
        failed = wait_for("before-proxy's status (clone failing without the proxy)", lambda: (
            (c := condition(kjson("-n", "e2e-node-proxy", "get", "gitrepository", "before-proxy")))
            and c["status"] == "False" and c), timeout=120)
        log(f"before-proxy without the proxy: {failed['reason']}: {failed['message'][:120]}")

        # Enable the proxy in fluxgate (as a user would, in the Deployment's args) ...
        patch = [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": f"--https-proxy={proxy_url}"},
                 {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": f"--http-proxy={proxy_url}"}]
        kubectl("-n", "fluxgate", "patch", "deployment", "fluxgate", "--type=json", "-p", json.dumps(patch))
        kubectl("-n", "fluxgate", "rollout", "status", "deployment/fluxgate", "--timeout=240s", timeout=260)
        # ... then restart source-controller, whose new Pod gets the environment at creation.
        kubectl("-n", "flux-system", "rollout", "restart", "deployment/source-controller")
        kubectl("-n", "flux-system", "rollout", "status", "deployment/source-controller", "--timeout=180s", timeout=200)
        pods = [p for p in kjson("-n", "flux-system", "get", "pods", "-l", "app=source-controller")["items"]
                if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        pod = pods[0]["metadata"]["name"]
        env = environ(running_pid(pod, "flux-system", "manager"))
        for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "NO_PROXY", "no_proxy"):
            assert k in env, f"{k} missing from the running container's environment: {sorted(env)}"
        assert env["HTTPS_PROXY"] == proxy_url
        no_proxy = env["NO_PROXY"].split(",")
        assert "10.0.0.1" in no_proxy and ".svc" in no_proxy, no_proxy
        log(f"source-controller {pod}: HTTPS_PROXY={env['HTTPS_PROXY']} NO_PROXY={env['NO_PROXY']}")

        # Still reaching the API server: the old object's status is written again after a request.
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kubectl("-n", "e2e-node-proxy", "annotate", "--overwrite", "gitrepository", "before-proxy",
                f"reconcile.fluxcd.io/requestedAt={stamp}")
        # A new GitRepository on the host's Git server, reached through the proxy only.
        status, obj = API.request("POST", "/apis/source.toolkit.fluxcd.io/v1/namespaces/e2e-node-proxy/gitrepositories",
                                  gitrepository("through-proxy", "e2e-node-proxy", url=git_url, interval="1m",
                                                ref={"branch": "main"}))
        assert status == 201, (status, obj)
        t0 = time.monotonic()
        ready = wait_for("through-proxy Ready", lambda: (
            (c := condition(kjson("-n", "e2e-node-proxy", "get", "gitrepository", "through-proxy")))
            and c["status"] == "True" and c), timeout=180)
        FIGURES["proxy_clone_ready_s"] = round(time.monotonic() - t0, 1)
        log(f"through-proxy: {ready['reason']}: {ready['message'][:120]}")
        wait_for("before-proxy handled the new reconcile request", lambda: (
            kjson("-n", "e2e-node-proxy", "get", "gitrepository", "before-proxy").get("status", {})
            .get("lastHandledReconcileAt") == stamp), timeout=120)
        with open(os.path.join(logs, "proxy.csv")) as f:
            forwarded = [line for line in f if ",forward," in line and "git.fluxgate-e2e.test" in line]
        assert forwarded, "the proxy forwarded no request to the Git server"
        log(f"proxy forwarded {len(forwarded)} requests to the Git server")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def crds_from_module(module, version, prefix, names):
    """CRD files `names` under `prefix` of Go module module@version, from the module cache."""
    j = json.loads(subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"],
                                  capture_output=True, text=True, cwd=tempfile.gettempdir(),
                                  env={**os.environ, "GOWORK": "off", "GOFLAGS": "-mod=mod"}).stdout or "{}")
    import zipfile
    out = []
    zpath = j.get("Zip")
    assert zpath and os.path.exists(zpath), f"go mod download {module}@{version}: {j.get('Error')}"
    with zipfile.ZipFile(zpath) as z:
        for n in names:
            out.append(z.read(f"{module}@{version}/{prefix}/{n}").decode())
    return out


def test_components():
    # deploy/monitoring: the prometheus-operator CRDs it needs, from the operator's Go module.
    mon = crds_from_module("github.com/prometheus-operator/prometheus-operator", "v0.85.0",
                           "example/prometheus-operator-crd",
                           ["monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"])
    kubectl("apply", "--server-side", "-f", "-", input="\n---\n".join(mon))
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
    rendered = kubectl("kustomize", os.path.join(REPO, "deploy", "monitoring"))
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=rendered)
    sm = kjson("-n", "fluxgate", "get", "servicemonitors")["items"]
    pr = kjson("-n", "fluxgate", "get", "prometheusrules")["items"]
    assert sm and pr, (len(sm), len(pr))
    log(f"deploy/monitoring applied: {len(sm)} ServiceMonitor, {len(pr)} PrometheusRule")

    # deploy/cert-manager: cert-manager's CRDs from its Go module. cert-manager itself cannot be
    # built here (its main packages are in nested modules the module proxy has no versions of),
    # so no controller would ever issue the Secret: the whole variant is applied with
    # --dry-run=server (every object admitted and validated against the real CRD schemas), and
    # cert-manager's own objects (Issuers, Certificates) are applied for real.
    cm = crds_from_module("github.com/cert-manager/cert-manager", "v1.21.2", "deploy/crds",
                          ["cert-manager.io_certificates.yaml", "cert-manager.io_issuers.yaml"])
    kubectl("apply", "--server-side", "-f", "-", input="\n---\n".join(cm))
    kubectl("wait", "--for=condition=Established", "--timeout=60s",
            "crd/certificates.cert-manager.io", "crd/issuers.cert-manager.io")
    variant = os.path.join(REPO, "tests", "e2e", "node", "cert-manager")
    out = kubectl("apply", "--dry-run=server", "-k", variant)
    assert "deployment.apps/fluxgate configured (server dry run)" in out, out
    docs = kubectl("kustomize", variant)
    cm_docs = [d for d in docs.split("\n---\n") if "apiVersion: cert-manager.io/v1" in d]
    assert len(cm_docs) == 4, len(cm_docs)
    kubectl("apply", "-f", "-", input="\n---\n".join(cm_docs))
    certs = kjson("-n", "fluxgate", "get", "certificates")["items"]
    issuers = kjson("-n", "fluxgate", "get", "issuers")["items"]
    assert len(certs) == 2 and len(issuers) == 2, (len(certs), len(issuers))
    log(f"deploy/cert-manager: variant admitted by --dry-run=server; {len(certs)} Certificates, "
        f"{len(issuers)} Issuers stored")


TESTS = [("install", test_install), ("rollout", test_rollout), ("proxy", test_proxy),
         ("components", test_components)]


def main():
    only = set(sys.argv[1:])
    passed = failed = 0
    for name, fn in TESTS:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        try:
            fn()
            passed += 1
            log(f"ok {name} ({time.monotonic() - t0:.1f}s)")
        except Exception:  # noqa: BLE001 - reported, counted, and the next test runs
            failed += 1
            traceback.print_exc()
            log(f"FAILED {name} ({time.monotonic() - t0:.1f}s)")
    out = os.path.join(NODE_DIR, "figures.json")
    with open(out, "w") as f:
        json.dump(FIGURES, f, indent=2)
    log(f"figures: {json.dumps(FIGURES)}")
    print(f"node: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
