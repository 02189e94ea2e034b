//! The model worker: one thread owns the guard (model, sessions, audit) and takes steps
//! from a channel. Steps that wait at the same moment are checked together, so their
//! sessions share the forward pass (the engine batches them across KV sequences) and
//! throughput grows with concurrency instead of latency.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result};
use limbic_guard::native::{ChatAnswer, ChatError, ChatRequest, Progress};
use limbic_guard::{Guard, StepAnswer, StepNumberRejected, StepRequest};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// Why a step got no decision, with the HTTP status to answer.
#[derive(Debug)]
pub(crate) struct JobError {
    pub(crate) status: u16,
    pub(crate) message: String,
}

/// One step, its deadline, and where to send its answer.
pub(crate) struct Job {
    pub(crate) request: StepRequest,
    pub(crate) deadline: Instant,
    pub(crate) enqueued: Instant,
    pub(crate) reply: oneshot::Sender<Result<StepAnswer, JobError>>,
}

/// What a chat request's handler hears from the worker, in order: `Accepted` (or at
/// once `Done(Err)`), any live text, then `Done`.
pub(crate) enum ChatEvent {
    Accepted,
    Text(String),
    Done(Box<Result<ChatAnswer, ChatError>>),
}

/// One chat request (native mode) and where its events go.
pub(crate) struct ChatJob {
    pub(crate) request: ChatRequest,
    pub(crate) events: mpsc::UnboundedSender<ChatEvent>,
}

impl ChatJob {
    fn run(self, guard: &mut Guard) {
        let events = self.events;
        let result = guard.chat(&self.request, &mut |progress| {
            // A client that went away stops receiving; the turn is still audited.
            let _ = events.send(match progress {
                Progress::Accepted => ChatEvent::Accepted,
                Progress::Text(t) => ChatEvent::Text(t.to_string()),
            });
        });
        let _ = events.send(ChatEvent::Done(Box::new(result)));
    }
}

/// What the worker is asked to do.
pub(crate) enum Work {
    Step(Job),
    /// A native-mode turn (generated alone: it decodes token by token).
    Chat(Box<ChatJob>),
    /// Copy the audit WAL into the database file (periodic; also done when the worker stops).
    Checkpoint,
    /// A watched policy, pack or profile changed: apply it (between steps).
    Reload,
}

/// Steps waiting for the worker before senders wait too.
const QUEUE: usize = 1024;
/// Most steps checked in one batch (the engine further splits by resident sessions).
pub const MAX_BATCH: usize = 32;

/// Periodic anchors: after each checkpoint the verified head is signed and written out,
/// so a copy of the anchor kept elsewhere can later prove the log was not cut or rewritten.
pub(crate) struct Anchoring {
    pub(crate) db: PathBuf,
    pub(crate) key: limbic_audit::AnchorKey,
    pub(crate) out: PathBuf,
}

impl Anchoring {
    fn write(&self) {
        // Verifying reads the whole log: fine at checkpoint intervals, off the hot path
        // only in the sense that steps wait for it like for the checkpoint itself.
        match limbic_audit::anchor_verified(&self.db, &self.key)
            .map_err(anyhow::Error::from)
            .and_then(|a| a.write(&self.out).map(|()| a).map_err(anyhow::Error::from))
        {
            Ok(a) => tracing::info!("audit anchored at seq {} -> {}", a.seq, self.out.display()),
            Err(e) => tracing::warn!("audit anchor failed: {e:#}"),
        }
    }
}

/// Starts the worker.
pub(crate) fn spawn(
    mut guard: Guard,
    anchor: Option<Anchoring>,
    perf: Arc<Mutex<limbic_engine::PerfStats>>,
    metrics: Arc<Metrics>,
) -> Result<(mpsc::Sender<Work>, JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::channel::<Work>(QUEUE);
    let handle = std::thread::Builder::new()
        .name("limbic-guard".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut jobs = Vec::new();
                let mut chats = Vec::new();
                let mut checkpoint = false;
                match first {
                    Work::Step(job) => jobs.push(job),
                    Work::Chat(chat) => chats.push(chat),
                    Work::Checkpoint => checkpoint = true,
                    Work::Reload => {}
                }
                while !jobs.is_empty() && jobs.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(Work::Step(job)) => jobs.push(job),
                        Ok(Work::Chat(chat)) => chats.push(chat),
                        Ok(Work::Checkpoint) => checkpoint = true,
                        Ok(Work::Reload) => {}
                        Err(_) => break,
                    }
                }
                // Before the batch, so its steps are decided (and audited) under the
                // configuration now on disk; a no-op unless a watcher saw a change.
                if let Err(e) = guard.apply_reloads() {
                    tracing::warn!("recording a reload in the audit log failed: {e:#}");
                }
                for chat in chats {
                    chat.run(&mut guard);
                }
                if checkpoint {
                    match guard.checkpoint() {
                        Err(e) => tracing::warn!("audit checkpoint failed: {e:#}"),
                        Ok(_) => {
                            if let Some(a) = &anchor {
                                a.write();
                            }
                        }
                    }
                }
                if jobs.is_empty() {
                    continue;
                }
                let picked = Instant::now();
                for job in &jobs {
                    metrics.record_queue_wait(picked.duration_since(job.enqueued));
                }
                metrics
                    .queue_depth
                    .store(rx.len() as u64, Ordering::Relaxed);
                let items: Vec<(&StepRequest, Option<Instant>)> = jobs
                    .iter()
                    .map(|j| (&j.request, Some(j.deadline)))
                    .collect();
                let results = guard.check_many(&items);
                if let Some(s) = guard.scorer() {
                    if let Ok(mut p) = perf.lock() {
                        *p = s.engine().perf();
                    }
                }
                for (job, result) in jobs.into_iter().zip(results) {
                    let result = result.map_err(|e| JobError {
                        status: if e.downcast_ref::<StepNumberRejected>().is_some() {
                            409
                        } else {
                            500
                        },
                        message: format!("{e:#}"),
                    });
                    // The client may have gone away; the step is recorded either way
                    // (as late when its deadline had passed).
                    let _ = job.reply.send(result);
                }
            }
            // Every sender is gone (shutdown): leave `audit.db` holding every row.
            match guard.checkpoint() {
                Ok(Some(report)) if report.busy => {
                    eprintln!("limbic serve: audit checkpoint incomplete (the log is busy); rows stay in the WAL")
                }
                Ok(_) => eprintln!("limbic serve: audit log checkpointed"),
                Err(e) => eprintln!("limbic serve: audit checkpoint failed: {e:#}"),
            }
            if let Some(a) = &anchor {
                a.write();
            }
        })
        .context("starting the guard thread")?;
    Ok((tx, handle))
}
