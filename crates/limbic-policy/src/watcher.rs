//! Hot reload: keep the current policy in sync with a file on disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use crate::error::PolicyError;
use crate::policy::Policy;

/// Watches a policy file and swaps in each new version that parses.
///
/// A file that fails to load (mid-write, broken TOML, bad regex...) leaves the
/// last good policy in force; the error is logged and kept for
/// [`PolicyWatcher::last_error`] until a good version loads.
///
/// The watcher observes the file's *directory*, because editors and config
/// managers usually replace a file by renaming a new one over it, which a watch
/// on the old inode would miss.
pub struct PolicyWatcher {
    handle: PolicyHandle,
    // Kept alive for its side effect: dropping it stops the watch.
    _watch: ChangeWatch,
}

/// A cheap, cloneable view of the watched policy for other threads.
#[derive(Clone)]
pub struct PolicyHandle {
    shared: Arc<Shared>,
}

struct Shared {
    path: PathBuf,
    current: RwLock<Arc<Policy>>,
    last_error: Mutex<Option<Arc<PolicyError>>>,
    /// Hash of the raw file bytes last examined, so the burst of events a single
    /// save produces does not re-parse (or re-log) identical content.
    last_seen: Mutex<Option<[u8; 32]>>,
    reloads: AtomicU64,
    /// Called after each reload that swapped a policy in or recorded an error.
    on_change: Mutex<Option<ChangeHook>>,
}

/// What [`PolicyHandle::set_on_change`] installs: called with the policy in force after a
/// reload and, when the changed file was refused, its error.
pub type ChangeHook = Box<dyn Fn(&Arc<Policy>, Option<&PolicyError>) + Send + Sync>;

/// Calls a function (on its own thread) after each burst of file-system changes in one
/// directory has settled: the mechanism behind [`PolicyWatcher`], for other watched files
/// (vector packs, device profiles). Dropping it stops the watch.
pub struct ChangeWatch {
    _watcher: RecommendedWatcher,
}

impl ChangeWatch {
    /// Watches `dir` (not recursively). Editors and config managers usually replace a file
    /// by renaming a new one over it, which a watch on the old inode would miss: watch the
    /// file's directory and compare contents in `on_change`.
    pub fn spawn(
        dir: &Path,
        thread_name: &str,
        on_change: impl FnMut() + Send + 'static,
    ) -> Result<ChangeWatch, notify::Error> {
        // The notify callback only signals; a thread waits for the burst of events one
        // save produces (truncate, write, close) to settle before calling `on_change`, so
        // a half-written file is rarely seen at all.
        let (signal, signals) = mpsc::channel::<()>();
        let error_dir = dir.to_path_buf();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                match event {
                    // Any change in the directory may be ours (renames, symlink swaps);
                    // `on_change` compares contents. Our own reads show up as access
                    // events and must not trigger a reload.
                    Ok(event) if is_change(&event.kind) => {
                        let _ = signal.send(());
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(
                        dir = %error_dir.display(),
                        error = %err,
                        "file watch error"
                    ),
                }
            })?;
        std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || settle_loop(&signals, on_change))
            .map_err(notify::Error::io)?;
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        Ok(ChangeWatch { _watcher: watcher })
    }
}

impl PolicyWatcher {
    /// Loads `path` and starts watching it. Fails if the initial load fails:
    /// there is no "last good" policy to fall back on yet.
    pub fn spawn(path: impl AsRef<Path>) -> Result<PolicyWatcher, PolicyError> {
        let path = path.as_ref().to_path_buf();
        let initial = Policy::load(&path)?;
        let seen = std::fs::read(&path).ok().map(|bytes| digest(&bytes));
        let shared = Arc::new(Shared {
            path: path.clone(),
            current: RwLock::new(Arc::new(initial)),
            last_error: Mutex::new(None),
            last_seen: Mutex::new(seen),
            reloads: AtomicU64::new(0),
            on_change: Mutex::new(None),
        });

        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let worker_shared = Arc::clone(&shared);
        let watch = ChangeWatch::spawn(&dir, "limbic-policy-watch", move || {
            worker_shared.reload_if_changed()
        })
        .map_err(|source| PolicyError::Watch {
            path: path.clone(),
            source,
        })?;

        Ok(PolicyWatcher {
            handle: PolicyHandle { shared },
            _watch: watch,
        })
    }

    /// The policy currently in force.
    pub fn current(&self) -> Arc<Policy> {
        self.handle.current()
    }

    /// The error from the most recent failed reload, cleared by the next good one.
    pub fn last_error(&self) -> Option<Arc<PolicyError>> {
        self.handle.last_error()
    }

    /// How many times a changed policy has been swapped in since `spawn`.
    pub fn reload_count(&self) -> u64 {
        self.handle.reload_count()
    }

    /// Re-reads the file now (e.g. on SIGHUP). `Ok(true)` if a new policy was
    /// swapped in, `Ok(false)` if the content was unchanged.
    pub fn reload_now(&self) -> Result<bool, Arc<PolicyError>> {
        self.handle.shared.reload(true)
    }

    pub fn path(&self) -> &Path {
        &self.handle.shared.path
    }

    /// A handle that other threads can keep without owning the watcher.
    pub fn handle(&self) -> PolicyHandle {
        self.handle.clone()
    }
}

impl PolicyHandle {
    pub fn current(&self) -> Arc<Policy> {
        let guard = self
            .shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&guard)
    }

    pub fn last_error(&self) -> Option<Arc<PolicyError>> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn reload_count(&self) -> u64 {
        self.shared.reloads.load(Ordering::SeqCst)
    }

    /// Installs `hook`, called (on the watcher's thread) after each reload that swapped a
    /// new policy in or recorded an error, e.g. to record the change in an audit log.
    pub fn set_on_change(&self, hook: ChangeHook) {
        *self
            .shared
            .on_change
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }
}

/// How long the directory must be quiet before a reload.
const SETTLE: Duration = Duration::from_millis(50);

fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Runs until the watcher (and with it the sending side) is dropped.
fn settle_loop(signals: &Receiver<()>, mut on_change: impl FnMut()) {
    while signals.recv().is_ok() {
        loop {
            match signals.recv_timeout(SETTLE) {
                Ok(()) => continue,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        on_change();
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Shared {
    fn reload_if_changed(&self) {
        // Errors are recorded inside `reload`; only the hook is left to call.
        let error = match self.reload(false) {
            Ok(false) => return,
            Ok(true) => None,
            Err(e) => Some(e),
        };
        let current = Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner));
        if let Some(hook) = self
            .on_change
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            hook(&current, error.as_deref());
        }
    }

    /// Re-reads the file. Without `force`, content identical to the last
    /// examined version is skipped.
    fn reload(&self, force: bool) -> Result<bool, Arc<PolicyError>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(source) => {
                let err = PolicyError::Read {
                    path: self.path.clone(),
                    source,
                };
                // A missing file mid-rename is normal; still record it, since a
                // deleted policy file is something the operator should see.
                *self.lock_seen() = None;
                return Err(self.record_error(err));
            }
        };
        let seen = digest(&bytes);
        {
            let mut last_seen = self.lock_seen();
            if !force && *last_seen == Some(seen) {
                return Ok(false);
            }
            *last_seen = Some(seen);
        }
        let text = String::from_utf8_lossy(&bytes);
        match Policy::parse(&text, &self.path.display().to_string()) {
            Ok(policy) => {
                self.last_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
                if current.hash() == policy.hash() {
                    return Ok(false);
                }
                tracing::info!(
                    path = %self.path.display(),
                    name = policy.name(),
                    hash = policy.hash(),
                    previous_hash = current.hash(),
                    "policy reloaded"
                );
                *current = Arc::new(policy);
                self.reloads.fetch_add(1, Ordering::SeqCst);
                Ok(true)
            }
            Err(err) => Err(self.record_error(err)),
        }
    }

    fn lock_seen(&self) -> std::sync::MutexGuard<'_, Option<[u8; 32]>> {
        self.last_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn record_error(&self, err: PolicyError) -> Arc<PolicyError> {
        let current_hash = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .hash()
            .to_owned();
        tracing::warn!(
            path = %self.path.display(),
            error = %err,
            keeping_hash = %current_hash,
            "policy reload failed; keeping the last good policy"
        );
        let err = Arc::new(err);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&err));
        err
    }
}
