//! Tests: a small GBNF parser + matcher (so grammars are checked for well-formedness AND
//! for accepting exactly the canonical text), a random schema/value generator, parsing and
//! validation cases.

use super::*;
use proptest::prelude::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

// ---------- a tiny GBNF parser and matcher ----------

#[derive(Debug, Clone)]
enum Node {
    Lit(Vec<char>),
    Class(bool, Vec<(char, char)>),
    Ref(String),
    Alt(Vec<Vec<(Node, u32, Option<u32>)>>),
}

struct P<'a> {
    c: &'a [char],
    i: usize,
    refs: &'a mut BTreeSet<String>,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.c.len() && self.c[self.i] == ' ' {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }
    fn hex(&mut self, n: usize) -> char {
        let s: String = self.c[self.i..self.i + n].iter().collect();
        self.i += n;
        char::from_u32(u32::from_str_radix(&s, 16).expect("hex")).expect("char")
    }
    /// One (possibly escaped) char, with the escapes llama.cpp's parse_char knows.
    fn ch(&mut self) -> char {
        let c = self.c[self.i];
        self.i += 1;
        if c != '\\' {
            return c;
        }
        let e = self.c[self.i];
        self.i += 1;
        match e {
            'x' => self.hex(2),
            'u' => self.hex(4),
            'U' => self.hex(8),
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            '\\' | '"' | '[' | ']' | '-' => e,
            _ => panic!("unknown escape \\{e}"),
        }
    }
    fn alt(&mut self) -> Node {
        let mut alts = vec![self.seq()];
        while self.peek() == Some('|') {
            self.i += 1;
            self.ws();
            alts.push(self.seq());
        }
        Node::Alt(alts)
    }
    fn num(&mut self) -> u32 {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.c[start..self.i]
            .iter()
            .collect::<String>()
            .parse()
            .expect("number")
    }
    fn seq(&mut self) -> Vec<(Node, u32, Option<u32>)> {
        let mut seq: Vec<(Node, u32, Option<u32>)> = Vec::new();
        loop {
            self.ws();
            let node = match self.peek() {
                Some('"') => {
                    self.i += 1;
                    let mut s = Vec::new();
                    while self.peek() != Some('"') {
                        assert!(self.peek().is_some(), "unterminated literal");
                        s.push(self.ch());
                    }
                    self.i += 1;
                    assert!(!s.is_empty(), "empty literal");
                    Node::Lit(s)
                }
                Some('[') => {
                    self.i += 1;
                    let neg = self.peek() == Some('^');
                    self.i += usize::from(neg);
                    let mut ranges = Vec::new();
                    while self.peek() != Some(']') {
                        let a = self.ch();
                        let b = if self.peek() == Some('-') && self.c.get(self.i + 1) != Some(&']')
                        {
                            self.i += 1;
                            self.ch()
                        } else {
                            a
                        };
                        assert!(a <= b, "bad range");
                        ranges.push((a, b));
                    }
                    self.i += 1;
                    Node::Class(neg, ranges)
                }
                Some('(') => {
                    self.i += 1;
                    self.ws();
                    let n = self.alt();
                    assert_eq!(self.peek(), Some(')'), "unbalanced parenthesis");
                    self.i += 1;
                    n
                }
                Some(c) if c.is_ascii_alphanumeric() || c == '-' => {
                    let start = self.i;
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
                    {
                        self.i += 1;
                    }
                    let name: String = self.c[start..self.i].iter().collect();
                    self.refs.insert(name.clone());
                    Node::Ref(name)
                }
                _ => break,
            };
            seq.push((node, 1, Some(1)));
            loop {
                let last = seq.last_mut().expect("item");
                let rep = match self.peek() {
                    Some('?') => (0, Some(1)),
                    Some('*') => (0, None),
                    Some('+') => (1, None),
                    Some('{') => {
                        self.i += 1;
                        let m = self.num();
                        assert_eq!(self.peek(), Some(','), "only {{m,n}} is used");
                        self.i += 1;
                        let n = self.num();
                        assert_eq!(self.peek(), Some('}'));
                        assert!(m <= n && n <= 2000, "repetition {{{m},{n}}} out of range");
                        (m, Some(n))
                    }
                    _ => break,
                };
                self.i += 1;
                assert_eq!((last.1, last.2), (1, Some(1)), "stacked repetition");
                (last.1, last.2) = rep;
            }
        }
        seq
    }
}

struct Grammar {
    rules: BTreeMap<String, Node>,
}

/// Parses and checks well-formedness: `name ::= body` lines, valid identifiers, balanced
/// literals/classes/parens, every referenced rule defined, `root` present, no duplicates.
fn parse_gbnf(src: &str) -> Grammar {
    let mut rules = BTreeMap::new();
    let mut refs = BTreeSet::new();
    for line in src.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, body) = line.split_once(" ::= ").expect("rule definition");
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "bad rule name {name:?}"
        );
        assert!(body.is_ascii(), "grammar text should be ASCII: {body}");
        let chars: Vec<char> = body.chars().collect();
        let mut p = P {
            c: &chars,
            i: 0,
            refs: &mut refs,
        };
        let node = p.alt();
        assert_eq!(p.i, chars.len(), "trailing text in rule {name}: {body}");
        assert!(
            rules.insert(name.to_string(), node).is_none(),
            "duplicate rule {name}"
        );
    }
    assert!(rules.contains_key("root"), "no root rule");
    for r in &refs {
        assert!(rules.contains_key(r), "undefined rule {r}");
    }
    Grammar { rules }
}

impl Grammar {
    fn ends(&self, node: &Node, t: &[char], starts: &BTreeSet<usize>) -> BTreeSet<usize> {
        let mut out = BTreeSet::new();
        match node {
            Node::Lit(s) => {
                for &i in starts {
                    if t.get(i..i + s.len()) == Some(s.as_slice()) {
                        out.insert(i + s.len());
                    }
                }
            }
            Node::Class(neg, ranges) => {
                for &i in starts {
                    if let Some(&c) = t.get(i) {
                        if ranges.iter().any(|&(a, b)| a <= c && c <= b) != *neg {
                            out.insert(i + 1);
                        }
                    }
                }
            }
            Node::Ref(r) => out = self.ends(&self.rules[r], t, starts),
            Node::Alt(alts) => {
                for seq in alts {
                    let mut cur = starts.clone();
                    for (n, min, max) in seq {
                        cur = self.rep(n, *min, *max, t, cur);
                    }
                    out.extend(cur);
                }
            }
        }
        out
    }
    fn rep(
        &self,
        n: &Node,
        min: u32,
        max: Option<u32>,
        t: &[char],
        starts: BTreeSet<usize>,
    ) -> BTreeSet<usize> {
        let mut out = if min == 0 {
            starts.clone()
        } else {
            BTreeSet::new()
        };
        let mut cur = starts;
        let mut k = 0;
        while !cur.is_empty() && max.is_none_or(|m| k < m) {
            cur = self.ends(n, t, &cur);
            k += 1;
            if k >= min {
                cur.retain(|e| out.insert(*e) || max.is_some());
            }
        }
        out
    }
    fn accepts(&self, text: &str) -> bool {
        let t: Vec<char> = text.chars().collect();
        self.ends(&self.rules["root"], &t, &BTreeSet::from([0]))
            .contains(&t.len())
    }
}

fn grammar_for(name: &str, schema: &Value) -> Grammar {
    let g = tool_call_grammar(&[ToolSpec {
        name,
        parameters: Some(schema),
    }])
    .expect("grammar");
    parse_gbnf(&g)
}

fn call_text(name: &str, args: &str) -> String {
    format!(
        "{CALL_OPEN}{{\"name\": {}, \"arguments\": {args}}}{CALL_CLOSE}",
        json_str(name)
    )
}

fn terminal_schema() -> Value {
    json!({"type": "object", "properties": {
        "command": {"type": "string", "description": "shell command"},
        "timeout": {"type": "integer"},
        "mode": {"enum": ["fg", "bg"]},
        "env": {"type": "object", "properties": {"cwd": {"type": ["string", "null"]}, "vars": {"type": "array", "items": {"type": "string"}, "maxItems": 4}}}
    }, "required": ["command"]})
}

// ---------- grammar shape ----------

#[test]
fn golden_terminal_tool() {
    let g = tool_call_grammar(&[ToolSpec {
        name: "run_terminal_cmd",
        parameters: Some(&terminal_schema()),
    }])
    .unwrap();
    assert!(
        g.contains(r#"root ::= "<tool_call>\n" call "\n</tool_call>""#),
        "{g}"
    );
    assert!(g.contains("call ::= t0-call\n"), "{g}");
    assert!(
        g.contains(r#"t0-call ::= "{\"name\": \"run_terminal_cmd\", \"arguments\": " t0-args "}""#),
        "{g}"
    );
    // Map order is sorted: command, env, mode, timeout.
    assert!(g.contains(r#"t0-args ::= "{\"command\": " json-str ", \"env\": " t0-args-p1 ", \"mode\": " t0-args-p2 ", \"timeout\": " json-int "}""#), "{g}");
    assert!(g.contains(r#"t0-args-p2 ::= "\"fg\"" | "\"bg\"""#), "{g}");
    assert!(
        g.contains(r#"t0-args-p1-p0 ::= json-str | json-null"#),
        "{g}"
    );
    assert!(
        g.contains(r#"t0-args-p1-p1 ::= "[" (json-str (", " json-str){0,3})? "]""#),
        "{g}"
    );
    assert!(
        g.contains(r#"json-str ::= "\"" json-char{0,256} "\"""#),
        "{g}"
    );
    assert!(
        g.contains(r#"json-char ::= [^"\\\x7F\x00-\x1F] | "\\" ["\\/bfnrt]"#),
        "{g}"
    );
    let gr = parse_gbnf(&g);
    let ok = r#"{"command": "ls -la \"x\"", "env": {"cwd": null, "vars": ["A=1", "B"]}, "mode": "bg", "timeout": 30}"#;
    assert!(gr.accepts(&call_text("run_terminal_cmd", ok)));
    for bad in [
        r#"{"command": "ls", "env": {"cwd": null, "vars": []}, "mode": "bg", "timeout": 3.5}"#, // float
        r#"{"command": "ls","env": {"cwd": null, "vars": []}, "mode": "bg", "timeout": 3}"#, // style
        r#"{"command": "ls", "env": {"cwd": null, "vars": []}, "mode": "up", "timeout": 3}"#, // enum
        r#"{"command": "ls", "mode": "bg", "timeout": 3}"#, // missing
        r#"{"command": "ls", "env": {"cwd": null, "vars": ["1", "2", "3", "4", "5"]}, "mode": "bg", "timeout": 3}"#,
    ] {
        assert!(
            !gr.accepts(&call_text("run_terminal_cmd", bad)),
            "accepted {bad}"
        );
    }
    assert!(!gr.accepts(&call_text("other_tool", ok)));
}

#[test]
fn several_tools_and_generic_parameters() {
    let empty = json!({"type": "object", "properties": {}});
    let g = tool_call_grammar(&[
        ToolSpec {
            name: "a",
            parameters: None,
        },
        ToolSpec {
            name: "b",
            parameters: Some(&empty),
        },
        ToolSpec {
            name: "c",
            parameters: Some(&json!({})),
        },
    ])
    .unwrap();
    assert!(g.contains("call ::= t0-call | t1-call | t2-call\n"), "{g}");
    let gr = parse_gbnf(&g);
    assert!(gr.accepts(&call_text("a", r#"{"x": [1, {"y": "z"}], "": null}"#)));
    assert!(gr.accepts(&call_text("b", "{}")));
    assert!(!gr.accepts(&call_text("b", r#"{"x": 1}"#)));
    assert!(gr.accepts(&call_text("c", "{}")));
    assert!(!gr.accepts(&call_text("a", "[]")));
}

#[test]
fn names_are_escaped_and_checked() {
    let name = "we\"ird\\näme 🦀";
    let gr = grammar_for(
        name,
        &json!({"type": "object", "properties": {"k\"ey\\ü": {"const": "v"}}}),
    );
    assert!(gr.accepts(&call_text(name, r#"{"k\"ey\\ü": "v"}"#)));
    for bad in ["", "a\nb", "tab\there", "nul\u{0}"] {
        let e = tool_call_grammar(&[ToolSpec {
            name: bad,
            parameters: None,
        }])
        .unwrap_err();
        assert_eq!(e, GrammarError::BadName(bad.to_string()));
        assert!(e.to_string().contains("invalid tool name"));
    }
    assert_eq!(tool_call_grammar(&[]).unwrap_err(), GrammarError::NoTools);
    let t = ToolSpec {
        name: "x",
        parameters: None,
    };
    assert_eq!(
        tool_call_grammar(&[t, t]).unwrap_err(),
        GrammarError::DuplicateName("x".into())
    );
}

#[test]
fn unsupported_schemas_are_refused_with_a_path() {
    for (schema, needle) in [
        (json!({"type": "string"}), "at $"),
        (json!("nope"), "at $"),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "minLength": 300}}}),
            "at $.a",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "array", "minItems": 20}}}),
            "at $.a",
        ),
        (
            json!({"type": "object", "properties": {"a": {"enum": []}}}),
            "at $.a",
        ),
        (
            json!({"type": "object", "properties": {"a b": false}}),
            "at $[\"a b\"]",
        ),
    ] {
        let e = tool_call_grammar(&[ToolSpec {
            name: "t",
            parameters: Some(&schema),
        }])
        .unwrap_err();
        assert!(matches!(e, GrammarError::Unsupported(_)), "{e:?}");
        assert!(e.to_string().contains(needle), "{e} lacks {needle}");
    }
    let mut deep = json!({"type": "string"});
    for _ in 0..40 {
        deep = json!({"type": "object", "properties": {"d": deep}});
    }
    assert!(tool_call_grammar(&[ToolSpec {
        name: "t",
        parameters: Some(&deep)
    }])
    .is_err());
}

#[test]
fn strings_numbers_and_bounds() {
    let schema = json!({"type": "object", "properties": {
        "s": {"type": "string", "maxLength": 3},
        "n": {"type": "number"},
        "l": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2},
        "u": {"anyOf": [{"type": "integer"}, {"const": {"a": [1, "b"]}}]}
    }});
    let gr = grammar_for("t", &schema);
    let args = |l: &str, n: &str, s: &str, u: &str| {
        call_text(
            "t",
            &format!(r#"{{"l": {l}, "n": {n}, "s": {s}, "u": {u}}}"#),
        )
    };
    assert!(gr.accepts(&args(
        "[true]",
        "-0.5e+3",
        r#""a\/\n""#,
        r#"{"a": [1, "b"]}"#
    )));
    assert!(gr.accepts(&args("[true, false]", "12", r#""ü🦀""#, "-7")));
    assert!(!gr.accepts(&args("[]", "1", r#""""#, "1")));
    assert!(!gr.accepts(&args("[true]", "01", r#""""#, "1")));
    assert!(!gr.accepts(&args("[true]", "1", r#""abcd""#, "1")));
    assert!(!gr.accepts(&args("[true]", "1", r#""\u0041""#, "1")));
    assert!(!gr.accepts(&args("[true]", "1", "\"a\tb\"", "1")));
    assert!(!gr.accepts(&args("[true]", "1", r#""""#, "1.5")));
}

// ---------- parsing ----------

#[test]
fn parse_finds_the_call() {
    let text = format!(
        "I will list files.\n{}",
        call_text("run", r#"{"cmd": "echo \"hi\"\\n", "n": 2}"#)
    );
    let p = parse_tool_call(&text).unwrap();
    assert_eq!(p.content, "I will list files.");
    assert_eq!(p.name, "run");
    assert_eq!(p.arguments, json!({"cmd": "echo \"hi\"\\n", "n": 2}));
    assert_eq!(p.arguments_text, r#"{"cmd": "echo \"hi\"\\n", "n": 2}"#);

    let bare = call_text("x", "{}");
    assert_eq!(parse_tool_call(&bare).unwrap().content, "");
    // Close tag stripped as a stop string, or trailing text after it: still a call.
    let stripped = bare.trim_end_matches(CALL_CLOSE).to_string();
    assert_eq!(parse_tool_call(&stripped).unwrap().name, "x");
    assert!(parse_tool_call(&format!("{bare} trailing")).is_some());
    // Key order and whitespace of hand-written calls are tolerated.
    let loose = "<tool_call>{ \"arguments\" : {\"a\":1} , \"name\":\"y\" }</tool_call>";
    let p = parse_tool_call(loose).unwrap();
    assert_eq!(
        (p.name.as_str(), p.arguments_text.as_str()),
        ("y", "{\"a\":1}")
    );
}

#[test]
fn parse_rejects_non_calls() {
    assert!(parse_tool_call("just prose, no call").is_none());
    let full = call_text("run", r#"{"cmd": "ls"}"#);
    for cut in [12, 20, 30, full.len() - CALL_CLOSE.len() - 1] {
        assert!(
            parse_tool_call(&full[..cut]).is_none(),
            "truncated at {cut}"
        );
    }
    for bad in [
        "<tool_call>\n{\"name\": 3, \"arguments\": {}}",
        "<tool_call>\n{\"name\": \"x\", \"arguments\": []}",
        "<tool_call>\n{\"name\": \"x\"}",
        "<tool_call>\n{\"name\": \"x\", \"arguments\": {}} junk",
        "<tool_call>\n[1]",
    ] {
        assert!(parse_tool_call(bad).is_none(), "{bad}");
    }
}

// ---------- validation ----------

#[test]
fn validation_reports_the_path() {
    let s = terminal_schema();
    let ok =
        json!({"command": "ls", "timeout": 5, "mode": "fg", "env": {"cwd": null, "vars": ["a"]}});
    validate_args(Some(&s), &ok).unwrap();
    validate_args(
        Some(&s),
        &json!({"command": "ls", "timeout": 5.0, "extra": 1}),
    )
    .unwrap();
    for (args, needle) in [
        (
            json!({"timeout": 5}),
            "$: missing required property \"command\"",
        ),
        (
            json!({"command": 5}),
            "$.command: expected string, got integer",
        ),
        (
            json!({"command": "ls", "timeout": 1.5}),
            "$.timeout: expected integer",
        ),
        (
            json!({"command": "ls", "mode": "up"}),
            "$.mode: \"up\" is not one of \"fg\", \"bg\"",
        ),
        (
            json!({"command": "ls", "env": {"cwd": 1}}),
            "$.env.cwd: expected one of string, null",
        ),
        (
            json!({"command": "ls", "env": {"vars": ["a", 2]}}),
            "$.env.vars[1]: expected string",
        ),
        (
            json!({"command": "ls", "env": {"vars": ["a", "b", "c", "d", "e"]}}),
            "$.env.vars: 5 items",
        ),
        (json!("ls"), "$: expected an object"),
    ] {
        let e = validate_args(Some(&s), &args).unwrap_err();
        assert!(e.contains(needle), "{e} lacks {needle}");
    }
    validate_args(None, &json!({"anything": [1]})).unwrap();
    assert!(validate_args(None, &json!([1])).is_err());
    let any = json!({"type": "object", "properties": {"u": {"oneOf": [{"type": "integer"}, {"type": "null"}]}}});
    assert!(validate_args(Some(&any), &json!({"u": "s"}))
        .unwrap_err()
        .contains("$.u: matches none"));
}

// ---------- random schemas: canonical values are accepted, parsed and validated ----------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

const KEYS: &[&str] = &[
    "path",
    "a b",
    "q\"uote",
    "back\\slash",
    "ünï",
    "n\nl",
    "",
    "x-1",
];
const CHARS: &[&str] = &[
    "a", "Z", " ", "\"", "\\", "/", "\n", "\t", "é", "🦀", "{", "}", ":", ",",
];

fn random_schema(r: &mut Rng, depth: u32) -> Value {
    let leaf = depth == 0;
    match r.below(if leaf { 8 } else { 12 }) {
        0 => json!({"type": "string"}),
        1 => json!({"type": "string", "maxLength": r.below(5)}),
        2 => json!({"type": "integer"}),
        3 => json!({"type": "number"}),
        4 => json!({"type": *r.pick(&["boolean", "null"])}),
        5 => {
            json!({"enum": json!(["x", 2, true, null, "q\""]).as_array().unwrap()[..1 + r.below(5) as usize].to_vec()})
        }
        6 => json!({"type": ["string", "null"]}),
        7 => r
            .pick(&[json!({}), json!({"$ref": "#/x"}), json!(true)])
            .clone(),
        8 | 9 => {
            let mut props = Map::new();
            for _ in 0..r.below(4) {
                props.insert(r.pick(KEYS).to_string(), random_schema(r, depth - 1));
            }
            {
                let required: Vec<String> = props.keys().cloned().collect();
                json!({"type": "object", "properties": props, "required": required})
            }
        }
        10 => {
            json!({"type": "array", "items": random_schema(r, depth - 1), "maxItems": 1 + r.below(4)})
        }
        _ => json!({"anyOf": [random_schema(r, depth - 1), random_schema(r, depth - 1)]}),
    }
}

fn random_generic(r: &mut Rng, depth: u32) -> Value {
    match r.below(if depth == 0 { 4 } else { 6 }) {
        0 => json!(r.pick(CHARS)),
        1 => json!(r.below(1000) as i64 - 500),
        2 => json!(r.below(2) == 0),
        3 => Value::Null,
        4 => Value::Array(
            (0..r.below(4))
                .map(|_| random_generic(r, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..r.below(4))
                .map(|_| (r.pick(KEYS).to_string(), random_generic(r, depth - 1)))
                .collect(),
        ),
    }
}

/// Canonical fixed-style text of a random value valid for `s`, walking the grammar's rules.
fn random_text(r: &mut Rng, s: &Value) -> String {
    let Value::Object(m) = s else {
        return compact_json(&random_generic(r, 2));
    };
    if let Some(Value::Array(e)) = m.get("enum") {
        return compact_json(r.pick(e));
    }
    if let Some(Value::Array(alts)) = m.get("anyOf") {
        let alt = r.pick(alts);
        return random_text(r, alt);
    }
    let ty = match m.get("type") {
        Some(Value::Array(ts)) => r.pick(ts).as_str().unwrap().to_string(),
        Some(Value::String(t)) => t.clone(),
        _ => return compact_json(&random_generic(r, 2)),
    };
    match ty.as_str() {
        "string" => {
            let max = m.get("maxLength").and_then(Value::as_u64).unwrap_or(20);
            let s: String = (0..r.below(max + 1)).map(|_| *r.pick(CHARS)).collect();
            let text = json_str(&s);
            // The grammar also allows `\/`; write it sometimes.
            if r.below(2) == 0 {
                text.replace('/', "\\/")
            } else {
                text
            }
        }
        "integer" => (r.below(2_000_001) as i64 - 1_000_000).to_string(),
        "number" => r.pick(&["0", "-1.25", "3e7", "12.5E-3", "7"]).to_string(),
        "boolean" => r.pick(&["true", "false"]).to_string(),
        "null" => "null".into(),
        "array" => {
            let max = m.get("maxItems").and_then(Value::as_u64).unwrap_or(3);
            let items: Vec<String> = (0..r.below(max + 1))
                .map(|_| random_text(r, &m["items"]))
                .collect();
            format!("[{}]", items.join(", "))
        }
        _ => {
            let props = m["properties"].as_object().unwrap();
            let kv: Vec<String> = props
                .iter()
                .map(|(k, v)| format!("{}: {}", json_str(k), random_text(r, v)))
                .collect();
            format!("{{{}}}", kv.join(", "))
        }
    }
}

fn top_schema(r: &mut Rng) -> Value {
    let mut props = Map::new();
    for _ in 0..1 + r.below(4) {
        props.insert(r.pick(KEYS).to_string(), random_schema(r, 3));
    }
    {
        let required: Vec<String> = props.keys().cloned().collect();
        json!({"type": "object", "properties": props, "required": required})
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn random_schema_values_round_trip(seed in 1u64..u64::MAX) {
        let mut r = Rng(seed);
        let schema = top_schema(&mut r);
        let g = tool_call_grammar(&[ToolSpec { name: "other", parameters: None }, ToolSpec { name: "tool", parameters: Some(&schema) }]).unwrap();
        let gr = parse_gbnf(&g);
        for _ in 0..4 {
            let args = random_text(&mut r, &schema);
            let text = call_text("tool", &args);
            prop_assert!(gr.accepts(&text), "grammar rejects {text}\n{g}");
            let p = parse_tool_call(&format!("Some prose.\n{text}")).unwrap();
            prop_assert_eq!(&p.name, "tool");
            prop_assert_eq!(&p.arguments_text, &args);
            prop_assert_eq!(&p.arguments, &serde_json::from_str::<Value>(&args).unwrap());
            prop_assert!(validate_args(Some(&schema), &p.arguments).is_ok(), "{:?}", validate_args(Some(&schema), &p.arguments));
            // Values without `\/` and floats come back byte for byte from compact_json.
            if !["\\/", "1.25", "3e7", "E-3"].iter().any(|x| args.contains(x)) {
                prop_assert_eq!(compact_json(&p.arguments), args);
            }
        }
    }

    #[test]
    fn non_objects_are_rejected_at_the_top(seed in 1u64..u64::MAX) {
        let mut r = Rng(seed);
        let schema = top_schema(&mut r);
        let wrong = random_generic(&mut r, 1);
        if !wrong.is_object() {
            prop_assert!(validate_args(Some(&schema), &wrong).unwrap_err().starts_with("$:"));
        }
        // Dropping a required key is always caught.
        let args: Value = serde_json::from_str(&random_text(&mut r, &schema)).unwrap();
        let mut m = args.as_object().unwrap().clone();
        if let Some(k) = m.keys().next().cloned() {
            m.remove(&k);
            let e = validate_args(Some(&schema), &Value::Object(m)).unwrap_err();
            prop_assert!(e.contains("missing required property"), "{}", e);
        }
    }
}

#[test]
fn a_call_cut_inside_its_closing_tag_is_whole_and_an_unfinished_one_is_not() {
    let cut = "<tool_call>\n{\"name\": \"run\", \"arguments\": {\"c\": 1}}\n</t";
    let call = parse_tool_call(cut).expect("whole call");
    assert_eq!(call.name, "run");
    let unfinished = "Sure.\n<tool_call>\n{\"name\": \"run\", \"argu";
    assert!(parse_tool_call(unfinished).is_none());
    assert_eq!(text_before_call(unfinished), Some("Sure."));
    assert_eq!(text_before_call("no call"), None);
}
