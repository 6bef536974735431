//! What each subcommand does, over the library's modules.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::Value;

use crate::certs::{self, ServingNames, bootstrap};
use crate::cli::{
    CertsArgs, CleanupArgs, MutateArgs, MutateOutput, ReportArgs, RestoreArgs, ServeArgs, parse_now,
};
use crate::discovery;
use crate::exporter::{Exporter, ExporterConfig};
use crate::janitor;
use crate::manifests;
use crate::metrics::Metrics;
use crate::policy::{Mutation, Target};
use crate::server::{self, ConnectionLimits, ops, tls, webhook};

/// `fluxgate serve`.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut metrics = Metrics::new();
    let exporter = (!args.no_exporter).then(|| {
        Exporter::new(
            &mut metrics,
            ExporterConfig {
                namespaces: args.watch_namespaces.clone(),
                stale_after: args.watch_stale_after,
            },
        )
    });
    let metrics = Arc::new(metrics);
    let readiness = ops::Readiness::new(!args.no_webhook);
    let limits = ConnectionLimits::default();

    // The webhook must work without any cluster access; only the exporter and the certificate
    // bootstrap need a client, so its absence is fatal only for them.
    let needs_client =
        exporter.is_some() || args.janitor || (args.cert_bootstrap && !args.no_webhook);
    let client = if needs_client {
        Some(kube::Client::try_default().await.context(
            "no Kubernetes client configuration (needed by the exporter or --cert-bootstrap)",
        )?)
    } else if args.policy.https_proxy.is_some() || args.policy.http_proxy.is_some() {
        // Only for tracking the API server's ClusterIP; without it NO_PROXY uses the address
        // the Pod was given at start.
        match kube::Client::try_default().await {
            Ok(client) => Some(client),
            Err(err) => {
                tracing::warn!(error = %err, "no Kubernetes client; the API server's ClusterIP is not tracked");
                None
            }
        }
    } else {
        None
    };

    let mut background = tokio::task::JoinSet::new();
    let mut servers = Vec::new();

    if !args.no_webhook {
        if let (true, Some(client)) = (args.cert_bootstrap, &client) {
            let config = bootstrap::BootstrapConfig {
                namespace: args.namespace.clone(),
                secret_name: args.cert_secret.clone(),
                webhook_config_name: args.webhook_config.clone(),
                service_name: args.service_name.clone(),
                cert_path: args.tls_cert_file.clone(),
                key_path: args.tls_key_file.clone(),
                renew_before: args.cert_renew_before,
            };
            bootstrap::ensure(client, &config)
                .await
                .context("bootstrapping the webhook certificate")?;
            background.spawn(bootstrap::keep_current(
                client.clone(),
                config,
                args.cert_check_interval,
            ));
        }
        let tls =
            tls::ReloadingTls::load(&args.tls_cert_file, &args.tls_key_file, metrics.tls.clone())
                .context("loading the webhook certificate")?;
        let mut policy = args.policy.policy();
        if policy.proxy.is_enabled() && policy.proxy.kubernetes_service_ip.is_none() {
            policy.proxy.kubernetes_service_ip = discovery::kubernetes_service_ip_from_env();
        }
        let track_service =
            policy.proxy.is_enabled() && args.policy.kubernetes_service_ip.is_none();
        if policy.proxy.is_enabled() {
            tracing::info!(
                https_proxy = ?policy.proxy.https_proxy,
                http_proxy = ?policy.proxy.http_proxy,
                no_proxy = %policy.proxy.no_proxy_value(),
                "proxy injection enabled for source-controller Pods"
            );
        }
        let state = webhook::WebhookState::new(policy, metrics.clone());
        if let (true, Some(client)) = (track_service, &client) {
            background.spawn(discovery::track_kubernetes_service(
                client.clone(),
                state.clone(),
                std::time::Duration::from_secs(300),
            ));
        }
        let router = webhook::router(
            state.clone(),
            webhook::WebhookLimits {
                max_body_bytes: args.max_body_bytes,
                request_timeout: args.request_timeout,
            },
        );
        let running = server::spawn_tls(args.webhook_addr, tls.rustls_config(), router, limits)
            .await
            .with_context(|| format!("listening on {}", args.webhook_addr))?;
        tracing::info!(addr = %running.addr, path = webhook::MUTATE_PATH, "webhook serving HTTPS");
        background.spawn(tls.watch(args.tls_reload_interval));
        readiness.set_webhook_listening();
        servers.push(running);
    }

    if let (Some(exporter), Some(client)) = (exporter, client.clone()) {
        readiness.set_exporter(exporter.status());
        background.spawn(async move {
            if let Err(err) = exporter.run(client).await {
                tracing::error!(error = %err, "exporter stopped");
            }
        });
    }

    if let (true, Some(client)) = (args.janitor, client.clone()) {
        let identity = args
            .identity
            .clone()
            .unwrap_or_else(|| format!("fluxgate-{}", std::process::id()));
        let config = args.janitor_rules.config(args.janitor_dry_run);
        tracing::info!(?config, interval = ?args.janitor_interval, "janitor enabled");
        background.spawn({
            let metrics = metrics.janitor.clone();
            let namespace = args.namespace.clone();
            let lease = args.janitor_lease.clone();
            let interval = args.janitor_interval;
            async move {
                if let Err(err) = janitor::run_elected(
                    client, config, metrics, namespace, lease, identity, interval,
                )
                .await
                {
                    tracing::error!(error = %err, "janitor stopped");
                }
            }
        });
    }

    let ops_server = server::spawn_plain(
        args.metrics_addr,
        ops::router(metrics.clone(), readiness.clone()),
        limits,
    )
    .await
    .with_context(|| format!("listening on {}", args.metrics_addr))?;
    tracing::info!(addr = %ops_server.addr, "metrics and health serving HTTP");
    // The operations listener goes last so /readyz stays answerable (false) during the drain.
    servers.push(ops_server);

    let result = server::drain_on(
        server::shutdown_signal(),
        &readiness,
        args.shutdown_delay,
        args.drain_timeout,
        servers,
    )
    .await;
    background.shutdown().await;
    tracing::info!("stopped");
    result.context("draining")
}

/// `fluxgate mutate`: writes the admitted objects (or patches) to `out`, warnings to `err`.
pub fn mutate(args: &MutateArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    let now = parse_now(args.now.as_deref())?;
    let policy = args.policy.policy();
    let mut objects = Vec::new();
    for file in &args.files {
        let text = manifests::read_source(file)?;
        objects.extend(
            manifests::parse_documents(&text).with_context(|| manifests::source_name(file))?,
        );
    }

    let mut results = Vec::with_capacity(objects.len());
    for object in objects {
        let namespace = object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mutation = match preview_kind(&object) {
            Some(Preview::Admitted(target)) => policy
                .mutate(target, namespace.as_deref(), &object, now)
                .with_context(|| format!("{} {}", target.as_str(), describe(&object)))?,
            // Pods are what the webhook sees; a Deployment's template shows what its Pods get.
            Some(Preview::PodTemplate) => policy
                .proxy
                .mutate_pod_template(&object)
                .with_context(|| format!("Deployment {}", describe(&object)))?,
            None => Mutation::default(),
        };
        for warning in &mutation.warnings {
            writeln!(err, "Warning: {}: {warning}", describe(&object))?;
        }
        let mut patched = object;
        json_patch::patch(&mut patched, &mutation.patch)
            .with_context(|| format!("applying the patch to {}", describe(&patched)))?;
        results.push((patched, mutation));
    }

    match args.output {
        MutateOutput::Yaml => {
            for (i, (object, _)) in results.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                write!(out, "{}", serde_saphyr::to_string(object)?)?;
            }
        }
        MutateOutput::Json => {
            let value = if results.len() == 1 {
                results[0].0.clone()
            } else {
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": results.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>(),
                })
            };
            serde_json::to_writer_pretty(&mut *out, &value)?;
            writeln!(out)?;
        }
        MutateOutput::Patch => {
            // One JSON Patch document per line, in input order, ready for `kubectl patch --type=json`.
            for (_, mutation) in &results {
                serde_json::to_writer(&mut *out, &mutation.patch)?;
                writeln!(out)?;
            }
        }
    }
    Ok(())
}

enum Preview {
    Admitted(Target),
    PodTemplate,
}

fn preview_kind(object: &Value) -> Option<Preview> {
    let api_version = object.get("apiVersion").and_then(Value::as_str)?;
    let kind = object.get("kind").and_then(Value::as_str)?;
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("apps", "Deployment") => Some(Preview::PodTemplate),
        _ => Target::from_group_kind(group, kind).map(Preview::Admitted),
    }
}

fn describe(object: &Value) -> String {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// `fluxgate report`.
pub fn report(args: &ReportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let now = parse_now(args.now.as_deref())?;
    let text = manifests::read_source(&args.file)?;
    // An empty cluster still prints a List; empty input means kubectl failed or a wrong file.
    if text.trim().is_empty() {
        anyhow::bail!(
            "{} is empty: expected the output of `kubectl get gitrepositories -A -o json`",
            manifests::source_name(&args.file)
        );
    }
    let objects =
        manifests::parse_documents(&text).with_context(|| manifests::source_name(&args.file))?;
    let rendered = crate::report::render(&objects, now, args.output)?;
    out.write_all(rendered.as_bytes())?;
    Ok(())
}

/// `fluxgate certs`.
pub fn certs(args: &CertsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut names = ServingNames {
        dns: args.dns.clone(),
        ips: args.ips.clone(),
    };
    if names.dns.is_empty() && names.ips.is_empty() {
        names.dns.push("localhost".to_owned());
        names.ips.push(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let bundle = certs::generate(&names, time::OffsetDateTime::now_utc())?;
    for path in certs::write_dir(&args.out, &bundle)? {
        writeln!(out, "wrote {}", path.display())?;
    }
    Ok(())
}

/// `fluxgate cleanup`: the rules once, or one object by hand, with the caller's credentials.
pub async fn cleanup(args: CleanupArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (cleanup uses your kubeconfig)")?;
    let metrics = Metrics::new();
    let recorder = janitor::recorder(&client, None);
    match &args.target {
        None => {
            let config = args.janitor.config(args.dry_run);
            let summary =
                janitor::run_once(&client, Some(&recorder), &config, &metrics.janitor, &|| {
                    true
                })
                .await
                .context("janitor run")?;
            writeln!(
                out,
                "examined {} GitRepositories: {} matched, {} acted on, {} dry-run, {} changed meanwhile, {} errors, {} deferred",
                summary.examined,
                summary.matched,
                summary.done,
                summary.dry_run,
                summary.superseded,
                summary.errors,
                summary.deferred
            )?;
            if summary.errors > 0 {
                anyhow::bail!("{} actions failed", summary.errors);
            }
        }
        Some((namespace, name)) => {
            let api = janitor::gitrepositories(&client, Some(namespace));
            let object = api
                .get(name)
                .await
                .with_context(|| format!("reading GitRepository {namespace}/{name}"))?;
            let gitops_managed = object.metadata.labels.as_ref().is_some_and(|l| {
                l.contains_key("kustomize.toolkit.fluxcd.io/name")
                    || l.contains_key("helm.toolkit.fluxcd.io/name")
            });
            let mut action = args.action;
            let mut reason = "manual cleanup".to_owned();
            if action == janitor::Action::Delete && gitops_managed {
                action = janitor::Action::Suspend;
                reason.push_str("; suspended instead of deleted because a Flux Kustomization or HelmRelease would re-apply it");
                writeln!(
                    out,
                    "{namespace}/{name} is managed by Flux (Kustomization/HelmRelease): suspending instead of deleting"
                )?;
            }
            let decision = janitor::Decision {
                namespace: namespace.clone(),
                name: name.clone(),
                uid: object.metadata.uid.clone().unwrap_or_default(),
                resource_version: object.metadata.resource_version.clone().unwrap_or_default(),
                rule: "manual",
                action,
                reason,
            };
            let outcome = janitor::actions::apply(
                &api,
                Some(&recorder),
                &decision,
                args.dry_run,
                time::OffsetDateTime::now_utc(),
            )
            .await
            .with_context(|| format!("cleaning up {namespace}/{name}"))?;
            writeln!(
                out,
                "{namespace}/{name}: {} ({})",
                action.as_str(),
                outcome.as_str()
            )?;
        }
    }
    Ok(())
}

/// `fluxgate restore`.
pub async fn restore(args: RestoreArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let (namespace, name) = &args.target;
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (restore uses your kubeconfig)")?;
    let api = janitor::gitrepositories(&client, Some(namespace));
    let recorder = janitor::recorder(&client, None);
    janitor::actions::restore(
        &api,
        Some(&recorder),
        namespace,
        name,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .with_context(|| format!("restoring {namespace}/{name}"))?;
    writeln!(out, "{namespace}/{name}: restored")?;
    Ok(())
}
