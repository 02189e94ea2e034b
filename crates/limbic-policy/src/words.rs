//! Tool names as words, and which tool groups a name belongs to.
//!
//! Agents call the same kind of tool by many names (`Bash`, `run_terminal_cmd`,
//! `vscode_terminal_run`, `mcp__shell__exec`, `runInTerminal`). Exact lists can
//! never keep up, so a group is also recognised from the words in the name: a
//! name is split at `_`, `-`, `.`, `/`, `:`, spaces and camelCase boundaries,
//! lower-cased, and each word (and the word without a plural `s`) is looked up
//! in the group's word list.

use std::collections::{BTreeMap, HashSet};

/// Splits a tool name into lower-case words: `mcp__github__push_files` gives
/// `mcp github push files`, `runInTerminal` gives `run in terminal`,
/// `HTTPRequest` gives `http request`, `failsafe.disable` gives `failsafe disable`.
pub fn tool_words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        if c.is_uppercase() && !current.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            // `runIn` splits before `I`; `HTTPRequest` splits before the `R` of `Request`.
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                words.push(std::mem::take(&mut current));
            }
        }
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// The names a tool is known by for exact-list lookups: the whole name and its
/// last segment after an MCP / namespace separator (`mcp__postgres__query` is
/// also `query`, `functions.bash` is also `bash`), lower-cased.
pub(crate) fn exact_names(name: &str) -> Vec<String> {
    let lower = name.trim().to_lowercase();
    let mut names = vec![lower.clone()];
    let last = lower.rsplit(['.', '/', ':']).next().unwrap_or(&lower);
    let last = last.rsplit("__").next().unwrap_or(last);
    if !last.is_empty() && last != lower {
        names.push(last.to_owned());
    }
    names
}

/// Tool groups compiled for lookup: exact names and name words per group.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolGroups {
    names: Vec<String>,
    exact: Vec<HashSet<String>>,
    words: Vec<HashSet<String>>,
}

impl ToolGroups {
    pub(crate) fn new(
        exact: &BTreeMap<String, Vec<String>>,
        words: &BTreeMap<String, Vec<String>>,
    ) -> Self {
        let mut names: Vec<String> = exact.keys().chain(words.keys()).cloned().collect();
        names.sort();
        names.dedup();
        let lower_set = |list: Option<&Vec<String>>| -> HashSet<String> {
            list.map(|l| l.iter().map(|s| s.trim().to_lowercase()).collect())
                .unwrap_or_default()
        };
        ToolGroups {
            exact: names.iter().map(|n| lower_set(exact.get(n))).collect(),
            words: names.iter().map(|n| lower_set(words.get(n))).collect(),
            names,
        }
    }

    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Which groups `tool` belongs to, by exact name or by a word of its name.
    pub(crate) fn membership(&self, tool: &str) -> Vec<bool> {
        let exact = exact_names(tool);
        let words = tool_words(tool);
        let singular: Vec<&str> = words
            .iter()
            .filter_map(|w| w.strip_suffix('s').filter(|s| s.len() >= 3))
            .collect();
        self.names
            .iter()
            .enumerate()
            .map(|(i, _)| {
                exact.iter().any(|n| self.exact[i].contains(n))
                    || words.iter().any(|w| self.words[i].contains(w))
                    || singular.iter().any(|w| self.words[i].contains(*w))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_every_naming_convention() {
        assert_eq!(
            tool_words("mcp__github__push_files"),
            ["mcp", "github", "push", "files"]
        );
        assert_eq!(tool_words("runInTerminal"), ["run", "in", "terminal"]);
        assert_eq!(tool_words("HTTPRequest"), ["http", "request"]);
        assert_eq!(tool_words("failsafe.disable"), ["failsafe", "disable"]);
        assert_eq!(
            tool_words("vscode-terminal run"),
            ["vscode", "terminal", "run"]
        );
        assert_eq!(tool_words("set_param2Value"), ["set", "param2", "value"]);
        assert!(tool_words("__").is_empty());
    }

    #[test]
    fn exact_names_include_the_last_namespace_segment() {
        assert_eq!(
            exact_names("mcp__postgres__query"),
            ["mcp__postgres__query", "query"]
        );
        assert_eq!(exact_names("functions.Bash"), ["functions.bash", "bash"]);
        assert_eq!(exact_names("Bash"), ["bash"]);
    }

    #[test]
    fn membership_by_exact_name_word_or_plural() {
        let exact = BTreeMap::from([("shell".to_owned(), vec!["Bash".to_owned()])]);
        let words = BTreeMap::from([
            ("shell".to_owned(), vec!["terminal".to_owned()]),
            ("edit".to_owned(), vec!["file".to_owned()]),
        ]);
        let groups = ToolGroups::new(&exact, &words);
        assert_eq!(groups.names(), ["edit", "shell"]);
        assert_eq!(groups.membership("BASH"), [false, true]);
        assert_eq!(groups.membership("vscode_terminal_run"), [false, true]);
        assert_eq!(groups.membership("writeFiles"), [true, false]);
        assert_eq!(groups.membership("mcp__x__bash"), [false, true]);
        assert_eq!(groups.membership("frobnicate"), [false, false]);
    }
}
