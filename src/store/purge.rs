//! A background task that purges expired records (S33).

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::{interval, Duration, MissedTickBehavior};

use super::SessionStore;

/// A running purge task; dropping the handle does not stop it, [`stop`]
/// does.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use session_layer::store::PurgeTask;
/// use session_layer::MemoryStore;
///
/// let store = MemoryStore::new();
/// let task = PurgeTask::spawn(store.clone(), Duration::from_secs(60));
/// task.stop().await;
/// # }
/// ```
///
/// [`stop`]: PurgeTask::stop
#[derive(Debug)]
pub struct PurgeTask {
    handle: JoinHandle<()>,
}

impl PurgeTask {
    /// The shortest time one purge call may take before it is abandoned.
    pub const CALL_TIMEOUT: Duration = Duration::from_secs(600);

    /// Calls [`SessionStore::purge_expired`] every `period` on the current
    /// tokio runtime. A failed purge is logged and the task goes on; so is a
    /// purge that has not finished within [`PurgeTask::CALL_TIMEOUT`] or
    /// `period`, whichever is longer (an unreachable server that never
    /// answers), which is abandoned.
    pub fn spawn<S: SessionStore>(store: S, period: Duration) -> Self {
        // `interval` refuses a zero period; a purge per second is plenty.
        let period = period.max(Duration::from_secs(1));
        // Long enough for a big DELETE to finish rather than be retried forever.
        let limit = period.max(Self::CALL_TIMEOUT);
        let store: Arc<dyn SessionStore> = Arc::new(store);
        let handle = tokio::spawn(async move {
            let mut ticks = interval(period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match tokio::time::timeout(limit, store.purge_expired()).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::debug!(purged = n, "purged expired sessions"),
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "purging expired sessions failed; will retry")
                    }
                    Err(_) => {
                        tracing::warn!(?period, "purging expired sessions timed out; will retry")
                    }
                }
            }
        });
        Self { handle }
    }

    /// Stops the task and waits until it has stopped.
    pub async fn stop(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}
