//! Hot reload on the real daemon: a broken or wrong-model vector pack, a broken profile and
//! a broken policy keep the last good one in force with the error on `/health`; a good
//! change is applied between steps; every reload is a config row of the audit chain.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

fn health(addr: &str) -> Value {
    let (status, body) = http(addr, "GET", "/health", None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("health JSON")
}

/// Polls `/health` until `done` holds (file events are asynchronous).
fn wait_health(addr: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = health(addr);
        if done(&h) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {h}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post(addr: &str, session: &str, text: &str) -> Value {
    let body = step_json(session, text, "Bash", json!({"command": "ls"}));
    let (status, answer) = http(addr, "POST", "/v1/steps", Some(body.as_bytes()));
    assert_eq!(status, 200, "{answer}");
    serde_json::from_str(&answer).expect("answer JSON")
}

/// Replaces `path` the way config managers do: written beside the watched directory, then
/// renamed over the file (so the daemon never reads it half-written).
fn replace(path: &Path, text: &str) {
    let dir = path.parent().and_then(Path::parent).expect("a grandparent");
    let staged = dir.join("staged");
    std::fs::write(&staged, text).expect("write");
    std::fs::rename(&staged, path).expect("rename");
}

/// A directory of its own for watched files (the audit log's writes stay out of it).
fn conf_dir(dir: &Path) -> std::path::PathBuf {
    let conf = dir.join("conf");
    std::fs::create_dir(&conf).expect("mkdir");
    conf
}

/// The `settings.reload` of every config row, in chain order.
fn reload_rows(db: &Path) -> Vec<(Value, String, String)> {
    let snap = limbic_audit::AuditSnapshot::open(db).expect("snapshot");
    assert!(snap.verify().expect("verify").ok, "the chain verifies");
    snap.config_rows()
        .expect("config rows")
        .into_iter()
        .filter(|c| !c.settings["reload"].is_null())
        .map(|c| (c.settings["reload"].clone(), c.policy_hash, c.pack_hash))
        .collect()
}

/// A daemon given `file` with `flag` (watched), auditing to `<dir>/audit.db`.
fn daemon_watching(dir: &Path, flag: &str, file: &Path) -> (Daemon, std::path::PathBuf) {
    let db = dir.join("audit.db");
    let daemon = Daemon::start(
        dir,
        &[
            flag,
            file.to_str().expect("utf8"),
            "--audit",
            db.to_str().expect("utf8"),
        ],
    );
    (daemon, db)
}

/// (what, outcome) of each reload row.
fn outcomes(rows: &[(Value, String, String)]) -> Vec<(&str, &str)> {
    rows.iter()
        .map(|(r, _, _)| {
            (
                r["what"].as_str().unwrap_or_default(),
                r["outcome"].as_str().unwrap_or_default(),
            )
        })
        .collect()
}

/// `pack.toml` with every calibration mean of `calm` raised by `by`.
fn shift_calm_means(manifest: &str, by: f64) -> String {
    let mut in_calm_calibration = false;
    let mut out = String::new();
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_calm_calibration = line.trim() == "[[emotions.calm.calibration]]";
        }
        match line.strip_prefix("mean = ") {
            Some(v) if in_calm_calibration => {
                let v: f64 = v.trim().parse().expect("mean");
                out.push_str(&format!("mean = {}\n", v + by));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

const TEXT: &str = "Reading the deployment log to see why the pods restart.";

#[test]
fn pack_reload_keeps_the_last_good_pack_on_a_broken_or_foreign_one() {
    let dir = tempdir();
    let pack = dir.path().join("pack");
    std::fs::create_dir(&pack).expect("mkdir");
    let committed = repo().join("vectors/smollm2-135m-instruct");
    for entry in std::fs::read_dir(&committed).expect("committed pack") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), pack.join(entry.file_name())).expect("copy");
    }
    let manifest_path = pack.join("pack.toml");
    let manifest = std::fs::read_to_string(&manifest_path).expect("pack.toml");
    let (daemon, db) = daemon_watching(dir.path(), "--pack", &pack);
    let h = health(&daemon.addr);
    let first_hash = h["reload"]["pack"]["hash"].clone();
    assert!(first_hash.is_string(), "{h}");
    let calm_before = post(&daemon.addr, "a", TEXT)["scores"]["calm"]
        .as_f64()
        .expect("calm");

    // Broken: not TOML. The old pack stays and the daemon says why.
    replace(&manifest_path, "this is [not a pack");
    let h = wait_health(&daemon.addr, "the broken pack error", |h| {
        h["reload"]["pack"]["last_error"].is_string()
    });
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["reload"]["pack"]["hash"], first_hash);
    let calm = post(&daemon.addr, "b", TEXT)["scores"]["calm"]
        .as_f64()
        .expect("calm");
    assert!((calm - calm_before).abs() < 1e-3, "{calm} vs {calm_before}");

    // Built for another model: refused the same way.
    let foreign = manifest.replace(
        "sha256 = \"b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53\"",
        "sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"",
    );
    assert_ne!(foreign, manifest, "the committed pack's model hash changed");
    replace(&manifest_path, &foreign);
    let h = wait_health(&daemon.addr, "the wrong-model error", |h| {
        h["reload"]["pack"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("000000"))
    });
    assert_eq!(h["reload"]["pack"]["hash"], first_hash);

    // A good new pack (calm recalibrated) is swapped in: the same words read 100 calm
    // units lower divided by its standard deviation (~4-5), far beyond any noise.
    replace(&manifest_path, &shift_calm_means(&manifest, 100.0));
    let h = wait_health(&daemon.addr, "the good pack", |h| {
        h["reload"]["pack"]["reloads"] == 1 && h["reload"]["pack"]["last_error"].is_null()
    });
    assert_ne!(h["reload"]["pack"]["hash"], first_hash);
    assert_eq!(h["status"], "ok", "{h}");
    let calm_after = post(&daemon.addr, "c", TEXT)["scores"]["calm"]
        .as_f64()
        .expect("calm");
    assert!(
        calm_after < calm_before - 10.0,
        "{calm_after} vs {calm_before}"
    );
    assert!(daemon.terminate().success());

    let rows = reload_rows(&db);
    let outcomes = outcomes(&rows);
    assert_eq!(
        outcomes,
        [
            ("pack", "refused"),
            ("pack", "refused"),
            ("pack", "applied")
        ],
        "{rows:?}"
    );
    assert_eq!(
        rows[2].2,
        h["reload"]["pack"]["hash"].as_str().unwrap_or_default()
    );
    assert_ne!(rows[2].2, rows[0].2, "the applied row names the new pack");
}

#[test]
fn profile_reload_applies_live_settings_and_reports_restart_ones() {
    let dir = tempdir();
    let profile = conf_dir(dir.path()).join("device.toml");
    let shipped = std::fs::read_to_string(repo().join("firmware-configs/profiles/cpu-2core.toml"))
        .expect("cpu-2core.toml");
    assert!(shipped.contains("store_text = \"redacted\""));
    std::fs::write(&profile, &shipped).expect("write");
    let (daemon, db) = daemon_watching(dir.path(), "--profile", &profile);
    let secret = "Deploying with token=ghp_abcdefghijklmnopqrstuvwxyz0123456789 now.";
    post(&daemon.addr, "p", secret);

    // Broken: an unknown field. The old profile stays; the error is shown.
    replace(&profile, &format!("{shipped}\nbogus = 1\n"));
    let h = wait_health(&daemon.addr, "the broken profile error", |h| {
        h["reload"]["profile"]["last_error"].is_string()
    });
    assert_eq!(h["status"], "degraded", "{h}");
    post(&daemon.addr, "p", secret);

    // A fail mode the policy does not have: refused like at start.
    replace(
        &profile,
        &shipped.replace("fail_mode = \"closed\"", "fail_mode = \"open\""),
    );
    wait_health(&daemon.addr, "the fail-mode refusal", |h| {
        h["reload"]["profile"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("expects fail_mode"))
    });

    // Good: full text from now on (live) and a bigger context (needs a restart).
    replace(
        &profile,
        &shipped
            .replace("store_text = \"redacted\"", "store_text = \"full\"")
            .replace("n_ctx = 4096", "n_ctx = 8192"),
    );
    let h = wait_health(&daemon.addr, "the good profile", |h| {
        h["reload"]["profile"]["reloads"] == 1
    });
    assert!(h["reload"]["profile"]["last_error"].is_null(), "{h}");
    assert_eq!(h["reload"]["needs_restart"], json!(["n_ctx 4096 -> 8192"]));
    assert!(
        h["problems"].as_array().is_some_and(|p| p
            .iter()
            .any(|p| p.as_str().unwrap_or("").contains("restart"))),
        "{h}"
    );
    post(&daemon.addr, "p", secret);
    assert!(daemon.terminate().success());

    // The log: redacted text until the reload, full text after it.
    let o = run(limbic(dir.path())
        .args([
            "audit", "export", "--format", "jsonl", "--out", "-", "--audit",
        ])
        .arg(&db));
    assert!(o.status.success(), "{}", stderr(&o));
    let steps = json_lines(&stdout(&o));
    let texts: Vec<&str> = steps
        .iter()
        .map(|s| s["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(texts.len(), 3);
    assert!(
        !texts[0].contains("ghp_") && !texts[1].contains("ghp_"),
        "{texts:?}"
    );
    assert_eq!(texts[2], secret);
    let rows = reload_rows(&db);
    let outcomes = outcomes(&rows);
    assert_eq!(
        outcomes,
        [
            ("profile", "refused"),
            ("profile", "refused"),
            ("profile", "applied")
        ],
        "{rows:?}"
    );
    assert_eq!(rows[2].0["needs_restart"], json!(["n_ctx 4096 -> 8192"]));
}

#[test]
fn policy_reloads_are_config_rows() {
    let dir = tempdir();
    let policy = conf_dir(dir.path()).join("policy.toml");
    let good =
        std::fs::read_to_string(repo().join("firmware-configs/policy.default.toml")).expect("read");
    std::fs::write(&policy, &good).expect("write");
    let (daemon, db) = daemon_watching(dir.path(), "--policy", &policy);
    let first = post(&daemon.addr, "s", TEXT);
    assert_eq!(first["decision"], "allow", "{first}");
    replace(&policy, "this is [not toml");
    wait_health(&daemon.addr, "the policy error", |h| {
        h["policy"]["last_error"].is_string()
    });
    // Old behaviour kept while the file is broken.
    let kept = post(&daemon.addr, "s", TEXT);
    assert_eq!(kept["rule"], first["rule"], "{kept}");
    // A policy that vetoes listing files: the next step is decided by it.
    let strict = r#"name = "no-listing"
[[class]]
id = "listing"
description = "listing files"
[[class.match]]
tools = ["Bash"]
args = ['\bls\b']
[[rule]]
id = "no-ls"
when = { classes = ["listing"] }
decision = "veto"
reason = "listing is not allowed here"
"#;
    replace(&policy, strict);
    wait_health(&daemon.addr, "the new policy", |h| {
        h["policy"]["reloads"] == 1 && h["policy"]["last_error"].is_null()
    });
    let second = post(&daemon.addr, "s", TEXT);
    assert_eq!(
        (&second["decision"], &second["rule"]),
        (&json!("veto"), &json!("no-ls")),
        "{second}"
    );
    assert!(daemon.terminate().success());
    let rows = reload_rows(&db);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0["what"], "policy");
    assert_eq!(rows[0].0["outcome"], "refused");
    assert!(rows[0].0["error"].is_string());
    assert_eq!(rows[1].0["outcome"], "applied");
    assert_ne!(
        rows[0].1, rows[1].1,
        "the applied row has the new policy hash"
    );
}
