//! Proxy environment injection into source-controller's Pods.

use serde_json::Value;

use super::{Mutation, PolicyError};

/// Which Pods get proxy settings, and which settings. Empty (no proxy) leaves every Pod untouched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyPolicy {
    pub https_proxy: Option<String>,
}

impl ProxyPolicy {
    pub fn mutate_pod(
        &self,
        _namespace: Option<&str>,
        _pod: &Value,
    ) -> Result<Mutation, PolicyError> {
        Ok(Mutation::default())
    }
}
