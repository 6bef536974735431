//! What each offline and one-shot subcommand does, over the library's modules (`serve` is in
//! [`crate::serve`]).

use std::io::Write;

use anyhow::Context as _;
use serde_json::Value;

use crate::certs::{self, ServingNames};
use crate::cli::{
    AdmissionPolicyArgs, CertsArgs, CleanupArgs, MutateArgs, MutateOutput, PolicyOutput,
    ReportArgs, RestoreArgs, parse_now,
};
use crate::flux;
use crate::janitor;
use crate::manifests;
use crate::metrics::Metrics;
use crate::policy::native::{self, NativeOptions};
use crate::policy::{Mutation, Target};

/// `fluxgate mutate`: writes the admitted objects (or patches) to `out`, warnings to `err`.
pub fn mutate(args: &MutateArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    let now = parse_now(args.now.as_deref())?;
    let policy = args.policy.policy()?;
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
                .plan(target, namespace.as_deref(), &object, now)
                .with_context(|| format!("{} {}", target.as_str(), describe(&object)))?,
            // Pods are what the webhook sees; a Deployment's template shows what its Pods get.
            Some(Preview::PodTemplate) => policy
                .proxy
                .plan_pod_template(&object)
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

/// `fluxgate admission-policy`: the policy as MutatingAdmissionPolicy manifests on `out`,
/// warnings about them on `err`.
pub fn admission_policy(
    args: &AdmissionPolicyArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let options = NativeOptions {
        excluded_namespaces: args
            .exclude_namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect(),
    };
    let policy = args.policy.policy()?;
    // Not expressed in CEL yet: refusing is better than a policy that silently does less than the
    // webhook it stands in for.
    if !policy.gitrepository.mirror.is_empty() {
        anyhow::bail!(
            "--mirror rules are applied by the webhook only; the native policy does not render them"
        );
    }
    let rendered = native::render(&policy, &options)?;
    for warning in &rendered.warnings {
        writeln!(err, "Warning: {warning}")?;
    }
    match args.output {
        PolicyOutput::Yaml => write!(out, "{}", rendered.to_yaml()?)?,
        PolicyOutput::Json => {
            let list = serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": rendered.objects,
            });
            serde_json::to_writer_pretty(&mut *out, &list)?;
            writeln!(out)?;
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
    let rules = crate::report::Rulebook {
        janitor: args.janitor.rules(),
        breaker: args.breaker.clone(),
    };
    let rendered = crate::report::render(&objects, now, args.output, &rules)?;
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
    let writer = janitor::writer(&client, None);
    match &args.target {
        None => {
            let config = args.janitor.config(args.dry_run);
            let always_leading = || true;
            let summary =
                janitor::run_once(&client, &writer, &config, &metrics.janitor, &always_leading)
                    .await
                    .context("janitor run")?;
            writeln!(
                out,
                "examined {} GitRepositories: {} matched, {} acted on, {} dry-run, {} changed meanwhile, {} errors, {} deferred",
                summary.examined,
                summary.matched,
                summary.done,
                summary.dry_run,
                summary.skipped,
                summary.errors,
                summary.deferred
            )?;
            if summary.errors > 0 {
                anyhow::bail!("{} actions failed", summary.errors);
            }
        }
        Some((namespace, name)) => {
            let api = flux::gitrepositories(&client, Some(namespace));
            let object = api
                .get(name)
                .await
                .with_context(|| format!("reading GitRepository {namespace}/{name}"))?;
            let labels = object.metadata.labels.iter().flat_map(|l| l.keys());
            let gitops_managed = flux::is_gitops_managed(labels.map(String::as_str));
            let (removal, downgrade) = args.action.for_object(gitops_managed);
            let mut reason = "manual cleanup".to_owned();
            if let Some(note) = downgrade {
                reason = format!("{reason}; {note}");
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
                removal,
                reason,
            };
            let now = time::OffsetDateTime::now_utc();
            let outcome = janitor::actions::apply(&writer, &decision, args.dry_run, now)
                .await
                .with_context(|| format!("cleaning up {namespace}/{name}"))?;
            writeln!(
                out,
                "{namespace}/{name}: {} ({})",
                removal.as_str(),
                outcome.as_str()
            )?;
        }
    }
    Ok(())
}

/// `fluxgate restore`.
pub async fn restore(args: RestoreArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    crate::restore::run(args, out).await
}
