//! OTLP/JSON traces of the log (an `ExportTraceServiceRequest` as the OTLP/HTTP JSON
//! encoding writes it), following the OpenTelemetry GenAI conventions: one `execute_tool`
//! span per step, a guardrail child span for limbic's check, and a security-finding event on
//! it carrying the verdict, the rule id and the risk score.
//!
//! Ids are derived from the log, so an export is reproducible: one trace per session
//! (sha256 of the session id), span ids from the step and decision row hashes.

use std::io::Write;

use serde_json::{json, Value};

use crate::canonical::sha256_hex;
use crate::error::{io_error, Result};
use crate::log::AuditLog;
use crate::rows::StepRow;

/// Attribute and span names. The `execute_tool` ones are in the GenAI semantic conventions;
/// the guardrail / security ones are still an open proposal upstream (GenAI semconv "run
/// guardrail span and security finding") and may be renamed: they are EXPERIMENTAL and kept
/// here, in one place, so a rename is a one-line change.
pub mod names {
    pub const OPERATION_NAME: &str = "gen_ai.operation.name";
    pub const EXECUTE_TOOL: &str = "execute_tool";
    pub const TOOL_NAME: &str = "gen_ai.tool.name";
    pub const TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
    pub const TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
    pub const CONVERSATION_ID: &str = "gen_ai.conversation.id";

    // --- experimental (proposal) ---
    pub const RUN_GUARDRAIL: &str = "run_guardrail";
    pub const GUARDRAIL_NAME: &str = "gen_ai.security.guardrail.name";
    pub const GUARDRAIL_VERSION: &str = "gen_ai.security.guardrail.version";
    pub const TARGET_TYPE: &str = "gen_ai.security.target.type";
    pub const VERDICT_TYPE: &str = "gen_ai.security.verdict.type";
    pub const VERDICT_REASON: &str = "gen_ai.security.verdict.reason";
    pub const VERDICT_CODE: &str = "gen_ai.security.verdict.code";
    pub const ACTION_TYPE: &str = "gen_ai.security.action.type";
    pub const POLICY_RULE_ID: &str = "gen_ai.security.policy.rule.id";
    pub const RISK_SCORE: &str = "gen_ai.security.risk.score";
    pub const RISK_FINDING: &str = "gen_ai.security.risk.finding";
    pub const FINDING_EVENT: &str = "gen_ai.security.finding";
    // --- limbic's own ---
    pub const LIMBIC_STEP: &str = "limbic.step";
    pub const LIMBIC_DECISION: &str = "limbic.decision";
    pub const LIMBIC_REROUTE: &str = "limbic.reroute";
    pub const LIMBIC_SPIKE: &str = "limbic.spike";
    pub const LIMBIC_DELIVERY: &str = "limbic.delivery";
    pub const LIMBIC_CLASSES: &str = "limbic.classes";
    pub const LIMBIC_SCORE_PREFIX: &str = "limbic.score.";
    pub const LIMBIC_STEP_HASH: &str = "limbic.audit.step_hash";
    pub const LIMBIC_DECISION_HASH: &str = "limbic.audit.decision_hash";
}

/// OTLP `SpanKind` values.
const SPAN_KIND_INTERNAL: i64 = 1;

/// A limbic decision as a proposal verdict: veto denies, a reroute changes what runs.
pub fn verdict(decision: &str) -> &str {
    match decision {
        "allow" => "allow",
        "warn" => "warn",
        "veto" => "deny",
        "reroute" => "modify",
        other => other,
    }
}

fn s(key: &str, v: &str) -> Value {
    json!({"key": key, "value": {"stringValue": v}})
}

fn i(key: &str, v: i64) -> Value {
    // OTLP/JSON writes 64-bit integers as strings.
    json!({"key": key, "value": {"intValue": v.to_string()}})
}

fn b(key: &str, v: bool) -> Value {
    json!({"key": key, "value": {"boolValue": v}})
}

/// `None` for a value JSON cannot hold (NaN, infinities).
fn d(key: &str, v: Option<f64>) -> Option<Value> {
    v.filter(|x| x.is_finite())
        .map(|x| json!({"key": key, "value": {"doubleValue": x}}))
}

fn nanos(ms: i64) -> String {
    u64::try_from(ms)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
        .to_string()
}

/// Lowercase hex of `len` characters, from a row hash (64 hex) or any text's sha256.
fn id_from(hash: &str, len: usize) -> String {
    match hash.get(..len) {
        Some(h) if h.bytes().all(|c| c.is_ascii_hexdigit()) => h.to_ascii_lowercase(),
        _ => sha256_hex(hash.as_bytes())[..len].to_string(),
    }
}

/// The two spans of one step: `execute_tool` and its guardrail child.
pub fn step_spans(row: &StepRow) -> [Value; 2] {
    let trace_id = sha256_hex(row.session_id.as_bytes())[..32].to_string();
    let tool_span = id_from(&row.step_hash, 16);
    let guard_span = id_from(&row.decision_hash, 16);
    let start = nanos(row.ts_start_ms);
    let end = nanos(row.ts_end_ms.max(row.ts_start_ms));
    let call_id = format!("{}#{}", row.session_id, row.step_index);
    let step = i64::try_from(row.step_index).unwrap_or(i64::MAX);

    let mut tool_attrs = vec![
        s(names::OPERATION_NAME, names::EXECUTE_TOOL),
        s(names::TOOL_NAME, &row.tool),
        s(names::TOOL_CALL_ID, &call_id),
        s(names::TOOL_CALL_ARGUMENTS, &row.args.to_string()),
        s(names::CONVERSATION_ID, &row.session_id),
        i(names::LIMBIC_STEP, step),
        s(names::LIMBIC_STEP_HASH, &row.step_hash),
    ];
    tool_attrs.push(s(names::LIMBIC_DECISION, &row.decision));

    let mut guard_attrs = vec![
        s(names::OPERATION_NAME, names::RUN_GUARDRAIL),
        s(names::GUARDRAIL_NAME, "limbic"),
        s(names::GUARDRAIL_VERSION, env!("CARGO_PKG_VERSION")),
        s(names::TARGET_TYPE, "tool_call"),
        s(names::VERDICT_TYPE, verdict(&row.decision)),
        s(names::POLICY_RULE_ID, &row.rule_id),
        s(names::LIMBIC_DECISION, &row.decision),
        b(names::LIMBIC_SPIKE, row.spike),
        s(names::LIMBIC_DELIVERY, row.delivery.as_str()),
        s(names::LIMBIC_DECISION_HASH, &row.decision_hash),
    ];
    guard_attrs.extend(d(names::RISK_SCORE, row.stress_signature));
    if let Some(r) = &row.reroute {
        guard_attrs.push(s(names::LIMBIC_REROUTE, r));
    }
    for (emotion, z) in &row.scores {
        guard_attrs.extend(d(&format!("{}{emotion}", names::LIMBIC_SCORE_PREFIX), *z));
    }

    let mut finding = vec![
        s(names::VERDICT_TYPE, verdict(&row.decision)),
        s(names::VERDICT_CODE, &row.decision),
        s(names::VERDICT_REASON, &row.reason),
        s(names::POLICY_RULE_ID, &row.rule_id),
        s(names::ACTION_TYPE, &row.decision),
        s(names::RISK_FINDING, &row.classes.join(",")),
        s(
            names::LIMBIC_CLASSES,
            &serde_json::to_string(&row.classes).unwrap_or_default(),
        ),
    ];
    finding.extend(d(names::RISK_SCORE, row.stress_signature));

    [
        json!({
            "traceId": trace_id,
            "spanId": tool_span,
            "name": format!("{} {}", names::EXECUTE_TOOL, row.tool),
            "kind": SPAN_KIND_INTERNAL,
            "startTimeUnixNano": start,
            "endTimeUnixNano": end,
            "attributes": tool_attrs,
        }),
        json!({
            "traceId": trace_id,
            "spanId": guard_span,
            "parentSpanId": tool_span,
            "name": format!("{} limbic", names::RUN_GUARDRAIL),
            "kind": SPAN_KIND_INTERNAL,
            "startTimeUnixNano": start,
            "endTimeUnixNano": end,
            "attributes": guard_attrs,
            "events": [{
                "timeUnixNano": end,
                "name": names::FINDING_EVENT,
                "attributes": finding,
            }],
        }),
    ]
}

/// The OTLP resource (who emits) and instrumentation scope, shared by the file export and
/// the daemon's live stream.
fn resource_and_scope() -> (Value, Value) {
    (
        json!({"attributes": [
            s("service.name", "limbic"),
            s("service.version", env!("CARGO_PKG_VERSION")),
        ]}),
        json!({"name": "limbic-audit", "version": env!("CARGO_PKG_VERSION")}),
    )
}

/// One OTLP/JSON `ExportTraceServiceRequest` with the spans of `rows` (what
/// `POST /v1/traces` of an OTLP/HTTP collector takes, and the same spans, ids included, as
/// [`AuditLog::export_otlp_json`] writes for those steps).
pub fn traces_request(rows: &[StepRow]) -> Value {
    let (resource, scope) = resource_and_scope();
    let spans: Vec<Value> = rows.iter().flat_map(step_spans).collect();
    json!({"resourceSpans": [{
        "resource": resource,
        "scopeSpans": [{"scope": scope, "spans": spans}],
    }]})
}

impl AuditLog {
    /// Writes one OTLP/JSON `ExportTraceServiceRequest` holding two spans per step (see the
    /// module docs). Returns the number of steps written.
    pub fn export_otlp_json(&self, out: &mut dyn Write, session_id: Option<&str>) -> Result<u64> {
        let path = self.path().to_path_buf();
        let err = |e: std::io::Error| io_error(&path, "writing OTLP JSON export", e);
        let (resource, scope) = resource_and_scope();
        // Streamed: the document is opened, spans are written as rows are read, then closed.
        write!(
            out,
            "{{\"resourceSpans\":[{{\"resource\":{resource},\"scopeSpans\":[{{\"scope\":{scope},\"spans\":["
        )
        .map_err(err)?;
        let mut first = true;
        let n = self.for_each_step(session_id, |row| {
            for span in step_spans(&row) {
                if !first {
                    out.write_all(b",").map_err(err)?;
                }
                first = false;
                serde_json::to_writer(&mut *out, &span)
                    .map_err(std::io::Error::from)
                    .map_err(err)?;
            }
            Ok(())
        })?;
        out.write_all(b"]}]}]}\n").map_err(err)?;
        out.flush().map_err(err)?;
        Ok(n)
    }
}
