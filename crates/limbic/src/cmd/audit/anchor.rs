//! `limbic audit anchor`: sign the verified chain head.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use limbic_audit::{anchor_verified, AnchorKey};

use super::{audit_path, snapshot};

#[derive(clap::Args)]
pub struct AnchorArgs {
    /// Audit database (default: $LIMBIC_HOME/audit.db).
    #[arg(long, env = "LIMBIC_AUDIT")]
    audit: Option<PathBuf>,
    /// Where to write the signed anchor (JSON, `limbic-audit-anchor/v1`).
    #[arg(long)]
    out: PathBuf,
    /// ed25519 key file (default `<audit>.key`, created mode 0600 if missing).
    #[arg(long)]
    key: Option<PathBuf>,
}

pub fn run(args: AnchorArgs) -> Result<ExitCode> {
    let path = audit_path(args.audit)?;
    let key_path = args.key.unwrap_or_else(|| AnchorKey::default_path(&path));
    let key = AnchorKey::load_or_create(&key_path)
        .with_context(|| format!("anchor key {}", key_path.display()))?;
    // Verify and sign a private copy: the log itself is not opened.
    let snap = snapshot(&path)?;
    let anchor = anchor_verified(snap.log().path(), &key)?;
    anchor
        .write(&args.out)
        .with_context(|| format!("writing anchor {}", args.out.display()))?;
    println!(
        "anchored {} at seq {} hash {} -> {} (key {}, public key {})",
        path.display(),
        anchor.seq,
        anchor.row_hash,
        args.out.display(),
        key.public_key().key_id(),
        key.public_key().to_hex()
    );
    Ok(ExitCode::SUCCESS)
}
