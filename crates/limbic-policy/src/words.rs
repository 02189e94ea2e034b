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
    let last = last_segment(&lower);
    if !last.is_empty() && last != lower {
        names.push(last.to_owned());
    }
    names
}

/// The part of a name after its last MCP / namespace separator (`.`, `/`, `:`, `__`).
fn last_segment(name: &str) -> &str {
    let name = name.trim();
    let last = name.rsplit(['.', '/', ':']).next().unwrap_or(name);
    last.rsplit("__").next().unwrap_or(last)
}

/// Tool groups compiled for lookup: exact names and name words per group.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolGroups {
    names: Vec<String>,
    exact: Vec<HashSet<String>>,
    words: Vec<HashSet<String>>,
    /// Per group, the groups its name words give way to (`[tool_word_yields]`): a
    /// name whose word of such a group comes first (`update_list_item`) is not in it
    /// by its later word; `get_updates` keeps its leading verb.
    yields: Vec<Vec<usize>>,
}

impl ToolGroups {
    /// Groups from exact names and name words. `yields` names, per group, the groups
    /// whose words take precedence over its own; an unknown group name there is an
    /// error naming it.
    pub(crate) fn new(
        exact: &BTreeMap<String, Vec<String>>,
        words: &BTreeMap<String, Vec<String>>,
        yields: &BTreeMap<String, Vec<String>>,
    ) -> Result<Self, String> {
        let mut names: Vec<String> = exact.keys().chain(words.keys()).cloned().collect();
        names.sort();
        names.dedup();
        let lower_set = |list: Option<&Vec<String>>| -> HashSet<String> {
            list.map(|l| l.iter().map(|s| s.trim().to_lowercase()).collect())
                .unwrap_or_default()
        };
        let index = |name: &str| {
            names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| format!("`{name}` is not a tool group"))
        };
        let mut yield_to = vec![Vec::new(); names.len()];
        for (group, to) in yields {
            let i = index(group)?;
            yield_to[i] = to.iter().map(|t| index(t)).collect::<Result<_, _>>()?;
        }
        Ok(ToolGroups {
            exact: names.iter().map(|n| lower_set(exact.get(n))).collect(),
            words: names.iter().map(|n| lower_set(words.get(n))).collect(),
            yields: yield_to,
            names,
        })
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
        let in_group = |i: usize, w: &str| {
            self.words[i].contains(w)
                || w.strip_suffix('s')
                    .is_some_and(|s| s.len() >= 3 && self.words[i].contains(s))
        };
        // Word order is read in the name's last segment only, where the verb is:
        // `robot.get_alarms` reads, `mcp__lists__update_list_item` updates.
        let verb_words = tool_words(last_segment(tool));
        let first_verb: Vec<Option<usize>> = (0..self.names.len())
            .map(|i| verb_words.iter().position(|w| in_group(i, w)))
            .collect();
        (0..self.names.len())
            .map(|i| {
                let by_exact = exact.iter().any(|n| self.exact[i].contains(n));
                let by_word = words.iter().any(|w| in_group(i, w));
                let gives_way = first_verb[i].is_some_and(|mine| {
                    self.yields[i]
                        .iter()
                        .any(|&j| first_verb[j].is_some_and(|theirs| theirs < mine))
                });
                by_exact || (by_word && !gives_way)
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
        let groups = ToolGroups::new(&exact, &words, &BTreeMap::new()).unwrap();
        assert_eq!(groups.names(), ["edit", "shell"]);
        assert_eq!(groups.membership("BASH"), [false, true]);
        assert_eq!(groups.membership("vscode_terminal_run"), [false, true]);
        assert_eq!(groups.membership("writeFiles"), [true, false]);
        assert_eq!(groups.membership("mcp__x__bash"), [false, true]);
        assert_eq!(groups.membership("frobnicate"), [false, false]);
    }

    #[test]
    fn a_group_yields_its_words_to_the_groups_it_names() {
        let exact = BTreeMap::from([("read".to_owned(), vec!["list_files".to_owned()])]);
        let words = BTreeMap::from([
            ("read".to_owned(), vec!["list".to_owned(), "get".to_owned()]),
            ("mutate".to_owned(), vec!["update".to_owned()]),
        ]);
        let yields = BTreeMap::from([("read".to_owned(), vec!["mutate".to_owned()])]);
        let groups = ToolGroups::new(&exact, &words, &yields).unwrap();
        assert_eq!(groups.names(), ["mutate", "read"]);
        assert_eq!(groups.membership("update_list_item"), [true, false]);
        assert_eq!(groups.membership("get_updates"), [true, true]);
        // A namespace is not a verb.
        assert_eq!(groups.membership("update.get_list"), [true, true]);
        assert_eq!(
            groups.membership("mcp__lists__update_list_item"),
            [true, false]
        );
        assert_eq!(groups.membership("updateListItem"), [true, false]);
        assert_eq!(groups.membership("get_list"), [false, true]);
        // An exact listing still counts.
        assert_eq!(groups.membership("list_files"), [false, true]);
        let bad = BTreeMap::from([("read".to_owned(), vec!["nope".to_owned()])]);
        let err = ToolGroups::new(&exact, &words, &bad).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
