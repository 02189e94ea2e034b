//! Signed anchors: the chain head, signed with an ed25519 key the daemon
//! owns, kept outside the log.
//!
//! A plain [`crate::verify`] cannot tell a consistently rewritten log (tail
//! cut and `chain_head` updated, or every hash recomputed after an edit) from
//! an honest one: the hash function is public. An anchor records "the row at
//! seq N had hash H"; [`verify_with_anchor`] fails unless the log still holds
//! that row with that hash and verifies from genesis to its current head,
//! i.e. unless the log *extends* the anchored head. The signature shows which
//! key made the anchor; it does not stop whoever can read the key file from
//! signing a new anchor over a rewritten log, so keep anchors (or at least
//! the trusted public key) where the agent host can't write, and pass the
//! trusted public key explicitly — never the one written inside the anchor.
//!
//! # Key file (`limbic-audit-key/v1`)
//! JSON, mode 0600, never replaced once written:
//! ```json
//! {"format":"limbic-audit-key/v1","algorithm":"ed25519",
//!  "secret_key":"<32-byte seed, 64 hex>","public_key":"<32 bytes, 64 hex>"}
//! ```
//! A key file readable by group or others is refused.
//!
//! # Anchor file (`limbic-audit-anchor/v1`)
//! JSON:
//! ```json
//! {"format":"limbic-audit-anchor/v1","seq":42,"row_hash":"<64 hex>",
//!  "created_at_ms":1700000000000,"key_id":"<16 hex>","public_key":"<64 hex>",
//!  "signature":"<64 bytes, 128 hex>"}
//! ```
//! The signature covers, in this order: the bytes `limbic-audit-anchor/v1`,
//! `seq` as i64 big-endian, `created_at_ms` as i64 big-endian, the length of
//! `row_hash` as u64 big-endian and its ASCII bytes, and the 32 public-key
//! bytes. `key_id` is the first 16 hex digits of sha256(public key).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::canonical::sha256_hex;
use crate::error::{io_error, AuditError, Result};
use crate::log::{AuditLog, ChainHead};
use crate::private;
use crate::verify::{verify, verify_against_anchor, VerifyReport};

/// `format` of a key file.
pub const KEY_FORMAT: &str = "limbic-audit-key/v1";
/// `format` of an anchor file, and the signature's domain separator.
pub const ANCHOR_FORMAT: &str = "limbic-audit-anchor/v1";

/// Largest key or anchor file read (both are a few hundred bytes).
const MAX_FILE_BYTES: u64 = 16 * 1024;

/// The daemon's signing key.
pub struct AnchorKey {
    signing: SigningKey,
    path: PathBuf,
}

impl fmt::Debug for AnchorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("AnchorKey")
            .field("path", &self.path)
            .field("public_key", &self.public_key().to_hex())
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    format: String,
    algorithm: String,
    secret_key: String,
    public_key: String,
}

impl AnchorKey {
    /// Loads the key at `path`, or creates it (mode 0600, parent directories
    /// 0700) if nothing is there. Two processes racing to create it end up
    /// with the same key: the file appears atomically and is never replaced.
    /// The key used when none is named: `<log>.key` beside the log, so the daemon's user
    /// owns both.
    pub fn default_path(db: &Path) -> std::path::PathBuf {
        let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".key");
        db.with_file_name(name)
    }

    pub fn load_or_create(path: impl AsRef<Path>) -> Result<AnchorKey> {
        let path = path.as_ref();
        if path.exists() {
            return AnchorKey::load(path);
        }
        if let Some(dir) = path.parent() {
            private::create_private_dir_all(dir)
                .map_err(|e| io_error(dir, "creating the key's directory", e))?;
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).map_err(|e| AuditError::Key {
            path: path.to_path_buf(),
            detail: format!("no randomness from the operating system: {e}"),
        })?;
        let signing = SigningKey::from_bytes(&seed);
        let file = KeyFile {
            format: KEY_FORMAT.into(),
            algorithm: "ed25519".into(),
            secret_key: hex::encode(seed.as_slice()),
            public_key: hex::encode(signing.verifying_key().as_bytes()),
        };
        let json = Zeroizing::new(
            serde_json::to_string_pretty(&file).map_err(|e| AuditError::Key {
                path: path.to_path_buf(),
                detail: format!("encoding: {e}"),
            })? + "\n",
        );
        drop(Zeroizing::new(file.secret_key));
        match private::write_new_private_file(path, json.as_bytes()) {
            Ok(()) => Ok(AnchorKey {
                signing,
                path: path.to_path_buf(),
            }),
            // Someone else created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => AnchorKey::load(path),
            Err(e) => Err(io_error(path, "writing the new anchor key", e)),
        }
    }

    /// Loads an existing key file; refuses one readable by group or others.
    pub fn load(path: impl AsRef<Path>) -> Result<AnchorKey> {
        let path = path.as_ref();
        let bad = |detail: String| AuditError::Key {
            path: path.to_path_buf(),
            detail,
        };
        let meta = std::fs::metadata(path).map_err(|e| io_error(path, "reading key file", e))?;
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        if let Some(mode) = private::loose_mode(&meta) {
            return Err(bad(format!(
                "readable by other users (mode {mode:o}); the key must be owner-only: chmod 600"
            )));
        }
        let text = Zeroizing::new(read_small(path, "reading key file")?);
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a {KEY_FORMAT} file: {e}")))?;
        let secret = Zeroizing::new(file.secret_key);
        if file.format != KEY_FORMAT || file.algorithm != "ed25519" {
            return Err(bad(format!(
                "format `{}` / algorithm `{}`, expected `{KEY_FORMAT}` / `ed25519`",
                file.format, file.algorithm
            )));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(secret.as_bytes(), seed.as_mut_slice())
            .map_err(|e| bad(format!("secret_key is not 64 hex digits: {e}")))?;
        let signing = SigningKey::from_bytes(&seed);
        let public = AnchorPublicKey(signing.verifying_key());
        if !public.to_hex().eq_ignore_ascii_case(&file.public_key) {
            return Err(bad(
                "public_key does not belong to secret_key (the file was edited)".into(),
            ));
        }
        Ok(AnchorKey {
            signing,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The public half, to pin wherever anchors are checked.
    pub fn public_key(&self) -> AnchorPublicKey {
        AnchorPublicKey(self.signing.verifying_key())
    }

    /// Signs `head` as of `created_at_ms`.
    pub fn sign(&self, head: &ChainHead, created_at_ms: i64) -> SignedAnchor {
        let public = self.public_key();
        let message = anchor_message(head.seq, &head.hash, created_at_ms, &public);
        let signature = self.signing.sign(&message);
        SignedAnchor {
            format: ANCHOR_FORMAT.into(),
            seq: head.seq,
            row_hash: head.hash.clone(),
            created_at_ms,
            key_id: public.key_id(),
            public_key: public.to_hex(),
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

/// An ed25519 public key that anchors are checked against.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AnchorPublicKey(VerifyingKey);

impl AnchorPublicKey {
    /// Parses 64 hex digits.
    pub fn from_hex(hex_key: &str) -> Result<AnchorPublicKey> {
        let bad = |detail: String| AuditError::Anchor { path: None, detail };
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_key.trim(), &mut bytes)
            .map_err(|e| bad(format!("public key is not 64 hex digits: {e}")))?;
        VerifyingKey::from_bytes(&bytes)
            .map(AnchorPublicKey)
            .map_err(|e| bad(format!("not an ed25519 public key: {e}")))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// First 16 hex digits of sha256(public key): a short name for logs.
    pub fn key_id(&self) -> String {
        sha256_hex(self.0.as_bytes())[..16].to_string()
    }
}

impl fmt::Debug for AnchorPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnchorPublicKey({})", self.to_hex())
    }
}

impl fmt::Display for AnchorPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for AnchorPublicKey {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self> {
        AnchorPublicKey::from_hex(s)
    }
}

/// A signed chain head (see the module docs for the file format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedAnchor {
    pub format: String,
    pub seq: i64,
    pub row_hash: String,
    pub created_at_ms: i64,
    pub key_id: String,
    pub public_key: String,
    pub signature: String,
}

impl SignedAnchor {
    /// The anchored chain position.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.row_hash.clone(),
        }
    }

    /// Checks that the anchor was signed by `trusted` and not altered since.
    pub fn check_signature(&self, trusted: &AnchorPublicKey) -> Result<()> {
        let bad = |detail: String| AuditError::Anchor { path: None, detail };
        if self.format != ANCHOR_FORMAT {
            return Err(bad(format!(
                "format `{}`, expected `{ANCHOR_FORMAT}`",
                self.format
            )));
        }
        if !self.public_key.eq_ignore_ascii_case(&trusted.to_hex()) {
            return Err(bad(format!(
                "signed by key {} (id {}), not the trusted key {} (id {})",
                self.public_key,
                self.key_id,
                trusted.to_hex(),
                trusted.key_id()
            )));
        }
        // Only a key holder can sign nonsense, but never treat it as a head.
        if self.seq < 0 {
            return Err(bad(format!("negative seq {}", self.seq)));
        }
        if self.row_hash.len() != 64 || !self.row_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!(
                "row_hash `{}` is not 64 hex digits",
                self.row_hash
            )));
        }
        let mut sig = [0u8; 64];
        hex::decode_to_slice(self.signature.trim(), &mut sig)
            .map_err(|e| bad(format!("signature is not 128 hex digits: {e}")))?;
        let message = anchor_message(self.seq, &self.row_hash, self.created_at_ms, trusted);
        trusted
            .0
            .verify_strict(&message, &Signature::from_bytes(&sig))
            .map_err(|_| bad("signature does not verify: the anchor was altered or forged".into()))
    }

    pub fn to_json(&self) -> String {
        // Plain strings and integers: serialising can't fail.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    pub fn from_json(text: &str) -> Result<SignedAnchor> {
        serde_json::from_str(text).map_err(|e| AuditError::Anchor {
            path: None,
            detail: format!("not a {ANCHOR_FORMAT} file: {e}"),
        })
    }

    /// Reads an anchor file.
    pub fn read(path: impl AsRef<Path>) -> Result<SignedAnchor> {
        let path = path.as_ref();
        let text = read_small(path, "reading anchor file")?;
        SignedAnchor::from_json(&text).map_err(|e| match e {
            AuditError::Anchor { detail, .. } => AuditError::Anchor {
                path: Some(path.to_path_buf()),
                detail,
            },
            other => other,
        })
    }

    /// Writes the anchor to `path`, replacing it atomically (written to a
    /// temporary file in the same directory, synced, then renamed).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        use std::io::Write;
        let path = path.as_ref();
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| io_error(dir, "creating a temporary anchor file", e))?;
        tmp.write_all(self.to_json().as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| io_error(path, "writing anchor file", e))?;
        tmp.persist(path)
            .map_err(|e| io_error(path, "writing anchor file", e.error))?;
        Ok(())
    }
}

fn anchor_message(seq: i64, row_hash: &str, created_at_ms: i64, key: &AnchorPublicKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(ANCHOR_FORMAT.len() + 24 + row_hash.len() + 32);
    out.extend_from_slice(ANCHOR_FORMAT.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&created_at_ms.to_be_bytes());
    out.extend_from_slice(&(row_hash.len() as u64).to_be_bytes());
    out.extend_from_slice(row_hash.as_bytes());
    out.extend_from_slice(key.0.as_bytes());
    out
}

fn read_small(path: &Path, context: &'static str) -> Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| io_error(path, context, e))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| io_error(path, context, e))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(AuditError::Anchor {
            path: Some(path.to_path_buf()),
            detail: format!("larger than {MAX_FILE_BYTES} bytes: not a key or anchor file"),
        });
    }
    Ok(text)
}

impl AuditLog {
    /// Signs the log's current chain head as recorded in `chain_head`
    /// (cheap: nothing is re-hashed). For the daemon's periodic anchors,
    /// which sign what it wrote itself; to anchor a log of unknown history
    /// use [`anchor_verified`].
    pub fn anchor(&self, key: &AnchorKey) -> Result<SignedAnchor> {
        Ok(key.sign(&self.head()?, crate::now_unix_ms()))
    }
}

/// Verifies the whole log at `db` and signs its head; refuses (with the
/// first bad row) a log that does not verify, so a tampered log is never
/// certified. What `limbic audit anchor` should call.
pub fn anchor_verified(db: impl AsRef<Path>, key: &AnchorKey) -> Result<SignedAnchor> {
    let db = db.as_ref();
    let report = verify(db)?;
    match report.first_bad {
        None => Ok(key.sign(&report.verified_head, crate::now_unix_ms())),
        Some(bad) => Err(AuditError::Corrupt {
            path: db.to_path_buf(),
            detail: format!("refusing to anchor a log that does not verify: {bad}"),
        }),
    }
}

/// Checks the anchor's signature against `trusted`, then verifies the log at
/// `db` from genesis to its current head and checks that the row at the
/// anchored seq still has the anchored hash. `Err` when the anchor can't be
/// trusted (bad signature, other key, malformed) or the file is not a log;
/// a report with `ok == false` when the log no longer extends the anchored
/// head (rewritten, truncated, edited).
pub fn verify_with_anchor(
    db: impl AsRef<Path>,
    anchor: &SignedAnchor,
    trusted: &AnchorPublicKey,
) -> Result<VerifyReport> {
    anchor.check_signature(trusted)?;
    verify_against_anchor(db, &anchor.head())
}
