//! Cross-validated layer selection on synthetic per-layer activations.

use limbic_vectors::math::{self, SplitMix64};
use limbic_vectors::select::{
    choose_layers, cross_validate, fit_direction, CvConfig, LayerData, Method,
};

const DIM: usize = 32;
const PAIRS: usize = 40;
const N_LAYER: u32 = 8;
const SIGNAL_LAYER: u32 = 5;

fn noise(rng: &mut SplitMix64, scale: f32) -> Vec<f32> {
    (0..DIM)
        .map(|_| {
            let s: f64 = (0..4).map(|_| rng.next_f64() - 0.5).sum();
            s as f32 * scale
        })
        .collect()
}

fn planted() -> Vec<f32> {
    let mut u: Vec<f32> = (0..DIM).map(|i| ((i * 5 % 7) as f32) - 3.0).collect();
    math::normalize(&mut u);
    u
}

/// Matched pairs share a per-pair "content" vector; only `SIGNAL_LAYER` adds
/// ±strength along the planted direction. Rows are scored one by one (not as pairs),
/// so content variance along the direction counts as noise, as it does at run time.
fn synthetic_layers(seed: u64, strength: f32) -> Vec<LayerData> {
    let u = planted();
    let mut rng = SplitMix64::new(seed);
    (0..N_LAYER)
        .map(|layer| {
            let mut pos = Vec::with_capacity(PAIRS);
            let mut neg = Vec::with_capacity(PAIRS);
            for _ in 0..PAIRS {
                let content = noise(&mut rng, 1.0);
                let shift = if layer == SIGNAL_LAYER { strength } else { 0.0 };
                let np = noise(&mut rng, 1.0);
                let nn = noise(&mut rng, 1.0);
                pos.push(
                    (0..DIM)
                        .map(|j| content[j] + np[j] + shift * u[j])
                        .collect(),
                );
                neg.push(
                    (0..DIM)
                        .map(|j| content[j] + nn[j] - shift * u[j])
                        .collect(),
                );
            }
            LayerData {
                layer,
                pos,
                neg,
                neutral_basis: vec![],
            }
        })
        .collect()
}

#[test]
fn diff_of_means_cv_picks_the_signal_layer_and_permutation_is_chance() {
    let layers = synthetic_layers(11, 1.5);
    let config = CvConfig {
        permutation_rounds: 8,
        ..CvConfig::default()
    };
    let reports = cross_validate(&layers, &config).unwrap();
    assert_eq!(reports.len(), N_LAYER as usize);
    for r in &reports {
        assert!(
            (r.perm_auroc - 0.5).abs() < 0.15,
            "layer {}: perm {}",
            r.layer,
            r.perm_auroc
        );
        if r.layer == SIGNAL_LAYER {
            assert!(r.cv_auroc > 0.9, "signal layer cv {}", r.cv_auroc);
        } else {
            assert!(
                (r.cv_auroc - 0.5).abs() < 0.25,
                "layer {}: cv {}",
                r.layer,
                r.cv_auroc
            );
        }
    }
    assert_eq!(choose_layers(&reports, N_LAYER, 1), vec![SIGNAL_LAYER]);
    // Deterministic for a fixed seed.
    assert_eq!(reports, cross_validate(&layers, &config).unwrap());
}

#[test]
fn pca_cv_also_finds_the_signal_layer() {
    let layers = synthetic_layers(12, 1.5);
    let config = CvConfig {
        method: Method::Pca,
        permutation_rounds: 8,
        ..CvConfig::default()
    };
    let reports = cross_validate(&layers, &config).unwrap();
    let signal = reports.iter().find(|r| r.layer == SIGNAL_LAYER).unwrap();
    assert!(signal.cv_auroc > 0.9, "{signal:?}");
    // PCA ignores per-pair label swaps, so its control is noisier than DoM's.
    assert!((signal.perm_auroc - 0.5).abs() < 0.25, "{signal:?}");
    assert_eq!(choose_layers(&reports, N_LAYER, 1), vec![SIGNAL_LAYER]);
}

#[test]
fn fitted_directions_recover_the_planted_direction() {
    let layers = synthetic_layers(13, 1.5);
    let data = &layers[SIGNAL_LAYER as usize];
    let pos: Vec<&[f32]> = data.pos.iter().map(Vec::as_slice).collect();
    let neg: Vec<&[f32]> = data.neg.iter().map(Vec::as_slice).collect();
    let u = planted();
    for method in [Method::DiffOfMeans, Method::Pca] {
        let d = fit_direction(&pos, &neg, method, &[], 200);
        assert!((math::norm(&d) - 1.0).abs() < 1e-5);
        let cos = math::cosine(&d, &u);
        assert!(cos > 0.95, "{method:?}: cos {cos}");
    }
}

#[test]
fn neutral_basis_is_projected_out_of_fitted_directions() {
    let layers = synthetic_layers(14, 1.5);
    let data = &layers[SIGNAL_LAYER as usize];
    let pos: Vec<&[f32]> = data.pos.iter().map(Vec::as_slice).collect();
    let neg: Vec<&[f32]> = data.neg.iter().map(Vec::as_slice).collect();
    let basis = vec![(0..DIM)
        .map(|i| if i < 4 { 1.0 } else { 0.0 })
        .collect::<Vec<f32>>()];
    for method in [Method::DiffOfMeans, Method::Pca] {
        let d = fit_direction(&pos, &neg, method, &basis, 200);
        assert!(math::dot(&d, &basis[0]).abs() < 1e-5, "{method:?}");
        assert!((math::norm(&d) - 1.0).abs() < 1e-5);
    }
    // Removing an unrelated direction keeps the signal detectable.
    let mut with_basis = layers.clone();
    with_basis[SIGNAL_LAYER as usize].neutral_basis = basis;
    let reports = cross_validate(&with_basis, &CvConfig::default()).unwrap();
    assert_eq!(choose_layers(&reports, N_LAYER, 1), vec![SIGNAL_LAYER]);
}

#[test]
fn no_signal_anywhere_gives_chance_everywhere() {
    let layers = synthetic_layers(15, 0.0);
    let reports = cross_validate(&layers, &CvConfig::default()).unwrap();
    for r in &reports {
        assert!((r.cv_auroc - 0.5).abs() < 0.25, "{r:?}");
        assert!((r.perm_auroc - 0.5).abs() < 0.2, "{r:?}");
    }
}
