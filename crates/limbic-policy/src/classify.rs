//! Compiled action classes: which kinds of action a tool call is.

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::args::{code_view, expand_embedded_json, field_text, flatten};
use crate::decision::RiskLevel;
use crate::error::PolicyError;
use crate::spec::{ClassSpec, FindSpec, MatcherSpec};
use crate::words::{exact_names, ToolGroups};

/// One action class, ready to run.
#[derive(Debug, Clone)]
pub(crate) struct ActionClass {
    pub id: String,
    pub description: String,
    pub risk: RiskLevel,
    matchers: Vec<Matcher>,
}

/// A tool reference in `tools` / `except_tools`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ToolRef {
    /// A lower-cased exact name (compared with the whole name and its last
    /// namespace segment).
    Exact(String),
    /// `@group`: an index into the policy's tool groups.
    Group(usize),
    /// `@unlisted`: a tool that belongs to no group at all.
    Unlisted,
}

/// Pseudo-group for tools no group recognises (`@unlisted`).
pub const UNLISTED_GROUP: &str = "unlisted";

/// One `[[class.match]]` entry. Every constraint present must hold (AND); the
/// class matches when any of its matchers does (OR).
#[derive(Debug, Clone)]
struct Matcher {
    tools: Vec<ToolRef>,
    tool_regex: Vec<Regex>,
    except_tools: Vec<ToolRef>,
    except_tool_regex: Vec<Regex>,
    args_any: Vec<Regex>,
    args_all: Vec<Regex>,
    args_not: Vec<Regex>,
    fields: Vec<(Vec<String>, Regex)>,
    fields_not: Vec<(Vec<String>, Regex)>,
    /// The agent's words for the step (`StepView::text`) match one of these.
    text_any: Vec<Regex>,
    /// Excuses read from the agent's words for the step.
    text_not: Vec<Regex>,
    find: Option<Find>,
}

#[derive(Debug, Clone)]
struct Find {
    pattern: Regex,
    unless: Option<Regex>,
}

/// The parts of a tool call every matcher needs, computed once per step.
pub(crate) struct ActionText<'a> {
    names: Vec<String>,
    tool: &'a str,
    args: &'a Value,
    /// `args` with JSON-in-string arguments unpacked, when there were any.
    expanded: Option<Value>,
    /// Which tool groups the tool belongs to (same order as the policy's groups).
    groups: Vec<bool>,
    flat: String,
    /// Quotes and brackets spaced out (see [`code_view`]); empty when no string has any.
    code: String,
    /// The agent's words for the step; empty when unknown.
    text: &'a str,
}

impl<'a> ActionText<'a> {
    pub(crate) fn new(tool: &'a str, args: &'a Value, groups: &ToolGroups, text: &'a str) -> Self {
        let expanded = expand_embedded_json(args);
        let view = expanded.as_ref().unwrap_or(args);
        ActionText {
            names: exact_names(tool),
            tool,
            args,
            flat: flatten(view),
            code: code_view(view),
            expanded,
            groups: groups.membership(tool),
            text,
        }
    }

    /// The arguments as examined: embedded JSON unpacked.
    pub(crate) fn args(&self) -> &Value {
        self.expanded.as_ref().unwrap_or(self.args)
    }

    /// True when no tool group recognises the tool's name.
    pub(crate) fn unlisted(&self) -> bool {
        !self.groups.iter().any(|&g| g)
    }

    fn is(&self, tool: &ToolRef) -> bool {
        match tool {
            ToolRef::Exact(name) => self.names.contains(name),
            ToolRef::Group(i) => self.groups.get(*i).copied().unwrap_or(false),
            ToolRef::Unlisted => self.unlisted(),
        }
    }

    /// The texts `args` patterns run over: the flattened arguments, then the
    /// code view when it is not empty.
    fn texts(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.flat.as_str())
            .chain((!self.code.is_empty()).then_some(self.code.as_str()))
    }
}

/// Compiles `pattern` the way every policy regex is compiled: multi-line, so
/// `^`/`$` anchor at line (value) boundaries and `\A`/`\z` at the whole text.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .multi_line(true)
        .build()
        .map_err(|e| format!("invalid regex {pattern:?}: {e}"))
}

impl ActionClass {
    pub(crate) fn compile(
        spec: &ClassSpec,
        groups: &ToolGroups,
        origin: &str,
    ) -> Result<Self, PolicyError> {
        let location = format!("class `{}`", spec.id);
        if spec.id.trim().is_empty() {
            return Err(PolicyError::invalid(origin, "class", "empty class id"));
        }
        if spec.description.trim().is_empty() {
            return Err(PolicyError::invalid(
                origin,
                location,
                "empty description (say what the class catches and why)",
            ));
        }
        if spec.matchers.is_empty() {
            return Err(PolicyError::invalid(
                origin,
                location,
                "no [[class.match]] entries, so the class could never match",
            ));
        }
        let matchers = spec
            .matchers
            .iter()
            .enumerate()
            .map(|(i, m)| {
                Matcher::compile(m, groups).map_err(|problem| {
                    PolicyError::invalid(origin, format!("{location} match #{}", i + 1), problem)
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ActionClass {
            id: spec.id.clone(),
            description: spec.description.clone(),
            risk: spec.risk.unwrap_or(RiskLevel::Medium),
            matchers,
        })
    }

    /// The `[unknown]` class: no matchers; the policy sets it when nothing else
    /// matched and no tool group knows the tool.
    pub(crate) fn unknown(id: &str, description: &str, risk: RiskLevel) -> Self {
        ActionClass {
            id: id.to_owned(),
            description: description.to_owned(),
            risk,
            matchers: Vec::new(),
        }
    }

    pub(crate) fn matches(&self, action: &ActionText<'_>) -> bool {
        self.matchers.iter().any(|m| m.matches(action))
    }
}

fn compile_list(patterns: &[String], key: &str) -> Result<Vec<Regex>, String> {
    patterns
        .iter()
        .map(|p| compile_regex(p).map_err(|e| format!("{key}: {e}")))
        .collect()
}

fn compile_fields(
    fields: &BTreeMap<String, String>,
    key: &str,
) -> Result<Vec<(Vec<String>, Regex)>, String> {
    fields
        .iter()
        .map(|(selector, pattern)| {
            let names: Vec<String> = selector
                .split('|')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect();
            if names.is_empty() {
                return Err(format!("{key}: empty field selector {selector:?}"));
            }
            let regex = compile_regex(pattern).map_err(|e| format!("{key}.{selector}: {e}"))?;
            Ok((names, regex))
        })
        .collect()
}

/// Resolves `@group` references and lower-cases exact names for comparison.
fn expand_tools(names: &[String], groups: &ToolGroups, key: &str) -> Result<Vec<ToolRef>, String> {
    let mut out = Vec::new();
    for name in names {
        if let Some(group) = name.strip_prefix('@') {
            if group == UNLISTED_GROUP {
                out.push(ToolRef::Unlisted);
                continue;
            }
            let Some(index) = groups.index(group) else {
                let known = groups.names();
                return Err(format!(
                    "{key}: unknown tool group `@{group}` (defined: {}; `@{UNLISTED_GROUP}` is any tool in no group)",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ));
            };
            out.push(ToolRef::Group(index));
        } else if name.trim().is_empty() {
            return Err(format!("{key}: empty tool name"));
        } else {
            out.push(ToolRef::Exact(name.trim().to_lowercase()));
        }
    }
    Ok(out)
}

impl Matcher {
    fn compile(spec: &MatcherSpec, groups: &ToolGroups) -> Result<Self, String> {
        let has_positive = !spec.tools.is_empty()
            || !spec.tool_regex.is_empty()
            || !spec.args.is_empty()
            || !spec.args_all.is_empty()
            || !spec.field.is_empty()
            || !spec.text.is_empty()
            || spec.find.is_some();
        if !has_positive {
            return Err(
                "needs at least one of tools, tool_regex, args, args_all, field, text or find \
                 (exclusions alone would match every action)"
                    .to_owned(),
            );
        }
        Ok(Matcher {
            tools: expand_tools(&spec.tools, groups, "tools")?,
            tool_regex: compile_list(&spec.tool_regex, "tool_regex")?,
            except_tools: expand_tools(&spec.except_tools, groups, "except_tools")?,
            except_tool_regex: compile_list(&spec.except_tool_regex, "except_tool_regex")?,
            args_any: compile_list(&spec.args, "args")?,
            args_all: compile_list(&spec.args_all, "args_all")?,
            args_not: compile_list(&spec.args_not, "args_not")?,
            fields: compile_fields(&spec.field, "field")?,
            fields_not: compile_fields(&spec.field_not, "field_not")?,
            text_any: compile_list(&spec.text, "text")?,
            text_not: compile_list(&spec.text_not, "text_not")?,
            find: spec.find.as_ref().map(compile_find).transpose()?,
        })
    }

    fn matches(&self, action: &ActionText<'_>) -> bool {
        // Tool names, groups and tool regexes are alternatives: "the tool is X".
        if !self.tools.is_empty() || !self.tool_regex.is_empty() {
            let named = self.tools.iter().any(|t| action.is(t));
            if !named && !self.tool_regex.iter().any(|r| r.is_match(action.tool)) {
                return false;
            }
        }
        if self.except_tools.iter().any(|t| action.is(t))
            || self
                .except_tool_regex
                .iter()
                .any(|r| r.is_match(action.tool))
        {
            return false;
        }
        let hit = |r: &Regex| action.texts().any(|t| r.is_match(t));
        if !self.args_any.is_empty() && !self.args_any.iter().any(hit) {
            return false;
        }
        if !self.args_all.iter().all(hit) {
            return false;
        }
        if self.args_not.iter().any(hit) {
            return false;
        }
        if !self.text_any.is_empty() && !self.text_any.iter().any(|r| r.is_match(action.text)) {
            return false;
        }
        if self.text_not.iter().any(|r| r.is_match(action.text)) {
            return false;
        }
        let args = action.args();
        for (names, regex) in &self.fields {
            if !regex.is_match(&field_text(args, names)) {
                return false;
            }
        }
        for (names, regex) in &self.fields_not {
            if regex.is_match(&field_text(args, names)) {
                return false;
            }
        }
        if let Some(find) = &self.find {
            let found = action.texts().any(|text| {
                find.pattern.find_iter(text).any(|m| match &find.unless {
                    Some(unless) => !unless.is_match(m.as_str()),
                    None => true,
                })
            });
            if !found {
                return false;
            }
        }
        true
    }
}

fn compile_find(spec: &FindSpec) -> Result<Find, String> {
    Ok(Find {
        pattern: compile_regex(&spec.pattern).map_err(|e| format!("find.pattern: {e}"))?,
        unless: spec
            .unless
            .as_deref()
            .map(|u| compile_regex(u).map_err(|e| format!("find.unless: {e}")))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn groups() -> ToolGroups {
        ToolGroups::new(
            &BTreeMap::from([("shell".to_owned(), vec!["Bash".to_owned(), "sh".to_owned()])]),
            &BTreeMap::from([("shell".to_owned(), vec!["terminal".to_owned()])]),
            &BTreeMap::new(),
        )
        .unwrap()
    }

    fn matcher(spec: MatcherSpec) -> Matcher {
        Matcher::compile(&spec, &groups()).unwrap()
    }

    fn hits(m: &Matcher, tool: &str, args: Value) -> bool {
        m.matches(&ActionText::new(tool, &args, &groups(), ""))
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn tool_names_and_tool_regexes_are_alternatives() {
        let m = matcher(MatcherSpec {
            tools: strings(&["@shell"]),
            tool_regex: strings(&["^mcp__.*__exec$"]),
            ..MatcherSpec::default()
        });
        assert!(hits(&m, "BASH", json!({})));
        assert!(hits(&m, "mcp__box__exec", json!({})));
        assert!(!hits(&m, "Read", json!({})));
    }

    #[test]
    fn groups_match_by_words_and_unlisted_is_any_tool_in_no_group() {
        let m = matcher(MatcherSpec {
            tools: strings(&["@shell"]),
            ..MatcherSpec::default()
        });
        assert!(hits(&m, "vscode_terminal_run", json!({})));
        assert!(hits(&m, "mcp__box__bash", json!({})));
        let u = matcher(MatcherSpec {
            tools: strings(&["@unlisted"]),
            args: strings(&[r"(?:^|[\s;&|(=\x60])rm\s+-rf"]),
            ..MatcherSpec::default()
        });
        assert!(hits(
            &u,
            "execute",
            json!({"code": "import os; os.system('rm -rf /data')"})
        ));
        assert!(!hits(&u, "runInTerminal", json!({"input": "rm -rf /data"})));
        assert!(hits(
            &u,
            "do_it",
            json!({"arguments": "{\"input\": \"rm -rf /data\"}"})
        ));
    }

    #[test]
    fn exclusions_override_inclusions() {
        let m = matcher(MatcherSpec {
            args: strings(&["push"]),
            except_tools: strings(&["Read"]),
            args_not: strings(&["--dry-run"]),
            ..MatcherSpec::default()
        });
        assert!(hits(&m, "Bash", json!({"command": "git push"})));
        assert!(!hits(&m, "Read", json!({"command": "git push"})));
        assert!(!hits(&m, "Bash", json!({"command": "git push --dry-run"})));
    }

    #[test]
    fn args_any_and_args_all() {
        let m = matcher(MatcherSpec {
            args: strings(&["alpha", "beta"]),
            args_all: strings(&["gamma", "delta"]),
            ..MatcherSpec::default()
        });
        assert!(hits(&m, "t", json!({"a": "beta gamma delta"})));
        assert!(!hits(&m, "t", json!({"a": "beta gamma"})));
        assert!(!hits(&m, "t", json!({"a": "gamma delta"})));
    }

    #[test]
    fn args_patterns_see_keys_and_line_anchors() {
        let m = matcher(MatcherSpec {
            args: strings(&[r"^params\.interlock=false$"]),
            ..MatcherSpec::default()
        });
        assert!(hits(
            &m,
            "t",
            json!({"params": {"interlock": false}, "z": 1})
        ));
        assert!(!hits(&m, "t", json!({"params": {"interlock": true}})));
    }

    #[test]
    fn fields_match_raw_values_and_missing_fields_are_empty() {
        let m = matcher(MatcherSpec {
            field: BTreeMap::from([("old_string|old_str".to_owned(), r"\bassert".to_owned())]),
            field_not: BTreeMap::from([("new_string".to_owned(), r"\bassert".to_owned())]),
            ..MatcherSpec::default()
        });
        assert!(hits(
            &m,
            "Edit",
            json!({"old_string": "assert x", "new_string": "pass"})
        ));
        assert!(
            hits(&m, "Edit", json!({"old_str": "assert x"})),
            "absent new_string counts as empty"
        );
        assert!(!hits(
            &m,
            "Edit",
            json!({"old_string": "assert x", "new_string": "assert y"})
        ));
        assert!(!hits(&m, "Edit", json!({"new_string": "pass"})));
    }

    #[test]
    fn find_needs_one_occurrence_not_excused_by_unless() {
        let m = matcher(MatcherSpec {
            find: Some(FindSpec {
                pattern: r"https?://\S+".to_owned(),
                unless: Some(r"\Ahttps?://localhost\b".to_owned()),
            }),
            ..MatcherSpec::default()
        });
        assert!(!hits(&m, "t", json!({"url": "http://localhost:8080/x"})));
        assert!(hits(
            &m,
            "t",
            json!({"a": "http://localhost/x", "b": "https://example.com"})
        ));
        assert!(!hits(&m, "t", json!({"a": "no urls here"})));
    }

    #[test]
    fn compile_errors_name_the_key() {
        let err = Matcher::compile(
            &MatcherSpec {
                args_all: strings(&["("]),
                ..MatcherSpec::default()
            },
            &groups(),
        )
        .unwrap_err();
        assert!(err.starts_with("args_all: invalid regex"), "{err}");
        let err = Matcher::compile(
            &MatcherSpec {
                tools: strings(&["@nope"]),
                ..MatcherSpec::default()
            },
            &groups(),
        )
        .unwrap_err();
        assert!(err.contains("`@nope`") && err.contains("shell"), "{err}");
        assert!(Matcher::compile(
            &MatcherSpec {
                tools: strings(&["@unlisted"]),
                ..MatcherSpec::default()
            },
            &groups(),
        )
        .is_ok());
        let err = Matcher::compile(&MatcherSpec::default(), &groups()).unwrap_err();
        assert!(err.contains("at least one"), "{err}");
    }
}
