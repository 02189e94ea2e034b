//! A separate test binary, so no font is ever registered in this process: the plot
//! must still be drawn (without text) when no font is available.

use limbic_vectors::eval::{
    auroc_table, plot_auroc_png, EvalConfig, FontSource, PlotOptions, StepScores,
};

#[test]
fn plot_without_any_font_still_draws() {
    let inputs: Vec<StepScores> = [3u32, 6, 9]
        .iter()
        .map(|&layer| StepScores {
            emotion: "fear".into(),
            layer,
            scores: vec![0.1, 0.9, 0.4, 0.7, 0.3, 0.8],
            labels: vec![false, true, false, true, true, false],
        })
        .collect();
    let table = auroc_table(
        &inputs,
        &EvalConfig {
            bootstrap_resamples: 50,
            permutations: 50,
            seed: 1,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.png");
    let info = plot_auroc_png(
        &table,
        &path,
        &PlotOptions {
            font: FontSource::None,
            ..PlotOptions::default()
        },
    )
    .unwrap();
    assert!(!info.with_text);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    // A font path that does not exist falls back to the same text-free plot.
    let info = plot_auroc_png(
        &table,
        &path,
        &PlotOptions {
            font: FontSource::File(dir.path().join("no-such-font.ttf")),
            ..PlotOptions::default()
        },
    )
    .unwrap();
    assert!(!info.with_text);
}
