//! JSON Lines files (step sets, prompt sets): one value per non-empty line.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// Reads every non-empty line as one `T`; a malformed line is an error naming its number.
pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: malformed line", path.display(), i + 1))?,
        );
    }
    if out.is_empty() {
        bail!("{} has no entries", path.display());
    }
    Ok(out)
}
