//! Exporters with no heavy dependencies: JSON Lines and CSV, one row per
//! step (with its decision).

use std::io::Write;

use crate::error::{io_error, Result};
use crate::log::AuditLog;
use crate::rows::StepRow;

/// Fixed CSV columns, before the per-emotion `score.<name>` and
/// `peak.<name>` columns and after them the row hashes.
pub const CSV_COLUMNS: [&str; 19] = [
    "session_id",
    "step_index",
    "ts_start_ms",
    "ts_end_ms",
    "tool",
    "args",
    "text",
    "text_sha256",
    "decision",
    "reroute",
    "rule_id",
    "reason",
    "classes",
    "delivery",
    "delivery_note",
    "stress_signature",
    "spike",
    "latency_ms",
    "config_row",
];

/// Quotes one CSV field (RFC 4180): a field holding a comma, quote, CR or LF,
/// or starting or ending with a space, is wrapped in quotes with inner quotes
/// doubled. Values are written as they are (no spreadsheet-formula
/// escaping: an audit export must keep the agent's bytes).
pub fn csv_field(value: &str) -> std::borrow::Cow<'_, str> {
    let needs_quotes =
        value.contains([',', '"', '\n', '\r']) || value.starts_with(' ') || value.ends_with(' ');
    if needs_quotes {
        std::borrow::Cow::Owned(format!("\"{}\"", value.replace('"', "\"\"")))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

fn opt_f64(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

impl AuditLog {
    /// Writes one JSON object per step (a serialised [`StepRow`]) and a
    /// newline each. Returns the number of rows written.
    pub fn export_jsonl(&self, out: &mut dyn Write, session_id: Option<&str>) -> Result<u64> {
        let path = self.path().to_path_buf();
        let n = self.for_each_step(session_id, |row| {
            serde_json::to_writer(&mut *out, &row)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| io_error(&path, "writing JSONL export", e))
        })?;
        out.flush()
            .map_err(|e| io_error(&path, "writing JSONL export", e))?;
        Ok(n)
    }

    /// Writes a CSV file: a header, then one line per step. Columns:
    /// [`CSV_COLUMNS`], then `score.<emotion>` and `peak.<emotion>` for every
    /// emotion in the log (sorted), then `step_hash`, `decision_hash`.
    /// `args` and `classes` are JSON text; an empty cell is a missing value.
    /// Returns the number of rows written (header not counted).
    pub fn export_csv(&self, out: &mut dyn Write, session_id: Option<&str>) -> Result<u64> {
        let path = self.path().to_path_buf();
        let emotions = self.emotion_names(session_id)?;
        let mut header: Vec<String> = CSV_COLUMNS.iter().map(|c| c.to_string()).collect();
        header.extend(emotions.iter().map(|e| format!("score.{e}")));
        header.extend(emotions.iter().map(|e| format!("peak.{e}")));
        header.push("step_hash".into());
        header.push("decision_hash".into());
        write_csv_line(out, &header).map_err(|e| io_error(&path, "writing CSV export", e))?;
        let n = self.for_each_step(session_id, |row| {
            write_csv_line(out, &csv_record(&row, &emotions))
                .map_err(|e| io_error(&path, "writing CSV export", e))
        })?;
        out.flush()
            .map_err(|e| io_error(&path, "writing CSV export", e))?;
        Ok(n)
    }
}

fn csv_record(row: &StepRow, emotions: &[String]) -> Vec<String> {
    let mut fields = vec![
        row.session_id.clone(),
        row.step_index.to_string(),
        row.ts_start_ms.to_string(),
        row.ts_end_ms.to_string(),
        row.tool.clone(),
        row.args.to_string(),
        row.text.clone().unwrap_or_default(),
        row.text_sha256.clone(),
        row.decision.clone(),
        row.reroute.clone().unwrap_or_default(),
        row.rule_id.clone(),
        row.reason.clone(),
        serde_json::Value::from(row.classes.clone()).to_string(),
        row.delivery.as_str().to_string(),
        row.delivery_note.clone().unwrap_or_default(),
        opt_f64(row.stress_signature),
        u8::from(row.spike).to_string(),
        opt_f64(row.latency_ms),
        row.config_row.map(|c| c.to_string()).unwrap_or_default(),
    ];
    for map in [&row.scores, &row.peak] {
        fields.extend(
            emotions
                .iter()
                .map(|e| opt_f64(map.get(e).copied().flatten())),
        );
    }
    fields.push(row.step_hash.clone());
    fields.push(row.decision_hash.clone());
    fields
}

fn write_csv_line(out: &mut dyn Write, fields: &[String]) -> std::io::Result<()> {
    let line: Vec<_> = fields.iter().map(|f| csv_field(f)).collect();
    out.write_all(line.join(",").as_bytes())?;
    out.write_all(b"\r\n")
}
