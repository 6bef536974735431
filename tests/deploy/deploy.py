#!/usr/bin/env python3
"""Renders deploy/ and its variants with kustomize and checks what a cluster would get.

Run by tests/deploy/check.sh, which picks the kustomize command ($KUSTOMIZE, e.g. "kubectl
kustomize") and the Python with PyYAML and Debian's python3-kubernetes (whose models give the
Kubernetes field schema offline), and installs the linters: $KUBE_SCORE (required) and
$KUBE_LINTER (run when set; $KUBE_LINTER_MISSING says why it is not). Prints one line per check,
then "deploy: N passed, M failed" (", K skipped" when a linter could not be installed).
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import kubernetes.client as k8s
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE = shlex.split(os.environ.get("KUSTOMIZE", "kubectl kustomize"))
IMAGE = "ghcr.io/fluxgate/fluxgate:0.1.0"
SA = [{"kind": "ServiceAccount", "name": "fluxgate", "namespace": "fluxgate"}]
POD_LABELS = {"app.kubernetes.io/name": "fluxgate"}

KUBE_SCORE = os.environ.get("KUBE_SCORE", "")
KUBE_LINTER = os.environ.get("KUBE_LINTER", "")
# The Kubernetes version kube-score judges API versions against: the e2e control plane's minor.
KUBERNETES_VERSION = "v1.37"
# kube-score's optional checks that fluxgate meets and keeps meeting.
KUBE_SCORE_OPTIONAL = ["container-seccomp-profile", "container-ports-check"]

results = {"passed": 0, "failed": 0, "skipped": 0}


def check(name):
    """check(NAME)(fn, *args): runs one check, records and prints its result."""

    def run(fn, *args):
        try:
            fn(*args)
        except Exception as exc:  # an assertion or anything unexpected fails this check only
            results["failed"] += 1
            print(f"FAIL {name}")
            detail = str(exc) if isinstance(exc, AssertionError) else traceback.format_exc()
            for line in (detail or "assertion failed").splitlines():
                print(f"     {line}")
        else:
            results["passed"] += 1
            print(f"ok   {name}")

    return run


def skip(name, reason):
    results["skipped"] += 1
    print(f"skip {name}")
    for line in reason.splitlines():
        print(f"     {line}")


# --- rendering -----------------------------------------------------------------------------------
def kustomize(path):
    out = subprocess.run(KUSTOMIZE + [str(path)], capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(KUSTOMIZE)} {path} failed:\n{out.stderr}"
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert docs, f"{path} rendered nothing"
    return docs


def compose(components, workdir):
    """Renders the base with components, from a kustomization outside the repository (a
    kustomization inside deploy/ could not use deploy/ as a base)."""
    d = Path(tempfile.mkdtemp(dir=workdir))
    rel = os.path.relpath(DEPLOY, d)
    (d / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [rel],
        "components": [f"{rel}/{c}" for c in components],
    }))
    return kustomize(d)


def index(docs):
    return {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}


def one(docs, kind, name, namespace=None):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name
             and d["metadata"].get("namespace") == namespace]
    assert len(found) == 1, f"expected one {kind} {namespace}/{name}, found {len(found)}"
    return found[0]


# --- schema (field names and value types) from the Kubernetes client models ----------------------
def model_for(doc):
    group_version = doc["apiVersion"].split("/")[-1]
    name = group_version[0].upper() + group_version[1:] + doc["kind"]
    return getattr(k8s, name, None)


# Fields newer than Debian's python3-kubernetes models (22.x, the Kubernetes 1.22 API), with
# their allowed values; the e2e test's server-side dry run checks them against a current API
# server.
NEWER_FIELDS = {
    ("V1PodDisruptionBudgetSpec", "unhealthyPodEvictionPolicy"): {"IfHealthyBudget", "AlwaysAllow"},
}


def validate(value, typ, path, errors):
    if value is None or typ == "object":
        return
    if typ.startswith("list["):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            validate(item, typ[5:-1], f"{path}[{i}]", errors)
    elif typ.startswith("dict("):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a map")
            return
        inner = typ[5:-1].split(", ", 1)[1]
        for key, item in value.items():
            validate(item, inner, f"{path}.{key}", errors)
    elif typ in ("str", "datetime"):
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
    elif typ == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer, got {value!r}")
    elif typ == "bool":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true/false, got {value!r}")
    elif typ == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"{path}: expected a number, got {value!r}")
    else:
        cls = getattr(k8s, typ)
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object ({typ})")
            return
        fields = {json_name: attr for attr, json_name in cls.attribute_map.items()}
        for key, item in value.items():
            if (typ, key) in NEWER_FIELDS:
                if item not in NEWER_FIELDS[typ, key]:
                    errors.append(f"{path}.{key}: {item!r} is not one of {sorted(NEWER_FIELDS[typ, key])}")
                continue
            if key not in fields:
                errors.append(f"{path}.{key}: no such field in {typ}")
                continue
            validate(item, cls.openapi_types[fields[key]], f"{path}.{key}", errors)


def check_schema(docs):
    errors = []
    for doc in docs:
        cls = model_for(doc)
        if cls is None:  # custom resources (cert-manager, prometheus-operator)
            continue
        validate(doc, cls.__name__, f'{doc["kind"]}/{doc["metadata"]["name"]}', errors)
    assert not errors, "\n".join(errors)


# --- assertions ----------------------------------------------------------------------------------
def pod_spec(docs):
    return one(docs, "Deployment", "fluxgate", "fluxgate")["spec"]["template"]["spec"]


def check_objects(docs, expected):
    got = set(index(docs))
    missing, extra = expected - got, got - expected
    assert not missing and not extra, f"missing: {sorted(missing, key=str)}\nunexpected: {sorted(extra, key=str)}"


BASE_OBJECTS = {
    ("Namespace", None, "fluxgate"),
    ("ServiceAccount", "fluxgate", "fluxgate"),
    ("ClusterRole", None, "fluxgate"),
    ("ClusterRole", None, "fluxgate-janitor-delete"),
    ("ClusterRoleBinding", None, "fluxgate"),
    ("Role", "fluxgate", "fluxgate"),
    ("RoleBinding", "fluxgate", "fluxgate"),
    ("Role", "default", "fluxgate-kubernetes-service"),
    ("RoleBinding", "default", "fluxgate-kubernetes-service"),
    ("Deployment", "fluxgate", "fluxgate"),
    ("PodDisruptionBudget", "fluxgate", "fluxgate"),
    ("NetworkPolicy", "fluxgate", "fluxgate"),
    ("Service", "fluxgate", "fluxgate"),
    ("MutatingWebhookConfiguration", None, "fluxgate"),
}
CERT_MANAGER_OBJECTS = {
    ("Issuer", "fluxgate", "fluxgate-selfsigned"),
    ("Certificate", "fluxgate", "fluxgate-ca"),
    ("Issuer", "fluxgate", "fluxgate-ca"),
    ("Certificate", "fluxgate", "fluxgate-tls"),
}
JANITOR_DELETE_OBJECTS = {("ClusterRoleBinding", None, "fluxgate-janitor-delete")}
NATIVE_OBJECTS = (BASE_OBJECTS - {
    ("MutatingWebhookConfiguration", None, "fluxgate"),
    ("Role", "default", "fluxgate-kubernetes-service"),
    ("RoleBinding", "default", "fluxgate-kubernetes-service"),
}) | {
    ("MutatingAdmissionPolicy", None, "fluxgate-gitrepositories"),
    ("MutatingAdmissionPolicyBinding", None, "fluxgate-gitrepositories"),
}


def check_deployment(docs, args, mounts):
    dep = one(docs, "Deployment", "fluxgate", "fluxgate")
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2, f"replicas {spec['replicas']}"
    assert spec["selector"]["matchLabels"] == POD_LABELS
    assert spec["template"]["metadata"]["labels"].items() >= POD_LABELS.items()
    assert pod["serviceAccountName"] == "fluxgate"
    assert pod["terminationGracePeriodSeconds"] == 30
    spread = pod.get("topologySpreadConstraints") or []
    anti = ((pod.get("affinity") or {}).get("podAntiAffinity"))
    assert anti or any(c["topologyKey"] == "kubernetes.io/hostname"
                       and c["labelSelector"]["matchLabels"] == POD_LABELS for c in spread), \
        "replicas are not spread across nodes"
    (c,) = pod["containers"]
    assert c["image"] == IMAGE, c["image"]
    assert c["args"] == args, f"args {c['args']}"
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in c["env"]}
    assert env.get("POD_NAMESPACE") == "metadata.namespace" and env.get("POD_NAME") == "metadata.name", env
    values = {e["name"]: e.get("value") for e in c["env"]}
    assert values.get("FLUXGATE_BREAKER") == "true", "the host circuit breaker is on by default in deploy/"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"https": 8443, "http-metrics": 8080}, ports
    for probe, path in (("readinessProbe", "/readyz?exclude=exporter"), ("livenessProbe", "/healthz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path and ports.get(get["port"], get["port"]) == 8080, f"{probe}: {get}"
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "16Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi", "ephemeral-storage": "64Mi"}}, \
        c["resources"]
    got_mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    assert set(got_mounts) == set(mounts), f"mounts {sorted(got_mounts)}"
    for path, kind in mounts.items():
        volume = volumes.get(got_mounts[path])
        assert volume and kind in volume, f"{path}: expected a {kind} volume, got {volume}"
    assert set(volumes) == set(got_mounts.values()), f"unused volumes: {set(volumes) - set(got_mounts.values())}"
    return c, volumes


def check_hardened(docs):
    problems = []
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"):
            continue
        tmpl = doc["spec"].get("template", {}).get("spec") or doc["spec"]
        pod_sc = tmpl.get("securityContext") or {}
        for c in tmpl.get("initContainers", []) + tmpl.get("containers", []):
            sc = c.get("securityContext") or {}
            where = f'{doc["kind"]}/{doc["metadata"]["name"]} container {c["name"]}'

            def eff(key):
                return sc.get(key, pod_sc.get(key))

            if eff("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if eff("runAsUser") in (None, 0):
                problems.append(f"{where}: no non-zero runAsUser")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: root filesystem is writable")
            if (sc.get("capabilities") or {}).get("drop") != ["ALL"] or (sc.get("capabilities") or {}).get("add"):
                problems.append(f"{where}: capabilities are not exactly drop [ALL]")
            if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is not RuntimeDefault")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            resources = c.get("resources") or {}
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory", "ephemeral-storage"):
                    if resource not in (resources.get(kind) or {}):
                        problems.append(f"{where}: no {resource} in resources.{kind}")
        if tmpl.get("hostNetwork") or tmpl.get("hostPID") or tmpl.get("hostIPC"):
            problems.append(f'{doc["kind"]}/{doc["metadata"]["name"]}: host namespaces')
        for v in tmpl.get("volumes", []):
            if "hostPath" in v:
                problems.append(f'{doc["kind"]}/{doc["metadata"]["name"]}: hostPath volume {v["name"]}')
    assert not problems, "\n".join(problems)


def grants(rules):
    """Rules flattened to (apiGroup, resource, resourceName or '*', verb)."""
    out = set()
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for name in r.get("resourceNames") or ["*"]:
                    for verb in r.get("verbs", []):
                        out.add((g, res, name, verb))
        assert not r.get("nonResourceURLs"), f"non-resource URLs granted: {r}"
    return out


def expand(spec):
    """[(groups, resources, names or None, verbs)] -> grants()."""
    return grants([{"apiGroups": g, "resources": r, "resourceNames": n, "verbs": v} for g, r, n, v in spec])


BASE_CLUSTERROLE = expand([
    (["source.toolkit.fluxcd.io"], ["gitrepositories"], None, ["list", "watch", "patch"]),
    (["events.k8s.io"], ["events"], None, ["create"]),
    (["admissionregistration.k8s.io"], ["mutatingwebhookconfigurations"], ["fluxgate"], ["get", "patch"]),
])
LEASE_GRANTS = [
    (["coordination.k8s.io"], ["leases"], ["fluxgate-janitor"], ["get", "patch"]),
    (["coordination.k8s.io"], ["leases"], None, ["create"]),
]
BASE_ROLE = expand([
    ([""], ["secrets"], ["fluxgate-tls"], ["get", "update"]),
    ([""], ["secrets"], None, ["create"]),
] + LEASE_GRANTS)
DELETE_CLUSTERROLE = expand([(["source.toolkit.fluxcd.io"], ["gitrepositories"], None, ["delete"])])
KUBERNETES_SERVICE_ROLE = expand([([""], ["services"], ["kubernetes"], ["get"])])
CERT_MANAGER_CLUSTERROLE = expand([
    (["source.toolkit.fluxcd.io"], ["gitrepositories"], None, ["list", "watch", "patch"]),
    (["events.k8s.io"], ["events"], None, ["create"]),
])
CERT_MANAGER_ROLE = expand(LEASE_GRANTS)


def check_rbac(docs, expected_roles, bound):
    """expected_roles: {(kind, namespace, name): grants}; bound: role keys that must be bound to
    fluxgate's ServiceAccount (any other role must not be)."""
    roles = {k: d for k, d in index(docs).items() if k[0] in ("ClusterRole", "Role")}
    assert set(roles) == set(expected_roles), f"roles: {sorted(roles, key=str)}"
    for key, want in expected_roles.items():
        got = grants(roles[key].get("rules", []))
        assert got == want, (f"{key[0]} {key[2]}: unexpected {sorted(got - want)}; "
                             f"missing {sorted(want - got)}")
    for key, doc in roles.items():
        assert "aggregationRule" not in doc, f"{key}: aggregated role"
        for g, res, name, verb in grants(doc.get("rules", [])):
            assert "*" not in (g, res, verb), f"{key}: wildcard grant {(g, res, name, verb)}"
    # Secrets only inside fluxgate's namespace.
    for key, doc in roles.items():
        if any(res == "secrets" for _, res, _, _ in grants(doc.get("rules", []))):
            assert key[0] == "Role" and key[1] == "fluxgate", f"{key} grants access to Secrets"
    bindings = {k: d for k, d in index(docs).items() if k[0] in ("ClusterRoleBinding", "RoleBinding")}
    bound_roles = set()
    for key, b in bindings.items():
        assert b["subjects"] == SA, f"{key}: subjects {b['subjects']}"
        ref = b["roleRef"]
        role_ns = key[1] if ref["kind"] == "Role" else None
        role_key = (ref["kind"], role_ns, ref["name"])
        assert ref["apiGroup"] == "rbac.authorization.k8s.io" and role_key in roles, f"{key}: roleRef {ref}"
        bound_roles.add(role_key)
    assert bound_roles == set(bound), f"bound: {sorted(bound_roles, key=str)}; expected {sorted(bound, key=str)}"


def check_service_pdb(docs):
    svc = one(docs, "Service", "fluxgate", "fluxgate")
    assert svc["spec"]["selector"] == POD_LABELS, svc["spec"]["selector"]
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {"https": (443, "https"), "http-metrics": (8080, "http-metrics")}, ports
    pdb = one(docs, "PodDisruptionBudget", "fluxgate", "fluxgate")
    assert pdb["spec"].get("minAvailable") == 1 and "maxUnavailable" not in pdb["spec"], pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == POD_LABELS
    # A replica that is not Ready may be evicted even when it is the last one: it serves nothing.
    assert pdb["spec"].get("unhealthyPodEvictionPolicy") == "AlwaysAllow", pdb["spec"]


def check_network_policy(docs):
    """fluxgate's Pods: the webhook port from anywhere (the API server's address is unknowable),
    the metrics port from namespace monitoring only, egress to the API server's ports, the Git
    hosts' ports for the breaker's probe and DNS in kube-system; and
    every port the container listens on is one of those two."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert len(policies) == 1, f"{len(policies)} NetworkPolicies"
    spec = one(docs, "NetworkPolicy", "fluxgate", "fluxgate")["spec"]
    assert spec["podSelector"] == {"matchLabels": POD_LABELS}, spec["podSelector"]
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"], spec["policyTypes"]
    (c,) = pod_spec(docs)["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    webhook, metrics = ports["https"], ports["http-metrics"]
    assert spec["ingress"] == [
        {"ports": [{"port": webhook, "protocol": "TCP"}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
         "ports": [{"port": metrics, "protocol": "TCP"}]},
    ], spec["ingress"]
    allowed_in = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
    assert set(ports.values()) <= allowed_in, f"container ports {ports} not all reachable: {allowed_in}"
    # The probes' port is the metrics port, which the kubelet reaches from the Pod's own node.
    for probe in ("readinessProbe", "livenessProbe"):
        port = c[probe]["httpGet"]["port"]
        assert ports.get(port, port) == metrics, f"{probe} on {port}"
    # No `to` for the API server (its addresses are not knowable) and the breaker's probes of Git
    # hosts (anywhere: 443, 22, 80); DNS for the probes' host names, to kube-system only.
    assert spec["egress"] == [
        {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]},
        {"ports": [{"port": 22, "protocol": "TCP"}, {"port": 80, "protocol": "TCP"}]},
        {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
         "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
    ], spec["egress"]


def webhook_common(w):
    assert w["clientConfig"].get("service") == {
        "name": "fluxgate", "namespace": "fluxgate", "path": "/mutate", "port": 443}, w["clientConfig"]
    assert "url" not in w["clientConfig"]
    assert "caBundle" not in w["clientConfig"], "caBundle must be left out (written at run time)"
    for key, want in (("failurePolicy", "Ignore"), ("sideEffects", "None"), ("timeoutSeconds", 5),
                      ("reinvocationPolicy", "IfNeeded"), ("admissionReviewVersions", ["v1"]),
                      ("matchPolicy", "Equivalent")):
        assert w.get(key) == want, f"{w['name']}: {key} = {w.get(key)!r}, expected {want!r}"


def check_webhooks(docs):
    cfg = one(docs, "MutatingWebhookConfiguration", "fluxgate")
    hooks = {w["name"]: w for w in cfg["webhooks"]}
    assert set(hooks) == {"gitrepositories.fluxgate.io", "pods.fluxgate.io"}, sorted(hooks)
    for w in hooks.values():
        webhook_common(w)
    g = hooks["gitrepositories.fluxgate.io"]
    assert g["rules"] == [{"apiGroups": ["source.toolkit.fluxcd.io"], "apiVersions": ["*"],
                           "resources": ["gitrepositories"], "operations": ["CREATE"],
                           "scope": "Namespaced"}], g["rules"]
    assert g["namespaceSelector"] == {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "NotIn",
        "values": ["fluxgate", "kube-system"]}]}, g["namespaceSelector"]
    assert "objectSelector" not in g
    p = hooks["pods.fluxgate.io"]
    assert p["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                           "operations": ["CREATE"], "scope": "Namespaced"}], p["rules"]
    assert p["namespaceSelector"] == {"matchExpressions": [{
        "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["flux-system"]}]}
    assert p["objectSelector"] == {"matchExpressions": [{
        "key": "app", "operator": "In", "values": ["source-controller"]}]}, p["objectSelector"]
    # The Service the webhooks call exists and has port 443.
    svc = one(docs, "Service", "fluxgate", "fluxgate")
    assert any(port["port"] == 443 for port in svc["spec"]["ports"])


def check_cert_manager(docs):
    check_objects(docs, BASE_OBJECTS | CERT_MANAGER_OBJECTS)
    cert = one(docs, "Certificate", "fluxgate-tls", "fluxgate")
    cfg = one(docs, "MutatingWebhookConfiguration", "fluxgate")
    assert cfg["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "fluxgate/fluxgate-tls"
    assert "fluxgate.fluxgate.svc" in cert["spec"]["dnsNames"], cert["spec"]["dnsNames"]
    issuer = one(docs, "Issuer", cert["spec"]["issuerRef"]["name"], "fluxgate")
    ca = one(docs, "Certificate", "fluxgate-ca", "fluxgate")
    assert ca["spec"]["isCA"] is True and issuer["spec"]["ca"]["secretName"] == ca["spec"]["secretName"]
    root = one(docs, "Issuer", ca["spec"]["issuerRef"]["name"], "fluxgate")
    assert "selfSigned" in root["spec"], root["spec"]
    _, volumes = check_deployment(docs, [
        "serve", "--cert-bootstrap=false",
        "--tls-cert-file=/etc/fluxgate/tls/tls.crt", "--tls-key-file=/etc/fluxgate/tls/tls.key",
    ], {"/etc/fluxgate/tls": "secret"})
    secret_volume = next(v for v in volumes.values() if "secret" in v)
    assert secret_volume["secret"]["secretName"] == cert["spec"]["secretName"]
    check_webhooks(docs)


def check_native_admission(docs, base):
    """deploy/native-admission: the rendered policy instead of the webhook; the Deployment runs the
    exporter and janitor only, and nothing of the webhook (port, certificate, permissions) is left."""
    check_objects(docs, NATIVE_OBJECTS)
    dep = one(docs, "Deployment", "fluxgate", "fluxgate")
    base_dep = one(base, "Deployment", "fluxgate", "fluxgate")
    assert dep["spec"]["replicas"] == base_dep["spec"]["replicas"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == IMAGE and c["args"] == ["serve", "--no-webhook"], c["args"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http-metrics": 8080}, c["ports"]
    assert not c.get("volumeMounts") and not pod.get("volumes"), "certificate volume left"
    (base_c,) = base_dep["spec"]["template"]["spec"]["containers"]
    for key in ("env", "readinessProbe", "livenessProbe", "resources", "securityContext"):
        assert c[key] == base_c[key], f"{key} changed"
    svc = one(docs, "Service", "fluxgate", "fluxgate")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}
    assert ports == {"http-metrics": (8080, "http-metrics")}, ports
    spec = one(docs, "NetworkPolicy", "fluxgate", "fluxgate")["spec"]
    base_spec = one(base, "NetworkPolicy", "fluxgate", "fluxgate")["spec"]
    assert spec["ingress"] == base_spec["ingress"][1:] and spec["egress"] == base_spec["egress"], spec
    # The policy admits as the webhook registration did: CREATE of GitRepositories, the same
    # namespaces left out, never blocking, idempotent under reinvocation.
    policy = one(docs, "MutatingAdmissionPolicy", "fluxgate-gitrepositories")
    assert policy["apiVersion"] == "admissionregistration.k8s.io/v1", policy["apiVersion"]
    hook = next(w for w in one(base, "MutatingWebhookConfiguration", "fluxgate")["webhooks"]
                if w["name"] == "gitrepositories.fluxgate.io")
    constraints = policy["spec"]["matchConstraints"]
    assert constraints["resourceRules"] == hook["rules"], constraints["resourceRules"]
    assert constraints["namespaceSelector"] == hook["namespaceSelector"], constraints
    assert constraints["matchPolicy"] == hook["matchPolicy"]
    for key in ("failurePolicy", "reinvocationPolicy"):
        assert policy["spec"][key] == hook[key], f"{key} = {policy['spec'][key]}"
    (mutation,) = policy["spec"]["mutations"]
    assert mutation["patchType"] == "JSONPatch" and "'5m'" in mutation["jsonPatch"]["expression"]
    binding = one(docs, "MutatingAdmissionPolicyBinding", "fluxgate-gitrepositories")
    assert binding["spec"] == {"policyName": "fluxgate-gitrepositories"}, binding["spec"]
    check_rbac(docs, {
        ("ClusterRole", None, "fluxgate"): CERT_MANAGER_CLUSTERROLE,
        ("ClusterRole", None, "fluxgate-janitor-delete"): DELETE_CLUSTERROLE,
        ("Role", "fluxgate", "fluxgate"): CERT_MANAGER_ROLE,
    }, [("ClusterRole", None, "fluxgate"), ("Role", "fluxgate", "fluxgate")])
    check_schema(docs)
    check_hardened(docs)


def check_monitoring(docs, base):
    check_objects(docs, {("ServiceMonitor", "fluxgate", "fluxgate"), ("PrometheusRule", "fluxgate", "fluxgate")})
    sm = one(docs, "ServiceMonitor", "fluxgate", "fluxgate")
    svc = one(base, "Service", "fluxgate", "fluxgate")
    labels = svc["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= labels.items(), "selector misses the Service"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["fluxgate"]}
    assert labels.get(sm["spec"]["jobLabel"]) == "fluxgate", "job label would not be fluxgate"
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]} and ep["port"] == "http-metrics"
    assert ep.get("honorLabels") is True, "honorLabels must keep the GitRepository namespace label"
    rule = one(docs, "PrometheusRule", "fluxgate", "fluxgate")
    plain = yaml.safe_load((ROOT / "alerts" / "fluxgate-rules.yaml").read_text())
    assert rule["spec"]["groups"] == plain["groups"], "rendered PrometheusRule differs from alerts/fluxgate-rules.yaml"


def check_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    froms = [line for line in lines if line.upper().startswith("FROM ")]
    assert len(froms) == 2, froms
    assert re.match(r"FROM rust:1-bookworm AS \w+$", froms[0]), froms[0]
    assert froms[1] == "FROM gcr.io/distroless/cc-debian12:nonroot", froms[1]
    assert "cargo build --release --locked" in text
    final = text[text.index(froms[1]):]
    assert re.search(r"^USER 65532(:65532)?$", final, re.M), "final stage must run as USER 65532"
    assert re.search(r'^ENTRYPOINT \["/fluxgate"\]$', final, re.M)
    assert re.search(r"^COPY --from=\w+ \S+ /fluxgate$", final, re.M)
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    assert "target/" in ignore or "target" in ignore or "/target" in ignore, ".dockerignore lacks target/"


LANES = DEPLOY / "lanes"
LANE_OBJECTS = {
    ("Deployment", "flux-system", "source-controller"),
    ("Deployment", "flux-system", "source-controller-far"),
    ("Service", "flux-system", "source-controller-far"),
}
# The stand-in for Flux's source-controller in deploy/lanes/example, as written there.
FLUX_ARGS = ["--watch-all-namespaces", "--log-level=info", "--log-encoding=json", "--enable-leader-election",
             "--storage-path=/data", "--storage-adv-addr=source-controller.$(RUNTIME_NAMESPACE).svc.cluster.local."]


def lane_objects(docs):
    """The objects deploy/lanes/component adds (the stand-in is Flux's, not ours)."""
    return [d for d in docs if d["metadata"]["name"] == "source-controller-far"]


def check_lanes(docs):
    """deploy/lanes: the main source-controller leaves shards alone; the lane's serves shard
    "far" only, advertises its own Service, and shares nothing that would make the two contend
    (Pod label, Service, storage)."""
    check_objects(docs, LANE_OBJECTS)
    main = one(docs, "Deployment", "source-controller", "flux-system")
    (main_c,) = main["spec"]["template"]["spec"]["containers"]
    assert main_c["args"] == FLUX_ARGS + ["--watch-label-selector=!sharding.fluxcd.io/key"], main_c["args"]

    lane = one(docs, "Deployment", "source-controller-far", "flux-system")
    pod = lane["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    args = c["args"]
    selectors = [a for a in args if a.startswith("--watch-label-selector=")]
    assert selectors == ["--watch-label-selector=sharding.fluxcd.io/key=far"], selectors
    assert "--storage-adv-addr=source-controller-far.$(RUNTIME_NAMESPACE).svc.cluster.local." in args, args
    assert "--storage-path=/data" in args and "--enable-leader-election" in args, args
    flags = {a.split("=", 1)[0] for a in args}
    assert {"--concurrent", "--min-retry-delay", "--max-retry-delay"} <= flags, args
    env = {e["name"]: e for e in c["env"]}
    assert env["RUNTIME_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace", env
    assert c["name"] == "manager" and c["image"].split(":")[0] == main_c["image"].split(":")[0], c["image"]
    assert pod["spec"]["serviceAccountName"] == main["spec"]["template"]["spec"]["serviceAccountName"]
    assert lane["spec"]["strategy"] == {"type": "Recreate"}, lane["spec"].get("strategy")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/data"]], "the lane's storage must be its own"

    # The main Service must not reach the lane's Pod, nor the lane's Service the main Pods.
    labels = pod["metadata"]["labels"]
    main_labels = main["spec"]["template"]["metadata"]["labels"]
    assert lane["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert not main["spec"]["selector"]["matchLabels"].items() <= labels.items(), "main selector matches the lane"
    svc = one(docs, "Service", "source-controller-far", "flux-system")
    assert svc["spec"]["selector"].items() <= labels.items(), svc["spec"]["selector"]
    assert not svc["spec"]["selector"].items() <= main_labels.items(), "lane Service selects the main Pods"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 80 and ports.get(port["targetPort"]) == 9090, port


def lanes_exceptions(docs):
    """Checks switched off on the lane's objects are explained in deploy/lanes/README.md."""
    readme = (LANES / "README.md").read_text()
    section = readme[readme.index("## Linters"):]
    found = set()
    for doc in lane_objects(docs):
        value = (doc["metadata"].get("annotations") or {}).get("kube-score/ignore", "")
        for name in filter(None, (n.strip() for n in value.split(","))):
            assert f"`{name}`" in section, f"{doc['kind']}: {name} is switched off but not explained"
            found.add(name)
    assert found == {"container-image-pull-policy", "pod-networkpolicy", "deployment-strategy",
                     "deployment-replicas"}, sorted(found)


# --- kube-score and kube-linter ----------------------------------------------------------------
def documented_exceptions(docs):
    """Each check an object's annotations switch off must be explained in deploy/README.md, and
    only these may be: kube-score's container-image-pull-policy and
    deployment-has-host-podantiaffinity, kube-linter's no-anti-affinity, on the Deployment."""
    readme = (DEPLOY / "README.md").read_text()
    section = readme[readme.index("## Linters"):]
    found = set()
    for doc in docs:
        where = f'{doc["kind"]}/{doc["metadata"]["name"]}'
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            if key == "kube-score/ignore":
                names = [n.strip() for n in value.split(",")]
            elif key.startswith("ignore-check.kube-linter.io/"):
                names = [key.split("/", 1)[1]]
                assert value.strip(), f"{where}: {key} without a reason"
            else:
                continue
            for name in names:
                assert f"`{name}`" in section, f"{where}: {name} is switched off but not explained in deploy/README.md"
                found.add((where, name))
    assert found == {("Deployment/fluxgate", "container-image-pull-policy"),
                     ("Deployment/fluxgate", "deployment-has-host-podantiaffinity"),
                     ("Deployment/fluxgate", "no-anti-affinity")}, sorted(found)


def write_docs(docs, workdir, name):
    path = Path(workdir) / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def kube_score(docs, workdir, name):
    assert KUBE_SCORE, "kube-score is not installed (tests/deploy/check.sh builds it)"
    path = write_docs(docs, workdir, name)
    args = [KUBE_SCORE, "score", "--output-format", "ci", "--exit-one-on-warning",
            "--kubernetes-version", KUBERNETES_VERSION]
    for test in KUBE_SCORE_OPTIONAL:
        args += ["--enable-optional-test", test]
    out = subprocess.run(args + [str(path)], capture_output=True, text=True)
    findings = [line for line in out.stdout.splitlines() if not line.startswith("[OK]")
                and not line.startswith("[SKIPPED]")]
    assert out.returncode == 0 and not findings, \
        f"kube-score exit {out.returncode}:\n" + "\n".join(findings or [out.stdout, out.stderr])


def kube_linter(docs, workdir, name):
    path = write_docs(docs, workdir, name)
    out = subprocess.run([KUBE_LINTER, "lint", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, f"kube-linter exit {out.returncode}:\n{out.stdout}{out.stderr}"


def run_linters(base, state, workdir):
    check("deploy/: checks switched off by annotations are the documented ones")(documented_exceptions, base)
    variants = [("deploy/", "base", base)]
    variants += [(label, key, state[key]) for label, key in
                 (("deploy/ + cert-manager", "cm"), ("deploy/ + cert-manager + janitor-delete", "both"),
                  ("deploy/ + native-admission", "native"))
                 if key in state]
    if "lanes" in state:
        variants.append(("deploy/lanes/component", "lanes", lane_objects(state["lanes"])))
        check("deploy/lanes: checks switched off by annotations are explained in its README")(
            lanes_exceptions, state["lanes"])
    for label, key, docs in variants:
        check(f"kube-score {KUBERNETES_VERSION}, warnings fail: {label}")(kube_score, docs, workdir, f"score-{key}")
    for label, key, docs in variants:
        name = f"kube-linter: {label}"
        if KUBE_LINTER:
            check(name)(kube_linter, docs, workdir, f"lint-{key}")
        else:
            skip(name, os.environ.get("KUBE_LINTER_MISSING", "kube-linter is not installed"))


def main():
    workdir = tempfile.mkdtemp()
    try:
        return run_checks(workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_checks(workdir):
    base = []
    state = {}

    def render_base():
        base.extend(kustomize(DEPLOY))

    check("kustomize renders deploy/")(render_base)
    if not base:
        print(f"\ndeploy: {results['passed']} passed, {results['failed']} failed")
        return 1
    check("deploy/: exactly the expected objects")(check_objects, base, BASE_OBJECTS)
    check("deploy/: every field exists in the Kubernetes API schema")(check_schema, base)
    check("deploy/: Deployment (2 replicas, image, args, env, ports, probes, resources, spread, cert emptyDir)")(
        check_deployment, base, ["serve", "--cert-bootstrap=true"], {"/tmp/fluxgate-certs": "emptyDir"})
    check("deploy/: every container non-root, read-only, no privilege escalation, caps dropped, seccomp")(
        check_hardened, base)
    check("deploy/: RBAC exactly as specified, bound to fluxgate/fluxgate, no Secret outside fluxgate")(
        check_rbac, base, {
            ("ClusterRole", None, "fluxgate"): BASE_CLUSTERROLE,
            ("ClusterRole", None, "fluxgate-janitor-delete"): DELETE_CLUSTERROLE,
            ("Role", "fluxgate", "fluxgate"): BASE_ROLE,
            ("Role", "default", "fluxgate-kubernetes-service"): KUBERNETES_SERVICE_ROLE,
        }, [("ClusterRole", None, "fluxgate"), ("Role", "fluxgate", "fluxgate"),
            ("Role", "default", "fluxgate-kubernetes-service")])
    check("deploy/: Service ports and PodDisruptionBudget (unhealthy Pods evictable)")(check_service_pdb, base)
    check("deploy/: NetworkPolicy (webhook from anywhere, metrics from monitoring, egress to the API server, Git hosts' probes, DNS)")(
        check_network_policy, base)
    check("deploy/: MutatingWebhookConfiguration (both webhooks, selectors, no caBundle)")(check_webhooks, base)

    def render(name, components):
        state[name] = compose(components, workdir)

    check("kustomize renders deploy/ + component cert-manager")(render, "cm", ["cert-manager"])
    if "cm" in state:
        cm = state["cm"]
        check("cert-manager: CA chain, Certificate, CA injection, Deployment reads the Secret")(check_cert_manager, cm)
        check("cert-manager: every field exists in the Kubernetes API schema")(check_schema, cm)
        check("cert-manager: containers still hardened")(check_hardened, cm)
        check("cert-manager: NetworkPolicy unchanged")(check_network_policy, cm)
        check("cert-manager: RBAC without Secrets or the webhook configuration")(check_rbac, cm, {
            ("ClusterRole", None, "fluxgate"): CERT_MANAGER_CLUSTERROLE,
            ("ClusterRole", None, "fluxgate-janitor-delete"): DELETE_CLUSTERROLE,
            ("Role", "fluxgate", "fluxgate"): CERT_MANAGER_ROLE,
            ("Role", "default", "fluxgate-kubernetes-service"): KUBERNETES_SERVICE_ROLE,
        }, [("ClusterRole", None, "fluxgate"), ("Role", "fluxgate", "fluxgate"),
            ("Role", "default", "fluxgate-kubernetes-service")])

    check("kustomize renders deploy/ + components cert-manager and janitor-delete")(
        render, "both", ["cert-manager", "janitor-delete"])
    if "both" in state:
        def janitor_delete(docs):
            check_objects(docs, BASE_OBJECTS | CERT_MANAGER_OBJECTS | JANITOR_DELETE_OBJECTS)
            check_rbac(docs, {
                ("ClusterRole", None, "fluxgate"): CERT_MANAGER_CLUSTERROLE,
                ("ClusterRole", None, "fluxgate-janitor-delete"): DELETE_CLUSTERROLE,
                ("Role", "fluxgate", "fluxgate"): CERT_MANAGER_ROLE,
                ("Role", "default", "fluxgate-kubernetes-service"): KUBERNETES_SERVICE_ROLE,
            }, [("ClusterRole", None, "fluxgate"), ("ClusterRole", None, "fluxgate-janitor-delete"),
                ("Role", "fluxgate", "fluxgate"), ("Role", "default", "fluxgate-kubernetes-service")])
            check_schema(docs)

        check("janitor-delete: binds fluxgate-janitor-delete to fluxgate/fluxgate, nothing else")(
            janitor_delete, state["both"])

    check("kustomize renders deploy/ + component native-admission")(render, "native", ["native-admission"])
    if "native" in state:
        check("native-admission: policy as the webhook registered it, no webhook port, cert or RBAC left")(
            check_native_admission, state["native"], base)

    def render_monitoring():
        state["monitoring"] = kustomize(DEPLOY / "monitoring")

    check("kustomize renders deploy/monitoring/")(render_monitoring)
    if "monitoring" in state:
        check("monitoring: ServiceMonitor gives job=\"fluxgate\", keeps labels; PrometheusRule = alerts/")(
            check_monitoring, state["monitoring"], base)

    def render_lanes():
        state["lanes"] = kustomize(LANES / "example")

    check("kustomize renders deploy/lanes/example (the lane component over a stand-in for Flux)")(render_lanes)
    if "lanes" in state:
        lanes = state["lanes"]
        check("lanes: main source-controller excludes shards; the lane's serves \"far\" on its own storage and Service")(
            check_lanes, lanes)
        check("lanes: every field exists in the Kubernetes API schema")(check_schema, lanes)
        check("lanes: the lane's container non-root, read-only, no privilege escalation, caps dropped, seccomp")(
            check_hardened, lane_objects(lanes))

    run_linters(base, state, workdir)

    check("Dockerfile: rust:1-bookworm build, --locked, distroless nonroot, USER 65532, /fluxgate")(check_dockerfile)

    def image_user_matches():
        user = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.M).group(1)
        c = pod_spec(base)["containers"][0]
        assert str(c["securityContext"]["runAsUser"]) == user, "Deployment runAsUser differs from the image's USER"

    check("Deployment runs as the image's USER")(image_user_matches)

    skipped = f", {results['skipped']} skipped" if results["skipped"] else ""
    print(f"\ndeploy: {results['passed']} passed, {results['failed']} failed{skipped}")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
