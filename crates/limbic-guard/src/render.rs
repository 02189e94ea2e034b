//! How an agent step becomes tokens: one assistant turn in the model's own chat template,
//! holding the agent's words and then the proposed action. Only the words are pooled by the
//! probes; the action is context for later steps (the policy judges it as text).
//!
//! Vector building renders its prompt texts the same way, so probes see the same framing
//! at build time and at run time.

use anyhow::{anyhow, Result};
use limbic_engine::{ChatMessage, Model, TokenTap};
use limbic_probe::TokenKind;

/// The model's assistant-turn framing, learned once from its chat template.
#[derive(Debug, Clone)]
pub struct TurnFrame {
    prefix: Vec<i32>,
    suffix: Vec<i32>,
}

/// The tokens of one step and which of them are the agent's words.
pub struct RenderedStep {
    pub tokens: Vec<i32>,
    /// `tokens[words.clone()]` are the agent's own words (what the probes pool over).
    pub words: std::ops::Range<usize>,
    /// `tokens[action.clone()]` are the action's own tokens (the tool and its arguments,
    /// without the constant `Action:` lead-in); empty when the step has no action.
    pub action: std::ops::Range<usize>,
}

impl RenderedStep {
    /// The one rule for which tokens count, used by the guard, vector building and
    /// evaluation alike: the agent's words do, except the attention sink (position 0 of
    /// a sequence), whose activations say nothing about the text.
    pub fn token_kind(&self, tap: &TokenTap<'_>) -> TokenKind {
        if tap.pos == 0 || !self.words.contains(&tap.index) {
            TokenKind::Skipped
        } else {
            TokenKind::Scored
        }
    }

    /// Whether `tap` is one of the action's own tokens (never the attention sink).
    pub fn is_action_token(&self, tap: &TokenTap<'_>) -> bool {
        tap.pos != 0 && self.action.contains(&tap.index)
    }
}

/// The action is context for later steps, not scored: long arguments (a whole file in a
/// `Write`) are cut to their head and tail, with what was cut said in between, so a long
/// action costs a bounded number of tokens.
pub const ACTION_CONTEXT_HEAD: usize = 1200;
pub const ACTION_CONTEXT_TAIL: usize = 400;

/// `action` cut to its head and tail (on character boundaries) when it is long.
pub fn bound_action(action: &str) -> std::borrow::Cow<'_, str> {
    let chars = action.chars().count();
    if chars <= ACTION_CONTEXT_HEAD + ACTION_CONTEXT_TAIL + 64 {
        return std::borrow::Cow::Borrowed(action);
    }
    let head: String = action.chars().take(ACTION_CONTEXT_HEAD).collect();
    let tail: String = action.chars().skip(chars - ACTION_CONTEXT_TAIL).collect();
    let cut = chars - ACTION_CONTEXT_HEAD - ACTION_CONTEXT_TAIL;
    std::borrow::Cow::Owned(format!("{head} … [{cut} characters not shown] … {tail}"))
}

const MARKER: &str = "\u{2063}LIMBIC\u{2063}";

impl TurnFrame {
    /// Derives the assistant-turn prefix and suffix by formatting a conversation with and
    /// without an assistant turn and cutting around a marker.
    pub fn for_model(model: &Model) -> Result<TurnFrame> {
        if model.info().chat_template.is_none() {
            // No template: a plain "Agent:" framing still separates steps.
            return Ok(TurnFrame {
                prefix: model.tokenize("\nAgent: ", false)?,
                suffix: model.tokenize("\n", false)?,
            });
        }
        let user = ChatMessage::new("user", "continue");
        let base = model.apply_chat_template(std::slice::from_ref(&user), false)?;
        let full =
            model.apply_chat_template(&[user, ChatMessage::new("assistant", MARKER)], false)?;
        let turn = full
            .strip_prefix(&base)
            .ok_or_else(|| anyhow!("chat template is not incremental; cannot frame steps"))?;
        let (prefix, suffix) = turn
            .split_once(MARKER)
            .ok_or_else(|| anyhow!("chat template dropped the message text"))?;
        Ok(TurnFrame {
            prefix: model.tokenize_templated(prefix, false)?,
            suffix: model.tokenize_templated(suffix, false)?,
        })
    }

    /// Renders a step. The words and the action are tokenized as plain text, so an agent
    /// cannot inject control tokens.
    pub fn render(&self, model: &Model, words: &str, action: Option<&str>) -> Result<RenderedStep> {
        let mut tokens = self.prefix.clone();
        let start = tokens.len();
        tokens.extend(model.tokenize(words.trim(), false)?);
        let words_range = start..tokens.len();
        let mut action_range = tokens.len()..tokens.len();
        if let Some(action) = action.filter(|a| !a.trim().is_empty()) {
            let action = bound_action(action.trim());
            // Tokenized as one text (as always), so the lead-in is found as a token prefix;
            // where the tokenizer merged across it, the lead-in's tokens simply count too.
            let text = model.tokenize(&format!("\nAction: {action}"), false)?;
            let lead = model.tokenize("\nAction:", false)?;
            let skip = if text.starts_with(&lead) && lead.len() < text.len() {
                lead.len()
            } else {
                0
            };
            action_range = tokens.len() + skip..tokens.len() + text.len();
            tokens.extend(text);
        }
        tokens.extend_from_slice(&self.suffix);
        Ok(RenderedStep {
            tokens,
            words: words_range,
            action: action_range,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_actions_keep_head_and_tail_and_say_what_was_cut() {
        let short = "Bash {\"command\":\"ls\"}";
        assert_eq!(bound_action(short), short);
        let long = format!("Write {{\"content\":\"{}END\"}}", "é".repeat(20_000));
        let bounded = bound_action(&long);
        assert!(bounded.starts_with("Write {"));
        assert!(bounded.ends_with("END\"}"));
        assert!(bounded.contains("characters not shown"));
        assert!(bounded.chars().count() < ACTION_CONTEXT_HEAD + ACTION_CONTEXT_TAIL + 64);
    }
}
