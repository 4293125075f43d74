//! Active expiry: a background task that drops expired entries a few at a time, as Redis's
//! `activeExpireCycle` does, so keys nobody reads again do not stay in memory.

use crate::db::{now_ms, Db};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the purge task runs a step.
pub const PERIOD: Duration = Duration::from_millis(100);

/// Runs [`Db::purge_step`] every [`PERIOD`] until `shutdown` turns true. The loop itself never
/// changes; the step it calls is updateable.
pub async fn run(db: Arc<Db>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let purged = db.purge_step(now_ms()).await;
                if purged > 0 {
                    tracing::trace!(purged, "expired entries dropped");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
