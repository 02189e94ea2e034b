//! Parquet export: one row per step, flat columns, written with the parquet crate's
//! low-level column writer (no arrow). DuckDB and Spark read it as it is.
//!
//! Columns: `session_id`, `step_index`, `ts_start_ms`/`ts_end_ms` (timestamps, UTC
//! milliseconds), `tool`, `args` (JSON text), `text`, `text_sha256`, `decision`, `reroute`,
//! `rule_id`, `reason`, `classes` (JSON text), `delivery`, `delivery_note`,
//! `stress_signature`, `spike`, `latency_ms`, `config_row`, then `score_<emotion>` and
//! `peak_<emotion>` for each emotion in the log (names reduced to `[a-z0-9_]`: a dot is a
//! path separator in Parquet), then `step_hash`, `decision_hash`.

use std::io::Write;
use std::sync::Arc;

use parquet::basic::{Compression, Repetition, Type as Physical};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use crate::error::{io_error, Result};
use crate::log::AuditLog;
use crate::rows::StepRow;

/// Rows per row group: bounded memory for any log size.
const ROW_GROUP: usize = 8192;

/// A Parquet column name for an emotion (`score_` / `peak_` + this).
pub fn column_name(emotion: &str) -> String {
    emotion
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

enum Kind {
    Str,
    I64,
    Ts,
    F64,
    Bool,
}

enum Values {
    Str(Vec<Option<String>>),
    I64(Vec<Option<i64>>),
    F64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
}

struct Column {
    name: String,
    kind: Kind,
    required: bool,
    get: Box<dyn Fn(&StepRow) -> Cell>,
}

enum Cell {
    Str(Option<String>),
    I64(Option<i64>),
    F64(Option<f64>),
    Bool(Option<bool>),
}

fn col(name: &str, kind: Kind, required: bool, get: impl Fn(&StepRow) -> Cell + 'static) -> Column {
    Column {
        name: name.to_string(),
        kind,
        required,
        get: Box::new(get),
    }
}

fn columns(emotions: &[String]) -> Vec<Column> {
    use Cell as C;
    let mut cols = vec![
        col("session_id", Kind::Str, true, |r| {
            C::Str(Some(r.session_id.clone()))
        }),
        col("step_index", Kind::I64, true, |r| {
            C::I64(Some(i64::try_from(r.step_index).unwrap_or(i64::MAX)))
        }),
        col("ts_start_ms", Kind::Ts, true, |r| {
            C::I64(Some(r.ts_start_ms))
        }),
        col("ts_end_ms", Kind::Ts, true, |r| C::I64(Some(r.ts_end_ms))),
        col("tool", Kind::Str, true, |r| C::Str(Some(r.tool.clone()))),
        col("args", Kind::Str, true, |r| {
            C::Str(Some(r.args.to_string()))
        }),
        col("text", Kind::Str, false, |r| C::Str(r.text.clone())),
        col("text_sha256", Kind::Str, true, |r| {
            C::Str(Some(r.text_sha256.clone()))
        }),
        col("decision", Kind::Str, true, |r| {
            C::Str(Some(r.decision.clone()))
        }),
        col("reroute", Kind::Str, false, |r| C::Str(r.reroute.clone())),
        col("rule_id", Kind::Str, true, |r| {
            C::Str(Some(r.rule_id.clone()))
        }),
        col("reason", Kind::Str, true, |r| {
            C::Str(Some(r.reason.clone()))
        }),
        col("classes", Kind::Str, true, |r| {
            C::Str(Some(serde_json::Value::from(r.classes.clone()).to_string()))
        }),
        col("delivery", Kind::Str, true, |r| {
            C::Str(Some(r.delivery.as_str().into()))
        }),
        col("delivery_note", Kind::Str, false, |r| {
            C::Str(r.delivery_note.clone())
        }),
        col("stress_signature", Kind::F64, false, |r| {
            C::F64(r.stress_signature)
        }),
        col("spike", Kind::Bool, true, |r| C::Bool(Some(r.spike))),
        col("latency_ms", Kind::F64, false, |r| C::F64(r.latency_ms)),
        col("config_row", Kind::I64, false, |r| C::I64(r.config_row)),
    ];
    for (prefix, peak) in [("score_", false), ("peak_", true)] {
        for e in emotions {
            let key = e.clone();
            cols.push(col(
                &format!("{prefix}{}", column_name(e)),
                Kind::F64,
                false,
                move |r| {
                    let map = if peak { &r.peak } else { &r.scores };
                    C::F64(map.get(&key).copied().flatten())
                },
            ));
        }
    }
    cols.push(col("step_hash", Kind::Str, true, |r| {
        C::Str(Some(r.step_hash.clone()))
    }));
    cols.push(col("decision_hash", Kind::Str, true, |r| {
        C::Str(Some(r.decision_hash.clone()))
    }));
    cols
}

fn schema(cols: &[Column]) -> parquet::errors::Result<Type> {
    use parquet::basic::{LogicalType, TimeUnit};
    let mut fields = Vec::with_capacity(cols.len());
    for c in cols {
        let (physical, logical) = match c.kind {
            Kind::Str => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
            Kind::I64 => (Physical::INT64, None),
            Kind::Ts => (
                Physical::INT64,
                Some(LogicalType::Timestamp {
                    is_adjusted_to_u_t_c: true,
                    unit: TimeUnit::MILLIS,
                }),
            ),
            Kind::F64 => (Physical::DOUBLE, None),
            Kind::Bool => (Physical::BOOLEAN, None),
        };
        let repetition = if c.required {
            Repetition::REQUIRED
        } else {
            Repetition::OPTIONAL
        };
        fields.push(Arc::new(
            Type::primitive_type_builder(&c.name, physical)
                .with_repetition(repetition)
                .with_logical_type(logical)
                .build()?,
        ));
    }
    Type::group_type_builder("limbic_step")
        .with_fields(fields)
        .build()
}

/// Splits optional values into the present values and definition levels.
fn levels<T: Clone>(values: &[Option<T>], required: bool) -> (Vec<T>, Option<Vec<i16>>) {
    let present: Vec<T> = values.iter().flatten().cloned().collect();
    let defs = (!required).then(|| values.iter().map(|v| i16::from(v.is_some())).collect());
    (present, defs)
}

struct Writer<W: Write + Send> {
    file: SerializedFileWriter<W>,
    cols: Vec<Column>,
    buffer: Vec<Values>,
    buffered: usize,
}

impl<W: Write + Send> Writer<W> {
    fn empty_buffers(cols: &[Column]) -> Vec<Values> {
        cols.iter()
            .map(|c| match c.kind {
                Kind::Str => Values::Str(Vec::new()),
                Kind::I64 | Kind::Ts => Values::I64(Vec::new()),
                Kind::F64 => Values::F64(Vec::new()),
                Kind::Bool => Values::Bool(Vec::new()),
            })
            .collect()
    }

    fn push(&mut self, row: &StepRow) -> parquet::errors::Result<()> {
        for (c, buf) in self.cols.iter().zip(self.buffer.iter_mut()) {
            match ((c.get)(row), buf) {
                (Cell::Str(v), Values::Str(b)) => b.push(v),
                (Cell::I64(v), Values::I64(b)) => b.push(v),
                (Cell::F64(v), Values::F64(b)) => b.push(v),
                (Cell::Bool(v), Values::Bool(b)) => b.push(v),
                _ => {
                    return Err(parquet::errors::ParquetError::General(format!(
                        "column {}: value of the wrong type",
                        c.name
                    )))
                }
            }
        }
        self.buffered += 1;
        if self.buffered >= ROW_GROUP {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> parquet::errors::Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let buffers = std::mem::replace(&mut self.buffer, Self::empty_buffers(&self.cols));
        self.buffered = 0;
        let mut group = self.file.next_row_group()?;
        for (c, values) in self.cols.iter().zip(buffers) {
            let Some(mut w) = group.next_column()? else {
                break;
            };
            match values {
                Values::Str(v) => {
                    let (present, defs) = levels(&v, c.required);
                    let present: Vec<ByteArray> = present
                        .into_iter()
                        .map(|s| ByteArray::from(s.into_bytes()))
                        .collect();
                    w.typed::<ByteArrayType>()
                        .write_batch(&present, defs.as_deref(), None)?;
                }
                Values::I64(v) => {
                    let (present, defs) = levels(&v, c.required);
                    w.typed::<Int64Type>()
                        .write_batch(&present, defs.as_deref(), None)?;
                }
                Values::F64(v) => {
                    let (present, defs) = levels(&v, c.required);
                    w.typed::<DoubleType>()
                        .write_batch(&present, defs.as_deref(), None)?;
                }
                Values::Bool(v) => {
                    let (present, defs) = levels(&v, c.required);
                    w.typed::<BoolType>()
                        .write_batch(&present, defs.as_deref(), None)?;
                }
            }
            w.close()?;
        }
        group.close()?;
        Ok(())
    }
}

impl AuditLog {
    /// Writes every step (of one session, or all) as a Parquet file (see the module docs for
    /// the columns). Returns the number of rows written.
    pub fn export_parquet<W: Write + Send>(&self, out: W, session_id: Option<&str>) -> Result<u64> {
        let path = self.path().to_path_buf();
        let err = |e: parquet::errors::ParquetError| {
            io_error(&path, "writing Parquet export", std::io::Error::other(e))
        };
        let emotions = self.emotion_names(session_id)?;
        let cols = columns(&emotions);
        let schema = Arc::new(schema(&cols).map_err(err)?);
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::UNCOMPRESSED)
                .set_created_by(format!("limbic {}", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        let file = SerializedFileWriter::new(out, schema, props).map_err(err)?;
        let buffer = Writer::<W>::empty_buffers(&cols);
        let mut writer = Writer {
            file,
            cols,
            buffer,
            buffered: 0,
        };
        let n = self.for_each_step(session_id, |row| writer.push(&row).map_err(err))?;
        writer.flush().map_err(err)?;
        writer.file.close().map_err(err)?;
        Ok(n)
    }
}
