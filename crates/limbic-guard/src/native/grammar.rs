//! Constrained tool calls for native mode: a llama.cpp GBNF grammar that only admits one
//! well-formed call of a declared tool, and the parser/validator for what comes back.
//!
//! Why a grammar: a 135M model cannot be trusted to write valid JSON, let alone JSON that
//! matches a schema. The grammar makes every sampled call parse and validate by construction.
//!
//! Style decisions (all made so the grammar stays small and the output is reproducible):
//! * The call is written compactly in one fixed style,
//!   `{"name": "X", "arguments": {"k": v, "k2": [1, 2]}}` — one space after `:` and `,`,
//!   no other whitespace — so [`compact_json`] of the same value gives the same text back.
//! * Objects with declared `properties` are written with ALL declared properties, in the
//!   order `serde_json::Map` iterates them (sorted by key: the workspace does not enable
//!   `preserve_order`, so the declared order is already lost when a request is parsed).
//!   Emitting everything means `required` is always satisfied and no optional/ordering
//!   combinatorics enter the grammar. `additionalProperties` is ignored.
//! * Strings are capped at [`MAX_STRING_CHARS`] characters and arrays at [`MAX_ARRAY_ITEMS`]
//!   items, integers at 16 digits, so a tiny model always reaches the end.
//!   Strings allow only the simple escapes (`\" \\ \/ \b \f \n \r \t`), never `\uXXXX`:
//!   a lone surrogate would make the JSON unparseable; non-ASCII is written raw instead.
//! * A missing/empty schema, `true`, or a construct outside the subset (`$ref`, `allOf`,
//!   `not`, tuple `items`, unknown `type` names, ...) becomes a generic JSON value,
//!   bounded to [`GENERIC_DEPTH`] nested containers of at most 8 entries each.
//!   [`validate_args`] accepts anything there too, so grammar output always validates.
//! * `oneOf` is treated like `anyOf` (a grammar cannot exclude overlapping branches); both
//!   are only used when the schema has no `type`/`properties`/`items` of its own (an
//!   `anyOf` of `required` lists next to `properties` is already satisfied).
//! * Rule names are derived from positions (`t0-args-p1-i`), never from user strings;
//!   each repetition `{m,n}` sits alone in its rule's sequence, which keeps llama.cpp's
//!   per-sequence repetition limit (2000) out of reach.
//!
//! Needs a llama.cpp whose grammar parser knows `{m,n}` (llama-cpp-sys-2 0.1.161 does).

use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;
use std::fmt::Write as _;

/// One tool the model may call: its name and its JSON-schema `parameters`
/// (OpenAI `function.parameters`; may be absent/null = any object).
#[derive(Debug, Clone, Copy)]
pub struct ToolSpec<'a> {
    pub name: &'a str,
    pub parameters: Option<&'a Value>,
}

/// Opening and closing tags around a tool call in the model's text.
pub const CALL_OPEN: &str = "<tool_call>\n";
pub const CALL_CLOSE: &str = "\n</tool_call>";

/// Longest string (in characters) the grammar lets the model write.
pub const MAX_STRING_CHARS: u64 = 256;
/// Most items the grammar lets the model put in an array.
pub const MAX_ARRAY_ITEMS: u64 = 16;
/// Nested containers a generic (schema-less) value may have.
pub const GENERIC_DEPTH: usize = 3;
/// Entries per container in a generic value, and characters in a generic object key.
const GENERIC_ITEMS: u64 = 8;
const GENERIC_KEY_CHARS: u64 = 64;
/// Deeper schemas are refused rather than turned into an enormous grammar.
const MAX_SCHEMA_DEPTH: usize = 32;
/// Longest tool name accepted (OpenAI allows 64; leave room, refuse absurd ones).
const MAX_NAME_CHARS: usize = 256;

/// Why no grammar could be built. Display texts are meant for an HTTP 400 answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrammarError {
    /// The request asked for tool calls but declared no tools.
    NoTools,
    /// A tool name is empty, too long or contains control characters.
    BadName(String),
    /// Two tools share one name, so a call could not say which one it means.
    DuplicateName(String),
    /// A schema uses something that cannot be turned into a grammar.
    Unsupported(String),
}

impl fmt::Display for GrammarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoTools => write!(f, "no tools were given; `tools` must list at least one function"),
            Self::BadName(n) => write!(
                f,
                "invalid tool name {n:?}: names must be 1-{MAX_NAME_CHARS} characters without control characters"
            ),
            Self::DuplicateName(n) => write!(f, "tool name {n:?} is declared more than once"),
            Self::Unsupported(why) => write!(f, "unsupported tool parameters schema: {why}"),
        }
    }
}

impl std::error::Error for GrammarError {}

/// A tool call found in generated text.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    /// Text before the call, trimmed (the assistant's `content`; may be empty).
    pub content: String,
    /// The called tool's name.
    pub name: String,
    /// The arguments, parsed (always a JSON object).
    pub arguments: Value,
    /// The arguments exactly as generated (OpenAI's `function.arguments` string).
    pub arguments_text: String,
}

/// GBNF (llama.cpp grammar syntax, root rule `root`) accepting exactly one tool call:
/// [`CALL_OPEN`] + `{"name": "<tool>", "arguments": <object valid for its schema>}` + [`CALL_CLOSE`].
pub fn tool_call_grammar(tools: &[ToolSpec<'_>]) -> Result<String, GrammarError> {
    if tools.is_empty() {
        return Err(GrammarError::NoTools);
    }
    let mut seen = BTreeSet::new();
    let mut b = Builder::default();
    let mut calls = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        check_name(tool.name)?;
        if !seen.insert(tool.name) {
            return Err(GrammarError::DuplicateName(tool.name.to_string()));
        }
        let prefix = format!("t{i}");
        let args = b.arguments(&format!("{prefix}-args"), tool.name, tool.parameters)?;
        let head = format!("{{\"name\": {}, \"arguments\": ", json_str(tool.name));
        let rule = format!("{} {args} {}", gbnf_lit(&head), gbnf_lit("}"));
        calls.push(b.add(format!("{prefix}-call"), rule));
    }
    let mut out =
        String::from("# limbic native mode: exactly one tool call, compact fixed-style JSON\n");
    let _ = writeln!(
        out,
        "root ::= {} call {}",
        gbnf_lit(CALL_OPEN),
        gbnf_lit(CALL_CLOSE)
    );
    let _ = writeln!(out, "call ::= {}", calls.join(" | "));
    for (name, body) in &b.rules {
        let _ = writeln!(out, "{name} ::= {body}");
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), GrammarError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(GrammarError::BadName(name.to_string()));
    }
    Ok(())
}

/// Rules collected while walking the schemas; shared primitives are defined once.
#[derive(Default)]
struct Builder {
    rules: Vec<(String, String)>,
    shared: BTreeSet<String>,
}

impl Builder {
    fn add(&mut self, name: String, body: String) -> String {
        self.rules.push((name.clone(), body));
        name
    }

    /// Defines a shared rule once (first use wins) and returns its name.
    fn share(&mut self, name: String, body: impl FnOnce(&mut Self) -> String) -> String {
        if self.shared.insert(name.clone()) {
            let body = body(self);
            self.rules.push((name.clone(), body));
        }
        name
    }

    fn char_rule(&mut self) -> String {
        // Any char but quote, backslash and controls, or a simple escape (no \uXXXX: see top).
        self.share("json-char".into(), |_| {
            r#"[^"\\\x7F\x00-\x1F] | "\\" ["\\/bfnrt]"#.into()
        })
    }

    fn string(&mut self, min: u64, max: u64) -> String {
        let c = self.char_rule();
        let name = if (min, max) == (0, MAX_STRING_CHARS) {
            "json-str".to_string()
        } else {
            format!("json-str-{min}-{max}")
        };
        self.share(name, |_| format!(r#""\"" {c}{{{min},{max}}} "\"""#))
    }

    fn integer(&mut self) -> String {
        self.share("json-int".into(), |_| {
            r#""-"? ("0" | [1-9] [0-9]{0,15})"#.into()
        })
    }

    fn number(&mut self) -> String {
        let int = self.integer();
        self.share("json-num".into(), |_| {
            format!(r#"{int} ("." [0-9]{{1,16}})? ([eE] ("+" | "-")? [0-9]{{1,3}})?"#)
        })
    }

    fn scalar(&mut self, ty: &str) -> String {
        match ty {
            "string" => self.string(0, MAX_STRING_CHARS),
            "integer" => self.integer(),
            "number" => self.number(),
            "boolean" => self.share("json-bool".into(), |_| r#""true" | "false""#.into()),
            _ => self.share("json-null".into(), |_| r#""null""#.into()),
        }
    }

    /// Generic value with `level` containers already around it (deeper levels: scalars only).
    fn generic(&mut self, level: usize) -> String {
        if level >= GENERIC_DEPTH {
            let parts = ["string", "number", "boolean", "null"].map(|t| self.scalar(t));
            return self.share("json-scalar".into(), |_| parts.join(" | "));
        }
        let scalar = self.generic(GENERIC_DEPTH);
        let (arr, obj) = (self.generic_array(level), self.generic_object(level));
        self.share(format!("json-v{level}"), |_| {
            format!("{scalar} | {arr} | {obj}")
        })
    }

    fn generic_array(&mut self, level: usize) -> String {
        let v = self.generic(level + 1);
        self.share(format!("json-arr-{level}"), |_| {
            list(&v, "[", "]", 0, GENERIC_ITEMS)
        })
    }

    fn generic_object(&mut self, level: usize) -> String {
        let v = self.generic(level + 1);
        let c = self.char_rule();
        let key = self.share("json-key".into(), |_| {
            format!(r#""\"" {c}{{0,{GENERIC_KEY_CHARS}}} "\"""#)
        });
        let kv = self.share(format!("json-kv-{level}"), |_| format!(r#"{key} ": " {v}"#));
        self.share(format!("json-obj-{level}"), |_| {
            list(&kv, "{", "}", 0, GENERIC_ITEMS)
        })
    }

    /// The rule for a tool's `arguments`, which must be an object.
    fn arguments(
        &mut self,
        name: &str,
        tool: &str,
        schema: Option<&Value>,
    ) -> Result<String, GrammarError> {
        let Some(Value::Object(s)) = schema else {
            return match schema {
                None | Some(Value::Null | Value::Bool(true)) => Ok(self.generic_object(0)),
                Some(_) => Err(unsupported(
                    tool,
                    "$",
                    "parameters must be a JSON-schema object",
                )),
            };
        };
        match types(s) {
            None if s.contains_key("properties") => self.object(name, tool, "$", s, 0),
            None => Ok(self.generic_object(0)),
            Some(t) if t.contains(&"object") => self.object(name, tool, "$", s, 0),
            Some(_) => Err(unsupported(
                tool,
                "$",
                "parameters must have \"type\": \"object\"",
            )),
        }
    }

    /// Returns the name of a rule matching `schema`; `name` is this node's unique rule name.
    fn schema(
        &mut self,
        name: &str,
        tool: &str,
        at: &str,
        schema: &Value,
        depth: usize,
    ) -> Result<String, GrammarError> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(unsupported(
                tool,
                at,
                &format!("schemas nested deeper than {MAX_SCHEMA_DEPTH} levels"),
            ));
        }
        let s = match schema {
            Value::Object(s) => s,
            Value::Bool(false) => {
                return Err(unsupported(tool, at, "a `false` schema accepts no value"))
            }
            _ => return Ok(self.generic(0)),
        };
        if let Some(c) = s.get("const") {
            return Ok(self.add(name.to_string(), gbnf_lit(&compact_json(c))));
        }
        if let Some(e) = s.get("enum") {
            let alts: Vec<String> = match e {
                Value::Array(a) if !a.is_empty() => {
                    a.iter().map(|v| gbnf_lit(&compact_json(v))).collect()
                }
                _ => return Err(unsupported(tool, at, "`enum` must be a non-empty array")),
            };
            return Ok(self.add(name.to_string(), alts.join(" | ")));
        }
        let ty = types(s);
        if ty.is_none() && !s.contains_key("properties") && !s.contains_key("items") {
            if let Some(Value::Array(alts)) = s.get("anyOf").or_else(|| s.get("oneOf")) {
                if alts.is_empty() {
                    return Err(unsupported(tool, at, "`anyOf`/`oneOf` must not be empty"));
                }
                let mut refs = Vec::with_capacity(alts.len());
                for (j, alt) in alts.iter().enumerate() {
                    refs.push(self.schema(&format!("{name}-a{j}"), tool, at, alt, depth + 1)?);
                }
                return Ok(self.add(name.to_string(), refs.join(" | ")));
            }
        }
        let ty = match ty {
            Some(t) => t,
            None if s.contains_key("properties") => vec!["object"],
            None if s.contains_key("items") => vec!["array"],
            None => return Ok(self.generic(0)),
        };
        if ty.is_empty() {
            return Err(unsupported(tool, at, "`type` must not be an empty list"));
        }
        let mut refs = Vec::with_capacity(ty.len());
        for (j, t) in ty.iter().enumerate() {
            let sub = if ty.len() == 1 {
                name.to_string()
            } else {
                format!("{name}-t{j}")
            };
            refs.push(self.typed(&sub, tool, at, t, s, depth)?);
        }
        if refs.len() == 1 {
            return Ok(refs.swap_remove(0));
        }
        Ok(self.add(name.to_string(), refs.join(" | ")))
    }

    fn typed(
        &mut self,
        name: &str,
        tool: &str,
        at: &str,
        ty: &str,
        s: &Map<String, Value>,
        depth: usize,
    ) -> Result<String, GrammarError> {
        match ty {
            "object" if s.contains_key("properties") => self.object(name, tool, at, s, depth),
            "object" => Ok(self.generic_object(0)),
            "array" => {
                let (min, max) = bounds(s, "minItems", "maxItems", MAX_ARRAY_ITEMS).ok_or_else(|| {
                    unsupported(tool, at, &format!("arrays must allow at most {MAX_ARRAY_ITEMS} items (check minItems/maxItems)"))
                })?;
                let item = match s.get("items") {
                    Some(items @ Value::Object(_)) | Some(items @ Value::Bool(_)) => self.schema(
                        &format!("{name}-i"),
                        tool,
                        &format!("{at}[]"),
                        items,
                        depth + 1,
                    )?,
                    _ => self.generic(1),
                };
                Ok(self.add(name.to_string(), list(&item, "[", "]", min, max)))
            }
            "string" => {
                let (min, max) = bounds(s, "minLength", "maxLength", MAX_STRING_CHARS).ok_or_else(|| {
                    unsupported(tool, at, &format!("strings must allow at most {MAX_STRING_CHARS} characters (check minLength/maxLength)"))
                })?;
                Ok(self.string(min, max))
            }
            "integer" | "number" | "boolean" | "null" => Ok(self.scalar(ty)),
            _ => Ok(self.generic(0)),
        }
    }

    /// `{"k1": v1, "k2": v2}` with every declared property (see the module docs for why).
    fn object(
        &mut self,
        name: &str,
        tool: &str,
        at: &str,
        s: &Map<String, Value>,
        depth: usize,
    ) -> Result<String, GrammarError> {
        let props = match s.get("properties") {
            Some(Value::Object(p)) => p,
            Some(_) => return Err(unsupported(tool, at, "`properties` must be an object")),
            None => return Ok(self.generic_object(0)),
        };
        let mut parts = Vec::with_capacity(props.len() * 2 + 1);
        let mut pending = String::from("{");
        for (j, (key, sub)) in props.iter().enumerate() {
            if j > 0 {
                pending.push_str(", ");
            }
            pending.push_str(&json_str(key));
            pending.push_str(": ");
            parts.push(gbnf_lit(&pending));
            pending.clear();
            let child = format!("{name}-p{j}");
            parts.push(self.schema(&child, tool, &child_path(at, key), sub, depth + 1)?);
        }
        pending.push('}');
        parts.push(gbnf_lit(&pending));
        Ok(self.add(name.to_string(), parts.join(" ")))
    }
}

/// `open item (", " item){..} close` with between `min` and `max` items; the repetition
/// is the only one in its sequence (see module docs).
fn list(item: &str, open: &str, close: &str, min: u64, max: u64) -> String {
    let (o, c) = (gbnf_lit(open), gbnf_lit(close));
    match (min, max) {
        (_, 0) => gbnf_lit(&format!("{open}{close}")),
        (0, 1) => format!("{o} {item}? {c}"),
        (0, _) => format!(r#"{o} ({item} (", " {item}){{0,{}}})? {c}"#, max - 1),
        (_, _) => format!(r#"{o} {item} (", " {item}){{{},{}}} {c}"#, min - 1, max - 1),
    }
}

/// The schema's `type` as a list of names; None if absent or not a string/list of strings.
fn types(s: &Map<String, Value>) -> Option<Vec<&str>> {
    match s.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(a) => a.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// (min, max) from two keywords, max capped at `cap`; None if min exceeds the cap or max.
fn bounds(s: &Map<String, Value>, min_key: &str, max_key: &str, cap: u64) -> Option<(u64, u64)> {
    let min = s.get(min_key).and_then(Value::as_u64).unwrap_or(0);
    let max = s
        .get(max_key)
        .and_then(Value::as_u64)
        .unwrap_or(cap)
        .min(cap);
    (min <= max).then_some((min, max))
}

fn unsupported(tool: &str, at: &str, why: &str) -> GrammarError {
    GrammarError::Unsupported(format!("tool {tool:?}, at {at}: {why}"))
}

fn child_path(at: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{at}.{key}")
    } else {
        format!("{at}[{}]", json_str(key))
    }
}

/// A GBNF string literal matching `s` exactly. Everything outside printable ASCII is
/// written as `\xNN`/`\uNNNN`/`\UNNNNNNNN` so the grammar text stays plain ASCII.
pub fn gbnf_lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        let _ = match c {
            '"' => write!(out, "\\\""),
            '\\' => write!(out, "\\\\"),
            '\n' => write!(out, "\\n"),
            '\r' => write!(out, "\\r"),
            '\t' => write!(out, "\\t"),
            ' '..='~' => write!(out, "{c}"),
            c if (c as u32) < 0x80 => write!(out, "\\x{:02X}", c as u32),
            c if (c as u32) <= 0xFFFF => write!(out, "\\u{:04X}", c as u32),
            c => write!(out, "\\U{:08X}", c as u32),
        };
    }
    out.push('"');
    out
}

/// A JSON string literal as serde_json writes it (escapes `"`, `\` and control chars only).
pub fn json_str(s: &str) -> String {
    // Display of a JSON string value cannot fail, unlike `serde_json::to_string`'s signature.
    Value::String(s.to_string()).to_string()
}

/// `v` in the grammar's fixed compact style: `{"k": 1, "l": [true, null]}`.
pub fn compact_json(v: &Value) -> String {
    let mut out = String::new();
    write_compact(&mut out, v);
    out
}

fn write_compact(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => out.push_str(&json_str(s)),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_compact(out, x);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&json_str(k));
                out.push_str(": ");
                write_compact(out, x);
            }
            out.push('}');
        }
        // null, bools and numbers print as serde_json serializes them.
        other => out.push_str(&other.to_string()),
    }
}

/// Finds the first tool call in `text`. The closing tag may be missing (it is often a stop
/// string, which llama.cpp strips), but the JSON must be complete and be followed only by
/// whitespace or the closing tag; anything after the closing tag is ignored.
pub fn parse_tool_call(text: &str) -> Option<ParsedCall> {
    let open_tag = CALL_OPEN.trim_end();
    let close_tag = CALL_CLOSE.trim_start();
    let start = text.find(open_tag)?;
    let body = &text[start + open_tag.len()..];
    let (fields, end) = scan_object(body)?;
    let rest = body[end..].trim_start();
    // Whole, missing (a stop string), or cut short by the token limit: the call is whole.
    if !rest.is_empty() && !rest.starts_with(close_tag) && !close_tag.starts_with(rest) {
        return None;
    }
    let mut name = None;
    let mut arguments = None;
    for (key, value, raw) in fields {
        match (key.as_str(), value) {
            ("name", Value::String(n)) => name = Some(n),
            ("arguments", v @ Value::Object(_)) => arguments = Some((v, raw)),
            _ => {}
        }
    }
    let (arguments, raw) = arguments?;
    Some(ParsedCall {
        content: text[..start].trim().to_string(),
        name: name?,
        arguments,
        arguments_text: raw.to_string(),
    })
}

/// The text before an opened tool call that could not be parsed (cut short by the
/// token limit): what may still be shown of a turn whose call is unusable.
pub fn text_before_call(text: &str) -> Option<&str> {
    text.find(CALL_OPEN.trim_end()).map(|at| text[..at].trim())
}

/// A top-level object entry: key, parsed value, and the value's exact source text.
type Field<'a> = (String, Value, &'a str);

/// Scans one JSON object at the start of `s` (after whitespace), returning each top-level
/// entry with its exact source text, and the byte offset just past the closing brace.
fn scan_object(s: &str) -> Option<(Vec<Field<'_>>, usize)> {
    let mut i = skip_ws(s, 0);
    i = expect(s, i, b'{')?;
    let mut fields = Vec::new();
    if s.as_bytes().get(skip_ws(s, i)) == Some(&b'}') {
        return Some((fields, skip_ws(s, i) + 1));
    }
    loop {
        let (key, after_key) = next_json::<String>(s, i)?;
        i = expect(s, skip_ws(s, after_key), b':')?;
        let value_start = skip_ws(s, i);
        let (value, after_value) = next_json::<Value>(s, value_start)?;
        fields.push((key, value, &s[value_start..after_value]));
        i = skip_ws(s, after_value);
        match s.as_bytes().get(i)? {
            b',' => i += 1,
            b'}' => return Some((fields, i + 1)),
            _ => return None,
        }
    }
}

/// Parses one JSON value of type `T` starting at byte `at`; returns it and the end offset.
fn next_json<T: serde::de::DeserializeOwned>(s: &str, at: usize) -> Option<(T, usize)> {
    let mut stream = serde_json::Deserializer::from_str(s.get(at..)?).into_iter::<T>();
    let value = stream.next()?.ok()?;
    Some((value, at + stream.byte_offset()))
}

fn skip_ws(s: &str, mut i: usize) -> usize {
    while matches!(s.as_bytes().get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

fn expect(s: &str, i: usize, byte: u8) -> Option<usize> {
    (s.as_bytes().get(i) == Some(&byte)).then_some(i + 1)
}

/// Checks `args` (a tool call's arguments, which must be an object) against the schema
/// subset the grammar supports; the error names the JSON path that is wrong. Constructs
/// outside the subset accept anything, exactly as the grammar's generic value does.
pub fn validate_args(schema: Option<&Value>, args: &Value) -> Result<(), String> {
    if !args.is_object() {
        return Err(format!(
            "$: expected an object of arguments, got {}",
            kind(args)
        ));
    }
    match schema {
        None | Some(Value::Null) => Ok(()),
        Some(s) => check(s, args, "$"),
    }
}

fn check(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = match schema {
        Value::Object(s) => s,
        Value::Bool(false) => return Err(format!("{at}: no value is allowed here")),
        _ => return Ok(()),
    };
    if let Some(c) = s.get("const") {
        return if v == c {
            Ok(())
        } else {
            Err(format!("{at}: expected {}", compact_json(c)))
        };
    }
    if let Some(Value::Array(e)) = s.get("enum") {
        return if e.contains(v) {
            Ok(())
        } else {
            let allowed: Vec<String> = e.iter().map(compact_json).collect();
            Err(format!(
                "{at}: {} is not one of {}",
                compact_json(v),
                allowed.join(", ")
            ))
        };
    }
    let ty = types(s);
    if ty.is_none() && !s.contains_key("properties") && !s.contains_key("items") {
        if let Some(Value::Array(alts)) = s.get("anyOf").or_else(|| s.get("oneOf")) {
            let mut first = None;
            for alt in alts {
                match check(alt, v, at) {
                    Ok(()) => return Ok(()),
                    Err(e) => first = first.or(Some(e)),
                }
            }
            return Err(format!(
                "{at}: matches none of the alternatives ({})",
                first.unwrap_or_default()
            ));
        }
    }
    let ty = match ty {
        Some(t) => t,
        None if s.contains_key("properties") => vec!["object"],
        None if s.contains_key("items") => vec!["array"],
        None => return Ok(()),
    };
    let mut errors = Vec::new();
    for t in &ty {
        match check_typed(t, s, v, at) {
            Ok(()) => return Ok(()),
            Err(e) => errors.push(e),
        }
    }
    if errors.len() == 1 {
        return Err(errors.swap_remove(0));
    }
    Err(format!(
        "{at}: expected one of {}, got {}",
        ty.join(", "),
        kind(v)
    ))
}

fn check_typed(ty: &str, s: &Map<String, Value>, v: &Value, at: &str) -> Result<(), String> {
    let wrong = || Err(format!("{at}: expected {ty}, got {}", kind(v)));
    match (ty, v) {
        ("object", Value::Object(m)) => {
            if let Some(Value::Array(req)) = s.get("required") {
                if let Some(missing) = req
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|k| !m.contains_key(*k))
                {
                    return Err(format!("{at}: missing required property {missing:?}"));
                }
            }
            if let Some(Value::Object(props)) = s.get("properties") {
                for (k, sub) in props {
                    if let Some(x) = m.get(k) {
                        check(sub, x, &child_path(at, k))?;
                    }
                }
            }
            Ok(())
        }
        ("array", Value::Array(a)) => {
            let n = a.len() as u64;
            let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let max = s
                .get("maxItems")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            if n < min || n > max {
                return Err(format!("{at}: {n} items, expected {min} to {max}"));
            }
            match s.get("items") {
                Some(items @ (Value::Object(_) | Value::Bool(_))) => a
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, x)| check(items, x, &format!("{at}[{i}]"))),
                _ => Ok(()),
            }
        }
        ("string", Value::String(x)) => {
            let n = x.chars().count() as u64;
            let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0);
            let max = s
                .get("maxLength")
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            if n < min || n > max {
                return Err(format!(
                    "{at}: string of {n} characters, expected {min} to {max}"
                ));
            }
            Ok(())
        }
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
        ("integer", Value::Number(n)) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => Ok(()),
        ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) | ("null", Value::Null) => {
            Ok(())
        }
        ("object" | "array" | "string" | "integer" | "number" | "boolean" | "null", _) => wrong(),
        _ => Ok(()), // unknown type names: generic, as in the grammar
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests;
