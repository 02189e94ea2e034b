//! Redaction of secrets before a step is written to the audit log (`store_text =
//! "redacted"`). Patterns, not understanding: well-known token shapes (cloud keys, API
//! tokens, JWTs, private-key blocks), credentials in URLs, and the value after a
//! secret-sounding name (`password=`, `token:`, `--api-key ...`). Scoring and the decision
//! still see the original step; only what is stored is redacted.

use std::sync::OnceLock;

use regex::Regex;

/// What a removed secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

struct Patterns {
    /// Whole-match secrets.
    whole: Vec<Regex>,
    /// `name<sep>value`: the value (group `v`) is replaced, the name kept.
    named: Regex,
    /// `scheme://user:password@`: the password (group `v`) is replaced.
    url: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let whole = [
            // PEM private keys (any kind), across lines.
            r"(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
            // AWS access key ids.
            r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
            // GitHub tokens.
            r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
            r"\bgithub_pat_[A-Za-z0-9_]{20,}\b",
            // OpenAI / Anthropic / Stripe style secret keys.
            r"\b(sk|rk|pk)[-_](live[-_]|test[-_]|ant[-_]|proj[-_])?[A-Za-z0-9_-]{16,}",
            // Slack tokens.
            r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
            // Google API keys.
            r"\bAIza[0-9A-Za-z_-]{35}\b",
            // JSON Web Tokens.
            r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
            // Authorization headers.
            r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{12,}",
        ]
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect();
        // Hard-coded patterns: compiling them cannot fail, but never panic on the write path.
        let named = Regex::new(
            r#"(?i)(?P<k>\b[\w.-]*(password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?|auth)[\w.-]*)(?P<sep>"?\s*[:=]\s*"?|\s+)(?P<v>[^\s"',;&]{3,})"#,
        )
        .unwrap_or_else(|_| unreachable_regex());
        let url = Regex::new(r"(?P<k>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)(?P<v>[^@\s/]+)@")
            .unwrap_or_else(|_| unreachable_regex());
        Patterns { whole, named, url }
    })
}

/// Stands in for a constant pattern that failed to compile (it cannot: they are tested).
fn unreachable_regex() -> Regex {
    Regex::new("$^").unwrap_or_else(|_| unreachable!("a constant pattern compiles"))
}

/// `text` with secrets replaced by [`REDACTED`].
pub fn redact_text(text: &str) -> String {
    let p = patterns();
    let mut out = text.to_string();
    for re in &p.whole {
        out = re.replace_all(&out, REDACTED).into_owned();
    }
    out = p
        .url
        .replace_all(&out, format!("${{k}}{REDACTED}@").as_str())
        .into_owned();
    out = p
        .named
        .replace_all(&out, |c: &regex::Captures<'_>| {
            let v = &c["v"];
            if v == REDACTED {
                c[0].to_string()
            } else {
                format!("{}{}{REDACTED}", &c["k"], &c["sep"])
            }
        })
        .into_owned();
    out
}

fn secret_key_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "api_key",
        "api-key",
        "access_key",
        "private_key",
        "credential",
        "authorization",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// `args` with every string redacted, and the whole value of a secret-named key replaced.
pub fn redact_json(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(redact_text(s)),
        Value::Array(items) => Value::Array(items.iter().map(redact_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if secret_key_name(k) && !v.is_null() {
                        Value::String(REDACTED.to_string())
                    } else {
                        redact_json(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_common_secrets() {
        let cases = [
            "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
            "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            "curl -H 'Authorization: Bearer abcdefghijklmnop.qrstuv'",
            "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx",
            "mysql -u root --password=hunter2hunter2",
            "psql postgres://admin:s3cr3tpass@db.internal/prod",
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
            "password: hunter2hunter2",
        ];
        let secrets = [
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            "abcdefghijklmnop.qrstuv",
            "sk-proj-abcdefghijklmnopqrstuvwx",
            "hunter2hunter2",
            "s3cr3tpass",
            "dozjgNryP4J3jVmNHl0w5N",
            "MIIEow",
            "hunter2hunter2",
        ];
        for (text, secret) in cases.iter().zip(secrets) {
            let r = redact_text(text);
            assert!(!r.contains(secret), "{text:?} -> {r:?}");
            assert!(r.contains(REDACTED), "{text:?} -> {r:?}");
        }
    }

    #[test]
    fn keeps_ordinary_text() {
        let t = "The tests keep failing; I'll run cargo test again and push to main.";
        assert_eq!(redact_text(t), t);
        assert_eq!(redact_text("rm -rf target/"), "rm -rf target/");
    }

    #[test]
    fn redacts_json_args() {
        let args = serde_json::json!({
            "command": "curl -u admin:pw https://x -H 'Authorization: Bearer abcdefghijklmnopqr'",
            "env": {"DB_PASSWORD": "hunter2", "PATH": "/usr/bin"},
            "n": 3
        });
        let r = redact_json(&args);
        let s = r.to_string();
        assert!(
            !s.contains("hunter2") && !s.contains("abcdefghijklmnopqr"),
            "{s}"
        );
        assert_eq!(r["env"]["PATH"], "/usr/bin");
        assert_eq!(r["n"], 3);
    }
}
