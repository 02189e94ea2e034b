//! Who may talk to the daemon, and how a client knows it reached the real one.
//!
//! The daemon creates a random token at first start (`$LIMBIC_HOME/token`, mode 0600 in a
//! 0700 directory) and requires it on every route but `GET /health` as
//! `Authorization: Bearer <token>` (the header llama-server's `--api-key` uses). Without it
//! any local process — the agent itself included — could post steps into any session and
//! launder its stress history.
//!
//! The daemon also proves it holds the token: a client that sends a random nonce in
//! [`NONCE_HEADER`] gets `HMAC-SHA256(token, nonce ‖ body)` (hex) in [`PROOF_HEADER`]. The
//! hook refuses an answer without a valid proof, so a process squatting on the daemon's port
//! cannot answer "allow".

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::home::limbic_home;

/// File name of the token under `$LIMBIC_HOME`.
pub const TOKEN_FILE: &str = "token";
/// Random bytes in a new token (hex-encoded on disk).
const TOKEN_BYTES: usize = 32;
/// Shortest token accepted from a file (a hand-made token must still be unguessable).
pub const MIN_TOKEN_LEN: usize = 32;
/// Longest token file read.
const MAX_TOKEN_FILE: u64 = 4096;
/// Longest nonce the daemon signs (a nonce is random, not a message).
pub const MAX_NONCE_LEN: usize = 128;
/// Shortest nonce the daemon signs.
pub const MIN_NONCE_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// `$LIMBIC_HOME/token`.
pub fn default_token_path() -> Result<PathBuf> {
    Ok(limbic_home()?.join(TOKEN_FILE))
}

/// The daemon's token: read from `path`, or created there (mode 0600, parent 0700) when no
/// file exists. A token that other users can read is tightened to 0600, or refused when that
/// fails: a token others can read authenticates no one.
pub fn load_or_create_token(path: &Path) -> Result<String> {
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create_token(path)?,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    tighten(path)?;
    read_token(path)
}

fn create_token(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    limbic_audit::create_private_dir_all(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut raw = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut raw)
        .map_err(|e| anyhow::anyhow!("no randomness from the operating system: {e}"))?;
    let token = hex::encode(raw);
    // Written under a temporary name (tempfile creates it 0600) and linked into place
    // without replacing: a second daemon starting at the same moment keeps the first token,
    // and no reader ever sees a half-written file.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a token file in {}", dir.display()))?;
    tmp.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing a token file in {}", dir.display()))?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.error).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(unix)]
fn tighten(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).with_context(|| {
            format!(
                "{} is readable by other users and could not be made private (chmod 600 it)",
                path.display()
            )
        })?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_path: &Path) -> Result<()> {
    Ok(())
}

/// Reads a token file: a regular file of at most 4 KiB holding one token of at least
/// [`MIN_TOKEN_LEN`] visible ASCII characters (surrounding whitespace ignored).
pub fn read_token(path: &Path) -> Result<String> {
    let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let mut text = String::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_FILE).read_to_string(&mut text))
        .with_context(|| format!("reading {}", path.display()))?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "{} does not hold a token ({MIN_TOKEN_LEN}+ visible ASCII characters); \
             delete it and restart `limbic serve` to make a new one",
            path.display()
        );
    }
    Ok(token.to_string())
}

/// Whether an `Authorization` header value carries `token` (`Bearer <token>`, scheme
/// case-insensitive). The comparison takes the same time wherever the first difference is.
pub fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    let Some(value) = header else {
        return false;
    };
    let value = value.trim();
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer")
        && bool::from(given.trim().as_bytes().ct_eq(token.as_bytes()))
}

/// A fresh random nonce for [`NONCE_HEADER`] (32 hex characters).
pub fn new_nonce() -> Result<String> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw)
        .map_err(|e| anyhow::anyhow!("no randomness from the operating system: {e}"))?;
    Ok(hex::encode(raw))
}

/// Whether the daemon signs this nonce: [`MIN_NONCE_LEN`]..=[`MAX_NONCE_LEN`] ASCII letters,
/// digits, `-` or `_`.
pub fn nonce_is_valid(nonce: &str) -> bool {
    (MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn mac(token: &str, nonce: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(nonce.as_bytes());
    mac.update(body);
    mac
}

/// `HMAC-SHA256(token, nonce ‖ body)` as lowercase hex: what the daemon sends in
/// [`PROOF_HEADER`].
pub fn proof(token: &str, nonce: &str, body: &[u8]) -> String {
    hex::encode(mac(token, nonce, body).finalize().into_bytes())
}

/// Whether `given` (hex) is the proof for `nonce` and `body` (constant-time).
pub fn proof_matches(token: &str, nonce: &str, body: &[u8], given: &str) -> bool {
    match hex::decode(given.trim()) {
        Ok(bytes) => mac(token, nonce, body).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// How far a signed request's time may be from the daemon's clock (both ways).
pub const REQUEST_WINDOW_MS: u64 = 60_000;

fn request_mac(
    token: &str,
    time_ms: u64,
    nonce: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> HmacSha256 {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    // The fixed prefix keeps a request signature from ever equalling an answer proof (a
    // proof's message starts with a nonce, which cannot hold `/` or a newline).
    mac.update(format!("limbic-request/v1\n{time_ms}\n{nonce}\n{method} {path}\n").as_bytes());
    mac.update(body);
    mac
}

/// The [`SIGNATURE_HEADER`] value for a request (hex).
pub fn request_signature(
    token: &str,
    time_ms: u64,
    nonce: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> String {
    hex::encode(
        request_mac(token, time_ms, nonce, method, path, body)
            .finalize()
            .into_bytes(),
    )
}

/// Whether `given` (hex) signs this request with `token` (constant-time). Freshness (time
/// window, nonce not seen before) is the daemon's to check.
pub fn request_signature_matches(
    token: &str,
    time_ms: u64,
    nonce: &str,
    method: &str,
    path: &str,
    body: &[u8],
    given: &str,
) -> bool {
    match hex::decode(given.trim()) {
        Ok(bytes) => request_mac(token, time_ms, nonce, method, path, body)
            .verify_slice(&bytes)
            .is_ok(),
        Err(_) => false,
    }
}

/// Now as Unix milliseconds (0 if the clock is before 1970).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub use crate::api::{NONCE_HEADER, PROOF_HEADER, SIGNATURE_HEADER, TIME_HEADER};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home/token");
        let first = load_or_create_token(&path).unwrap();
        assert_eq!(first.len(), 2 * TOKEN_BYTES);
        assert_eq!(load_or_create_token(&path).unwrap(), first);
        assert_eq!(read_token(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(load_or_create_token(&path).unwrap(), first);
            assert_eq!(mode(&path), 0o600);
        }
    }

    #[test]
    fn short_or_odd_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "short\n").unwrap();
        assert!(read_token(&path).is_err());
        fs::write(&path, format!("{}\u{7}\n", "a".repeat(40))).unwrap();
        assert!(read_token(&path).is_err());
        assert!(
            read_token(dir.path()).is_err(),
            "a directory is not a token"
        );
    }

    #[test]
    fn bearer_and_proof() {
        let token = "t".repeat(40);
        assert!(bearer_matches(Some(&format!("Bearer {token}")), &token));
        assert!(bearer_matches(Some(&format!("bearer  {token} ")), &token));
        assert!(!bearer_matches(Some(&format!("Basic {token}")), &token));
        assert!(!bearer_matches(Some(&format!("Bearer {token}x")), &token));
        assert!(!bearer_matches(Some("Bearer"), &token));
        assert!(!bearer_matches(None, &token));
        let nonce = new_nonce().unwrap();
        assert!(nonce_is_valid(&nonce));
        assert!(!nonce_is_valid("short"));
        assert!(!nonce_is_valid(&format!("{nonce}\r\nx: y")));
        let p = proof(&token, &nonce, b"{}");
        assert!(proof_matches(&token, &nonce, b"{}", &p));
        assert!(!proof_matches(&token, &nonce, b"{ }", &p));
        assert!(!proof_matches(
            "other-token-other-token-other-tok",
            &nonce,
            b"{}",
            &p
        ));
        assert!(!proof_matches(&token, &nonce, b"{}", "zz"));
        assert!(!proof_matches(&token, &nonce, b"{}", ""));

        let sig = request_signature(&token, 5, &nonce, "POST", "/v1/steps", b"{}");
        assert!(request_signature_matches(
            &token,
            5,
            &nonce,
            "POST",
            "/v1/steps",
            b"{}",
            &sig
        ));
        assert!(!request_signature_matches(
            &token,
            6,
            &nonce,
            "POST",
            "/v1/steps",
            b"{}",
            &sig
        ));
        assert!(!request_signature_matches(
            &token,
            5,
            &nonce,
            "GET",
            "/v1/steps",
            b"{}",
            &sig
        ));
        assert!(!request_signature_matches(
            &token,
            5,
            &nonce,
            "POST",
            "/v1/steps",
            b"{ }",
            &sig
        ));
        // A request signature is never an answer proof and the other way round.
        assert!(!proof_matches(&token, &nonce, b"{}", &sig));
    }
}
