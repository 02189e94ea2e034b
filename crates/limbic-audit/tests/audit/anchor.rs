//! Signed anchors, tested as the attacks they exist for: a log rewritten
//! consistently passes plain `verify` but fails against an anchor taken
//! before, and an anchor that was not made by the trusted key is refused.

use std::path::Path;

use crate::common::{
    attacker, config, decision_for, populated, recompute_chain, step, truncate_last_step,
};
use limbic_audit::{
    anchor_verified, verify, verify_with_anchor, AnchorKey, AnchorPublicKey, AuditError, AuditLog,
    AuditOptions, Problem, SignedAnchor, ANCHOR_FORMAT,
};

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A populated log, a fresh key and an anchor of the untouched log written
/// to and read back from a file.
fn anchored(dir: &Path) -> (std::path::PathBuf, AnchorKey, SignedAnchor) {
    let (path, _) = populated(dir, 2, 6, true);
    let key = AnchorKey::load_or_create(dir.join("keys/audit.key")).unwrap();
    let anchor = anchor_verified(&path, &key).unwrap();
    let file = dir.join("anchor.json");
    anchor.write(&file).unwrap();
    (path, key, SignedAnchor::read(&file).unwrap())
}

#[test]
fn key_file_is_owner_only_and_reloads_the_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("home/limbic/audit.key");
    let key = AnchorKey::load_or_create(&key_path).unwrap();
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(mode(&dir.path().join("home/limbic")), 0o700);
    assert_eq!(mode(&dir.path().join("home")), 0o700);
    let text = std::fs::read_to_string(&key_path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["format"], "limbic-audit-key/v1");
    assert_eq!(json["public_key"], key.public_key().to_hex());
    assert_eq!(json["secret_key"].as_str().unwrap().len(), 64);
    // Debug output never shows the secret.
    let debug = format!("{key:?}");
    assert!(!debug.contains(json["secret_key"].as_str().unwrap()));

    let again = AnchorKey::load_or_create(&key_path).unwrap();
    assert_eq!(again.public_key(), key.public_key());
    assert_eq!(
        AnchorKey::load(&key_path).unwrap().public_key(),
        key.public_key()
    );
    // A second key elsewhere is a different key.
    let other = AnchorKey::load_or_create(dir.path().join("other.key")).unwrap();
    assert_ne!(other.public_key(), key.public_key());
}

#[test]
fn racing_creators_end_up_with_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("audit.key");
    let keys: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| AnchorKey::load_or_create(&key_path).map(|k| k.public_key().to_hex()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert!(keys.iter().all(|k| k == &keys[0]), "{keys:?}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
}

#[test]
fn bad_key_files_are_refused_with_the_reason() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("audit.key");
    let key = AnchorKey::load_or_create(&key_path).unwrap();

    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = AnchorKey::load(&key_path).unwrap_err();
    assert!(matches!(err, AuditError::Key { .. }), "{err:?}");
    assert!(err.to_string().contains("644"), "{err}");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Public key swapped for another one: the file was edited.
    let other = AnchorKey::load_or_create(dir.path().join("other.key")).unwrap();
    let text = std::fs::read_to_string(&key_path)
        .unwrap()
        .replace(&key.public_key().to_hex(), &other.public_key().to_hex());
    let edited = dir.path().join("edited.key");
    std::fs::write(&edited, text).unwrap();
    std::fs::set_permissions(&edited, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = AnchorKey::load(&edited).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");

    for (name, content) in [
        ("empty.key", ""),
        ("garbage.key", "not json at all"),
        (
            "short.key",
            r#"{"format":"limbic-audit-key/v1","algorithm":"ed25519","secret_key":"abcd","public_key":"abcd"}"#,
        ),
        (
            "rsa.key",
            r#"{"format":"limbic-audit-key/v1","algorithm":"rsa","secret_key":"","public_key":""}"#,
        ),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = AnchorKey::load(&p).unwrap_err();
        assert!(matches!(err, AuditError::Key { .. }), "{name}: {err:?}");
        // load_or_create never overwrites an existing (bad) key file.
        assert!(AnchorKey::load_or_create(&p).is_err(), "{name}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), content);
    }
}

#[test]
fn untouched_and_extended_logs_pass_against_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key, anchor) = anchored(dir.path());
    assert_eq!(anchor.format, ANCHOR_FORMAT);
    assert_eq!(anchor.key_id, key.public_key().key_id());
    let report = verify_with_anchor(&path, &anchor, &key.public_key()).unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.verified_head, anchor.head());

    // The log keeps growing after the anchor: still extends it.
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    log.record_config(&config("policy-2")).unwrap();
    for i in 6..9 {
        log.append_step(&step("session-1", i), &decision_for(i))
            .unwrap();
    }
    let report = verify_with_anchor(&path, &anchor, &key.public_key()).unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.verified_head.seq > anchor.seq);
    // The daemon's cheap anchor signs what chain_head says.
    let cheap = log.anchor(&key).unwrap();
    assert_eq!(cheap.head(), log.head().unwrap());
    assert!(cheap.check_signature(&key.public_key()).is_ok());
}

#[test]
fn tail_truncated_with_head_update_fails_against_an_earlier_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key, anchor) = anchored(dir.path());
    let log = AuditLog::open_read_only(&path).unwrap();
    let last = log.recent_decisions(1).unwrap().remove(0);
    drop(log);
    let receipt = limbic_audit::StepReceipt {
        session_row: 0,
        step_row: last.step_row,
        decision_row: last.decision_row,
        seq: last.seq,
        row_hash: String::new(),
        step_seq: last.seq - 1,
        step_hash: String::new(),
    };
    let new_end = truncate_last_step(&attacker(&path), &receipt);

    assert!(verify(&path).unwrap().ok, "plain verify cannot see this");
    let report = verify_with_anchor(&path, &anchor, &key.public_key()).unwrap();
    assert!(!report.ok);
    assert_eq!(
        report.first_bad.unwrap().problem,
        Problem::AnchorBeyondEnd {
            anchor_seq: anchor.seq,
            chain_seq: new_end.0
        }
    );

    // Appending fresh rows past the old end does not hide it: the row now at
    // the anchored seq is a different row.
    let log = AuditLog::open(&path, AuditOptions::default()).unwrap();
    for i in 10..14 {
        log.append_step(&step("session-9", i), &decision_for(i))
            .unwrap();
    }
    assert!(log.head().unwrap().seq > anchor.seq);
    assert!(verify(&path).unwrap().ok);
    let report = verify_with_anchor(&path, &anchor, &key.public_key()).unwrap();
    let bad = report.first_bad.expect("regrown log still fails");
    assert_eq!(bad.seq, Some(anchor.seq));
    assert!(
        matches!(bad.problem, Problem::AnchorMismatch { .. }),
        "{bad}"
    );
}

#[test]
fn full_recompute_after_an_edit_fails_against_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key, anchor) = anchored(dir.path());
    let conn = attacker(&path);
    conn.execute(
        "UPDATE decisions SET decision = 'allow', reason = 'nothing to see' WHERE decision = 'veto'",
        [],
    )
    .unwrap();
    recompute_chain(&conn);
    drop(conn);

    assert!(
        verify(&path).unwrap().ok,
        "a consistent rewrite verifies alone"
    );
    let report = verify_with_anchor(&path, &anchor, &key.public_key()).unwrap();
    let bad = report.first_bad.expect("the anchor catches the rewrite");
    assert_eq!(bad.seq, Some(anchor.seq));
    assert!(
        matches!(bad.problem, Problem::AnchorMismatch { .. }),
        "{bad}"
    );
    assert!(bad.to_string().contains("rewritten"), "{bad}");
}

#[test]
fn forged_anchors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, key, anchor) = anchored(dir.path());
    let trusted = key.public_key();
    // The attacker rewrites the log, then tries to make an anchor that fits.
    let conn = attacker(&path);
    conn.execute("UPDATE steps SET tool = 'Read' WHERE tool = 'Bash'", [])
        .unwrap();
    let (seq, hash) = recompute_chain(&conn);
    drop(conn);
    let rewritten = limbic_audit::ChainHead { seq, hash };

    // 1. The old anchor's fields edited to the rewritten head.
    let mut edited = anchor.clone();
    edited.row_hash = rewritten.hash.clone();
    edited.seq = rewritten.seq;
    let err = verify_with_anchor(&path, &edited, &trusted).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");

    // 2. Only the time changed: the signature covers it too.
    let mut retimed = anchor.clone();
    retimed.created_at_ms += 1;
    assert!(verify_with_anchor(&path, &retimed, &trusted).is_err());

    // 3. Signed with the attacker's own key (and their public key inside):
    //    a valid signature, but not by the trusted key.
    let attacker_key = AnchorKey::load_or_create(dir.path().join("attacker.key")).unwrap();
    let forged = attacker_key.sign(&rewritten, anchor.created_at_ms);
    assert!(forged.check_signature(&attacker_key.public_key()).is_ok());
    let err = verify_with_anchor(&path, &forged, &trusted).unwrap_err();
    assert!(matches!(err, AuditError::Anchor { .. }), "{err:?}");
    assert!(err.to_string().contains("not the trusted key"), "{err}");

    // 4. The attacker's signature with the trusted public key pasted in.
    let mut pasted = forged.clone();
    pasted.public_key = trusted.to_hex();
    pasted.key_id = trusted.key_id();
    assert!(verify_with_anchor(&path, &pasted, &trusted)
        .unwrap_err()
        .to_string()
        .contains("does not verify"));

    // 5. Malformed signatures and files are errors, not panics.
    for sig in ["", "zz", &"0".repeat(128), &"f".repeat(130)] {
        let mut bad = anchor.clone();
        bad.signature = sig.to_string();
        assert!(verify_with_anchor(&path, &bad, &trusted).is_err(), "{sig}");
    }
    let file = dir.path().join("bad-anchor.json");
    std::fs::write(&file, "{\"format\":\"limbic-audit-anchor/v1\"}").unwrap();
    let err = SignedAnchor::read(&file).unwrap_err();
    assert!(err.to_string().contains("bad-anchor.json"), "{err}");
    assert!(SignedAnchor::from_json("[]").is_err());
    assert!(AnchorPublicKey::from_hex("12").is_err());

    // 6. Validly signed by the trusted key but not a chain position.
    for head in [
        limbic_audit::ChainHead {
            seq: -1,
            hash: anchor.row_hash.clone(),
        },
        limbic_audit::ChainHead {
            seq: 1,
            hash: "xyz".into(),
        },
    ] {
        let odd = key.sign(&head, 0);
        assert!(
            verify_with_anchor(&path, &odd, &trusted).is_err(),
            "{head:?}"
        );
    }

    // The genuine anchor still reports the rewrite (as a failed report).
    let report = verify_with_anchor(&path, &anchor, &trusted).unwrap();
    assert!(!report.ok);
}

#[test]
fn a_tampered_log_is_never_anchored() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = populated(dir.path(), 1, 4, true);
    let key = AnchorKey::load_or_create(dir.path().join("audit.key")).unwrap();
    attacker(&path)
        .execute("UPDATE decisions SET reason = 'edited' WHERE id = 2", [])
        .unwrap();
    let err = anchor_verified(&path, &key).unwrap_err();
    assert!(err.to_string().contains("refusing to anchor"), "{err}");
}

#[test]
fn public_key_round_trips_through_hex() {
    let dir = tempfile::tempdir().unwrap();
    let key = AnchorKey::load_or_create(dir.path().join("audit.key")).unwrap();
    let hex = key.public_key().to_string();
    let parsed: AnchorPublicKey = hex.parse().unwrap();
    assert_eq!(parsed, key.public_key());
    assert_eq!(parsed.key_id().len(), 16);
}
