//! The model worker: one thread owns the guard (model, sessions, audit) and takes steps
//! from a channel, so concurrent sessions are serialised onto the model safely.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use limbic_guard::{Guard, StepAnswer, StepRequest};
use tokio::sync::{mpsc, oneshot};

/// One step and where to send its answer.
pub(crate) type Job = (StepRequest, oneshot::Sender<Result<StepAnswer, String>>);

/// Steps waiting for the worker before senders wait too.
const QUEUE: usize = 64;

/// Starts the worker; steps are handled in arrival order.
pub(crate) fn spawn(
    mut guard: Guard,
    perf: Arc<Mutex<limbic_engine::PerfStats>>,
) -> Result<(mpsc::Sender<Job>, JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    let handle = std::thread::Builder::new()
        .name("limbic-guard".into())
        .spawn(move || {
            while let Some((input, reply)) = rx.blocking_recv() {
                let result = guard.check(&input).map_err(|e| format!("{e:#}"));
                if let Some(s) = guard.scorer() {
                    if let Ok(mut p) = perf.lock() {
                        *p = s.engine().perf();
                    }
                }
                // The client may have gone away; the step is recorded either way.
                let _ = reply.send(result);
            }
        })
        .context("starting the guard thread")?;
    Ok((tx, handle))
}
