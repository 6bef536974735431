//! Flux's GitRepository contract, as fluxgate relies on it: the API resource, the labels Flux puts
//! on objects it applies, and the annotation that asks for a reconcile. Everything else imports
//! these names from here; what fluxgate itself writes on a GitRepository is [`crate::marks`].

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

/// API group of Flux's sources.
pub const GROUP: &str = "source.toolkit.fluxcd.io";
/// The served version fluxgate reads and writes.
pub const VERSION: &str = "v1";
pub const API_VERSION: &str = "source.toolkit.fluxcd.io/v1";
pub const KIND: &str = "GitRepository";
pub const PLURAL: &str = "gitrepositories";

/// Flux reconciles an object again when this annotation's value changes; the value is an opaque
/// token (fluxgate writes an RFC 3339 time).
pub const REQUESTED_AT_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

/// `spec.timeout` when the object leaves it out (the CRD's default).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What source-controller's failure message says when an attempt ran out of `spec.timeout`
/// (Go's `context.DeadlineExceeded`). Such a failure shows only at the end of the attempt.
pub const DEADLINE_EXCEEDED: &str = "context deadline exceeded";

/// Labels by which Flux marks the objects its Kustomizations and HelmReleases apply.
pub const GITOPS_LABELS: [&str; 2] = [
    "kustomize.toolkit.fluxcd.io/name",
    "helm.toolkit.fluxcd.io/name",
];

/// Whether a Flux Kustomization or HelmRelease applied the object carrying `labels`.
pub fn is_gitops_managed<'a>(mut label_keys: impl Iterator<Item = &'a str>) -> bool {
    label_keys.any(|key| GITOPS_LABELS.contains(&key))
}

/// Flux's sharding label: a source-controller started with
/// `--watch-label-selector=sharding.fluxcd.io/key=SHARD` serves the objects carrying it. fluxgate
/// sets it on new GitRepositories of a host lane's host (`--lane HOST=SHARD`).
pub const SHARD_LABEL: &str = "sharding.fluxcd.io/key";

/// What fluxgate may do to a GitRepository that keeps failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Removal {
    /// `spec.suspend: true` plus marks: reversible with `fluxgate restore`.
    Suspend,
    /// Delete the GitRepository (opt-in).
    Delete,
}

impl Removal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suspend => "suspend",
            Self::Delete => "delete",
        }
    }

    /// The one decision about GitOps-managed objects: deleting what a Flux Kustomization or
    /// HelmRelease applied only gets it applied again (and retried again), so such an object is
    /// suspended instead. Returns the action to take and, when it was changed, why.
    pub fn for_object(self, gitops_managed: bool) -> (Self, Option<&'static str>) {
        if self == Self::Delete && gitops_managed {
            (Self::Suspend, Some(DOWNGRADE_NOTE))
        } else {
            (self, None)
        }
    }
}

/// Why a requested delete became a suspend.
pub const DOWNGRADE_NOTE: &str =
    "suspended instead of deleted because a Flux Kustomization or HelmRelease would re-apply it";

/// A GitRepository named on the command line as `NAMESPACE/NAME`.
pub fn parse_object_ref(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => Err(format!("{text:?}: expected NAMESPACE/NAME")),
    }
}

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// The GitRepositories of `namespace`, or of the whole cluster.
pub fn gitrepositories(client: &kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = api_resource();
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// A reference to one GitRepository, for Events.
pub fn object_reference(
    namespace: &str,
    name: &str,
    uid: Option<String>,
    resource_version: Option<String>,
) -> ObjectReference {
    ObjectReference {
        api_version: Some(API_VERSION.to_owned()),
        kind: Some(KIND.to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        uid,
        resource_version,
        ..ObjectReference::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_becomes_suspend_only_for_gitops_managed_objects() {
        assert_eq!(Removal::Delete.for_object(false), (Removal::Delete, None));
        assert_eq!(
            Removal::Delete.for_object(true),
            (Removal::Suspend, Some(DOWNGRADE_NOTE))
        );
        assert_eq!(Removal::Suspend.for_object(true), (Removal::Suspend, None));
    }

    #[test]
    fn gitops_labels_are_recognised() {
        assert!(is_gitops_managed(
            ["app", "kustomize.toolkit.fluxcd.io/name"].into_iter()
        ));
        assert!(is_gitops_managed(
            ["helm.toolkit.fluxcd.io/name"].into_iter()
        ));
        assert!(!is_gitops_managed(["app"].into_iter()));
    }

    #[test]
    fn the_api_resource_is_flux_v1() {
        let resource = api_resource();
        assert_eq!(resource.api_version, API_VERSION);
        assert_eq!(resource.plural, PLURAL);
    }
}
