//! Offline audit: reading never changes a byte, and the queries and
//! exporters return what was written.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{config, decision, decision_for, populated, step};
use limbic_audit::{
    sha256_hex, AuditError, AuditLog, AuditOptions, AuditSnapshot, Delivery, StepRow, CSV_COLUMNS,
};

/// sha256 of every file in `dir` (name → hash), so that a reader that
/// creates, deletes or changes any file is caught.
fn fingerprint(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                sha256_hex(&bytes),
            )
        })
        .collect()
}

fn read_everything(path: &Path) -> u64 {
    let snap = AuditSnapshot::open(path).unwrap();
    assert_eq!(snap.source(), path);
    assert!(snap.verify().unwrap().ok);
    snap.all_session_summaries().unwrap();
    snap.stats().unwrap();
    snap.config_rows().unwrap();
    snap.session_states().unwrap();
    let mut sink = Vec::new();
    snap.export_csv(&mut sink, None).unwrap();
    snap.export_jsonl(&mut sink, None).unwrap()
}

#[test]
fn snapshot_of_a_closed_log_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 2, 5, true);
    let before = fingerprint(dir.path());
    assert_eq!(read_everything(&path), 10);
    assert_eq!(fingerprint(dir.path()), before, "files created or changed");
}

#[test]
fn snapshot_of_a_live_log_sees_wal_rows_and_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    for i in 0..7 {
        log.append_step(&step("live", i), &decision_for(i)).unwrap();
    }
    let wal = path.with_file_name("audit.db-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "rows still in the WAL"
    );
    let (db_before, wal_before) = (
        sha256_hex(&std::fs::read(&path).unwrap()),
        sha256_hex(&std::fs::read(&wal).unwrap()),
    );
    assert_eq!(read_everything(&path), 7, "rows only in the WAL are read");
    assert_eq!(sha256_hex(&std::fs::read(&path).unwrap()), db_before);
    assert_eq!(sha256_hex(&std::fs::read(&wal).unwrap()), wal_before);
    // The snapshot is a copy: it does not see later rows, and can't write.
    let snap = AuditSnapshot::open(&path).unwrap();
    log.append_step(&step("live", 7), &decision_for(7)).unwrap();
    assert_eq!(snap.step_rows(None).unwrap().len(), 7);
    let err = snap
        .append_step(&step("live", 8), &decision_for(8))
        .unwrap_err();
    assert!(matches!(err, AuditError::ReadOnly { .. }), "{err:?}");
    let copy_dir = snap.log().path().parent().unwrap().to_path_buf();
    drop(snap);
    assert!(!copy_dir.exists(), "the private copy is removed");
}

#[test]
fn snapshot_of_missing_or_foreign_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        AuditSnapshot::open(dir.path().join("nope.db")),
        Err(AuditError::Missing { .. })
    ));
    let junk = dir.path().join("junk.db");
    std::fs::write(
        &junk,
        b"definitely not sqlite, but long enough to look like a header...",
    )
    .unwrap();
    let err = AuditSnapshot::open(&junk).unwrap_err();
    assert!(
        matches!(
            err,
            AuditError::NotADatabase { .. } | AuditError::NotAnAuditLog { .. }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("junk.db"), "{err}");
}

#[test]
fn session_summaries_and_stats_count_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 2, 8, false);
    let snap = AuditSnapshot::open(&path).unwrap();
    let sessions = snap.all_session_summaries().unwrap();
    assert_eq!(sessions.len(), 2);
    let s = &sessions[0];
    assert_eq!(s.session_id, "session-0");
    assert_eq!((s.steps, s.last_step), (8, Some(7)));
    // decision_for cycles allow, warn, veto, reroute: the first veto is step 2.
    assert_eq!(s.first_veto_step, Some(2));
    assert_eq!(s.decisions.get("veto"), Some(&2));
    assert_eq!(s.decisions.get("allow"), Some(&2));
    // step(i).stress_signature = 0.3 * i, so the peak is at step 7.
    let peak = s.max_stress.unwrap();
    assert!((peak - f64::from(0.3f32 * 7.0)).abs() < 1e-6, "{peak}");
    // Late answers at steps 3 (index % 5 == 3).
    assert_eq!((s.late, s.undelivered), (1, 0));

    let stats = snap.stats().unwrap();
    assert_eq!((stats.sessions, stats.steps, stats.configs), (2, 16, 1));
    assert_eq!(stats.steps_without_decision, 0);
    assert_eq!(stats.decisions.values().sum::<u64>(), 16);
    assert_eq!(stats.decisions.get("reroute"), Some(&4));
    assert_eq!(stats.delivery.get("late"), Some(&2));
    assert_eq!(stats.spikes, 6, "steps 5..7 of each session spike");
    assert_eq!(stats.unscored, 0);
    assert_eq!(stats.head, snap.head().unwrap());
    assert_eq!(stats.schema_version, limbic_audit::SCHEMA_VERSION);

    let configs = snap.config_rows().unwrap();
    assert_eq!(configs.len(), 1);
    assert_eq!(configs[0].policy_hash, "policy-1");
    assert_eq!(configs[0].settings, config("policy-1").settings);
}

#[test]
fn step_rows_hold_every_field_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (path, receipts) = populated(dir.path(), 1, 4, true);
    let rows = AuditSnapshot::open(&path).unwrap().step_rows(None).unwrap();
    assert_eq!(rows.len(), 4);
    for (i, (row, receipt)) in rows.iter().zip(&receipts).enumerate() {
        let i = i as u32;
        let s = step("session-0", i);
        let d = decision_for(i);
        assert_eq!(row.session_id, s.session_id);
        assert_eq!(row.step_index, s.step_index);
        assert_eq!(
            (row.ts_start_ms, row.ts_end_ms),
            (s.ts_start_ms, s.ts_end_ms)
        );
        assert_eq!(row.tool, s.tool);
        assert_eq!(row.args, s.args);
        assert_eq!(row.text.as_deref(), Some(s.text.as_str()));
        assert_eq!(row.text_sha256, sha256_hex(s.text.as_bytes()));
        assert_eq!(
            (
                &row.decision,
                &row.reroute,
                &row.rule_id,
                &row.reason,
                &row.classes
            ),
            (&d.decision, &d.reroute, &d.rule_id, &d.reason, &d.classes)
        );
        assert_eq!(
            (row.delivery, &row.delivery_note),
            (d.delivery, &d.delivery_note)
        );
        assert_eq!(row.stress_signature, Some(f64::from(s.stress_signature)));
        assert_eq!(row.spike, s.spike);
        assert_eq!(row.latency_ms, Some(s.latency_ms));
        // Scores are stored as the f32 JSON text; they read back as that f32.
        let as_f32 = |m: &BTreeMap<String, Option<f64>>| -> BTreeMap<String, Option<f32>> {
            m.iter()
                .map(|(k, v)| (k.clone(), v.map(|x| x as f32)))
                .collect()
        };
        let written: BTreeMap<String, Option<f32>> = s
            .scores
            .iter()
            .map(|(k, v)| (k.clone(), Some(*v)))
            .collect();
        assert_eq!(as_f32(&row.scores), written);
        assert_eq!(as_f32(&row.peak).len(), s.peak.len());
        assert_eq!(row.tracker_state, s.tracker_state);
        assert_eq!(row.config_row, Some(1));
        assert_eq!(
            (row.step_row, row.decision_row, row.decision_seq),
            (receipt.step_row, receipt.decision_row, receipt.seq)
        );
        assert_eq!(row.decision_hash, receipt.row_hash);
        assert_eq!(row.step_hash.len(), 64);
    }
}

fn open_storing_text(path: &Path) -> AuditLog {
    AuditLog::open(
        path,
        AuditOptions {
            store_text: true,
            ..AuditOptions::default()
        },
    )
    .unwrap()
}

/// What the daemon streams (rows built from the records it just appended) is what a later
/// read and export of the log give: same fields, same OTLP spans and ids.
#[test]
fn committed_rows_equal_what_is_read_back_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.db");
    let log = open_storing_text(&path);
    let mut committed = Vec::new();
    for i in 0..4u32 {
        let mut s = step("stream", i);
        if i == 2 {
            s.stress_signature = f32::NAN;
            s.scores.insert("calm".into(), f32::NAN);
            s.scores.insert("fear".into(), 0.123_456_79);
        }
        let d = decision_for(i);
        let receipt = log.append_step(&s, &d).unwrap();
        committed.push(StepRow::committed(&s, &d, &receipt, true));
    }
    let mut read = log.step_rows(None).unwrap();
    for row in &mut read {
        // Known only to a read: the session's config row.
        row.config_row = None;
    }
    assert_eq!(committed, read);
    let mut export = Vec::new();
    log.export_otlp_json(&mut export, None).unwrap();
    let exported: serde_json::Value = serde_json::from_slice(&export).unwrap();
    assert_eq!(limbic_audit::otlp::traces_request(&committed), exported);
}

/// A log whose text and arguments hold everything CSV has to quote.
fn awkward_log(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("audit.db");
    let log = open_storing_text(&path);
    let texts = [
        "plain",
        "comma, and \"quotes\"",
        "line one\nline two\r\nthree",
        " leading and trailing space ",
        "=HYPERLINK(\"http://x\")",
        "ünïcödé — 日本語",
        "",
    ];
    for (i, text) in texts.iter().enumerate() {
        let mut s = step("q,\"s\"", i as u32);
        s.text = text.to_string();
        s.args = serde_json::json!({"command": text, "n": i});
        if i == 2 {
            s.stress_signature = f32::NAN;
            s.scores.insert("calm".into(), f32::NAN);
        }
        let mut d = decision(if i == 4 { "veto" } else { "allow" });
        d.reason = format!("reason {text}");
        if i == 5 {
            d.delivery = Delivery::Undelivered;
            d.delivery_note = Some("client closed, \"gone\"".into());
        }
        log.append_step(&s, &d).unwrap();
    }
    path
}

#[test]
fn jsonl_export_is_one_step_row_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = awkward_log(dir.path());
    let snap = AuditSnapshot::open(&path).unwrap();
    let mut out = Vec::new();
    assert_eq!(snap.export_jsonl(&mut out, None).unwrap(), 7);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7);
    // Each line is exactly the serialised row (compared as text: serde_json's
    // default float parser may be off by one ulp, the text is exact).
    let rows = snap.step_rows(None).unwrap();
    for (line, row) in lines.iter().zip(&rows) {
        assert_eq!(*line, serde_json::to_string(row).unwrap());
    }
    let parsed: Vec<StepRow> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed[5].delivery, Delivery::Undelivered);
    assert_eq!(parsed[5].text.as_deref(), Some("ünïcödé — 日本語"));
    assert_eq!(parsed[2].stress_signature, None, "NaN exports as null");
    assert_eq!(parsed[2].scores.get("calm"), Some(&None));
    let raw: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert!(raw["stress_signature"].is_null());
    assert_eq!(raw["args"]["command"], "line one\nline two\r\nthree");
    // Filter by session.
    let mut none = Vec::new();
    assert_eq!(snap.export_jsonl(&mut none, Some("other")).unwrap(), 0);
    assert!(none.is_empty());
}

#[test]
fn csv_export_reads_back_field_for_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = awkward_log(dir.path());
    let snap = AuditSnapshot::open(&path).unwrap();
    let rows = snap.step_rows(None).unwrap();
    let mut out = Vec::new();
    assert_eq!(snap.export_csv(&mut out, None).unwrap(), 7);

    // Read back with an independent RFC 4180 parser.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(out.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(&header[..CSV_COLUMNS.len()], CSV_COLUMNS);
    let emotions = snap.emotion_names(None).unwrap();
    assert_eq!(emotions, ["calm", "desperation", "fear"]);
    assert!(header.contains(&"score.calm".to_string()));
    assert!(header.contains(&"peak.fear".to_string()));
    assert_eq!(header.last().map(String::as_str), Some("decision_hash"));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();

    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), rows.len());
    for (rec, row) in records.iter().zip(&rows) {
        assert_eq!(rec.len(), header.len());
        assert_eq!(&rec[col("session_id")], row.session_id);
        assert_eq!(
            rec[col("step_index")].parse::<u64>().unwrap(),
            row.step_index
        );
        assert_eq!(&rec[col("text")], row.text.as_deref().unwrap());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&rec[col("args")]).unwrap(),
            row.args
        );
        assert_eq!(&rec[col("reason")], row.reason);
        assert_eq!(&rec[col("decision")], row.decision);
        assert_eq!(&rec[col("delivery")], row.delivery.as_str());
        assert_eq!(
            &rec[col("delivery_note")],
            row.delivery_note.as_deref().unwrap_or("")
        );
        assert_eq!(
            serde_json::from_str::<Vec<String>>(&rec[col("classes")]).unwrap(),
            row.classes
        );
        let stress = &rec[col("stress_signature")];
        match row.stress_signature {
            Some(x) => assert_eq!(stress.parse::<f64>().unwrap(), x),
            None => assert_eq!(stress, ""),
        }
        match row.scores.get("calm").copied().flatten() {
            Some(x) => assert_eq!(rec[col("score.calm")].parse::<f64>().unwrap(), x),
            None => assert_eq!(&rec[col("score.calm")], ""),
        }
        assert_eq!(&rec[col("step_hash")], row.step_hash);
        assert_eq!(&rec[col("decision_hash")], row.decision_hash);
    }
}

#[test]
fn csv_field_quotes_exactly_what_needs_it() {
    use limbic_audit::csv_field;
    assert_eq!(csv_field("plain"), "plain");
    assert_eq!(csv_field("-0.5"), "-0.5");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("a\nb"), "\"a\nb\"");
    assert_eq!(csv_field("a\rb"), "\"a\rb\"");
    assert_eq!(csv_field(" x"), "\" x\"");
    assert_eq!(csv_field(""), "");
}
