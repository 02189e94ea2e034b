//! Evaluation: an AUROC table (emotion × layer, with bootstrap confidence interval and
//! permutation control) from per-step scores and labels, and a PNG plot of it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::math::{self, PermutationTest};

/// Per-step projection scores of one emotion at one layer, with the ground truth
/// (`true` = the step is labelled as showing the emotion / stress).
#[derive(Clone, Debug, Default)]
pub struct StepScores {
    pub emotion: String,
    pub layer: u32,
    pub scores: Vec<f32>,
    pub labels: Vec<bool>,
}

#[derive(Clone, Debug)]
pub struct EvalConfig {
    pub bootstrap_resamples: usize,
    pub permutations: usize,
    pub seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            bootstrap_resamples: 1000,
            permutations: 1000,
            seed: 0x00c0_ffee,
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AurocCell {
    pub emotion: String,
    pub layer: u32,
    pub n_pos: usize,
    pub n_neg: usize,
    pub auroc: f64,
    /// 95% percentile-bootstrap interval.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Mean AUROC under label permutation (the control; ≈ 0.5).
    pub perm_auroc: f64,
    /// One-sided permutation p-value of `auroc`.
    pub p_value: f64,
}

/// AUROC per (emotion, layer), sorted by emotion then layer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AurocTable {
    pub cells: Vec<AurocCell>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("emotion '{emotion}', layer {layer}: {problem}")]
    InvalidInput {
        emotion: String,
        layer: u32,
        problem: String,
    },
    #[error("{}: cannot draw plot: {message}", .path.display())]
    Plot { path: PathBuf, message: String },
}

/// Compute the table. Each (emotion, layer) must appear once, with as many labels as
/// scores, both classes present, and no NaN score.
pub fn auroc_table(inputs: &[StepScores], config: &EvalConfig) -> Result<AurocTable, EvalError> {
    let mut seen = BTreeSet::new();
    let mut cells = Vec::with_capacity(inputs.len());
    for input in inputs {
        let fail = |problem: String| EvalError::InvalidInput {
            emotion: input.emotion.clone(),
            layer: input.layer,
            problem,
        };
        if !seen.insert((input.emotion.as_str(), input.layer)) {
            return Err(fail("appears more than once".to_owned()));
        }
        if input.scores.len() != input.labels.len() {
            return Err(fail(format!(
                "{} scores but {} labels",
                input.scores.len(),
                input.labels.len()
            )));
        }
        if input.scores.iter().any(|s| s.is_nan()) {
            return Err(fail("a score is NaN".to_owned()));
        }
        let n_pos = input.labels.iter().filter(|&&l| l).count();
        let n_neg = input.labels.len() - n_pos;
        if n_pos == 0 || n_neg == 0 {
            return Err(fail(format!(
                "needs both classes, got {n_pos} positive and {n_neg} negative steps"
            )));
        }
        // Seed from the cell's identity, so a cell's numbers do not depend on which
        // other cells are in the table.
        let seed = config.seed ^ cell_hash(&input.emotion, input.layer);
        let not_computable = || fail("AUROC is undefined for these scores".to_owned());
        let auroc = math::auroc(&input.scores, &input.labels).ok_or_else(not_computable)?;
        let (ci_low, ci_high) = math::bootstrap_auroc_ci(
            &input.scores,
            &input.labels,
            config.bootstrap_resamples,
            seed,
        )
        .unwrap_or((f64::NAN, f64::NAN));
        let PermutationTest {
            null_mean, p_value, ..
        } = math::permutation_auroc(&input.scores, &input.labels, config.permutations, seed)
            .unwrap_or(PermutationTest {
                observed: auroc,
                null_mean: f64::NAN,
                p_value: f64::NAN,
            });
        cells.push(AurocCell {
            emotion: input.emotion.clone(),
            layer: input.layer,
            n_pos,
            n_neg,
            auroc,
            ci_low,
            ci_high,
            perm_auroc: null_mean,
            p_value,
        });
    }
    cells.sort_by(|a, b| (&a.emotion, a.layer).cmp(&(&b.emotion, b.layer)));
    Ok(AurocTable { cells })
}

/// FNV-1a over the emotion name and layer.
fn cell_hash(emotion: &str, layer: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in emotion.bytes().chain(layer.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

impl AurocTable {
    pub fn get(&self, emotion: &str, layer: u32) -> Option<&AurocCell> {
        self.cells
            .iter()
            .find(|c| c.emotion == emotion && c.layer == layer)
    }

    /// Emotion names in table order.
    pub fn emotions(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.cells.iter().map(|c| c.emotion.as_str()).collect();
        names.dedup();
        names
    }

    /// A Markdown table for reports.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "| emotion | layer | n+ | n- | AUROC | 95% CI | perm AUROC | p |\n\
             |---|---:|---:|---:|---:|---|---:|---:|\n",
        );
        for c in &self.cells {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.3} | [{:.3}, {:.3}] | {:.3} | {:.4} |\n",
                c.emotion,
                c.layer,
                c.n_pos,
                c.n_neg,
                c.auroc,
                c.ci_low,
                c.ci_high,
                c.perm_auroc,
                c.p_value
            ));
        }
        out
    }
}

/// Where the plot's text font comes from.
#[derive(Clone, Debug, Default)]
pub enum FontSource {
    /// `$LIMBIC_FONT` if set and loadable, else the embedded font ([`EMBEDDED_FONT`]).
    #[default]
    Auto,
    /// This TrueType/OpenType file.
    File(PathBuf),
    /// Draw without any text.
    None,
}

/// Environment variable naming a font file for plots.
pub const FONT_ENV: &str = "LIMBIC_FONT";

/// DejaVu Sans 2.37, compiled in (license: `crates/limbic-vectors/fonts/LICENSE-DejaVu.txt`):
/// plots have text on a machine without fontconfig or any system font, and look the same
/// everywhere.
pub const EMBEDDED_FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// The family name fonts are registered under for plots (pass it to plotters' text styles).
pub const FONT_FAMILY: &str = "sans-serif";

/// Registers the font `source` names with plotters under [`FONT_FAMILY`]; false when none
/// could be loaded (draw without text then). Shared by every plot limbic draws.
pub fn load_plot_font(source: &FontSource) -> bool {
    match source {
        FontSource::Auto => auto_font(),
        FontSource::File(font) => register_font_file(font),
        FontSource::None => false,
    }
}

#[derive(Clone, Debug)]
pub struct PlotOptions {
    pub title: String,
    pub width: u32,
    pub height: u32,
    pub font: FontSource,
}

impl Default for PlotOptions {
    fn default() -> Self {
        Self {
            title: "AUROC per layer".to_owned(),
            width: 1000,
            height: 620,
            font: FontSource::Auto,
        }
    }
}

/// What [`plot_auroc_png`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlotInfo {
    /// False when no usable font was found and the plot has no text.
    pub with_text: bool,
}

/// Register a font file with plotters. Fonts must live for the whole process
/// (plotters keeps `&'static` data), so the bytes are leaked — once per font loaded.
fn register_font_file(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, leaked).is_ok()
}

fn auto_font() -> bool {
    static LOADED: OnceLock<bool> = OnceLock::new();
    *LOADED.get_or_init(|| {
        let from_env = std::env::var_os(FONT_ENV)
            .map(PathBuf::from)
            .is_some_and(|path| register_font_file(&path));
        from_env
            || plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, EMBEDDED_FONT).is_ok()
    })
}

const PALETTE: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
const CONTROL_GREY: RGBColor = RGBColor(150, 150, 150);

/// Draw AUROC against layer, one coloured line per emotion with its 95% CI as
/// vertical bars, the permutation control as grey dashed lines, and chance (0.5) as
/// a faint line. The file must end in `.png`. If no font can be loaded the plot is
/// still drawn, without title, axis labels or legend.
pub fn plot_auroc_png(
    table: &AurocTable,
    path: impl AsRef<Path>,
    options: &PlotOptions,
) -> Result<PlotInfo, EvalError> {
    let path = path.as_ref();
    let fail = |message: String| EvalError::Plot {
        path: path.to_path_buf(),
        message,
    };
    let is_png = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("png"));
    if !is_png {
        return Err(fail("the file name must end in .png".to_owned()));
    }
    if table.cells.is_empty() {
        return Err(fail("the table is empty".to_owned()));
    }
    if options.width < 200 || options.height < 150 {
        return Err(fail(format!(
            "{}x{} is too small; use at least 200x150",
            options.width, options.height
        )));
    }
    let with_text = load_plot_font(&options.font);
    draw(table, path, options, with_text).map_err(fail)?;
    Ok(PlotInfo { with_text })
}

fn draw(
    table: &AurocTable,
    path: &Path,
    options: &PlotOptions,
    with_text: bool,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = BitMapBackend::new(path, (options.width, options.height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;

    let min_layer = table.cells.iter().map(|c| c.layer).min().unwrap_or(0);
    let max_layer = table.cells.iter().map(|c| c.layer).max().unwrap_or(0);
    let x_range = (f64::from(min_layer) - 0.5)..(f64::from(max_layer) + 0.5);

    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if with_text {
        builder
            .caption(&options.title, (FONT_FAMILY, 24))
            .x_label_area_size(45)
            .y_label_area_size(55);
    }
    let mut chart = builder
        .build_cartesian_2d(x_range.clone(), 0.0f64..1.0)
        .map_err(|e| err(&e))?;
    {
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(WHITE.mix(0.0));
        if with_text {
            mesh.x_desc("layer (l_out-L)")
                .y_desc("AUROC")
                .label_style((FONT_FAMILY, 14))
                .x_label_formatter(&|x| format!("{}", x.round() as i64));
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| err(&e))?;
    }

    // Chance level.
    chart
        .draw_series(LineSeries::new(
            [(x_range.start, 0.5), (x_range.end, 0.5)],
            CONTROL_GREY.mix(0.4).stroke_width(1),
        ))
        .map_err(|e| err(&e))?;

    for (index, emotion) in table.emotions().into_iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        let cells: Vec<&AurocCell> = table
            .cells
            .iter()
            .filter(|c| c.emotion == emotion)
            .collect();
        let finite = |v: f64| v.is_finite();

        let control: Vec<(f64, f64)> = cells
            .iter()
            .filter(|c| finite(c.perm_auroc))
            .map(|c| (f64::from(c.layer), c.perm_auroc))
            .collect();
        let control_series = chart
            .draw_series(DashedLineSeries::new(
                control,
                6,
                5,
                CONTROL_GREY.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        if with_text && index == 0 {
            control_series
                .label("permutation control")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], CONTROL_GREY.stroke_width(2))
                });
        }

        let intervals = cells
            .iter()
            .filter(|c| finite(c.ci_low) && finite(c.ci_high))
            .map(|c| {
                let x = f64::from(c.layer);
                PathElement::new(
                    vec![(x, c.ci_low), (x, c.ci_high)],
                    color.mix(0.5).stroke_width(2),
                )
            });
        chart.draw_series(intervals).map_err(|e| err(&e))?;

        let points: Vec<(f64, f64)> = cells
            .iter()
            .map(|c| (f64::from(c.layer), c.auroc))
            .collect();
        let line = chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?;
        if with_text {
            line.label(emotion).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(|e| err(&e))?;
    }

    if with_text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.5))
            .label_font((FONT_FAMILY, 14))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_validates_input() {
        let config = EvalConfig {
            bootstrap_resamples: 10,
            permutations: 10,
            seed: 1,
        };
        let base = StepScores {
            emotion: "fear".into(),
            layer: 3,
            scores: vec![0.1, 0.2],
            labels: vec![true, false],
        };
        assert!(auroc_table(std::slice::from_ref(&base), &config).is_ok());
        let err = auroc_table(&[base.clone(), base.clone()], &config).unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");
        let one_class = StepScores {
            labels: vec![true, true],
            ..base.clone()
        };
        let err = auroc_table(&[one_class], &config).unwrap_err().to_string();
        assert!(
            err.contains("emotion 'fear', layer 3: needs both classes"),
            "{err}"
        );
        let short = StepScores {
            labels: vec![true],
            ..base.clone()
        };
        assert!(auroc_table(&[short], &config).is_err());
        let nan = StepScores {
            scores: vec![f32::NAN, 0.0],
            ..base
        };
        assert!(auroc_table(&[nan], &config).is_err());
    }

    #[test]
    fn cell_seed_is_order_independent() {
        let config = EvalConfig {
            bootstrap_resamples: 50,
            permutations: 50,
            seed: 9,
        };
        let a = StepScores {
            emotion: "fear".into(),
            layer: 1,
            scores: vec![0.1, 0.5, 0.3, 0.9, 0.2, 0.7],
            labels: vec![false, true, false, true, true, false],
        };
        let b = StepScores {
            emotion: "calm".into(),
            layer: 2,
            ..a.clone()
        };
        let forward = auroc_table(&[a.clone(), b.clone()], &config).unwrap();
        let backward = auroc_table(&[b, a], &config).unwrap();
        assert_eq!(forward, backward);
        assert_eq!(forward.emotions(), vec!["calm", "fear"]);
    }
}
