//! `limbic audit verify [--anchor FILE]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use limbic_audit::{verify_with_anchor, AnchorKey, AnchorPublicKey, SignedAnchor, VerifyReport};

use super::{audit_path, snapshot};

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Audit database (default: $LIMBIC_HOME/audit.db).
    #[arg(long, env = "LIMBIC_AUDIT")]
    audit: Option<PathBuf>,
    /// A signed anchor (`limbic audit anchor`): also fail unless the log still extends the
    /// anchored head (detects a cut tail with `chain_head` updated, or a recomputed chain).
    #[arg(long)]
    anchor: Option<PathBuf>,
    /// The trusted public key (64 hex digits) the anchor must be signed by.
    #[arg(long, conflicts_with = "key")]
    public_key: Option<String>,
    /// Key file whose public half is trusted (default: the key beside the log,
    /// `<audit>.key`). The key written inside the anchor is never trusted on its own.
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let path = audit_path(args.audit)?;
    // Verified on a private copy: a read-only open in place could still touch `-shm`.
    let snap = snapshot(&path)?;
    let report = match &args.anchor {
        None => snap.verify()?,
        Some(anchor_path) => {
            let anchor = SignedAnchor::read(anchor_path)?;
            let trusted = trusted_key(args.public_key.as_deref(), args.key.as_deref(), &path)?;
            let report = verify_with_anchor(snap.log().path(), &anchor, &trusted)
                .with_context(|| format!("checking anchor {}", anchor_path.display()))?;
            if report.ok {
                println!(
                    "anchor ok: the log extends the head signed by key {} (seq {}, {})",
                    trusted.key_id(),
                    anchor.seq,
                    anchor_path.display()
                );
            } else {
                eprintln!(
                    "ANCHOR MISMATCH: {} no longer extends the head anchored in {} (seq {}, \
                     hash {}): the log was cut or rewritten",
                    path.display(),
                    anchor_path.display(),
                    anchor.seq,
                    anchor.row_hash
                );
            }
            report
        }
    };
    Ok(print_report(&path, &report))
}

fn trusted_key(public_key: Option<&str>, key: Option<&Path>, db: &Path) -> Result<AnchorPublicKey> {
    if let Some(hex) = public_key {
        return Ok(AnchorPublicKey::from_hex(hex)?);
    }
    let key_path = match key {
        Some(k) => k.to_path_buf(),
        None => limbic_audit::AnchorKey::default_path(db),
    };
    if !key_path.exists() {
        bail!(
            "no trusted key to check the anchor with: {} does not exist; pass --public-key HEX \
             (the key you pinned when anchoring) or --key FILE",
            key_path.display()
        );
    }
    Ok(AnchorKey::load(&key_path)?.public_key())
}

fn print_report(path: &Path, report: &VerifyReport) -> ExitCode {
    if report.ok {
        println!(
            "ok: {} rows verified in {}; head seq {} hash {}",
            report.rows_checked,
            path.display(),
            report.verified_head.seq,
            report.verified_head.hash
        );
        ExitCode::SUCCESS
    } else {
        match &report.first_bad {
            Some(bad) => eprintln!("TAMPERED: {} — first bad row: {bad}", path.display()),
            None => eprintln!("TAMPERED: {}", path.display()),
        }
        ExitCode::from(3)
    }
}
