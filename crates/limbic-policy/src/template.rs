//! `{placeholder}` templates for rule reasons and substitute suggestions.
//!
//! Templates are parsed once at load time so that a typo in a placeholder is a
//! policy error, not a literal `{clas}` in the audit log.

use std::fmt::Write as _;

/// Every placeholder a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "class",
    "description",
    "risk",
    "action_risk",
    "classes",
    "stress",
    "threshold",
    "emotion",
    "emotion_score",
    "spike",
    "tool",
    "rule",
    "command",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    Class,
    Description,
    Risk,
    ActionRisk,
    Classes,
    Stress,
    Threshold,
    Emotion,
    EmotionScore,
    Spike,
    Tool,
    Rule,
    Command,
}

impl Placeholder {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "class" => Placeholder::Class,
            "description" => Placeholder::Description,
            "risk" => Placeholder::Risk,
            "action_risk" => Placeholder::ActionRisk,
            "classes" => Placeholder::Classes,
            "stress" => Placeholder::Stress,
            "threshold" => Placeholder::Threshold,
            "emotion" => Placeholder::Emotion,
            "emotion_score" => Placeholder::EmotionScore,
            "spike" => Placeholder::Spike,
            "tool" => Placeholder::Tool,
            "rule" => Placeholder::Rule,
            "command" => Placeholder::Command,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Slot(Placeholder),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    segments: Vec<Segment>,
}

/// Values available while rendering. Numbers are pre-formatted by the caller.
pub(crate) struct RenderContext<'a> {
    pub class: &'a str,
    pub description: &'a str,
    pub risk: &'a str,
    pub action_risk: &'a str,
    pub classes: &'a str,
    pub stress: &'a str,
    pub threshold: &'a str,
    pub emotion: &'a str,
    pub emotion_score: &'a str,
    pub spike: &'a str,
    pub tool: &'a str,
    pub rule: &'a str,
    pub command: &'a str,
}

impl Template {
    /// Parses `text`. `{name}` is a placeholder, `{{` and `}}` are literal braces.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((pos, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let rest = &text[pos + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!(
                            "unclosed `{{` at byte {pos} (write `{{{{` for a literal brace)"
                        ));
                    };
                    let name = &rest[..end];
                    let Some(slot) = Placeholder::parse(name) else {
                        return Err(format!(
                            "unknown placeholder `{{{name}}}` (known: {})",
                            PLACEHOLDERS.join(", ")
                        ));
                    };
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Slot(slot));
                    // Skip the placeholder name and its closing brace.
                    for _ in 0..=name.chars().count() {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(format!(
                        "stray `}}` at byte {pos} (write `}}}}` for a literal brace)"
                    ));
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    pub(crate) fn render(&self, ctx: &RenderContext<'_>) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            let piece = match segment {
                Segment::Literal(text) => text.as_str(),
                Segment::Slot(Placeholder::Class) => ctx.class,
                Segment::Slot(Placeholder::Description) => ctx.description,
                Segment::Slot(Placeholder::Risk) => ctx.risk,
                Segment::Slot(Placeholder::ActionRisk) => ctx.action_risk,
                Segment::Slot(Placeholder::Classes) => ctx.classes,
                Segment::Slot(Placeholder::Stress) => ctx.stress,
                Segment::Slot(Placeholder::Threshold) => ctx.threshold,
                Segment::Slot(Placeholder::Emotion) => ctx.emotion,
                Segment::Slot(Placeholder::EmotionScore) => ctx.emotion_score,
                Segment::Slot(Placeholder::Spike) => ctx.spike,
                Segment::Slot(Placeholder::Tool) => ctx.tool,
                Segment::Slot(Placeholder::Rule) => ctx.rule,
                Segment::Slot(Placeholder::Command) => ctx.command,
            };
            let _ = out.write_str(piece);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ctx() -> RenderContext<'static> {
        RenderContext {
            class: "skip_checks",
            description: "Bypasses hooks",
            risk: "critical",
            action_risk: "n/a",
            classes: "skip_checks, vcs_history_rewrite",
            stress: "1.50",
            threshold: "1.00",
            emotion: "desperation",
            emotion_score: "2.10",
            spike: "yes",
            tool: "Bash",
            rule: "r1",
            command: "git commit --no-verify",
        }
    }

    #[test]
    fn fills_every_placeholder() {
        let t = Template::parse(
            "{rule}: {class} ({classes}) via {tool} at {stress}>={threshold}, \
             {emotion}={emotion_score}, spike {spike}: `{command}` [{risk}: {description}; {action_risk}]",
        )
        .unwrap();
        assert_eq!(
            t.render(&ctx()),
            "r1: skip_checks (skip_checks, vcs_history_rewrite) via Bash at 1.50>=1.00, \
             desperation=2.10, spike yes: `git commit --no-verify` [critical: Bypasses hooks; n/a]"
        );
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = Template::parse("{{class}} is {class}").unwrap();
        assert_eq!(t.render(&ctx()), "{class} is skip_checks");
    }

    #[test]
    fn unknown_placeholder_is_rejected_with_its_name() {
        let err = Template::parse("stress {stres}").unwrap_err();
        assert!(err.contains("`{stres}`"), "{err}");
    }

    #[test]
    fn unbalanced_braces_are_rejected() {
        assert!(Template::parse("oops {class")
            .unwrap_err()
            .contains("unclosed"));
        assert!(Template::parse("oops } here")
            .unwrap_err()
            .contains("stray"));
    }

    proptest! {
        // Text without braces renders to itself, so plain reasons survive verbatim.
        #[test]
        fn brace_free_text_round_trips(text in "[^{}]{0,80}") {
            let t = Template::parse(&text).unwrap();
            prop_assert_eq!(t.render(&ctx()), text);
        }

        // Escaped braces in arbitrary text always come back as single braces.
        #[test]
        fn escaping_round_trips(text in ".{0,60}") {
            let escaped = text.replace('{', "{{").replace('}', "}}");
            let t = Template::parse(&escaped).unwrap();
            prop_assert_eq!(t.render(&ctx()), text);
        }
    }
}
