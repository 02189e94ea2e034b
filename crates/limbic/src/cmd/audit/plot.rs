//! `limbic audit plot`: one session's timeline — each emotion's score, the stress signature,
//! the policy's stress thresholds, every decision marked (and labelled when it is not an
//! allow) — as SVG or PNG.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use limbic_audit::StepRow;
use limbic_policy::Policy;
use limbic_vectors::eval::{load_plot_font, FontSource, FONT_FAMILY};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::text::clean;
use super::{audit_path, snapshot};

#[derive(clap::Args)]
pub struct PlotArgs {
    /// Audit database (default: $LIMBIC_HOME/audit.db).
    #[arg(long, env = "LIMBIC_AUDIT")]
    audit: Option<PathBuf>,
    /// The session to draw.
    #[arg(long)]
    session: String,
    /// Output file, `.svg` or `.png`.
    #[arg(long)]
    out: PathBuf,
    /// Policy whose thresholds are drawn (file or built-in name; default: the built-in
    /// default policy). The log keeps the policy's hash, not its text.
    #[arg(long)]
    policy: Option<String>,
    /// Font file for the labels (default: $LIMBIC_FONT, else the embedded DejaVu Sans, so no
    /// system font is needed).
    #[arg(long)]
    font: Option<PathBuf>,
    #[arg(long, default_value_t = 1100)]
    width: u32,
    #[arg(long, default_value_t = 620)]
    height: u32,
}

/// Thresholds drawn as horizontal lines (when the policy has them).
const THRESHOLDS: [&str; 3] = ["moderate", "elevated", "high"];

const PALETTE: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(188, 189, 34),
];

fn decision_color(decision: &str) -> RGBColor {
    match decision {
        "allow" => RGBColor(44, 160, 44),
        "warn" => RGBColor(230, 160, 0),
        "reroute" => RGBColor(31, 90, 200),
        "veto" => RGBColor(214, 39, 40),
        _ => RGBColor(120, 120, 120),
    }
}

pub(super) fn load_policy(spec: Option<&str>) -> Result<Policy> {
    match spec {
        None => Ok(Policy::builtin_default()?),
        Some(s) if Path::new(s).exists() => Policy::load(s).with_context(|| format!("policy {s}")),
        Some(s) => Policy::builtin(s).with_context(|| format!("policy {s}")),
    }
}

pub fn run(args: PlotArgs) -> Result<ExitCode> {
    let ext = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("svg" | "png")) {
        bail!(
            "{}: the file name must end in .svg or .png",
            args.out.display()
        );
    }
    if args.width < 300 || args.height < 200 || args.width > 10_000 || args.height > 10_000 {
        bail!("{}x{}: use 300x200 to 10000x10000", args.width, args.height);
    }
    let policy = load_policy(args.policy.as_deref())?;
    let path = audit_path(args.audit)?;
    let snap = snapshot(&path)?;
    let rows = snap.step_rows(Some(&args.session))?;
    if rows.is_empty() {
        bail!(
            "no steps of session {:?} in {} (`limbic audit sessions` lists them)",
            clean(&args.session),
            path.display()
        );
    }
    let font = match &args.font {
        Some(f) => FontSource::File(f.clone()),
        None => FontSource::Auto,
    };
    let with_text = load_plot_font(&font);
    if let (Some(f), false) = (&args.font, with_text) {
        bail!(
            "--font {}: not a readable TrueType/OpenType font",
            f.display()
        );
    }
    let thresholds = thresholds_of(&policy);
    let title = format!(
        "session {} — {} steps (thresholds: policy {})",
        clean(&args.session),
        rows.len(),
        policy.name()
    );
    let size = (args.width, args.height);
    let drawn = if ext.as_deref() == Some("svg") {
        draw(
            SVGBackend::new(&args.out, size).into_drawing_area(),
            &rows,
            &thresholds,
            &title,
            with_text,
        )
    } else {
        draw(
            BitMapBackend::new(&args.out, size).into_drawing_area(),
            &rows,
            &thresholds,
            &title,
            with_text,
        )
    };
    drawn.map_err(|e| anyhow!("drawing {}: {e}", args.out.display()))?;
    eprintln!(
        "plotted {} steps of session {} to {}{}",
        rows.len(),
        clean(&args.session),
        args.out.display(),
        if with_text {
            ""
        } else {
            " (no usable font: drawn without text)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The policy's stress thresholds that a timeline draws.
pub(super) fn thresholds_of(policy: &Policy) -> Vec<(&'static str, f64)> {
    THRESHOLDS
        .iter()
        .filter_map(|t| policy.threshold(t).map(|v| (*t, f64::from(v))))
        .collect()
}

/// A timeline as SVG text (for pages that embed it).
pub(super) fn svg_string(
    rows: &[StepRow],
    thresholds: &[(&str, f64)],
    title: &str,
    with_text: bool,
    size: (u32, u32),
) -> Result<String> {
    let mut out = String::new();
    draw(
        SVGBackend::with_string(&mut out, size).into_drawing_area(),
        rows,
        thresholds,
        title,
        with_text,
    )
    .map_err(|e| anyhow!("drawing a timeline: {e}"))?;
    Ok(out)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    rows: &[StepRow],
    thresholds: &[(&str, f64)],
    title: &str,
    with_text: bool,
) -> std::result::Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let emotions: Vec<&String> = {
        let mut names: Vec<&String> = rows.iter().flat_map(|r| r.scores.keys()).collect();
        names.sort();
        names.dedup();
        names
    };
    let xs: Vec<f64> = rows.iter().map(|r| r.step_index as f64).collect();
    let (x_min, x_max) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    let values = rows
        .iter()
        .flat_map(|r| {
            r.scores
                .values()
                .flatten()
                .copied()
                .chain(r.stress_signature)
        })
        .chain(thresholds.iter().map(|t| t.1))
        .filter(|v| v.is_finite());
    let (y_min, y_max) = values.fold((0.0f64, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let pad = (y_max - y_min) * 0.12 + 0.1;
    let x_range = (x_min - 0.5)..(x_max + 0.9);
    let y_range = (y_min - pad)..(y_max + pad);

    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if with_text {
        builder
            .caption(title, (FONT_FAMILY, 20))
            .x_label_area_size(40)
            .y_label_area_size(55);
    }
    let mut chart = builder
        .build_cartesian_2d(x_range.clone(), y_range)
        .map_err(|e| err(&e))?;
    {
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(WHITE.mix(0.0));
        if with_text {
            // Whole step numbers only: fractional ticks would round to repeated labels.
            let span = (x_range.end - x_range.start).ceil().clamp(2.0, 25.0) as usize;
            mesh.x_desc("step")
                .y_desc("z (neutral sigmas)")
                .label_style((FONT_FAMILY, 13))
                .x_labels(span + 1)
                .x_label_formatter(&|x| {
                    if (x - x.round()).abs() < 1e-6 {
                        format!("{}", x.round() as i64)
                    } else {
                        String::new()
                    }
                });
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| err(&e))?;
    }
    for (name, value) in thresholds {
        let series = chart
            .draw_series(DashedLineSeries::new(
                [(x_range.start, *value), (x_range.end, *value)],
                8,
                6,
                RGBColor(150, 150, 150).stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
        if with_text {
            series
                .label(format!("{name} = {value:.1}"))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(150, 150, 150))
                });
        }
    }
    for (i, emotion) in emotions.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| {
                r.scores
                    .get(*emotion)
                    .copied()
                    .flatten()
                    .map(|z| (r.step_index as f64, z))
            })
            .collect();
        let series = chart
            .draw_series(LineSeries::new(points, color.mix(0.7).stroke_width(1)))
            .map_err(|e| err(&e))?;
        if with_text {
            series
                .label(clean(emotion).into_owned())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
    }
    let stress: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| r.stress_signature.map(|s| (r.step_index as f64, s)))
        .collect();
    let series = chart
        .draw_series(LineSeries::new(stress, BLACK.stroke_width(3)))
        .map_err(|e| err(&e))?;
    if with_text {
        series
            .label("stress signature")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(3)));
    }
    // Decisions on the stress line (at the bottom for unscored steps).
    let floor = chart.y_range().start;
    for r in rows {
        let color = decision_color(&r.decision);
        let at = (r.step_index as f64, r.stress_signature.unwrap_or(floor));
        chart
            .draw_series([Circle::new(at, 6, color.filled())])
            .map_err(|e| err(&e))?;
        if with_text && r.decision != "allow" {
            let label = match &r.reroute {
                Some(kind) => format!("{}({})", r.decision, clean(kind)),
                None => r.decision.clone(),
            };
            // Offset in pixels so the label sits above-right of its marker.
            chart
                .draw_series([EmptyElement::at(at)
                    + Text::new(label, (6, -22), (FONT_FAMILY, 13).into_font().color(&color))])
                .map_err(|e| err(&e))?;
        }
    }
    if with_text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT_FAMILY, 12))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
