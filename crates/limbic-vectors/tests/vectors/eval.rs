//! AUROC table and PNG plot.

use limbic_vectors::eval::{
    auroc_table, plot_auroc_png, EvalConfig, FontSource, PlotOptions, StepScores,
};
use limbic_vectors::math::SplitMix64;

fn synthetic_scores() -> Vec<StepScores> {
    let mut rng = SplitMix64::new(3);
    let mut inputs = Vec::new();
    for (emotion, separation) in [("desperation", 1.0f32), ("calm", 0.4), ("fear", 0.0)] {
        for layer in [4u32, 8, 12, 16] {
            // The middle layers separate best.
            let strength = separation * if layer == 8 || layer == 12 { 1.0 } else { 0.3 };
            let labels: Vec<bool> = (0..60).map(|i| i % 3 == 0).collect();
            let scores = labels
                .iter()
                .map(|&l| rng.next_f64() as f32 + if l { strength } else { 0.0 })
                .collect();
            inputs.push(StepScores {
                emotion: emotion.into(),
                layer,
                scores,
                labels,
            });
        }
    }
    inputs
}

fn config() -> EvalConfig {
    EvalConfig {
        bootstrap_resamples: 300,
        permutations: 300,
        seed: 5,
    }
}

#[test]
fn table_reports_auroc_ci_and_control() {
    let table = auroc_table(&synthetic_scores(), &config()).unwrap();
    assert_eq!(table.cells.len(), 12);
    assert_eq!(table.emotions(), vec!["calm", "desperation", "fear"]);
    let strong = table.get("desperation", 8).unwrap();
    assert_eq!((strong.n_pos, strong.n_neg), (20, 40));
    assert!(strong.auroc > 0.95, "{strong:?}");
    assert!(strong.ci_low <= strong.auroc && strong.auroc <= strong.ci_high);
    assert!(strong.p_value < 0.01);
    let none = table.get("fear", 8).unwrap();
    assert!((none.auroc - 0.5).abs() < 0.25, "{none:?}");
    for cell in &table.cells {
        assert!((cell.perm_auroc - 0.5).abs() < 0.05, "{cell:?}");
        assert!(cell.ci_low <= cell.ci_high);
    }
    let markdown = table.to_markdown();
    assert_eq!(markdown.lines().count(), 2 + 12);
    assert!(
        markdown.contains("| desperation | 8 | 20 | 40 |"),
        "{markdown}"
    );
    let json = serde_json::to_string(&table).unwrap();
    assert!(json.contains("\"perm_auroc\""));
}

fn assert_png(path: &std::path::Path, width: u32, height: u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // IHDR: width and height, big-endian, right after the chunk header.
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), width);
    assert_eq!(
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
        height
    );
}

#[test]
fn plot_is_written_as_png() {
    let table = auroc_table(&synthetic_scores(), &config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auroc.png");
    let options = PlotOptions {
        title: "limbic: AUROC per layer (synthetic)".into(),
        ..PlotOptions::default()
    };
    let info = plot_auroc_png(&table, &path, &options).unwrap();
    assert_png(&path, options.width, options.height);
    // The embedded font: text whatever the machine has installed.
    assert!(info.with_text);
    if let Ok(keep) = std::env::var("LIMBIC_KEEP_PLOT") {
        std::fs::copy(&path, keep).unwrap();
    }
}

#[test]
fn plot_rejects_bad_requests() {
    let table = auroc_table(&synthetic_scores(), &config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = plot_auroc_png(&table, dir.path().join("plot.jpg"), &PlotOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("plot.jpg") && err.contains(".png"), "{err}");
    let err = plot_auroc_png(
        &Default::default(),
        dir.path().join("empty.png"),
        &PlotOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("empty"), "{err}");
    let err = plot_auroc_png(
        &table,
        dir.path().join("missing-dir").join("x.png"),
        &PlotOptions {
            font: FontSource::None,
            ..PlotOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("x.png"), "{err}");
}
