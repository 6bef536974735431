//! Leader election over a Lease: the janitor (and anything else that must act once per cluster)
//! runs on the replica that holds it.

use tokio::sync::watch;

/// Who this replica is, and where its Lease lives.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub namespace: String,
    pub lease: String,
    pub identity: String,
}

/// Whether this replica leads, kept current by the Lease manager's background task.
#[derive(Debug, Clone)]
pub struct Leadership {
    leading: watch::Receiver<bool>,
    /// The sending side of a fixed leadership, kept so that `changed` waits instead of failing.
    _fixed: Option<std::sync::Arc<watch::Sender<bool>>>,
}

impl Leadership {
    /// A leadership that never changes, for one-shot runs (`fluxgate cleanup --once`) and tests.
    pub fn fixed(leading: bool) -> Self {
        let (sender, leading) = watch::channel(leading);
        Self {
            leading,
            _fixed: Some(std::sync::Arc::new(sender)),
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// Waits for the next change; an error means the Lease manager stopped.
    pub async fn changed(&mut self) -> Result<bool, watch::error::RecvError> {
        self.leading.changed().await?;
        Ok(self.is_leader())
    }
}

/// Joins the election for `candidate.lease`. A background task keeps the Lease renewed while
/// any clone of the returned [`Leadership`] is alive, and releases it when the last one goes.
pub async fn join(client: kube::Client, candidate: Candidate) -> anyhow::Result<Leadership> {
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client, candidate.lease)
        .with_namespace(candidate.namespace)
        .with_identity(candidate.identity)
        .with_duration(15)
        .with_grace(5)
        .build()
        .await?;
    let (leading, task) = manager.watch().await;
    tokio::spawn(async move {
        if let Ok(Err(err)) = task.await {
            tracing::error!(error = %err, "Lease manager stopped");
        }
    });
    Ok(Leadership {
        leading,
        _fixed: None,
    })
}
