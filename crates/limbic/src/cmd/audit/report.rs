//! `limbic audit report`: one self-contained HTML page (no network, no external file) with
//! every session — its timeline, its decisions and reasons — and filters by decision and
//! session. Everything from the log is HTML-escaped: the agent wrote it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use limbic_audit::StepRow;
use limbic_vectors::eval::{load_plot_font, FontSource};

use super::plot::{load_policy, svg_string, thresholds_of};
use super::{audit_path, create_private, snapshot};

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Audit database (default: $LIMBIC_HOME/audit.db).
    #[arg(long, env = "LIMBIC_AUDIT")]
    audit: Option<PathBuf>,
    /// Directory to write `index.html` into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Policy whose thresholds the timelines draw (file or built-in name).
    #[arg(long)]
    policy: Option<String>,
    /// Sessions drawn with a timeline (the most recent ones; the others are listed).
    #[arg(long, default_value_t = 200)]
    max_timelines: usize,
}

/// `s` safe in HTML text and attribute values.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}…")
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.1em;margin:0 0 .3em 0;word-break:break-all}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;margin:1em 0}
table{border-collapse:collapse;width:100%;font-size:.85em}
td,th{border-bottom:1px solid #eee;padding:.25em .4em;text-align:left;vertical-align:top}
td.args{font-family:monospace;max-width:28em;word-break:break-all}
.d{font-weight:600;border-radius:3px;padding:0 .3em}
.allow{color:#1a7f37}.warn{color:#a06000}.reroute{color:#1f5ac8}.veto{color:#c62828}
.filters{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ddd}
.stats span{margin-right:1.2em}svg{max-width:100%;height:auto}
";

const SCRIPT: &str = "
function applyFilters(){
  var d=document.getElementById('decision').value;
  var q=document.getElementById('session').value.toLowerCase();
  var shown=0;
  document.querySelectorAll('section.session').forEach(function(s){
    var okS=s.dataset.session.toLowerCase().indexOf(q)>=0;
    var okD=d==='all'||s.dataset.decisions.split(' ').indexOf(d)>=0;
    s.style.display=(okS&&okD)?'':'none';
    if(okS&&okD){shown++;}
    s.querySelectorAll('tr.step').forEach(function(r){
      r.style.display=(d==='all'||r.dataset.decision===d)?'':'none';
    });
  });
  document.getElementById('shown').textContent=shown;
}
document.getElementById('decision').addEventListener('change',applyFilters);
document.getElementById('session').addEventListener('input',applyFilters);
applyFilters();
";

pub fn run(args: ReportArgs) -> Result<ExitCode> {
    let policy = load_policy(args.policy.as_deref())?;
    let thresholds = thresholds_of(&policy);
    let path = audit_path(args.audit)?;
    let snap = snapshot(&path)?;
    let stats = snap.stats()?;
    let summaries = snap.all_session_summaries()?;
    let mut by_session: BTreeMap<String, Vec<StepRow>> = BTreeMap::new();
    for row in snap.step_rows(None)? {
        by_session
            .entry(row.session_id.clone())
            .or_default()
            .push(row);
    }
    let with_text = load_plot_font(&FontSource::Auto);

    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
         <title>limbic audit report</title><style>{STYLE}</style></head><body>\
         <h1>limbic audit report</h1><p>{} — head seq {} ({}), policy thresholds from \
         <code>{}</code></p>",
        html(&path.display().to_string()),
        stats.head.seq,
        html(&stats.head.hash),
        html(policy.origin())
    );
    let _ = write!(
        page,
        "<p class=\"stats\"><span>{} sessions</span><span>{} steps</span>",
        stats.sessions, stats.steps
    );
    for (kind, n) in &stats.decisions {
        let _ = write!(
            page,
            "<span class=\"d {k}\">{k}: {n}</span>",
            k = html(kind)
        );
    }
    let _ = write!(
        page,
        "</p><div class=\"filters\"><label>decision <select id=\"decision\">\
         <option value=\"all\">all</option><option>allow</option><option>warn</option>\
         <option>reroute</option><option>veto</option></select></label> \
         <label>session <input id=\"session\" placeholder=\"filter by id\"></label> \
         <span id=\"shown\"></span> sessions shown</div>"
    );
    // Newest sessions first: the ones an auditor opens the page for.
    for (i, s) in summaries.iter().rev().enumerate() {
        let rows = by_session
            .get(&s.session_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let kinds: Vec<&str> = s.decisions.keys().map(String::as_str).collect();
        let _ = write!(
            page,
            "<section class=\"session\" data-session=\"{id}\" data-decisions=\"{kinds}\">\
             <h2>{id}</h2><p>{steps} steps; peak stress {peak}; {dec}{veto}</p>",
            id = html(&s.session_id),
            kinds = html(&kinds.join(" ")),
            steps = s.steps,
            peak = s
                .max_stress
                .map(|v| format!("{v:+.2}"))
                .unwrap_or_else(|| "-".into()),
            dec = html(
                &s.decisions
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            veto = s
                .first_veto_step
                .map(|v| format!("; first veto at step {v}"))
                .unwrap_or_default(),
        );
        if i < args.max_timelines && !rows.is_empty() {
            page.push_str(&svg_string(rows, &thresholds, "", with_text, (1000, 360))?);
        }
        page.push_str(
            "<table><tr><th>step</th><th>tool</th><th>args</th><th>decision</th>\
             <th>stress</th><th>rule</th><th>reason</th></tr>",
        );
        for r in rows {
            let label = match &r.reroute {
                Some(k) => format!("{}({k})", r.decision),
                None => r.decision.clone(),
            };
            let _ = write!(
                page,
                "<tr class=\"step\" data-decision=\"{d}\"><td>{step}</td><td>{tool}</td>\
                 <td class=\"args\">{args}</td><td><span class=\"d {d}\">{label}</span></td>\
                 <td>{stress}</td><td><code>{rule}</code></td><td>{reason}</td></tr>",
                d = html(&r.decision),
                step = r.step_index,
                tool = html(&r.tool),
                args = html(&truncate(&r.args.to_string(), 300)),
                label = html(&label),
                stress = r
                    .stress_signature
                    .map(|v| format!("{v:+.2}"))
                    .unwrap_or_else(|| "-".into()),
                rule = html(&r.rule_id),
                reason = html(&r.reason),
            );
        }
        page.push_str("</table></section>");
    }
    let _ = writeln!(page, "<script>{SCRIPT}</script></body></html>");

    ensure_dir(&args.out)?;
    let index = args.out.join("index.html");
    let mut file =
        create_private(&index).with_context(|| format!("creating {}", index.display()))?;
    file.write_all(page.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", index.display()))?;
    eprintln!(
        "report of {} sessions, {} steps -> {}",
        summaries.len(),
        stats.steps,
        index.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn ensure_dir(dir: &std::path::Path) -> Result<()> {
    limbic_audit::create_private_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}
