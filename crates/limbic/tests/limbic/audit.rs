//! `limbic audit …` end to end, on a real audit log written by `limbic check` on lines of the
//! development set with the real model: read-only commands leave the log's bytes alone,
//! anchors catch a cut tail, exports are read back by independent implementations (DuckDB,
//! OpenTelemetry's protobuf package), replay under another policy equals a fresh check with
//! it, profiles refuse what does not fit, and redaction keeps secrets out of the file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;

/// A session id that tries to clear the screen and retitle the terminal.
const EVIL_SESSION: &str = "evil\u{1b}[2J\u{1b}]0;pwned\u{7}-session";
const SECRET: &str = "ghp_Zq8Xw2Lm4Np6Rs8Tv0Xy2Ab4Cd6Ef8Gh0Ij2";

struct Fixture {
    dir: PathBuf,
    input: PathBuf,
    db: PathBuf,
}

/// Steps from the development set: a calm session, pressured corner cuts from other domains,
/// and one hostile step (escape sequences in the session id, a token in the text).
fn write_input(dir: &Path) -> PathBuf {
    let data = repo().join("tests/data/steps");
    let read = |name: &str| std::fs::read_to_string(data.join(name)).expect("dev set");
    let mut lines: Vec<String> = read("devops-k8s.jsonl")
        .lines()
        .take(4)
        .map(str::to_string)
        .collect();
    let mut blocks = 0;
    for file in ["cloud-iac.jsonl", "web-backend.jsonl", "finance-ops.jsonl"] {
        for l in read(file).lines() {
            let v: serde_json::Value = serde_json::from_str(l).expect("dev set line");
            if v["block"] == 1 && blocks < 3 {
                // One step per session: the dev set's step numbers continue where it left off.
                let mut v = v.clone();
                v["step"] = serde_json::json!(1);
                lines.push(v.to_string());
                blocks += 1;
                break;
            }
        }
    }
    lines.push(
        serde_json::json!({
            "session": EVIL_SESSION,
            "text": format!("Deploying with my token {SECRET} because CI keeps failing."),
            "action": {"tool": "Bash", "args": {"command": format!("GITHUB_TOKEN={SECRET} git push --force origin main")}}
        })
        .to_string(),
    );
    let input = dir.join("steps.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").expect("write input");
    input
}

fn check_into(input: &Path, db: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let dir = db.parent().expect("db dir");
    let out = dir.join(format!(
        "{}.decisions.jsonl",
        db.file_name().expect("name").to_string_lossy()
    ));
    let o = run(limbic(dir)
        .args(["check", "--input"])
        .arg(input)
        .arg("--audit")
        .arg(db)
        .arg("--output")
        .arg(&out)
        .args(extra));
    assert!(o.status.success(), "check failed: {}", stderr(&o));
    json_lines(&std::fs::read_to_string(&out).expect("decisions"))
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // Kept for the whole test binary: every test reads this one log.
        let dir = Box::leak(Box::new(tempdir())).path().to_path_buf();
        let input = write_input(&dir);
        let db = dir.join("audit.db");
        check_into(&input, &db, &[]);
        Fixture { dir, input, db }
    })
}

fn sha256(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| limbic_audit::sha256_hex(&b))
}

/// Hashes of the log and its sidecars (absent ones as `None`).
fn log_bytes(db: &Path) -> Vec<Option<String>> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            sha256(Path::new(&p))
        })
        .collect()
}

fn audit_on(db: &Path, args: &[&str]) -> Command {
    let mut cmd = limbic(db.parent().expect("dir"));
    cmd.arg("audit")
        .arg(args[0])
        .arg("--audit")
        .arg(db)
        .args(&args[1..]);
    cmd
}

fn python(script: &str, args: &[&Path]) -> Option<std::process::Output> {
    let probe = Command::new("python3")
        .args(["-c", script.lines().next().unwrap_or("")])
        .output()
        .ok()?;
    if !probe.status.success() {
        eprintln!(
            "skipped: python module missing ({}); .ci/setup installs it",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        return None;
    }
    Some(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .output()
            .expect("run python3"),
    )
}

#[test]
fn read_only_commands_leave_every_byte_of_the_log() {
    let f = fixture();
    let before = log_bytes(&f.db);
    let out = f.dir.join("ro");
    std::fs::create_dir_all(&out).expect("mkdir");
    let db = f.db.to_str().expect("utf8");
    let runs: Vec<Vec<String>> = vec![
        vec!["verify".into()],
        vec!["show".into()],
        vec!["show".into(), "--json".into()],
        vec!["sessions".into()],
        vec!["sessions".into(), "--json".into()],
        vec!["stats".into()],
        vec!["stats".into(), "--json".into()],
        vec!["replay".into(), "--policy".into(), "workstation".into()],
        vec![
            "plot".into(),
            "--session".into(),
            "devops-k8s-01-notready-node".into(),
            "--out".into(),
            out.join("t.svg").display().to_string(),
        ],
    ]
    .into_iter()
    .chain(["jsonl", "csv", "parquet", "otlp-json"].iter().map(|fmt| {
        vec![
            "export".into(),
            "--format".into(),
            fmt.to_string(),
            "--out".into(),
            out.join(format!("e.{fmt}")).display().to_string(),
        ]
    }))
    .collect();
    for args in &runs {
        let mut cmd = limbic(&f.dir);
        cmd.arg("audit")
            .arg(&args[0])
            .args(["--audit", db])
            .args(&args[1..]);
        let o = run(&mut cmd);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert_eq!(log_bytes(&f.db), before, "`audit {args:?}` changed the log");
    }
}

#[test]
fn sessions_and_stats_count_what_check_decided() {
    let f = fixture();
    let decisions = json_lines(
        &std::fs::read_to_string(f.dir.join("audit.db.decisions.jsonl")).expect("decisions"),
    );
    let o = run(&mut audit_on(&f.db, &["sessions", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let sessions = json_lines(&stdout(&o));
    let mut ids: Vec<&str> = decisions
        .iter()
        .map(|d| d["session"].as_str().expect("session"))
        .collect();
    ids.dedup();
    assert_eq!(sessions.len(), ids.len());
    let total: u64 = sessions
        .iter()
        .map(|s| s["steps"].as_u64().expect("steps"))
        .sum();
    assert_eq!(total as usize, decisions.len());
    let vetoes = decisions.iter().filter(|d| d["decision"] == "veto").count() as u64;
    let counted: u64 = sessions
        .iter()
        .map(|s| s["decisions"]["veto"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(vetoes, counted);

    let o = run(&mut audit_on(&f.db, &["stats", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("stats json");
    assert_eq!(stats["steps"].as_u64(), Some(decisions.len() as u64));
    assert_eq!(stats["sessions"].as_u64(), Some(ids.len() as u64));

    let o = run(&mut audit_on(&f.db, &["sessions"]));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), ids.len() + 1, "{text}");
}

#[test]
fn show_and_sessions_never_print_terminal_controls() {
    let f = fixture();
    for args in [
        vec!["show"],
        vec!["show", "--session", EVIL_SESSION],
        vec!["sessions"],
        vec!["replay", "--policy", "workstation", "--all"],
    ] {
        let o = run(&mut audit_on(&f.db, &args));
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{args:?} printed a control character: {text:?}"
        );
        if args[0] != "replay" {
            assert!(text.contains("evil\\u{1b}[2J"), "{args:?}: {text}");
        }
    }
}

#[test]
fn anchor_catches_a_cut_tail_that_plain_verify_accepts() {
    let f = fixture();
    let dir = tempdir();
    let db = dir.path().join("audit.db");
    std::fs::copy(&f.db, &db).expect("copy log");
    let anchor = dir.path().join("head.anchor");
    let o = run(limbic(dir.path())
        .args(["audit", "anchor", "--audit"])
        .arg(&db)
        .arg("--out")
        .arg(&anchor));
    assert!(o.status.success(), "{}", stderr(&o));
    let key = dir.path().join("audit.db.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key mode {mode:o}");
    }
    let o = run(&mut audit_on(
        &db,
        &["verify", "--anchor", anchor.to_str().expect("utf8")],
    ));
    assert!(o.status.success(), "fresh anchor: {}", stderr(&o));

    // The attack: drop the last step and its decision, point chain_head at what is left.
    let sql = "
        DELETE FROM decisions WHERE seq = (SELECT MAX(seq) FROM decisions);
        DELETE FROM steps WHERE seq = (SELECT MAX(seq) FROM steps);
        UPDATE chain_head SET
          last_seq = (SELECT MAX(seq) FROM (SELECT seq FROM steps UNION ALL SELECT seq FROM decisions
                      UNION ALL SELECT seq FROM sessions UNION ALL SELECT seq FROM config)),
          last_hash = (SELECT row_hash FROM (SELECT seq, row_hash FROM steps UNION ALL SELECT seq, row_hash FROM decisions
                      UNION ALL SELECT seq, row_hash FROM sessions UNION ALL SELECT seq, row_hash FROM config)
                      ORDER BY seq DESC LIMIT 1);";
    let s = Command::new("sqlite3")
        .arg(&db)
        .arg(sql)
        .output()
        .expect("the sqlite3 tool is needed for this test (apt-get install sqlite3)");
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));

    let o = run(&mut audit_on(&db, &["verify"]));
    assert!(
        o.status.success(),
        "plain verify cannot see a consistent cut (documented): {}",
        stderr(&o)
    );
    let o = run(&mut audit_on(
        &db,
        &["verify", "--anchor", anchor.to_str().expect("utf8")],
    ));
    assert!(!o.status.success(), "verify --anchor accepted a cut log");
    let err = stderr(&o);
    assert!(
        err.contains("ANCHOR MISMATCH") && err.contains("truncated"),
        "{err}"
    );

    // The key written inside the anchor is never trusted on its own.
    std::fs::remove_file(&key).expect("rm key");
    let o = run(&mut audit_on(
        &db,
        &["verify", "--anchor", anchor.to_str().expect("utf8")],
    ));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no trusted key"), "{}", stderr(&o));
}

#[test]
fn parquet_export_reads_back_row_for_row_in_duckdb() {
    let f = fixture();
    let dir = tempdir();
    let pq = dir.path().join("steps.parquet");
    let jl = dir.path().join("steps.jsonl");
    for (fmt, out) in [("parquet", &pq), ("jsonl", &jl)] {
        let o = run(&mut audit_on(
            &f.db,
            &[
                "export",
                "--format",
                fmt,
                "--out",
                out.to_str().expect("utf8"),
            ],
        ));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let script = r#"import duckdb, json, sys
rows = [json.loads(l) for l in open(sys.argv[2])]
con = duckdb.connect()
got = con.execute(f"SELECT session_id, step_index, decision, rule_id, stress_signature, spike, score_desperation, step_hash, epoch_ms(ts_start_ms) FROM read_parquet('{sys.argv[1]}')").fetchall()
assert len(got) == len(rows), (len(got), len(rows))
for r, g in zip(rows, got):
    assert (r["session_id"], r["step_index"], r["decision"], r["rule_id"]) == g[:4], (r, g)
    assert r["stress_signature"] == g[4] and r["spike"] == g[5], (r, g)
    assert r["scores"]["desperation"] == g[6] and r["step_hash"] == g[7] and r["ts_start_ms"] == g[8]
print("rows", len(got))
"#;
    let Some(o) = python(script, &[&pq, &jl]) else {
        return;
    };
    assert!(
        o.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("rows "));
}

#[test]
fn otlp_export_is_valid_otlp_with_a_guardrail_span_per_step() {
    let f = fixture();
    let dir = tempdir();
    let out = dir.path().join("traces.json");
    let o = run(&mut audit_on(
        &f.db,
        &[
            "export",
            "--format",
            "otlp-json",
            "--out",
            out.to_str().expect("utf8"),
        ],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let steps = fixture_steps(f);
    // Parsed strictly by the OpenTelemetry protobuf schema (unknown fields are errors).
    let script = r#"from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
import sys
from google.protobuf import json_format
req = json_format.Parse(open(sys.argv[1]).read(), ExportTraceServiceRequest())
spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
tools = [s for s in spans if s.name.startswith("execute_tool ")]
guards = [s for s in spans if s.name.startswith("run_guardrail")]
assert all(len(g.events) == 1 and g.events[0].name == "gen_ai.security.finding" for g in guards)
keys = {a.key for a in guards[0].events[0].attributes}
assert {"gen_ai.security.verdict.type", "gen_ai.security.policy.rule.id", "gen_ai.security.risk.score"} <= keys, keys
print(len(tools), len(guards))
"#;
    if let Some(o) = python(script, &[&out]) {
        assert!(
            o.status.success(),
            "otlp: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("{steps} {steps}")
        );
    }
    // OTLP/JSON ids are hex (not protobuf's base64): check the links directly.
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("read")).expect("json");
    let spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .expect("spans");
    for pair in spans.chunks(2) {
        assert_eq!(pair[1]["parentSpanId"], pair[0]["spanId"]);
        assert_eq!(pair[1]["traceId"], pair[0]["traceId"]);
        assert_eq!(pair[0]["traceId"].as_str().map(str::len), Some(32));
        assert_eq!(pair[0]["spanId"].as_str().map(str::len), Some(16));
    }
}

fn fixture_steps(f: &Fixture) -> usize {
    std::fs::read_to_string(&f.input)
        .expect("input")
        .lines()
        .count()
}

/// Replays the fixture log under `policy` and checks every replayed decision against a fresh
/// `limbic check` with that policy; returns how many decisions the replay changed.
fn replay_equals_fresh_check(policy: &Path, extra: &[&str]) -> (usize, String) {
    let f = fixture();
    let dir = tempdir();
    let replayed = dir.path().join("replay.jsonl");
    let o = run(&mut audit_on(
        &f.db,
        &[
            "replay",
            "--policy",
            policy.to_str().expect("utf8"),
            "--output",
            replayed.to_str().expect("utf8"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .collect::<Vec<_>>(),
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = stdout(&o);
    assert!(summary.contains("decisions change"), "{summary}");
    let replayed = json_lines(&std::fs::read_to_string(&replayed).expect("replay"));
    let fresh = check_into(
        &f.input,
        &dir.path().join("fresh.db"),
        &["--policy", policy.to_str().expect("utf8")],
    );
    assert_eq!(replayed.len(), fresh.len());
    for (r, c) in replayed.iter().zip(&fresh) {
        assert_eq!(r["session"], c["session"]);
        assert_eq!(r["step"], c["step"]);
        assert_eq!(
            (&r["replayed"]["decision"], &r["replayed"]["rule"]),
            (&c["decision"], &c["rule"]),
            "replay {r} vs fresh {c}"
        );
        if r["changed"] == true {
            assert!(r["why"].as_str().is_some_and(|w| !w.is_empty()), "{r}");
            assert!(
                summary.contains(r["why"].as_str().unwrap_or("?")),
                "{summary}"
            );
        }
    }
    let changed = replayed.iter().filter(|r| r["changed"] == true).count();
    (changed, summary)
}

#[test]
fn replay_under_workstation_equals_a_fresh_check_with_it() {
    replay_equals_fresh_check(
        &repo().join("firmware-configs/policy.workstation.toml"),
        &[],
    );
}

#[test]
fn replay_can_rescore_with_the_model_and_still_equals_a_fresh_check() {
    let model = model_path();
    let (_, summary) = replay_equals_fresh_check(
        &repo().join("firmware-configs/policy.workstation.toml"),
        &["--model", model.to_str().expect("utf8")],
    );
    let steps = fixture_steps(fixture());
    assert!(
        summary.contains(&format!("re-scored {steps} of {steps} steps")),
        "{summary}"
    );
}

#[test]
fn replay_under_a_stricter_policy_says_what_changes_and_matches_a_fresh_check() {
    // The default policy with every stress threshold lowered: calm steps become stressed.
    let default = std::fs::read_to_string(repo().join("firmware-configs/policy.default.toml"))
        .expect("policy");
    let strict = default
        .replace("moderate = 2.0", "moderate = 0.5")
        .replace("elevated = 3.0", "elevated = 0.8")
        .replace("high = 4.0", "high = 1.0")
        .replace("spike_floor = 2.0", "spike_floor = 0.5")
        .replace("emotion_high = 4.0", "emotion_high = 0.5")
        .replace("critical_veto = 2.5", "critical_veto = 0.5")
        .replace("action_confirm = 2.5", "action_confirm = 0.5");
    assert_ne!(strict, default);
    let dir = tempdir();
    let path = dir.path().join("strict.toml");
    std::fs::write(&path, strict).expect("write policy");
    let (changed, _) = replay_equals_fresh_check(&path, &[]);
    assert!(changed > 0, "a much stricter policy changed no decision");
}

#[test]
fn redacted_text_keeps_secrets_out_of_the_file_and_replay_says_so() {
    let f = fixture();
    let dir = tempdir();
    let db = dir.path().join("redacted.db");
    let evil_only = dir.path().join("evil.jsonl");
    let last = std::fs::read_to_string(&f.input)
        .expect("input")
        .lines()
        .last()
        .map(str::to_string)
        .expect("a line");
    std::fs::write(&evil_only, last + "\n").expect("write");
    check_into(&evil_only, &db, &["--store-text", "redacted"]);
    // The raw bytes of the file and its WAL: no copy of the token anywhere.
    for suffix in ["", "-wal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(Path::new(&p)) {
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "the token reached {}",
                Path::new(&p).display()
            );
        }
    }
    let o = run(&mut audit_on(
        &db,
        &["export", "--format", "jsonl", "--out", "-"],
    ));
    let rows = json_lines(&stdout(&o));
    assert_eq!(rows.len(), 1);
    let text = rows[0]["text"].as_str().expect("text stored");
    assert!(
        text.contains("[REDACTED]") && text.contains("CI keeps failing"),
        "{text}"
    );

    let o = run(&mut audit_on(&db, &["replay", "--policy", "default"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1 with redacted text"),
        "{}",
        stdout(&o)
    );

    let hashed = dir.path().join("hashed.db");
    check_into(&evil_only, &hashed, &["--store-text", "hash"]);
    let o = run(&mut audit_on(&hashed, &["replay", "--policy", "default"]));
    assert!(
        stdout(&o).contains("1 steps without text"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn serve_refuses_a_profile_the_model_does_not_fit() {
    let dir = tempdir();
    let profile = dir.path().join("tiny.toml");
    let shipped = std::fs::read_to_string(repo().join("firmware-configs/profiles/cpu-2core.toml"))
        .expect("shipped profile");
    std::fs::write(
        &profile,
        shipped.replace("memory_budget_mb = 2048", "memory_budget_mb = 64"),
    )
    .expect("write profile");
    let o = run(limbic(dir.path())
        .args(["serve", "--addr", "127.0.0.1:0", "--profile"])
        .arg(&profile)
        .arg("--audit")
        .arg(dir.path().join("audit.db")));
    assert!(
        !o.status.success(),
        "serve started with a model over budget"
    );
    let err = stderr(&o);
    assert!(
        err.contains("does not fit") && err.contains("budget of 64 MiB") && err.contains("weights"),
        "{err}"
    );

    // A shipped profile that fits: its settings reach the guard (redacted text, its policy).
    let db = dir.path().join("ok.db");
    let input = dir.path().join("one.jsonl");
    std::fs::write(
        &input,
        step_json(
            "p",
            "Listing pods.",
            "Bash",
            serde_json::json!({"command": "kubectl get pods"}),
        ) + "\n",
    )
    .expect("write");
    let decisions = check_into(&input, &db, &["--profile", "cpu-2core"]);
    assert_eq!(decisions.len(), 1);
    let o = run(&mut audit_on(
        &db,
        &["export", "--format", "jsonl", "--out", "-"],
    ));
    assert!(o.status.success());
    let o = run(limbic(dir.path())
        .args(["check", "--profile", "no-such-profile", "--input"])
        .arg(&input));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cpu-2core"), "{}", stderr(&o));
}

#[test]
fn plot_draws_a_session_timeline() {
    let f = fixture();
    let dir = tempdir();
    // No system font can be found: fontconfig gets an empty configuration and no
    // $LIMBIC_FONT; the embedded font must still give the plot its text.
    let fonts_conf = dir.path().join("fonts.conf");
    std::fs::write(
        &fonts_conf,
        "<?xml version=\"1.0\"?><fontconfig></fontconfig>\n",
    )
    .expect("write fonts.conf");
    let no_fonts = |cmd: &mut Command| {
        cmd.env("FONTCONFIG_FILE", &fonts_conf)
            .env("FONTCONFIG_PATH", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env_remove("LIMBIC_FONT");
    };
    let plot = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "plot",
            "--session",
            "devops-k8s-01-notready-node",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        let mut cmd = audit_on(&f.db, &args);
        no_fonts(&mut cmd);
        cmd
    };
    for name in ["t.svg", "t.png"] {
        let out = dir.path().join(name);
        let mut cmd = plot(out.to_str().expect("utf8"), &[]);
        let o = run(&mut cmd);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!stderr(&o).contains("without text"), "{}", stderr(&o));
        let bytes = std::fs::read(&out).expect("plot written");
        assert!(bytes.len() > 1000, "{name}: {} bytes", bytes.len());
        if name.ends_with(".svg") {
            let svg = String::from_utf8_lossy(&bytes);
            assert!(
                svg.starts_with("<svg") || svg.contains("<svg"),
                "not an SVG"
            );
            assert!(svg.contains("stress signature"), "no legend in the SVG");
        } else {
            let levels = title_grey_levels(&bytes);
            assert!(
                levels >= 10,
                "{levels} grey levels where the title is drawn"
            );
        }
    }
    let o = run(&mut plot("x.png", &["--font", "/nonexistent/font.ttf"]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--font"), "{}", stderr(&o));
    let o = run(&mut audit_on(
        &f.db,
        &["plot", "--session", "nope", "--out", "x.svg"],
    ));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no steps of session"), "{}", stderr(&o));
    let o = run(&mut audit_on(
        &f.db,
        &["plot", "--session", "nope", "--out", "x.pdf"],
    ));
    assert!(!o.status.success());
}

/// Distinct mid-grey levels in the band where the title is drawn (top, middle half): black
/// glyphs anti-aliased over white leave many; lines and markers leave almost none there.
fn title_grey_levels(png_bytes: &[u8]) -> usize {
    let mut decoder = png::Decoder::new(png_bytes);
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let channels = info.color_type.samples();
    let (w, h) = (info.width as usize, info.height as usize);
    let mut levels = std::collections::BTreeSet::new();
    for y in 15..50.min(h) {
        for x in w / 4..3 * w / 4 {
            let p = &buf[(y * w + x) * channels..][..3];
            if p[0] == p[1] && p[1] == p[2] && (20..235).contains(&p[0]) {
                levels.insert(p[0]);
            }
        }
    }
    levels.len()
}

/// A headless Chromium, if installed (`.ci/setup` installs Debian's `chromium`).
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[test]
fn report_is_one_self_contained_page_that_a_browser_renders() {
    let f = fixture();
    let before = log_bytes(&f.db);
    let dir = tempdir();
    let out = dir.path().join("report");
    let o = run(&mut audit_on(
        &f.db,
        &["report", "--out", out.to_str().expect("utf8")],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(log_bytes(&f.db), before, "report changed the log");
    let index = out.join("index.html");
    let page = std::fs::read_to_string(&index).expect("index.html");
    // Self-contained: no URL to fetch anything from.
    for needle in ["src=\"http", "href=\"http", "src=\"//", "@import", "url("] {
        assert!(!page.contains(needle), "external reference {needle:?}");
    }
    // One section per session, the hostile id escaped (never raw markup or escapes).
    let sessions = page.matches("<section class=\"session\"").count();
    let mut ids: Vec<String> = std::fs::read_to_string(&f.input)
        .expect("input")
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("line")["session"]
                .as_str()
                .expect("session")
                .to_string()
        })
        .collect();
    ids.dedup();
    assert_eq!(sessions, ids.len());
    assert!(!page.contains('\u{1b}'), "raw escape character in the page");
    assert!(page.contains("<svg"), "no timeline");
    for d in ["reroute", "allow"] {
        assert!(page.contains(&format!("data-decision=\"{d}\"")), "{d}");
    }

    let Some(browser) = chromium() else {
        eprintln!("skipped the browser check: no chromium (apt-get install chromium)");
        return;
    };
    let profile = dir.path().join("chromium-profile");
    let headless = |extra: &[&str]| {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(format!("file://{}", index.display()))
            .output()
            .expect("run chromium")
    };
    let shot = dir.path().join("report.png");
    let o = headless(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1280,2000",
    ]);
    assert!(
        o.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    // The page's script ran: it counts the sessions it shows.
    let o = headless(&["--dump-dom"]);
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(
        dom.contains(&format!("<span id=\"shown\">{}</span>", ids.len())),
        "filter script did not run"
    );
}
