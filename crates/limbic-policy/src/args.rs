//! Turning a tool call's JSON arguments into text that regexes can run over.
//!
//! Flattened form: one line per leaf, `dotted.key.path=value`, in the JSON
//! object's key order (serde_json keeps keys sorted). Array elements reuse the
//! array's path. A bare scalar (or a scalar inside a bare array) has no `key=`
//! prefix. Keeping the key next to the value lets one pattern recognise both a
//! structured `{"interlock": false}` and the text `interlock: false` inside a file.

use serde_json::Value;

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
                        Value::Object(_) | Value::Array(_) => flatten(child),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn field_text_flattens_composite_values() {
        let args = json!({"body": {"text": "hi", "n": 2}});
        assert_eq!(field_text(&args, &["body".to_owned()]), "n=2\ntext=hi");
    }
}
