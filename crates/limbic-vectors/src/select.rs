//! Cross-validated layer selection for matched (emotional, neutral) prompt pairs.
//!
//! For each candidate layer the input is, per pair `i`, the pooled activation row of
//! the emotional prompt (`pos[i]`) and of its matched counterpart (`neg[i]`). The
//! pairs are split into k folds (by pair, so the two members of a pair are never on
//! different sides of a split); a direction is fitted on the training folds and the
//! held-out rows are scored by projection onto it. The held-out scores of all folds
//! are pooled into one AUROC (`cv_auroc`).
//!
//! The **permutation control** (`perm_auroc`) repeats the same cross-validation after
//! swapping the labels within a random half of the pairs (seeded). That destroys any
//! consistent emotional direction, so it should come out near 0.5; a value well above
//! 0.5 means the pipeline itself leaks (for example the same prompt appearing in
//! several pairs, or a bug in the fold split), and the layer's `cv_auroc` cannot be
//! trusted. Layers are ranked by `cv_auroc - perm_auroc`.

use serde::{Deserialize, Serialize};

use crate::math::{self, SplitMix64};

/// How a direction is fitted from matched pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `mean(pos) - mean(neg)` (the mean of the pair differences).
    DiffOfMeans,
    /// First principal component of the pair differences, sign-aligned with the
    /// difference of means. Computed on the differences and their negations, whose
    /// mean is zero, so the component captures the shared direction of the
    /// differences rather than their spread around it.
    Pca,
}

/// Activation rows for one candidate layer.
#[derive(Clone, Debug, Default)]
pub struct LayerData {
    /// 0-based block index (`l_out-<layer>`).
    pub layer: u32,
    /// Row `i` of `pos` and row `i` of `neg` belong to pair `i`.
    pub pos: Vec<Vec<f32>>,
    pub neg: Vec<Vec<f32>>,
    /// Directions to remove from every fitted direction (e.g. the top principal
    /// components of neutral text at this layer); may be empty.
    pub neutral_basis: Vec<Vec<f32>>,
}

/// Cross-validation settings.
#[derive(Clone, Debug)]
pub struct CvConfig {
    /// Number of folds (capped at the number of pairs; at least 2).
    pub folds: usize,
    pub method: Method,
    /// Seeds the fold split and the permutation control.
    pub seed: u64,
    /// Label-swap rounds averaged into `perm_auroc` (at least 1).
    pub permutation_rounds: usize,
    /// Power-iteration steps for [`Method::Pca`].
    pub pca_iters: usize,
}

impl Default for CvConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            method: Method::DiffOfMeans,
            seed: 0x00c0_ffee,
            permutation_rounds: 5,
            pca_iters: 100,
        }
    }
}

/// Selection evidence for one layer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    pub layer: u32,
    /// Held-out AUROC of the real labels.
    pub cv_auroc: f64,
    /// Held-out AUROC with labels swapped in a random half of the pairs (≈ 0.5 expected).
    pub perm_auroc: f64,
}

impl LayerReport {
    /// What the chooser ranks by.
    pub fn margin(&self) -> f64 {
        self.cv_auroc - self.perm_auroc
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("layer {layer}: {problem}")]
    InvalidInput { layer: u32, problem: String },
}

/// Fit a unit direction from matched pairs (`pos[i]` with `neg[i]`), remove the
/// `neutral_basis` components, and normalize. A zero vector when nothing is left.
///
/// # Panics
/// If the sides are empty, differ in length, or rows differ in length (use
/// [`cross_validate_layer`] for validated input).
pub fn fit_direction(
    pos: &[&[f32]],
    neg: &[&[f32]],
    method: Method,
    neutral_basis: &[Vec<f32>],
    pca_iters: usize,
) -> Vec<f32> {
    assert_eq!(pos.len(), neg.len(), "pos and neg must be matched pairs");
    let mean_diff = math::diff_of_means(pos, neg);
    let raw = match method {
        Method::DiffOfMeans => mean_diff,
        Method::Pca => {
            let diffs: Vec<Vec<f32>> = pos
                .iter()
                .zip(neg)
                .map(|(p, n)| p.iter().zip(n.iter()).map(|(a, b)| a - b).collect())
                .collect();
            let negated: Vec<Vec<f32>> = diffs
                .iter()
                .map(|d| d.iter().map(|x| -x).collect())
                .collect();
            let rows: Vec<&[f32]> = diffs.iter().chain(&negated).map(Vec::as_slice).collect();
            math::first_principal_component(&rows, pca_iters, Some(&mean_diff))
        }
    };
    let mut direction = if neutral_basis.is_empty() {
        raw
    } else {
        math::project_out(&raw, neutral_basis)
    };
    if math::normalize(&mut direction) <= 0.0 {
        direction.iter_mut().for_each(|x| *x = 0.0);
    }
    direction
}

/// Cross-validate one layer (see the module docs).
pub fn cross_validate_layer(
    data: &LayerData,
    config: &CvConfig,
) -> Result<LayerReport, SelectError> {
    validate(data, config)?;
    let pos: Vec<&[f32]> = data.pos.iter().map(Vec::as_slice).collect();
    let neg: Vec<&[f32]> = data.neg.iter().map(Vec::as_slice).collect();
    let n = pos.len();
    let k = config.folds.min(n);

    // Same split for every layer (it depends only on the seed and the pair count).
    let mut order: Vec<usize> = (0..n).collect();
    SplitMix64::new(config.seed).shuffle(&mut order);
    let mut fold_of = vec![0usize; n];
    for (position, &pair) in order.iter().enumerate() {
        fold_of[pair] = position % k;
    }

    let cv_auroc = pooled_cv_auroc(&pos, &neg, &fold_of, k, data, config);

    let mut swap_rng = SplitMix64::new(config.seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut perm_sum = 0.0;
    for _ in 0..config.permutation_rounds {
        let (mut p, mut q) = (pos.clone(), neg.clone());
        for i in 0..n {
            if swap_rng.coin() {
                std::mem::swap(&mut p[i], &mut q[i]);
            }
        }
        perm_sum += pooled_cv_auroc(&p, &q, &fold_of, k, data, config);
    }
    // validate() guarantees at least one round.
    let perm_auroc = perm_sum / config.permutation_rounds as f64;
    Ok(LayerReport {
        layer: data.layer,
        cv_auroc,
        perm_auroc,
    })
}

/// Cross-validate every layer, in input order.
pub fn cross_validate(
    layers: &[LayerData],
    config: &CvConfig,
) -> Result<Vec<LayerReport>, SelectError> {
    layers
        .iter()
        .map(|data| cross_validate_layer(data, config))
        .collect()
}

fn pooled_cv_auroc(
    pos: &[&[f32]],
    neg: &[&[f32]],
    fold_of: &[usize],
    k: usize,
    data: &LayerData,
    config: &CvConfig,
) -> f64 {
    let mut scores = Vec::with_capacity(pos.len() * 2);
    let mut labels = Vec::with_capacity(pos.len() * 2);
    for fold in 0..k {
        fn outside_fold<'a>(side: &[&'a [f32]], fold_of: &[usize], fold: usize) -> Vec<&'a [f32]> {
            side.iter()
                .zip(fold_of)
                .filter(|(_, &f)| f != fold)
                .map(|(row, _)| *row)
                .collect()
        }
        let direction = fit_direction(
            &outside_fold(pos, fold_of, fold),
            &outside_fold(neg, fold_of, fold),
            config.method,
            &data.neutral_basis,
            config.pca_iters,
        );
        for i in (0..pos.len()).filter(|&i| fold_of[i] == fold) {
            scores.push(math::dot(&direction, pos[i]));
            labels.push(true);
            scores.push(math::dot(&direction, neg[i]));
            labels.push(false);
        }
    }
    // Every held-out pair adds one row of each class and rows are finite (validated),
    // so the AUROC is defined; 0.5 (chance) is the neutral fallback regardless.
    math::auroc(&scores, &labels).unwrap_or(0.5)
}

fn validate(data: &LayerData, config: &CvConfig) -> Result<(), SelectError> {
    let fail = |problem: String| {
        Err(SelectError::InvalidInput {
            layer: data.layer,
            problem,
        })
    };
    if data.pos.len() != data.neg.len() {
        return fail(format!(
            "{} positive rows but {} negative rows; pairs must be matched",
            data.pos.len(),
            data.neg.len()
        ));
    }
    if data.pos.len() < 2 {
        return fail(format!(
            "{} pairs; cross-validation needs at least 2",
            data.pos.len()
        ));
    }
    if config.folds < 2 {
        return fail(format!("{} folds; at least 2 are needed", config.folds));
    }
    if config.permutation_rounds == 0 {
        return fail(
            "permutation_rounds is 0; the permutation control needs at least 1".to_owned(),
        );
    }
    let dim = data.pos[0].len();
    if dim == 0 {
        return fail("activation rows are empty".to_owned());
    }
    for (side, rows) in [
        ("pos", &data.pos),
        ("neg", &data.neg),
        ("neutral_basis", &data.neutral_basis),
    ] {
        for (i, row) in rows.iter().enumerate() {
            if row.len() != dim {
                return fail(format!(
                    "{side}[{i}] has {} values, expected {dim}",
                    row.len()
                ));
            }
            if let Some(j) = row.iter().position(|v| !v.is_finite()) {
                return fail(format!("{side}[{i}] has a non-finite value at index {j}"));
            }
        }
    }
    Ok(())
}

/// Pick up to `count` layers, best first, by `cv_auroc - perm_auroc`.
///
/// Margins equal to 1e-9 are ties, broken toward the middle of the network (middle
/// layers carry the most abstract, steerable features), then toward the lower layer.
/// Layer 0 and layers `>= n_layer` are skipped: layer 0 cannot be stored in a
/// llama.cpp control vector (see [`crate::cvec`]). Reports with a NaN margin are skipped.
pub fn choose_layers(reports: &[LayerReport], n_layer: u32, count: usize) -> Vec<u32> {
    let mut candidates: Vec<(i64, u64, u32)> = reports
        .iter()
        .filter(|r| r.layer >= 1 && r.layer < n_layer && r.margin().is_finite())
        .map(|r| {
            // Margins lie in [-1, 1], so the scaled value fits an i64 comfortably.
            let margin_key = -(r.margin() * 1e9).round() as i64;
            // Twice the distance to the middle, in integers: |2L - (n_layer - 1)|.
            let distance = (2 * i64::from(r.layer) - (i64::from(n_layer) - 1)).unsigned_abs();
            (margin_key, distance, r.layer)
        })
        .collect();
    candidates.sort_unstable();
    candidates.dedup_by_key(|c| c.2);
    candidates.into_iter().take(count).map(|c| c.2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(layer: u32, cv: f64, perm: f64) -> LayerReport {
        LayerReport {
            layer,
            cv_auroc: cv,
            perm_auroc: perm,
        }
    }

    #[test]
    fn chooser_ranks_by_margin_and_breaks_ties_toward_middle() {
        let reports = [
            report(0, 1.0, 0.5), // never chosen: layer 0
            report(2, 0.9, 0.5),
            report(14, 0.9, 0.5),
            report(15, 0.9, 0.5),
            report(20, 0.95, 0.7),
            report(25, 0.99, 0.5),
            report(31, 1.0, 0.5), // beyond n_layer
        ];
        // n_layer 30: middle is 14.5, so 14 and 15 tie on distance; the lower wins.
        assert_eq!(choose_layers(&reports, 30, 4), vec![25, 14, 15, 2]);
        assert_eq!(choose_layers(&reports, 30, 1), vec![25]);
        assert!(choose_layers(&[], 30, 3).is_empty());
        let nan = [report(3, f64::NAN, 0.5), report(4, 0.6, 0.5)];
        assert_eq!(choose_layers(&nan, 30, 2), vec![4]);
    }

    #[test]
    fn invalid_input_is_reported_with_layer() {
        let config = CvConfig::default();
        let mut data = LayerData {
            layer: 7,
            pos: vec![vec![1.0, 2.0]; 3],
            neg: vec![vec![1.0, 2.0]; 2],
            neutral_basis: vec![],
        };
        let err = cross_validate_layer(&data, &config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer 7") && err.contains("matched"), "{err}");
        data.neg.push(vec![1.0]);
        let err = cross_validate_layer(&data, &config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("neg[2] has 1 values, expected 2"), "{err}");
        data.neg[2] = vec![f32::NAN, 0.0];
        let err = cross_validate_layer(&data, &config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("non-finite"), "{err}");
        data.neg[2] = vec![0.0, 0.0];
        data.neutral_basis = vec![vec![1.0, 0.0, 0.0]];
        let err = cross_validate_layer(&data, &config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("neutral_basis[0]"), "{err}");
        data.neutral_basis.clear();
        assert!(cross_validate_layer(&data, &config).is_ok());
        let no_control = CvConfig {
            permutation_rounds: 0,
            ..CvConfig::default()
        };
        let err = cross_validate_layer(&data, &no_control)
            .unwrap_err()
            .to_string();
        assert!(err.contains("permutation_rounds"), "{err}");
        let one_fold = CvConfig {
            folds: 1,
            ..CvConfig::default()
        };
        assert!(cross_validate_layer(&data, &one_fold).is_err());
    }
}
