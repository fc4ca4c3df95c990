//! Background work until shutdown: sweeps over rows that fall due (alert fallbacks, roll-call
//! reminders), once a second in batches, and housekeeping at a fixed period (retention,
//! pruning, re-reading keys).
//!
//! Sweeps and housekeeping over shared rows run on one node of a cluster at a time, under a
//! lease ([`crate::cluster::lease`]) that passes to another node when the holder dies; work on
//! a node's own memory ([`every_node`]) runs on each.

use std::future::Future;
use std::time::Duration;

use crate::AppState;

/// Runs `sweep` every second (and again at once while it reports a full `batch`) until the
/// server shuts down, on the one node of a cluster that holds the lease `name`; failures are
/// logged under `name` and retried at the next tick.
pub fn spawn<F, Fut>(state: &AppState, name: &'static str, batch: usize, sweep: F)
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = Result<usize, sqlx::Error>> + Send,
{
    let state = state.clone();
    let tasks = state.background.tasks.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if !state
                .cluster
                .holds(&state.db, name, state.cluster.lease_ttl())
                .await
            {
                continue;
            }
            loop {
                match sweep(state.clone()).await {
                    Ok(n) if n >= batch => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, sweep = name, "background sweep failed");
                        break;
                    }
                }
            }
        }
    });
}

/// Runs `job` every `period` (the first time at once) until the server shuts down, on the one
/// node of a cluster that holds the lease `name` (for a period, so that nodes ticking at other
/// moments do not run it again); a failure is logged under `name` and the job runs again at
/// the next period. `job` answers how many rows it changed, logged when not zero.
pub fn every<F, Fut, E>(state: &AppState, name: &'static str, period: Duration, job: F)
where
    F: Fn(AppState) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, E>> + Send,
    E: std::fmt::Display,
{
    let hold = period + period / 2;
    let job = std::sync::Arc::new(job);
    repeat(state, name, period, move |state| {
        let job = job.clone();
        async move {
            if state.cluster.holds(&state.db, name, hold).await {
                job(state).await
            } else {
                Ok(0)
            }
        }
    });
}

/// Like [`every`], on every node of a cluster: for work on the node's own memory.
pub fn every_node<F, Fut, E>(state: &AppState, name: &'static str, period: Duration, job: F)
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64, E>> + Send,
    E: std::fmt::Display,
{
    repeat(state, name, period, job);
}

fn repeat<F, Fut, E>(state: &AppState, name: &'static str, period: Duration, job: F)
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64, E>> + Send,
    E: std::fmt::Display,
{
    let state = state.clone();
    let tasks = state.background.tasks.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            match job(state.clone()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, job = name, "housekeeping done"),
                Err(e) => tracing::error!(error = %e, job = name, "housekeeping failed"),
            }
        }
    });
}
