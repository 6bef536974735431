//! Pure decisions about how fluxgate changes objects on admission. No I/O and no clock: the
//! webhook and `fluxgate mutate` both call [`Policy::plan`], so they cannot disagree.
//! [`native`] writes the same decisions as a MutatingAdmissionPolicy for kube-apiserver to apply
//! (`fluxgate admission-policy`); the end-to-end tests hold the two to the same results.

pub mod args;
pub mod fields;
pub mod gitrepository;
pub mod lane;
pub mod mirror;
pub mod native;
pub mod proxy;

use std::sync::Arc;

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use jsonptr::PointerBuf;
use serde_json::Value;
use time::OffsetDateTime;

use crate::flux;

pub use args::PolicyArgs;
pub use gitrepository::{GitRepositoryFields, GitRepositoryPolicy, SuspendMode, TimeoutMode};
pub use lane::{LaneRule, LaneRules};
pub use mirror::{MirrorRule, MirrorRules};
pub use proxy::ProxyPolicy;

/// The kinds of object fluxgate has an opinion about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    GitRepository,
    Pod,
}

impl Target {
    /// Recognises a kind by API group and kind, whatever the version.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Self> {
        match (group, kind) {
            (flux::GROUP, flux::KIND) => Some(Self::GitRepository),
            ("", "Pod") => Some(Self::Pod),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GitRepository => flux::KIND,
            Self::Pod => "Pod",
        }
    }
}

/// The outcome of a policy: a JSON Patch (possibly empty) and warnings for the object's creator.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mutation {
    pub patch: Patch,
    pub warnings: Vec<String>,
    /// The mirror rule (its name) that rewrote `spec.url`, for whoever counts rewrites: the
    /// decision travels with the patch, nobody decides it again.
    pub mirror_rule: Option<Arc<str>>,
    /// The shard of the lane the object was put in, for whoever counts assignments.
    pub lane_shard: Option<Arc<str>>,
}

impl Mutation {
    pub fn is_empty(&self) -> bool {
        self.patch.0.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the object is not a JSON object")]
    NotAnObject,
    #[error("{0} is a {1}, expected an object")]
    FieldNotAnObject(&'static str, &'static str),
    #[error("{0} is a {1}, expected a list")]
    FieldNotAList(String, &'static str),
}

/// Everything fluxgate is configured to enforce.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub gitrepository: GitRepositoryPolicy,
    pub proxy: ProxyPolicy,
}

impl Policy {
    /// The patch for one object being created. Objects of other kinds get an empty mutation.
    pub fn plan(
        &self,
        target: Target,
        namespace: Option<&str>,
        object: &Value,
        now: OffsetDateTime,
    ) -> Result<Mutation, PolicyError> {
        match target {
            Target::GitRepository => {
                gitrepository::plan_object(object, namespace, &self.gitrepository, now)
            }
            Target::Pod => self.proxy.plan_pod(namespace, object),
        }
    }

    /// [`Policy::plan`] for a GitRepository already read into the fields the policy looks at
    /// (the webhook reads them straight from the review's JSON). The same decision either way.
    pub fn plan_gitrepository(
        &self,
        object: &GitRepositoryFields<'_>,
        namespace: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Mutation, PolicyError> {
        gitrepository::plan(object, namespace, &self.gitrepository, now)
    }
}

pub use crate::text::rfc3339_seconds;

/// Collects JSON Patch operations from path tokens, escaping `/` and `~` in keys as RFC 6901 asks.
#[derive(Debug, Default)]
pub(crate) struct PatchBuilder(Vec<PatchOperation>);

impl PatchBuilder {
    pub(crate) fn add<T: AsRef<str>>(&mut self, path: &[T], value: Value) {
        self.0.push(PatchOperation::Add(AddOperation {
            path: pointer(path),
            value,
        }));
    }

    pub(crate) fn replace<T: AsRef<str>>(&mut self, path: &[T], value: Value) {
        self.0.push(PatchOperation::Replace(ReplaceOperation {
            path: pointer(path),
            value,
        }));
    }

    pub(crate) fn finish(self) -> Patch {
        Patch(self.0)
    }
}

fn pointer<T: AsRef<str>>(path: &[T]) -> PointerBuf {
    PointerBuf::from_tokens(path.iter().map(|t| jsonptr::Token::new(t.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamps_are_utc_whole_seconds() {
        assert_eq!(
            rfc3339_seconds(datetime!(2026-01-02 03:04:05.999 +08:00)),
            "2026-01-01T19:04:05Z"
        );
    }

    #[test]
    fn pointer_escapes_slash_and_tilde() {
        let p = pointer(&["metadata", "annotations", "a/b~c"]);
        assert_eq!(p.as_str(), "/metadata/annotations/a~1b~0c");
    }

    #[test]
    fn targets_are_matched_on_group_and_kind_only() {
        assert_eq!(
            Target::from_group_kind("source.toolkit.fluxcd.io", "GitRepository"),
            Some(Target::GitRepository)
        );
        assert_eq!(Target::from_group_kind("", "Pod"), Some(Target::Pod));
        assert_eq!(Target::from_group_kind("apps", "Deployment"), None);
        assert_eq!(
            Target::from_group_kind("example.com", "GitRepository"),
            None
        );
    }
}
