//! Flux's GitRepository contract, as fluxgate relies on it: the API resource, the labels Flux puts
//! on objects it applies, the annotation that asks for a reconcile, and every mark fluxgate itself
//! writes on a GitRepository. Everything else imports these names from here.

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

/// The janitor's archive marks (`kubectl get gitrepositories -l fluxgate.io/archived`).
pub mod archive {
    pub const LABEL: &str = "fluxgate.io/archived";
    pub const AT_ANNOTATION: &str = "fluxgate.io/archived-at";
    pub const REASON_ANNOTATION: &str = "fluxgate.io/archived-reason";
    pub const RULE_ANNOTATION: &str = "fluxgate.io/archived-rule";
    /// When `fluxgate restore` last ran: the janitor's rules count from here, not from the old
    /// failure.
    pub const RESTORED_AT_ANNOTATION: &str = "fluxgate.io/restored-at";
    /// `"false"` (or `"disabled"`) on a GitRepository keeps the janitor away from it.
    pub const OPT_OUT_ANNOTATION: &str = "fluxgate.io/janitor";

    /// Whether an opt-out annotation's value opts out.
    pub fn opts_out(value: &str) -> bool {
        value == "false" || value == "disabled"
    }
}

/// The host circuit breaker's marks (`kubectl get gitrepositories -l fluxgate.io/quarantined`).
pub mod quarantine {
    /// On every GitRepository the breaker suspended.
    pub const LABEL: &str = "fluxgate.io/quarantined";
    /// The host whose breaker quarantined the object.
    pub const HOST_ANNOTATION: &str = "fluxgate.io/quarantined-host";
    /// When it was quarantined (RFC 3339): a new leader reopens the breaker from the oldest one.
    pub const AT_ANNOTATION: &str = "fluxgate.io/quarantined-at";
    pub const REASON_ANNOTATION: &str = "fluxgate.io/quarantine-reason";
    /// When the breaker last released it (RFC 3339), as a canary or in a batch.
    pub const RELEASED_AT_ANNOTATION: &str = "fluxgate.io/breaker-released-at";
    /// When someone else's unsuspend of a quarantined object was acknowledged (RFC 3339): the
    /// breaker leaves that object alone for the rest of the episode, also after a change of
    /// leader.
    pub const OVERRIDDEN_AT_ANNOTATION: &str = "fluxgate.io/quarantine-overridden-at";
    /// `"false"` keeps the breaker away from one GitRepository.
    pub const OPT_OUT_ANNOTATION: &str = "fluxgate.io/breaker";
}

/// The mirror rules' marks (`fluxgate serve --mirror FROM=TO`).
pub mod mirror {
    /// The `spec.url` a GitRepository was created with, before a mirror rule rewrote it: who
    /// reads the object can tell, and undo.
    pub const ORIGINAL_URL_ANNOTATION: &str = "fluxgate.io/original-url";
    /// `"false"` (or `"disabled"`) on a GitRepository being created keeps its URL as written.
    pub const OPT_OUT_ANNOTATION: &str = "fluxgate.io/mirror";

    /// Whether an opt-out annotation's value opts out.
    pub fn opts_out(value: &str) -> bool {
        super::archive::opts_out(value)
    }
}

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
