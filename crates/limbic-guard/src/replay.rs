//! Replay: re-decide every recorded step of an audit log under another policy, from what the
//! log stored (stress signature, spike flag, per-emotion scores, tool, args, text), and say
//! which decisions change and why.
//!
//! The scores are the ones recorded, so a replay answers "what would this policy have done
//! with the same readings" exactly, without the model. What the log does not hold cannot be
//! reproduced, and each replayed step lists it in `limits`: a step stored without its text
//! (`store_text = hash`) is decided with empty text (a `text_not` pattern cannot lower a
//! class), a redacted text is read in its redacted form, and an unscored step is decided by
//! the fail mode again. Given a model and pack, steps whose text was stored verbatim are
//! scored again (per session, in order, so trackers evolve as they did) before re-deciding.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use limbic_audit::{AuditLog, StepRow};
use limbic_policy::{Decision, Policy, StepView};

use crate::api::{Action, NO_WORDS};
use crate::scorer::Scorer;
use serde::{Deserialize, Serialize};

/// One decision: recorded or replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub decision: String,
    pub reroute: Option<String>,
    pub rule: String,
    pub reason: String,
}

/// One recorded step re-decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayedStep {
    pub session: String,
    pub step: u64,
    pub tool: String,
    pub stress: Option<f64>,
    pub spike: bool,
    pub recorded: Outcome,
    pub replayed: Outcome,
    /// Decision kind or reroute kind differs.
    pub changed: bool,
    /// Why it changed (empty when it did not).
    pub why: String,
    /// What the log did not hold, so the replay may differ from a fresh check.
    pub limits: Vec<String>,
}

/// Totals of a replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplaySummary {
    pub steps: u64,
    pub changed: u64,
    /// `"allow -> veto"`: how many steps moved that way.
    pub transitions: BTreeMap<String, u64>,
    /// Steps whose text was not stored (decided with empty text).
    pub without_text: u64,
    /// Steps whose text was stored redacted.
    pub redacted_text: u64,
    /// Steps recorded without a stress reading (decided by the fail mode).
    pub unscored: u64,
    /// Steps scored again with the given model and pack (the rest use the stored readings).
    pub rescored: u64,
}

/// How the text of the steps recorded under each config row was stored.
fn text_modes(log: &AuditLog) -> Result<HashMap<i64, String>> {
    Ok(log
        .config_rows()?
        .into_iter()
        .map(|c| {
            let mode = match c.settings.get("store_text") {
                Some(serde_json::Value::Bool(true)) => "full".to_string(),
                Some(serde_json::Value::Bool(false)) => "hash".to_string(),
                Some(serde_json::Value::String(s)) => s.clone(),
                _ => "unknown".to_string(),
            };
            (c.row, mode)
        })
        .collect())
}

fn outcome(d: &Decision) -> Outcome {
    Outcome {
        decision: d.kind.as_str().to_string(),
        reroute: d.reroute.as_ref().map(|r| r.kind().as_str().to_string()),
        rule: d.rule_id.clone(),
        reason: d.reason.clone(),
    }
}

/// Re-decides one stored step under `policy`.
pub fn replay_step(policy: &Policy, row: &StepRow, text_mode: Option<&str>) -> ReplayedStep {
    let mut limits = Vec::new();
    if row.text.is_none() {
        limits.push(
            "text not stored (only its hash): decided with empty text, so `text_not` patterns \
             cannot apply"
                .to_string(),
        );
    } else if text_mode == Some("redacted") {
        limits.push("text stored redacted: patterns read the redacted form".to_string());
    }
    let decision = match row.stress_signature {
        Some(stress) => {
            // NaN for an emotion whose score was not finite, as the scorer gave it.
            let scores: Vec<(&str, f32)> = row
                .scores
                .iter()
                .map(|(k, v)| (k.as_str(), v.map_or(f32::NAN, |z| z as f32)))
                .collect();
            let view = StepView::new(&row.tool, &row.args, stress as f32)
                .with_spike(row.spike)
                .with_scores(&scores)
                .with_text(row.text.as_deref());
            policy.decide(&view)
        }
        None => {
            limits.push(
                "no stress reading was recorded (scorer unavailable or deadline passed): \
                 decided by the policy's fail mode"
                    .to_string(),
            );
            policy.decide_unscored(&row.tool, &row.args)
        }
    };
    let recorded = Outcome {
        decision: row.decision.clone(),
        reroute: row.reroute.clone(),
        rule: row.rule_id.clone(),
        reason: row.reason.clone(),
    };
    let replayed = outcome(&decision);
    let changed = recorded.decision != replayed.decision || recorded.reroute != replayed.reroute;
    let why = if changed {
        format!(
            "recorded {} by rule `{}`; under this policy {} by rule `{}`: {}",
            kind_label(&recorded),
            recorded.rule,
            kind_label(&replayed),
            replayed.rule,
            replayed.reason
        )
    } else {
        String::new()
    };
    ReplayedStep {
        session: row.session_id.clone(),
        step: row.step_index,
        tool: row.tool.clone(),
        stress: row.stress_signature,
        spike: row.spike,
        recorded,
        replayed,
        changed,
        why,
        limits,
    }
}

/// `reroute(confirm)` or the plain kind.
pub fn kind_label(o: &Outcome) -> String {
    match &o.reroute {
        Some(r) => format!("{}({r})", o.decision),
        None => o.decision.clone(),
    }
}

/// The stored step with its reading replaced by a fresh one from `scorer`, when the log kept
/// the text verbatim; the reason (the stored reading is used) otherwise.
fn rescore(
    scorer: &mut Scorer,
    row: &StepRow,
    mode: Option<&str>,
) -> std::result::Result<StepRow, String> {
    let Some(text) = row.text.as_deref() else {
        return Err("text not stored: not re-scored, the recorded reading is used".into());
    };
    if mode == Some("redacted") {
        return Err("text stored redacted: not re-scored, the recorded reading is used".into());
    }
    let words = if text.trim().is_empty() {
        NO_WORDS
    } else {
        text
    };
    let action = Action {
        tool: row.tool.clone(),
        args: row.args.clone(),
    }
    .text();
    let reading = scorer
        .score(&row.session_id, words, &action)
        .map_err(|e| format!("re-scoring failed ({e:#}): the recorded reading is used"))?;
    let finite = |z: f32| z.is_finite().then_some(f64::from(z));
    let mut fresh = row.clone();
    fresh.stress_signature = finite(reading.signature);
    fresh.spike = reading.track.spike;
    fresh.scores = reading
        .scores
        .iter()
        .map(|(k, z)| (k.clone(), finite(*z)))
        .collect();
    Ok(fresh)
}

/// Replays every step (of one session, or all) in chain order, handing each to `sink`. With
/// a `scorer` (a model and pack), steps whose text was stored are scored again, in order per
/// session, and decided on the new reading.
pub fn replay_log(
    log: &AuditLog,
    policy: &Policy,
    session: Option<&str>,
    mut scorer: Option<&mut Scorer>,
    mut sink: impl FnMut(&ReplayedStep) -> Result<()>,
) -> Result<ReplaySummary> {
    let modes = text_modes(log)?;
    let mut summary = ReplaySummary::default();
    for row in log.step_rows(session)? {
        let mode = row
            .config_row
            .and_then(|c| modes.get(&c))
            .map(String::as_str);
        let mut note = None;
        let row = match scorer.as_deref_mut() {
            Some(sc) => match rescore(sc, &row, mode) {
                Ok(fresh) => {
                    summary.rescored += 1;
                    note = Some("re-scored with the given model and pack".to_string());
                    fresh
                }
                Err(why) => {
                    note = Some(why);
                    row
                }
            },
            None => row,
        };
        let mut r = replay_step(policy, &row, mode);
        r.limits.extend(note);
        summary.steps += 1;
        if row.text.is_none() {
            summary.without_text += 1;
        } else if mode == Some("redacted") {
            summary.redacted_text += 1;
        }
        if row.stress_signature.is_none() {
            summary.unscored += 1;
        }
        if r.changed {
            summary.changed += 1;
            *summary
                .transitions
                .entry(format!(
                    "{} -> {}",
                    kind_label(&r.recorded),
                    kind_label(&r.replayed)
                ))
                .or_default() += 1;
        }
        sink(&r)?;
    }
    Ok(summary)
}
