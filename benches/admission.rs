//! Time per AdmissionReview through fluxgate's core, beside the floor for any JSON webhook: parsing
//! the same body into a `serde_json::Value` and serializing it back.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fluxgate::admission;
use fluxgate::policy::proxy::ProxyValue;
use fluxgate::policy::{Policy, ProxyPolicy};
use serde_json::{Value, json};

fn gitrepository_review() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "0d5c7c2e-6d8b-4a52-9a3e-2f1f4c1b2a10",
            "kind": { "group": "source.toolkit.fluxcd.io", "version": "v1", "kind": "GitRepository" },
            "resource": { "group": "source.toolkit.fluxcd.io", "version": "v1", "resource": "gitrepositories" },
            "requestKind": { "group": "source.toolkit.fluxcd.io", "version": "v1", "kind": "GitRepository" },
            "requestResource": { "group": "source.toolkit.fluxcd.io", "version": "v1", "resource": "gitrepositories" },
            "name": "project-1042",
            "namespace": "proj-1042",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:platform:project-creator",
                "uid": "3b1f6f0e-8a0f-4a57-9d0b-6f5d7c1e2b33",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:platform", "system:authenticated"]
            },
            "object": {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "GitRepository",
                "metadata": {
                    "name": "project-1042",
                    "namespace": "proj-1042",
                    "creationTimestamp": null,
                    "labels": { "platform.example.com/project": "1042", "platform.example.com/tenant": "team-a" },
                    "annotations": { "platform.example.com/owner": "alice@example.com" },
                    "managedFields": [{
                        "manager": "platform-api", "operation": "Update",
                        "apiVersion": "source.toolkit.fluxcd.io/v1", "time": "2026-11-28T12:00:00Z",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": { "f:metadata": { "f:labels": { ".": {}, "f:platform.example.com/project": {} } },
                                      "f:spec": { ".": {}, "f:interval": {}, "f:ref": { ".": {}, "f:branch": {} }, "f:url": {} } }
                    }]
                },
                "spec": {
                    "interval": "1m0s",
                    "ref": { "branch": "main" },
                    "timeout": "60s",
                    "url": "https://github.com/example-org/project-1042"
                }
            },
            "oldObject": null,
            "dryRun": false,
            "options": { "kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "platform-api" }
        }
    }))
    .unwrap()
}

fn source_controller_pod_review() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "5f0b3a1c-2e44-4d2f-8b7a-9c0d1e2f3a4b",
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "namespace": "flux-system",
            "operation": "CREATE",
            "userInfo": { "username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts", "system:authenticated"] },
            "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "generateName": "source-controller-6d9f8b6c4-",
                    "namespace": "flux-system",
                    "labels": { "app": "source-controller", "pod-template-hash": "6d9f8b6c4" },
                    "annotations": { "prometheus.io/port": "8080", "prometheus.io/scrape": "true" },
                    "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "source-controller-6d9f8b6c4", "uid": "8e7c0f0a-1b2c-4d3e-9f4a-5b6c7d8e9f00", "controller": true, "blockOwnerDeletion": true }]
                },
                "spec": {
                    "serviceAccountName": "source-controller",
                    "securityContext": { "fsGroup": 1337 },
                    "containers": [{
                        "name": "manager",
                        "image": "ghcr.io/fluxcd/source-controller:v1.7.0",
                        "args": ["--events-addr=http://notification-controller.flux-system.svc.cluster.local./", "--watch-all-namespaces=true", "--log-level=info", "--log-encoding=json", "--enable-leader-election", "--storage-path=/data", "--storage-adv-addr=source-controller.$(RUNTIME_NAMESPACE).svc.cluster.local."],
                        "env": [{ "name": "RUNTIME_NAMESPACE", "valueFrom": { "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } } }, { "name": "TUF_ROOT", "value": "/tmp/.sigstore" }],
                        "ports": [{ "containerPort": 9090, "name": "http", "protocol": "TCP" }, { "containerPort": 8080, "name": "http-prom", "protocol": "TCP" }, { "containerPort": 9440, "name": "healthz", "protocol": "TCP" }],
                        "resources": { "limits": { "cpu": "1", "memory": "1Gi" }, "requests": { "cpu": "50m", "memory": "64Mi" } },
                        "volumeMounts": [{ "mountPath": "/data", "name": "data" }, { "mountPath": "/tmp", "name": "tmp" }]
                    }],
                    "volumes": [{ "name": "data", "emptyDir": {} }, { "name": "tmp", "emptyDir": {} }]
                }
            },
            "dryRun": false
        }
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let now = time::OffsetDateTime::now_utc();
    let policy = Policy {
        proxy: ProxyPolicy {
            https_proxy: Some(ProxyValue::Literal("http://proxy.internal:3128".into())),
            kubernetes_service_ip: Some("10.96.0.1".into()),
            ..ProxyPolicy::default()
        },
        ..Policy::default()
    };
    for (name, body) in [
        ("gitrepository_create", gitrepository_review()),
        (
            "source_controller_pod_create",
            source_controller_pod_review(),
        ),
    ] {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("serde_json_roundtrip_floor", |b| {
            b.iter(|| {
                let value: Value = serde_json::from_slice(black_box(&body)).unwrap();
                black_box(serde_json::to_vec(&value).unwrap())
            })
        });
        group.bench_function("fluxgate_review", |b| {
            b.iter(|| {
                let reviewed = admission::review(black_box(&body), &policy, now).unwrap();
                assert_eq!(reviewed.outcome, admission::ReviewOutcome::Patched);
                black_box(reviewed.body)
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
