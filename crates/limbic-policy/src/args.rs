//! Turning a tool call's JSON arguments into text that regexes can run over.
//!
//! Flattened form: one line per leaf, `dotted.key.path=value`, in the JSON
//! object's key order (serde_json keeps keys sorted). Array elements reuse the
//! array's path. A bare scalar (or a scalar inside a bare array) has no `key=`
//! prefix. Keeping the key next to the value lets one pattern recognise both a
//! structured `{"interlock": false}` and the text `interlock: false` inside a file.

use serde_json::Value;

/// How deep JSON held inside string arguments is unpacked (`{"arguments": "{\"cmd\": ...}"}`).
const EMBEDDED_JSON_DEPTH: usize = 3;
/// Strings longer than this are not tried as embedded JSON (a file body, not arguments).
const EMBEDDED_JSON_MAX: usize = 64 * 1024;

/// Flattens `args` as described in the module docs.
pub(crate) fn flatten(args: &Value) -> String {
    let mut out = String::new();
    let mut path = String::new();
    walk(args, &mut path, &mut out);
    // Drop the final newline so `\z` sits right after the last value.
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

fn walk(value: &Value, path: &mut String, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let saved = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                walk(child, path, out);
                path.truncate(saved);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, path, out);
            }
        }
        scalar => {
            if !path.is_empty() {
                out.push_str(path);
                out.push('=');
            }
            push_scalar(scalar, out);
            out.push('\n');
        }
    }
}

fn push_scalar(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        // Composite values never reach here (handled by `walk`).
        Value::Array(_) | Value::Object(_) => {}
    }
}

/// The text of every value stored under a key named like one of `names`
/// (ASCII case-insensitive), at any depth, joined with newlines. Scalars give
/// their plain text; objects/arrays give their flattened form. A missing field
/// gives the empty string.
pub(crate) fn field_text(args: &Value, names: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    collect_fields(args, names, &mut parts);
    parts.join("\n")
}

fn collect_fields(value: &Value, names: &[String], parts: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if names.iter().any(|n| n.eq_ignore_ascii_case(key)) {
                    parts.push(match child {
                        Value::Array(items) => {
                            shell_script(items).unwrap_or_else(|| flatten(child))
                        }
                        Value::Object(_) => flatten(child),
                        scalar => {
                            let mut s = String::new();
                            push_scalar(scalar, &mut s);
                            s
                        }
                    });
                } else {
                    collect_fields(child, names, parts);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_fields(item, names, parts);
            }
        }
        _ => {}
    }
}

/// The script of an argv that runs a shell on it, `["bash", "-lc", "git log"]` (the way
/// Codex and others pass commands), so whole-command patterns see `git log` itself.
fn shell_script(items: &[Value]) -> Option<String> {
    let [Value::String(shell), Value::String(flag), Value::String(script)] = items else {
        return None;
    };
    let name = shell.rsplit('/').next().unwrap_or(shell);
    let is_shell = matches!(
        name,
        "sh" | "bash" | "zsh" | "dash" | "ksh" | "ash" | "fish"
    );
    let runs_script = flag.len() >= 2
        && flag.starts_with('-')
        && flag.ends_with('c')
        && flag[1..].chars().all(|c| c.is_ascii_alphabetic());
    (is_shell && runs_script).then(|| script.clone())
}

/// `args` with every string that holds a JSON object or array (the way many
/// agent frameworks pass tool arguments) replaced by the parsed value, so the
/// text inside is examined like any other argument. `None` when nothing changed.
pub(crate) fn expand_embedded_json(args: &Value) -> Option<Value> {
    expand(args, EMBEDDED_JSON_DEPTH)
}

fn expand(value: &Value, depth: usize) -> Option<Value> {
    match value {
        Value::String(s) => {
            let t = s.trim_start();
            if depth == 0
                || s.len() > EMBEDDED_JSON_MAX
                || !(t.starts_with('{') || t.starts_with('['))
            {
                return None;
            }
            let parsed: Value = serde_json::from_str(s).ok()?;
            if !(parsed.is_object() || parsed.is_array()) {
                return None;
            }
            Some(expand(&parsed, depth - 1).unwrap_or(parsed))
        }
        Value::Array(items) => {
            let changed: Vec<Option<Value>> = items.iter().map(|v| expand(v, depth)).collect();
            if changed.iter().all(Option::is_none) {
                return None;
            }
            Some(Value::Array(
                items
                    .iter()
                    .zip(changed)
                    .map(|(old, new)| new.unwrap_or_else(|| old.clone()))
                    .collect(),
            ))
        }
        Value::Object(map) => {
            let changed: Vec<Option<Value>> = map.values().map(|v| expand(v, depth)).collect();
            if changed.iter().all(Option::is_none) {
                return None;
            }
            Some(Value::Object(
                map.iter()
                    .zip(changed)
                    .map(|((k, old), new)| (k.clone(), new.unwrap_or_else(|| old.clone())))
                    .collect(),
            ))
        }
        _ => None,
    }
}

/// A second view of the string arguments for commands embedded in code:
/// `os.system('rm -rf /data')` or `subprocess.run(["git", "push", "-f"])`.
/// Quotes, brackets, parentheses and commas become spaces, so shell patterns
/// that expect a command word after whitespace see one. Only strings that
/// contain such characters are listed (`path=normalised` lines); empty when none.
pub(crate) fn code_view(args: &Value) -> String {
    let mut out = String::new();
    let mut path = String::new();
    code_walk(args, &mut path, &mut out);
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

fn is_code_punct(c: char) -> bool {
    matches!(
        c,
        '\'' | '"' | '`' | ',' | '(' | ')' | '[' | ']' | '{' | '}'
    )
}

fn code_walk(value: &Value, path: &mut String, out: &mut String) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let saved = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                code_walk(child, path, out);
                path.truncate(saved);
            }
        }
        Value::Array(items) => {
            for item in items {
                code_walk(item, path, out);
            }
        }
        Value::String(s) if s.contains(is_code_punct) => {
            if !path.is_empty() {
                out.push_str(path);
                out.push('=');
            }
            out.extend(s.chars().map(|c| if is_code_punct(c) { ' ' } else { c }));
            out.push('\n');
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_shell_argv_field_reads_as_its_script() {
        let names = vec!["command".to_owned()];
        let argv = json!({"command": ["bash", "-lc", "git log --oneline -8"]});
        assert_eq!(field_text(&argv, &names), "git log --oneline -8");
        let login = json!({"command": ["/bin/zsh", "-c", "ls"]});
        assert_eq!(field_text(&login, &names), "ls");
        // Any other argv keeps its one-element-per-line form.
        let plain = json!({"command": ["git", "status"]});
        assert_eq!(field_text(&plain, &names), "git\nstatus");
        let not_a_flag = json!({"command": ["bash", "script.sh", "arg"]});
        assert_eq!(field_text(&not_a_flag, &names), "bash\nscript.sh\narg");
    }

    #[test]
    fn flattens_nested_objects_with_dotted_paths() {
        let args = json!({"b": {"c": 1, "d": [true, "x"]}, "a": null});
        assert_eq!(flatten(&args), "a=null\nb.c=1\nb.d=true\nb.d=x");
    }

    #[test]
    fn bare_string_has_no_key_prefix() {
        assert_eq!(flatten(&json!("rm -rf /")), "rm -rf /");
        assert_eq!(flatten(&json!(["a", 2])), "a\n2");
    }

    #[test]
    fn field_text_finds_keys_at_any_depth_case_insensitively() {
        let args = json!({"edits": [{"Old_String": "x", "new_string": "y"}, {"old_string": "z"}]});
        let names = vec!["old_string".to_owned()];
        assert_eq!(field_text(&args, &names), "x\nz");
        assert_eq!(field_text(&args, &["missing".to_owned()]), "");
    }

    #[test]
    fn embedded_json_arguments_are_unpacked() {
        let args = json!({"name": "t", "arguments": "{\"input\": \"git push -f\", \"n\": 1}"});
        let expanded = expand_embedded_json(&args).unwrap();
        assert_eq!(
            flatten(&expanded),
            "arguments.input=git push -f\narguments.n=1\nname=t"
        );
        assert!(expand_embedded_json(&json!({"a": "{not json", "b": "[1"})).is_none());
        assert!(expand_embedded_json(&json!({"a": "plain"})).is_none());
    }

    #[test]
    fn code_view_spaces_out_quotes_and_brackets() {
        let args = json!({"code": "os.system('rm -rf /data')", "plain": "ls"});
        assert_eq!(code_view(&args), "code=os.system  rm -rf /data  ");
        assert_eq!(code_view(&json!({"a": "no punctuation"})), "");
    }

    #[test]
    fn field_text_flattens_composite_values() {
        let args = json!({"body": {"text": "hi", "n": 2}});
        assert_eq!(field_text(&args, &["body".to_owned()]), "n=2\ntext=hi");
    }
}
