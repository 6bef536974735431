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

/// A part that acts only on the replica holding the Lease (the janitor, the breaker), run by
/// [`run_while_leading`].
pub trait Duty {
    /// One pass, on the leader. `leadership` is there to check again between writes: a replica
    /// that lost the Lease stops at once.
    fn pass(&mut self, leadership: &Leadership) -> impl Future<Output = ()> + Send;

    /// Resolves when a pass should come before the next tick (the breaker: a change the watch
    /// saw). Never, by default.
    fn wake(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// This replica started or stopped leading (also called once at the start).
    fn leadership_changed(&mut self, _leading: bool) {}
}

/// Runs `duty`'s passes while `leadership` says this replica leads: every `every`, and whenever
/// [`Duty::wake`] resolves. Ends with an error when the Lease manager stops.
pub async fn run_while_leading<D: Duty>(
    part: &'static str,
    mut leadership: Leadership,
    every: std::time::Duration,
    mut duty: D,
) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    duty.leadership_changed(leadership.is_leader());
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = duty.wake() => {}
            changed = leadership.changed() => {
                let Ok(leading) = changed else {
                    anyhow::bail!("{part}: Lease manager stopped");
                };
                tracing::info!(part, leader = leading, "leadership changed");
                duty.leadership_changed(leading);
                continue;
            }
        }
        if leadership.is_leader() {
            duty.pass(&leadership).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct Counting {
        passes: Arc<AtomicUsize>,
        changes: Arc<std::sync::Mutex<Vec<bool>>>,
    }

    impl Duty for Counting {
        async fn pass(&mut self, leadership: &Leadership) {
            assert!(leadership.is_leader());
            self.passes.fetch_add(1, Ordering::SeqCst);
        }

        fn leadership_changed(&mut self, leading: bool) {
            self.changes.lock().unwrap().push(leading);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn passes_run_only_while_leading_and_changes_are_told() {
        let (sender, receiver) = watch::channel(false);
        let leadership = Leadership {
            leading: receiver,
            _fixed: None,
        };
        let passes = Arc::new(AtomicUsize::new(0));
        let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let duty = Counting {
            passes: passes.clone(),
            changes: changes.clone(),
        };
        let run = tokio::spawn(run_while_leading(
            "test",
            leadership,
            Duration::from_secs(10),
            duty,
        ));
        tokio::time::sleep(Duration::from_secs(35)).await;
        assert_eq!(passes.load(Ordering::SeqCst), 0, "not leading: no pass");
        sender.send(true).unwrap();
        tokio::time::sleep(Duration::from_secs(31)).await;
        let led = passes.load(Ordering::SeqCst);
        assert!((3..=4).contains(&led), "{led} passes in 31s at one per 10s");
        drop(sender);
        let ended = tokio::time::timeout(Duration::from_secs(60), run).await;
        assert!(
            ended.unwrap().unwrap().is_err(),
            "a stopped Lease manager ends the loop"
        );
        assert_eq!(*changes.lock().unwrap(), [false, true]);
    }
}
