//! Direction math on activation rows: means, principal components, projections,
//! and rank statistics (AUROC with bootstrap and permutation controls).
//!
//! Sums are accumulated in f64: residual-stream activations have large offsets and
//! a few huge dimensions, where f32 accumulation loses the small differences that
//! carry the signal.
//!
//! Functions document their panics: they panic only on caller bugs (rows of
//! different lengths, empty inputs where a mean is needed). Code that handles user
//! data ([`crate::select`], [`crate::eval`]) validates shapes first and returns errors.

/// Dot product.
///
/// # Panics
/// If the lengths differ.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_f64(a, b) as f32
}

fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot: vectors of different lengths");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// Euclidean norm.
pub fn norm(v: &[f32]) -> f32 {
    dot_f64(v, v).sqrt() as f32
}

/// Scale `v` to unit length in place and return its original norm. A zero (or
/// non-finite) vector is left unchanged and its norm returned, so callers can tell.
pub fn normalize(v: &mut [f32]) -> f32 {
    let n = dot_f64(v, v).sqrt();
    if n > 0.0 && n.is_finite() {
        for x in v.iter_mut() {
            *x = (f64::from(*x) / n) as f32;
        }
    }
    n as f32
}

/// Cosine similarity; 0 when either vector is zero.
///
/// # Panics
/// If the lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let denom = dot_f64(a, a).sqrt() * dot_f64(b, b).sqrt();
    if denom > 0.0 {
        (dot_f64(a, b) / denom) as f32
    } else {
        0.0
    }
}

/// `rows` minus `mean`, in f64.
fn centered_f64(rows: &[&[f32]], mean: &[f64]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|row| {
            row.iter()
                .zip(mean)
                .map(|(&x, m)| f64::from(x) - m)
                .collect()
        })
        .collect()
}

fn mean_f64(rows: &[&[f32]]) -> Vec<f64> {
    assert!(!rows.is_empty(), "mean of zero rows");
    let dim = rows[0].len();
    let mut acc = vec![0.0f64; dim];
    for row in rows {
        assert_eq!(row.len(), dim, "rows of different lengths");
        for (a, &x) in acc.iter_mut().zip(row.iter()) {
            *a += f64::from(x);
        }
    }
    let n = rows.len() as f64;
    acc.iter_mut().for_each(|a| *a /= n);
    acc
}

/// Element-wise mean of the rows.
///
/// # Panics
/// If `rows` is empty or the rows differ in length.
pub fn mean_rows(rows: &[&[f32]]) -> Vec<f32> {
    mean_f64(rows).into_iter().map(|x| x as f32).collect()
}

/// `mean(pos) - mean(neg)`, not normalized.
///
/// # Panics
/// If either side is empty or the rows differ in length.
pub fn diff_of_means(pos: &[&[f32]], neg: &[&[f32]]) -> Vec<f32> {
    let mp = mean_f64(pos);
    let mn = mean_f64(neg);
    assert_eq!(mp.len(), mn.len(), "pos and neg rows of different lengths");
    mp.iter().zip(&mn).map(|(p, n)| (p - n) as f32).collect()
}

/// Mean and sample standard deviation (n - 1 denominator; 0 for fewer than two values).
/// `(NaN, NaN)` for an empty slice.
pub fn mean_std(values: &[f32]) -> (f32, f32) {
    if values.is_empty() {
        return (f32::NAN, f32::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    if values.len() < 2 {
        return (mean as f32, 0.0);
    }
    let ss: f64 = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum();
    (mean as f32, (ss / (n - 1.0)).sqrt() as f32)
}

/// First principal component of the rows (top eigenvector of their covariance) by
/// power iteration, as a unit vector.
///
/// The covariance is never formed: each step computes `C v = Σ (x-μ)((x-μ)·v) / n`,
/// O(rows × dim). The start vector is deterministic — the centered row with the
/// largest norm, which is almost never orthogonal to the top component — so the same
/// input always gives the same output. An eigenvector's sign is arbitrary; it is
/// fixed so that `dot(pc, align_to) >= 0` when `align_to` is given, otherwise so that
/// the largest-magnitude component is positive.
///
/// Returns a zero vector when the rows have no variance. Stops early once an
/// iteration moves the vector by less than 1e-7.
///
/// # Panics
/// If `rows` is empty, the rows differ in length, or `align_to` has another length.
pub fn first_principal_component(
    rows: &[&[f32]],
    iters: usize,
    align_to: Option<&[f32]>,
) -> Vec<f32> {
    let mean = mean_f64(rows);
    let centered = centered_f64(rows, &mean);
    let pc = power_iteration(&centered, iters);
    finish_component(pc, mean.len(), align_to)
}

/// The top `k` principal components (unit vectors, by decreasing variance), found by
/// repeated power iteration with deflation: after each component is found it is
/// projected out of the centered rows. Stops early (returning fewer than `k`) when
/// the remaining variance is zero. Signs follow the rule of
/// [`first_principal_component`] without a reference.
///
/// # Panics
/// If `rows` is empty or the rows differ in length.
pub fn top_components(rows: &[&[f32]], k: usize, iters: usize) -> Vec<Vec<f32>> {
    let mean = mean_f64(rows);
    let mut centered = centered_f64(rows, &mean);
    let mut components = Vec::with_capacity(k);
    for _ in 0..k {
        let Some(pc) = power_iteration(&centered, iters) else {
            break;
        };
        for row in &mut centered {
            let along: f64 = row.iter().zip(&pc).map(|(x, p)| x * p).sum();
            row.iter_mut().zip(&pc).for_each(|(x, p)| *x -= along * p);
        }
        components.push(finish_component(Some(pc), mean.len(), None));
    }
    components
}

/// Unit top eigenvector of the (already centered) rows' covariance, or `None` when
/// there is no variance.
fn power_iteration(centered: &[Vec<f64>], iters: usize) -> Option<Vec<f64>> {
    let dim = centered.first().map_or(0, Vec::len);
    let start = centered
        .iter()
        .max_by(|a, b| sq_norm(a).total_cmp(&sq_norm(b)))?;
    let start_norm = sq_norm(start).sqrt();
    if !(start_norm > 1e-30 && start_norm.is_finite()) {
        return None;
    }
    let mut v: Vec<f64> = start.iter().map(|x| x / start_norm).collect();
    for _ in 0..iters.max(1) {
        let mut next = vec![0.0f64; dim];
        for row in centered {
            let along: f64 = row.iter().zip(&v).map(|(x, p)| x * p).sum();
            next.iter_mut().zip(row).for_each(|(n, x)| *n += along * x);
        }
        let n = sq_norm(&next).sqrt();
        if !(n > 1e-30 && n.is_finite()) {
            // v is (numerically) in the null space: no variance left.
            return None;
        }
        next.iter_mut().for_each(|x| *x /= n);
        let moved = next
            .iter()
            .zip(&v)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        v = next;
        if moved < 1e-7 {
            break;
        }
    }
    Some(v)
}

fn sq_norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum()
}

fn finish_component(pc: Option<Vec<f64>>, dim: usize, align_to: Option<&[f32]>) -> Vec<f32> {
    let Some(pc) = pc else {
        return vec![0.0; dim];
    };
    let flip = match align_to {
        Some(reference) => {
            assert_eq!(reference.len(), pc.len(), "align_to has a different length");
            let d: f64 = pc
                .iter()
                .zip(reference)
                .map(|(p, &r)| p * f64::from(r))
                .sum();
            d < 0.0
        }
        None => pc
            .iter()
            .copied()
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .is_some_and(|largest| largest < 0.0),
    };
    let sign = if flip { -1.0 } else { 1.0 };
    pc.into_iter().map(|x| (sign * x) as f32).collect()
}

/// `v` with its components along `basis` removed. The basis need not be orthonormal:
/// it is orthonormalized first (modified Gram–Schmidt; vectors dependent on earlier
/// ones are skipped), so the result is orthogonal to every basis vector.
///
/// # Panics
/// If a basis vector's length differs from `v`'s.
pub fn project_out(v: &[f32], basis: &[Vec<f32>]) -> Vec<f32> {
    let orthonormal = orthonormalize(basis, v.len());
    let mut out: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
    for b in &orthonormal {
        let along: f64 = out.iter().zip(b).map(|(x, y)| x * y).sum();
        out.iter_mut().zip(b).for_each(|(x, y)| *x -= along * y);
    }
    out.into_iter().map(|x| x as f32).collect()
}

fn orthonormalize(basis: &[Vec<f32>], dim: usize) -> Vec<Vec<f64>> {
    let mut done: Vec<Vec<f64>> = Vec::with_capacity(basis.len());
    for b in basis {
        assert_eq!(b.len(), dim, "basis vector of a different length");
        let mut u: Vec<f64> = b.iter().map(|&x| f64::from(x)).collect();
        let original = sq_norm(&u).sqrt();
        for q in &done {
            let along: f64 = u.iter().zip(q).map(|(x, y)| x * y).sum();
            u.iter_mut().zip(q).for_each(|(x, y)| *x -= along * y);
        }
        let n = sq_norm(&u).sqrt();
        // Skip vectors (numerically) inside the span already covered.
        if n > 1e-9 * original.max(1e-30) && n.is_finite() {
            u.iter_mut().for_each(|x| *x /= n);
            done.push(u);
        }
    }
    done
}

/// Area under the ROC curve: the probability that a random positive scores higher
/// than a random negative, ties counting one half (Mann–Whitney U with mid-ranks).
///
/// `None` when either class is empty, the lengths differ, or a score is NaN.
pub fn auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the positives' ranks (1-based), tied runs sharing their mean rank.
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        // total_cmp separates -0.0 and 0.0; they are the same score.
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        let positives = order[i..=j].iter().filter(|&&k| labels[k]).count();
        rank_sum_pos += mid_rank * positives as f64;
        i = j + 1;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    let u = rank_sum_pos - p * (p + 1.0) / 2.0;
    Some(u / (p * n))
}

/// A tiny deterministic PRNG (SplitMix64): reproducible resampling and shuffles
/// without pulling in `rand`. Not for anything security-related.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (Lemire's multiply-and-reject, so no modulo bias).
    ///
    /// # Panics
    /// If `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "below(0)");
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// Confidence level of [`bootstrap_auroc_ci`].
pub const BOOTSTRAP_CONFIDENCE: f64 = 0.95;

/// Percentile bootstrap 95% confidence interval of the AUROC from `resamples`
/// stratified resamples (positives and negatives resampled separately, so every
/// resample has both classes). Deterministic for a given `seed`.
///
/// `None` when [`auroc`] is undefined for the input or `resamples` is 0.
pub fn bootstrap_auroc_ci(
    scores: &[f32],
    labels: &[bool],
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    auroc(scores, labels)?;
    if resamples == 0 {
        return None;
    }
    let pos: Vec<f32> = scores
        .iter()
        .zip(labels)
        .filter(|(_, &l)| l)
        .map(|(&s, _)| s)
        .collect();
    let neg: Vec<f32> = scores
        .iter()
        .zip(labels)
        .filter(|(_, &l)| !l)
        .map(|(&s, _)| s)
        .collect();
    let mut rng = SplitMix64::new(seed);
    let mut sample_scores = Vec::with_capacity(scores.len());
    let mut sample_labels = Vec::with_capacity(scores.len());
    let mut stats = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        sample_scores.clear();
        sample_labels.clear();
        for (side, label) in [(&pos, true), (&neg, false)] {
            for _ in 0..side.len() {
                sample_scores.push(side[rng.below(side.len() as u64) as usize]);
                sample_labels.push(label);
            }
        }
        // Both classes are present by construction, so this is always Some.
        if let Some(a) = auroc(&sample_scores, &sample_labels) {
            stats.push(a);
        }
    }
    stats.sort_by(f64::total_cmp);
    let tail = (1.0 - BOOTSTRAP_CONFIDENCE) / 2.0;
    Some((quantile(&stats, tail), quantile(&stats, 1.0 - tail)))
}

/// Linear-interpolated quantile of sorted, non-empty data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] * (1.0 - frac) + sorted[hi] * frac
}

/// Result of a label-permutation test of an AUROC.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PermutationTest {
    /// AUROC with the real labels.
    pub observed: f64,
    /// Mean AUROC over label permutations (≈ 0.5 when scores and labels are unrelated).
    pub null_mean: f64,
    /// One-sided p-value `(1 + #{permuted >= observed}) / (1 + permutations)`.
    pub p_value: f64,
}

/// Shuffle the labels `permutations` times and compare the observed AUROC with the
/// resulting null distribution. Deterministic for a given `seed`.
///
/// `None` when [`auroc`] is undefined for the input or `permutations` is 0.
pub fn permutation_auroc(
    scores: &[f32],
    labels: &[bool],
    permutations: usize,
    seed: u64,
) -> Option<PermutationTest> {
    let observed = auroc(scores, labels)?;
    if permutations == 0 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut shuffled = labels.to_vec();
    let mut sum = 0.0;
    let mut at_least_as_high = 0usize;
    for _ in 0..permutations {
        rng.shuffle(&mut shuffled);
        // Shuffling keeps both classes, so this is always Some.
        let a = auroc(scores, &shuffled).unwrap_or(0.5);
        sum += a;
        // Tolerance so exact ties with the observed value count as "as high".
        if a >= observed - 1e-12 {
            at_least_as_high += 1;
        }
    }
    Some(PermutationTest {
        observed,
        null_mean: sum / permutations as f64,
        p_value: (1 + at_least_as_high) as f64 / (1 + permutations) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rows(v: &[Vec<f32>]) -> Vec<&[f32]> {
        v.iter().map(Vec::as_slice).collect()
    }

    /// Gaussian-ish noise from the crate RNG (sum of uniforms; exact shape irrelevant).
    fn noise(rng: &mut SplitMix64, dim: usize, scale: f32) -> Vec<f32> {
        (0..dim)
            .map(|_| {
                let s: f64 = (0..4).map(|_| rng.next_f64() - 0.5).sum();
                s as f32 * scale
            })
            .collect()
    }

    fn planted_direction(dim: usize) -> Vec<f32> {
        let mut u: Vec<f32> = (0..dim).map(|i| ((i * 7 % 11) as f32) - 5.0).collect();
        normalize(&mut u);
        u
    }

    #[test]
    fn basic_vector_ops() {
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, -5.0, 6.0]), 12.0);
        assert_eq!(norm(&[3.0, 4.0]), 5.0);
        let mut v = vec![3.0, 4.0];
        assert_eq!(normalize(&mut v), 5.0);
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        let mut zero = vec![0.0, 0.0];
        assert_eq!(normalize(&mut zero), 0.0);
        assert_eq!(zero, vec![0.0, 0.0]);
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn means_and_std() {
        let data = [vec![1.0, 10.0], vec![3.0, 20.0]];
        assert_eq!(mean_rows(&rows(&data)), vec![2.0, 15.0]);
        let neg = [vec![0.0, 0.0]];
        assert_eq!(diff_of_means(&rows(&data), &rows(&neg)), vec![2.0, 15.0]);
        let (m, s) = mean_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(m, 5.0);
        // Sample std of this classic set: sqrt(32/7).
        assert!((s - (32.0f32 / 7.0).sqrt()).abs() < 1e-6);
        assert_eq!(mean_std(&[3.0]), (3.0, 0.0));
        assert!(mean_std(&[]).0.is_nan());
    }

    #[test]
    fn diff_of_means_recovers_planted_direction() {
        let dim = 64;
        let u = planted_direction(dim);
        let mut rng = SplitMix64::new(1);
        let base: Vec<f32> = noise(&mut rng, dim, 4.0);
        let make = |rng: &mut SplitMix64, shift: f32| -> Vec<f32> {
            let n = noise(rng, dim, 1.0);
            base.iter()
                .zip(&n)
                .zip(&u)
                .map(|((b, e), d)| b + e + shift * d)
                .collect()
        };
        // Expected cosine ≈ 0.98: signal 4 against a mean-noise norm ≈ 0.65.
        let pos: Vec<Vec<f32>> = (0..100).map(|_| make(&mut rng, 2.0)).collect();
        let neg: Vec<Vec<f32>> = (0..100).map(|_| make(&mut rng, -2.0)).collect();
        let mut d = diff_of_means(&rows(&pos), &rows(&neg));
        normalize(&mut d);
        assert!(cosine(&d, &u) > 0.95, "cos = {}", cosine(&d, &u));
    }

    #[test]
    fn pca_recovers_planted_direction_with_sign() {
        let dim = 64;
        let u = planted_direction(dim);
        let mut rng = SplitMix64::new(2);
        // Variance 9 along u, ~1/12 per coordinate elsewhere.
        let data: Vec<Vec<f32>> = (0..200)
            .map(|_| {
                let a = (rng.next_f64() as f32 - 0.5) * 10.0;
                let n = noise(&mut rng, dim, 1.0);
                n.iter().zip(&u).map(|(e, d)| e + a * d + 7.0).collect()
            })
            .collect();
        let pc = first_principal_component(&rows(&data), 200, Some(&u));
        assert!((norm(&pc) - 1.0).abs() < 1e-5);
        assert!(cosine(&pc, &u) > 0.95, "cos = {}", cosine(&pc, &u));
        let neg_u: Vec<f32> = u.iter().map(|x| -x).collect();
        let flipped = first_principal_component(&rows(&data), 200, Some(&neg_u));
        assert!(cosine(&flipped, &u) < -0.95);
        // Deterministic.
        assert_eq!(pc, first_principal_component(&rows(&data), 200, Some(&u)));
    }

    #[test]
    fn pca_of_constant_rows_is_zero() {
        let data = [vec![1.0, 2.0], vec![1.0, 2.0]];
        assert_eq!(
            first_principal_component(&rows(&data), 50, None),
            vec![0.0, 0.0]
        );
        assert!(top_components(&rows(&data), 3, 50).is_empty());
    }

    #[test]
    fn top_components_are_orthonormal_and_ordered() {
        let dim = 16;
        let mut rng = SplitMix64::new(3);
        let e = |i: usize| -> Vec<f32> { (0..dim).map(|j| f32::from(u8::from(j == i))).collect() };
        let (e0, e1) = (e(3), e(9));
        let data: Vec<Vec<f32>> = (0..300)
            .map(|_| {
                let a = (rng.next_f64() as f32 - 0.5) * 20.0;
                let b = (rng.next_f64() as f32 - 0.5) * 8.0;
                let n = noise(&mut rng, dim, 0.2);
                (0..dim).map(|j| n[j] + a * e0[j] + b * e1[j]).collect()
            })
            .collect();
        let pcs = top_components(&rows(&data), 2, 300);
        assert_eq!(pcs.len(), 2);
        assert!(cosine(&pcs[0], &e0).abs() > 0.99);
        assert!(cosine(&pcs[1], &e1).abs() > 0.99);
        assert!(dot(&pcs[0], &pcs[1]).abs() < 1e-4);
    }

    #[test]
    fn project_out_leaves_vector_orthogonal() {
        let v = vec![1.0, 2.0, 3.0, 4.0];
        // Non-orthogonal, non-normalized basis with a dependent vector.
        let basis = vec![
            vec![1.0, 1.0, 0.0, 0.0],
            vec![0.0, 2.0, 2.0, 0.0],
            vec![2.0, 4.0, 2.0, 0.0],
        ];
        let out = project_out(&v, &basis);
        for b in &basis {
            assert!(dot(&out, b).abs() < 1e-5, "{out:?} · {b:?}");
        }
        // The part outside the span (the 4th axis and the orthogonal remainder) survives.
        assert!((out[3] - 4.0).abs() < 1e-6);
        assert_eq!(project_out(&v, &[]), v);
    }

    #[test]
    fn auroc_hand_computed_cases() {
        assert_eq!(
            auroc(&[0.9, 0.8, 0.1, 0.2], &[true, true, false, false]),
            Some(1.0)
        );
        assert_eq!(
            auroc(&[0.1, 0.2, 0.9, 0.8], &[true, true, false, false]),
            Some(0.0)
        );
        // Pairs (pos, neg): (0.8,0.5) win, (0.8,0.9) loss, (0.3,0.5) loss, (0.3,0.9) loss.
        assert_eq!(
            auroc(&[0.8, 0.3, 0.5, 0.9], &[true, true, false, false]),
            Some(0.25)
        );
        // All tied: one half.
        assert_eq!(auroc(&[1.0; 4], &[true, false, true, false]), Some(0.5));
        // One tie among four pairs: (2 vs 1) win, (2 vs 2) half, (3 vs 1) win, (3 vs 2) win.
        assert_eq!(
            auroc(&[2.0, 3.0, 1.0, 2.0], &[true, true, false, false]),
            Some(3.5 / 4.0)
        );
        assert_eq!(auroc(&[0.0, -0.0], &[true, false]), Some(0.5));
        assert_eq!(auroc(&[1.0, 2.0], &[true, true]), None);
        assert_eq!(auroc(&[1.0], &[true, false]), None);
        assert_eq!(auroc(&[f32::NAN, 1.0], &[true, false]), None);
    }

    #[test]
    fn bootstrap_ci_brackets_estimate_and_is_deterministic() {
        let mut rng = SplitMix64::new(5);
        let labels: Vec<bool> = (0..80).map(|i| i % 2 == 0).collect();
        let scores: Vec<f32> = labels
            .iter()
            .map(|&l| rng.next_f64() as f32 + if l { 0.4 } else { 0.0 })
            .collect();
        let a = auroc(&scores, &labels).unwrap();
        let (lo, hi) = bootstrap_auroc_ci(&scores, &labels, 500, 9).unwrap();
        assert!(lo < a && a < hi, "{lo} < {a} < {hi}");
        assert!(hi - lo < 0.4 && hi <= 1.0 && lo >= 0.0);
        assert_eq!(bootstrap_auroc_ci(&scores, &labels, 500, 9), Some((lo, hi)));
        assert_eq!(bootstrap_auroc_ci(&scores, &labels, 0, 9), None);
    }

    #[test]
    fn permutation_null_is_near_half() {
        let labels: Vec<bool> = (0..100).map(|i| i % 2 == 0).collect();
        let separable: Vec<f32> = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| i as f32 + if l { 1000.0 } else { 0.0 })
            .collect();
        let test = permutation_auroc(&separable, &labels, 200, 4).unwrap();
        assert_eq!(test.observed, 1.0);
        assert!((test.null_mean - 0.5).abs() < 0.05, "{}", test.null_mean);
        assert!(test.p_value < 0.01);
        let mut rng = SplitMix64::new(8);
        let random: Vec<f32> = labels.iter().map(|_| rng.next_f64() as f32).collect();
        let test = permutation_auroc(&random, &labels, 200, 4).unwrap();
        assert!(test.p_value > 0.01, "{}", test.p_value);
    }

    #[test]
    fn splitmix_is_deterministic_and_unbiased_enough() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[a.below(3) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        let mut items: Vec<u32> = (0..50).collect();
        a.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(items, sorted);
    }

    fn scored_labels() -> impl Strategy<Value = (Vec<f32>, Vec<bool>)> {
        prop::collection::vec((-100i32..100, any::<bool>()), 2..60).prop_map(|v| {
            // Integer-valued scores make ties common.
            v.into_iter().map(|(s, l)| (s as f32 / 4.0, l)).unzip()
        })
    }

    proptest! {
        #[test]
        fn auroc_of_negated_scores_is_complement((scores, labels) in scored_labels()) {
            let negated: Vec<f32> = scores.iter().map(|s| -s).collect();
            match (auroc(&scores, &labels), auroc(&negated, &labels)) {
                (Some(a), Some(b)) => prop_assert!((a + b - 1.0).abs() < 1e-12),
                (None, None) => {}
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn auroc_is_invariant_to_monotone_transforms((scores, labels) in scored_labels()) {
            let transformed: Vec<f32> = scores.iter().map(|s| (s / 8.0).exp() * 3.0 + 1.0).collect();
            prop_assert_eq!(auroc(&scores, &labels), auroc(&transformed, &labels));
        }

        #[test]
        fn auroc_matches_pairwise_count((scores, labels) in scored_labels()) {
            let mut wins = 0.0;
            let mut pairs = 0.0;
            for (i, &li) in labels.iter().enumerate() {
                for (j, &lj) in labels.iter().enumerate() {
                    if li && !lj {
                        pairs += 1.0;
                        if scores[i] > scores[j] { wins += 1.0 } else if scores[i] == scores[j] { wins += 0.5 }
                    }
                }
            }
            let expected = if pairs > 0.0 { Some(wins / pairs) } else { None };
            match (auroc(&scores, &labels), expected) {
                (Some(a), Some(e)) => prop_assert!((a - e).abs() < 1e-12),
                (a, e) => prop_assert_eq!(a, e),
            }
        }

        #[test]
        fn project_out_is_orthogonal_to_random_basis(
            v in prop::collection::vec(-10f32..10.0, 8),
            basis in prop::collection::vec(prop::collection::vec(-10f32..10.0, 8), 0..5),
        ) {
            let out = project_out(&v, &basis);
            for b in &basis {
                let scale = norm(b) * norm(&v) + 1.0;
                prop_assert!(dot(&out, b).abs() / scale < 1e-4);
            }
            // Removing components never lengthens the vector.
            prop_assert!(norm(&out) <= norm(&v) * (1.0 + 1e-5) + 1e-6);
        }

        #[test]
        fn normalize_gives_unit_length(v in prop::collection::vec(-1e3f32..1e3, 1..32)) {
            let mut w = v.clone();
            let n = normalize(&mut w);
            if n > 1e-3 {
                prop_assert!((norm(&w) - 1.0).abs() < 1e-5);
            }
        }
    }
}
