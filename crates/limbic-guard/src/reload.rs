//! Hot reload of what a running guard is configured from: the policy file (its own watcher,
//! `limbic_policy::PolicyWatcher`), the vector pack directory and the device profile file.
//!
//! Watchers only raise a flag ([`ReloadStatus::pending`]); the thread that owns the guard
//! applies the changes between steps ([`Guard::apply_reloads`]), so a step is always scored
//! and decided under one configuration. A file that cannot be used keeps the last good
//! configuration in force and its error is shown ([`ReloadStatus::problems`], on `/health`);
//! every reload, applied or refused, is recorded as a config row of the audit chain
//! (`settings.reload`). Profile settings that size the engine (threads, GPU layers, context,
//! batch, resident sessions) apply only at the next start and are reported as such.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{bail, Context, Result};
use limbic_policy::{ChangeWatch, Policy};
use limbic_vectors::Pack;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::guard::{check_profile_taps, Guard, GuardConfig, PolicySource, StoreText};
use crate::profile::Profile;

/// What a watched file is doing, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchedFile {
    pub path: PathBuf,
    /// Hash of the version in force (pack: the pack hash of the audit's config rows;
    /// profile: sha256 of the file).
    pub hash: String,
    /// Changed versions swapped in since start.
    pub reloads: u64,
    /// Why the latest changed version was refused; cleared by the next good one.
    pub last_error: Option<String>,
}

/// The reload state the daemon shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadState {
    pub pack: Option<WatchedFile>,
    pub profile: Option<WatchedFile>,
    /// Profile settings changed on disk that take effect only at the next start.
    pub needs_restart: Vec<String>,
}

/// A cheap, cloneable view of the reload state for other threads.
#[derive(Clone, Default)]
pub struct ReloadStatus {
    pending: Arc<AtomicBool>,
    state: Arc<Mutex<ReloadState>>,
    /// Each policy reload as the watcher made it (the policy then in force, the refusal),
    /// kept until recorded: the watcher may move on before the guard looks.
    policy_events: Arc<Mutex<Vec<PolicyEvent>>>,
}

/// The policy in force after a watcher reload, and the refused file's error if any.
type PolicyEvent = (Arc<Policy>, Option<String>);

impl ReloadStatus {
    /// A watched file changed and the guard has not looked at it yet.
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    pub fn state(&self) -> ReloadState {
        self.lock().clone()
    }

    /// What an operator should see: refused files and settings waiting for a restart.
    pub fn problems(&self) -> Vec<String> {
        let state = self.lock();
        let mut out = Vec::new();
        for (what, file) in [("vector pack", &state.pack), ("profile", &state.profile)] {
            if let Some(e) = file.as_ref().and_then(|f| f.last_error.as_ref()) {
                out.push(format!(
                    "the {what} failed to reload (the last good one is in force): {e}"
                ));
            }
        }
        if !state.needs_restart.is_empty() {
            out.push(format!(
                "profile changes that need a restart: {}",
                state.needs_restart.join(", ")
            ));
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReloadState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn flag(&self) -> impl Fn() + Send + Sync + 'static {
        let pending = Arc::clone(&self.pending);
        move || pending.store(true, Ordering::SeqCst)
    }
}

/// The guard's side of hot reload: what is watched and what was last seen.
pub(crate) struct Reloader {
    status: ReloadStatus,
    /// What the guard was built from, with the profile now in force.
    config: GuardConfig,
    /// The profile at start: a setting equal to its value there came from it (not a flag).
    start_profile: Option<Profile>,
    profile_path: Option<PathBuf>,
    /// Content last examined (applied or refused), so one save is handled once.
    pack_seen: Option<String>,
    profile_seen: Option<String>,
    _watches: Vec<ChangeWatch>,
}

impl Reloader {
    pub(crate) fn profile(&self) -> Option<&Profile> {
        self.config.profile.as_ref()
    }
}

/// One reload, as recorded in the config row's `settings.reload`.
struct Event {
    /// The policy in force with this change (`None`: the guard's current one).
    policy: Option<Arc<Policy>>,
    what: &'static str,
    path: String,
    error: Option<String>,
    needs_restart: Vec<String>,
}

impl Event {
    fn json(&self) -> serde_json::Value {
        json!({
            "what": self.what,
            "path": self.path,
            "outcome": if self.error.is_some() { "refused" } else { "applied" },
            "error": self.error,
            "needs_restart": self.needs_restart,
        })
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// A profile loaded from a file (not a shipped name) can change on disk.
fn profile_file(profile: &Profile) -> Option<PathBuf> {
    (!profile.origin.starts_with("<builtin:")).then(|| PathBuf::from(&profile.origin))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Guard {
    /// Starts watching the pack directory and the profile file (when loaded from a file) and
    /// hooks the policy watcher, all raising [`ReloadStatus::pending`]; the owner of the
    /// guard then calls [`Guard::apply_reloads`]. `config` is what the guard was built from.
    pub fn watch_config(&mut self, config: &GuardConfig) -> Result<ReloadStatus> {
        let status = ReloadStatus::default();
        let mut watches = Vec::new();
        let mut state = ReloadState::default();
        if let Some(scorer) = self.scorer() {
            let dir = scorer.pack_dir().to_path_buf();
            let flag = status.flag();
            watches.push(
                ChangeWatch::spawn(&dir, "limbic-pack-watch", flag)
                    .with_context(|| format!("watching the vector pack {}", dir.display()))?,
            );
            state.pack = Some(WatchedFile {
                path: dir,
                hash: scorer.pack_hash().to_string(),
                reloads: 0,
                last_error: None,
            });
        }
        let profile_path = config.profile.as_ref().and_then(profile_file);
        if let Some(path) = &profile_path {
            let flag = status.flag();
            watches.push(
                ChangeWatch::spawn(&parent_dir(path), "limbic-profile-watch", flag)
                    .with_context(|| format!("watching the profile {}", path.display()))?,
            );
            state.profile = Some(WatchedFile {
                path: path.clone(),
                hash: sha256_file(path).unwrap_or_default(),
                reloads: 0,
                last_error: None,
            });
        }
        if let Some(handle) = self.policy_handle() {
            let flag = status.flag();
            let events = Arc::clone(&status.policy_events);
            handle.set_on_change(Box::new(move |policy, error| {
                events
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((Arc::clone(policy), error.map(|e| e.to_string())));
                flag();
            }));
        }
        *status.lock() = state;
        self.reloader = Some(Reloader {
            status: status.clone(),
            config: config.clone(),
            start_profile: config.profile.clone(),
            pack_seen: self.scorer().map(|s| s.pack_hash().to_string()),
            profile_seen: profile_path.as_deref().and_then(|p| sha256_file(p).ok()),
            profile_path,
            _watches: watches,
        });
        Ok(status)
    }

    /// Applies what changed since the last call (nothing unless a watcher raised the flag):
    /// a new policy, pack or profile is swapped in, or refused with its error kept for
    /// `/health`; each is recorded as a config row. An error is an audit failure only.
    pub fn apply_reloads(&mut self) -> Result<()> {
        let Some(r) = &self.reloader else {
            return Ok(());
        };
        if !r.status.pending.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let mut events = self.policy_events();
        events.extend(self.reload_pack());
        events.extend(self.reload_profile());
        for event in events {
            match &event.error {
                Some(e) => tracing::warn!("{} {}: reload refused: {e}", event.what, event.path),
                None => tracing::info!("{} {}: reloaded", event.what, event.path),
            }
            let policy = event.policy.clone().unwrap_or_else(|| self.policy());
            self.write_config(&policy, Some(event.json()))?;
        }
        Ok(())
    }

    /// What the policy watcher did since last time: policies swapped in, files refused.
    fn policy_events(&self) -> Vec<Event> {
        let Some(r) = &self.reloader else {
            return Vec::new();
        };
        let heard = std::mem::take(
            &mut *r
                .status
                .policy_events
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        heard
            .into_iter()
            .map(|(policy, error)| Event {
                what: "policy",
                path: policy.origin().to_string(),
                policy: Some(policy),
                error,
                needs_restart: Vec::new(),
            })
            .collect()
    }

    fn reload_pack(&mut self) -> Option<Event> {
        let r = self.reloader.as_ref()?;
        let (profile, n_ctx, n_batch) =
            (r.config.profile.clone(), r.config.n_ctx, r.config.n_batch);
        let status = r.status.clone();
        let scorer = self.scorer_mut()?;
        let dir = scorer.pack_dir().to_path_buf();
        let in_force = scorer.pack_hash().to_string();
        let hash = crate::scorer::pack_hash(&dir).unwrap_or_else(|e| format!("unreadable: {e:#}"));
        let r = self.reloader.as_mut()?;
        if r.pack_seen.as_ref() == Some(&hash) {
            return None;
        }
        r.pack_seen = Some(hash.clone());
        let scorer = self.scorer_mut()?;
        let outcome = if hash == in_force {
            // Back to the pack in force (a broken edit undone): nothing to swap.
            Ok(false)
        } else {
            Pack::load(&dir)
                .with_context(|| format!("loading vector pack {}", dir.display()))
                .and_then(|pack| {
                    if let Some(p) = &profile {
                        let layers = pack
                            .manifest()
                            .emotions
                            .values()
                            .flat_map(|e| e.layers.iter().copied())
                            .collect::<std::collections::BTreeSet<u32>>();
                        check_profile_taps(p, scorer.model(), layers.len(), n_ctx, n_batch)?;
                    }
                    scorer.replace_pack(&pack)?;
                    Ok(true)
                })
        };
        let mut state = status.lock();
        let file = state.pack.as_mut()?;
        match outcome {
            Ok(false) => {
                file.last_error = None;
                None
            }
            Ok(true) => {
                file.last_error = None;
                file.hash = scorer.pack_hash().to_string();
                file.reloads += 1;
                Some(Event {
                    policy: None,
                    what: "pack",
                    path: dir.display().to_string(),
                    error: None,
                    needs_restart: Vec::new(),
                })
            }
            Err(e) => {
                let e = format!("{e:#}");
                file.last_error = Some(e.clone());
                Some(Event {
                    policy: None,
                    what: "pack",
                    path: dir.display().to_string(),
                    error: Some(e),
                    needs_restart: Vec::new(),
                })
            }
        }
    }

    fn reload_profile(&mut self) -> Option<Event> {
        let r = self.reloader.as_mut()?;
        let path = r.profile_path.clone()?;
        let hash = sha256_file(&path).unwrap_or_else(|e| format!("unreadable: {e:#}"));
        if r.profile_seen.as_ref() == Some(&hash) {
            return None;
        }
        r.profile_seen = Some(hash.clone());
        let status = r.status.clone();
        let outcome =
            Profile::load(&path.display().to_string()).and_then(|new| self.apply_profile(new));
        let mut state = status.lock();
        let mut event = Event {
            policy: None,
            what: "profile",
            path: path.display().to_string(),
            error: None,
            needs_restart: Vec::new(),
        };
        match outcome {
            Ok(restart) => {
                if let Some(file) = state.profile.as_mut() {
                    file.hash = hash;
                    file.reloads += 1;
                    file.last_error = None;
                }
                state.needs_restart = restart.clone();
                event.needs_restart = restart;
            }
            Err(e) => {
                let e = format!("{e:#}");
                if let Some(file) = state.profile.as_mut() {
                    file.last_error = Some(e.clone());
                }
                event.error = Some(e);
            }
        }
        Some(event)
    }

    /// Swaps in what of `new` can change at run time (policy, store_text between full and
    /// redacted, the fit limits); returns the changed settings that need a restart, each
    /// as `name old -> new` against the values the guard runs with. Refused, changing
    /// nothing: a profile whose policy cannot load or has another fail mode (unless the
    /// policy was chosen explicitly), or whose limits the running model and pack exceed.
    fn apply_profile(&mut self, new: Profile) -> Result<Vec<String>> {
        let Some(r) = self.reloader.as_ref() else {
            bail!("no reload state");
        };
        let config = r.config.clone();
        let (Some(old), Some(start)) = (config.profile.clone(), r.start_profile.clone()) else {
            bail!("no profile in force");
        };
        let mut restart = Vec::new();
        // (name, running, at start in the profile, wanted now): a value set by a flag stays,
        // so only one the start profile supplied can need a restart.
        let sizing = [
            ("threads", config.threads, start.threads, new.threads),
            (
                "gpu_layers",
                config.gpu_layers,
                start.gpu_layers,
                new.gpu_layers,
            ),
            ("n_ctx", Some(config.n_ctx), start.n_ctx, new.n_ctx),
            ("n_batch", Some(config.n_batch), start.n_batch, new.n_batch),
            (
                "max_sessions",
                Some(config.max_sessions),
                start.max_sessions,
                new.max_sessions,
            ),
        ];
        for (name, running, from_profile, wanted) in sizing {
            if running == Some(from_profile) && wanted != from_profile {
                restart.push(format!("{name} {from_profile} -> {wanted}"));
            }
        }
        // Between full and redacted the text storage changes live; to or from hash the log
        // would have to be reopened.
        let hashing = |m: StoreText| m == StoreText::Hash;
        let store_text_from_profile = config.store_text == start.store_text;
        let store_text_live = hashing(self.store_text()) == hashing(new.store_text);
        if store_text_from_profile && !store_text_live {
            restart.push(format!(
                "store_text {} -> {}",
                self.store_text().as_str(),
                new.store_text.as_str()
            ));
        }
        // The policy: the profile's unless one was chosen explicitly.
        let policy = if config.policy.is_some() {
            None
        } else if new.policy != old.policy {
            Some(Arc::new(match new.policy_path() {
                Some(p) => Policy::load(&p).with_context(|| format!("policy {}", p.display()))?,
                None => Policy::builtin(&new.policy)
                    .with_context(|| format!("profile {}", new.origin))?,
            }))
        } else {
            None
        };
        let mode = policy
            .as_ref()
            .map_or_else(|| self.policy().fail_mode(), |p| p.fail_mode());
        if mode != new.fail_mode {
            let msg = format!(
                "profile {} expects fail_mode {} but the policy has fail_mode {}",
                new.name,
                new.fail_mode.as_str(),
                mode.as_str()
            );
            if config.policy.is_none() {
                bail!("{msg}");
            }
            tracing::warn!("{msg} (the explicitly chosen policy wins)");
        }
        if let Some(scorer) = self.scorer() {
            check_profile_taps(
                &new,
                scorer.model(),
                scorer.probe_layer_count(),
                config.n_ctx,
                config.n_batch,
            )?;
        }
        // Everything checked: apply.
        if let Some(p) = policy {
            self.replace_policy(PolicySource::Fixed(p));
        }
        if store_text_from_profile && store_text_live {
            self.set_store_text(new.store_text);
        }
        if let Some(r) = self.reloader.as_mut() {
            r.config.profile = Some(new);
        }
        Ok(restart)
    }
}
