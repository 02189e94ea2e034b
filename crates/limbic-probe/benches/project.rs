//! Cost of scoring one token: projecting a 576-float residual row (SmolLM2-135M
//! width) onto 12 probes, alone and through the step accumulator.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use limbic_probe::{Probe, ProbeSet, StepAccumulator, TokenKind};

const N_EMBD: usize = 576;
const N_PROBES: usize = 12;
const N_EMOTIONS: usize = 6;
const LAYERS: [u32; 2] = [14, 20];

/// Deterministic pseudo-random values in [-1, 1) (no RNG dependency needed).
fn pseudo_random(seed: u32, len: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn bench_projection(c: &mut Criterion) {
    let directions: Vec<Vec<f32>> = (0..N_PROBES as u32)
        .map(|i| unit(pseudo_random(i + 1, N_EMBD)))
        .collect();
    // Realistic layout: 6 emotions x 2 tapped layers = 12 probes (one probe
    // per (emotion, layer), so 12 cannot share a single layer).
    let probes: Vec<Probe<'_>> = directions
        .iter()
        .enumerate()
        .map(|(i, direction)| Probe {
            emotion: i % N_EMOTIONS,
            layer: LAYERS[i / N_EMOTIONS],
            direction,
            mean: 0.1,
            std: 0.8,
        })
        .collect();
    let set = ProbeSet::from_probes(N_EMBD, N_EMOTIONS, &probes).expect("valid probe set");
    let row = pseudo_random(999, N_EMBD);

    c.bench_function("project 576-float row on 12 probes", |b| {
        b.iter(|| {
            let first = set.project(LAYERS[0], black_box(&row)).expect("finite row");
            let second = set.project(LAYERS[1], black_box(&row)).expect("finite row");
            black_box((first, second))
        })
    });

    let mut accumulator = StepAccumulator::new(&set);
    c.bench_function("feed_token 2 rows x 576 floats, 12 probes", |b| {
        b.iter(|| {
            accumulator
                .feed_token(
                    &set,
                    [(LAYERS[0], black_box(&row[..])), (LAYERS[1], &row[..])],
                    TokenKind::Scored,
                )
                .expect("finite rows");
        })
    });
}

criterion_group!(benches, bench_projection);
criterion_main!(benches);
