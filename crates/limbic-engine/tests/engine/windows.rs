//! Long runs, KV shift, batched decoding across sessions, restore from saved state, and
//! hyperparameter validation of crafted GGUF headers.

use super::{capture, engine, max_abs_diff, model, model_path, norm};
use limbic_engine::{Engine, EngineConfig, EngineError, Model, ModelOptions};

/// Rows of one layer for every token a sink saw, by (item, index).
type Rows = Vec<Vec<Vec<f32>>>;

fn engine_with(taps: &[u32], n_ctx: u32, n_batch: u32, max_sessions: u32) -> Engine {
    Engine::new(
        model(),
        EngineConfig {
            n_ctx,
            n_batch,
            max_sessions,
            taps: taps.to_vec(),
            threads: Some(2),
        },
    )
    .expect("engine")
}

fn tokens(text: &str) -> Vec<i32> {
    model().tokenize(text, false).expect("tokenize")
}

/// Relative max difference and cosine similarity of two rows.
fn compare(a: &[f32], b: &[f32]) -> (f32, f32) {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    (
        max_abs_diff(a, b) / norm(a).max(1.0),
        dot / (norm(a) * norm(b)).max(f32::MIN_POSITIVE),
    )
}

fn step_text(i: usize) -> String {
    format!(
        " Step {i}: I opened the next failing check, read its log line by line and noted what it says about the cache."
    )
}

#[test]
fn a_run_longer_than_the_window_is_decoded_in_pieces_and_tapped_once() {
    // 256-token window; the run is ~4 windows long.
    let layer = 10;
    let mut e = engine(&[layer], 512, 2);
    let run: Vec<i32> = (0..40).flat_map(|i| tokens(&step_text(i))).collect();
    assert!(run.len() > 3 * e.session_window(), "run of {}", run.len());
    let mut seen = Vec::new();
    let outcome = e
        .append_tokens("long", &run, &mut |tap| {
            let row = tap.rows.layer(layer).expect("tapped layer");
            assert!(row.iter().all(|v| v.is_finite()));
            assert!((tap.pos as usize) < e_window());
            // Once the window has filled, every piece still sees a quarter window of context.
            if tap.index >= e_window() {
                assert!(
                    tap.pos as usize >= e_window() / 4,
                    "{} at {}",
                    tap.index,
                    tap.pos
                );
            }
            seen.push((tap.index, tap.token));
        })
        .expect("a long run is accepted");
    let expected: Vec<(usize, i32)> = run.iter().copied().enumerate().collect();
    assert_eq!(seen, expected, "every token exactly once, in order");
    assert_eq!(outcome.new_tokens, run.len());
    assert!(outcome.pieces > 1, "decoded in pieces: {outcome:?}");
    assert!(outcome.dropped_steps > 0);
    let retained = e.session_tokens("long").unwrap();
    assert!(retained.len() <= e.session_window());
    assert!(run.ends_with(retained), "the window holds the run's tail");
    let stats = e.stats();
    assert_eq!(
        stats.redecoded_tokens, 0,
        "overflow shifts, never re-decodes"
    );
    assert!(stats.shifts > 0);
    assert_eq!(stats.appended_tokens, run.len() as u64);

    // The same run where the KV cache may not shift: re-decodes, same tokens delivered.
    let mut r = engine(&[layer], 512, 2);
    r.set_kv_shift(false);
    let mut n = 0;
    let outcome = r
        .append_tokens("long", &run, &mut |tap| {
            assert_eq!(tap.index, n);
            if tap.index >= e_window() {
                assert!(
                    tap.pos as usize >= e_window() / 4,
                    "{} at {}",
                    tap.index,
                    tap.pos
                );
            }
            n += 1;
        })
        .expect("a long run is accepted without shifting");
    assert_eq!(n, run.len());
    assert!(outcome.redecoded_tokens > 0);
    assert_eq!(r.stats().shifts, 0);
}

/// The window of `engine(_, 512, 2)`.
fn e_window() -> usize {
    256
}

#[test]
fn kv_shift_keeps_a_long_session_going_close_to_a_fresh_decode() {
    let layer = 10;
    let mut e = engine(&[layer], 256, 1);
    assert!(e.kv_shift(), "SmolLM2's f16 KV cache supports K-shift");
    let mut last_rows = Vec::new();
    let mut shifted = 0;
    for i in 0..30 {
        let mut rows = Vec::new();
        let outcome = e
            .append_text("s", &step_text(i), &mut |t| {
                rows.push(t.rows.layer(layer).unwrap().to_vec())
            })
            .unwrap();
        assert_eq!(outcome.redecoded_tokens, 0, "step {i}: {outcome:?}");
        shifted += outcome.shifted_tokens;
        assert!(rows.iter().flatten().all(|v| v.is_finite()));
        assert!(e.session_len("s").unwrap() <= e.session_window());
        last_rows = rows;
    }
    let stats = e.stats();
    assert!(stats.shifts >= 3, "{stats:?}");
    assert_eq!(stats.shifted_out_tokens, shifted as u64);
    assert_eq!(stats.redecodes, 0);
    assert_eq!(stats.redecoded_tokens, 0);
    assert_eq!(stats.decoded_tokens, stats.appended_tokens);

    // A fresh decode of the retained window plus the last step.
    let retained = e.session_tokens("s").unwrap().to_vec();
    let last = tokens(&step_text(29));
    assert!(retained.ends_with(&last));
    let mut fresh = engine(&[layer], 256, 1);
    fresh
        .append_tokens("s", &retained[..retained.len() - last.len()], &mut |_| {})
        .unwrap();
    let mut rows = Vec::new();
    fresh
        .append_tokens("s", &last, &mut |t| {
            rows.push(t.rows.layer(layer).unwrap().to_vec())
        })
        .unwrap();
    assert_eq!(rows.len(), last_rows.len());
    let (mut worst_rel, mut worst_cos) = (0.0f32, 1.0f32);
    for (a, b) in rows.iter().zip(&last_rows) {
        let (rel, cos) = compare(a, b);
        worst_rel = worst_rel.max(rel);
        worst_cos = worst_cos.min(cos);
    }
    eprintln!("kv shift vs fresh decode: relative max diff {worst_rel}, min cosine {worst_cos}");
    // The retained keys were computed while older (now dropped) tokens were visible, so the
    // rows are close to, not equal to, a fresh decode. Measured on SmolLM2-135M Q4_1:
    // see ARCHITECTURE.md (limbic-engine invariants).
    assert!(worst_cos > 0.95, "min cosine {worst_cos}");
    assert!(worst_rel < 0.5, "relative max diff {worst_rel}");
}

#[test]
fn batched_decode_matches_sequential_decode() {
    let layers = [6, 29];
    let texts = [
        (
            "a",
            "I will run the migration only after the backup finishes.",
        ),
        (
            "b",
            "Everything is on fire and I must push this fix right now!",
        ),
        ("c", "Reading the config file to find the cache directory."),
        ("d", "The tests pass; next I update the changelog."),
    ];
    let follow = [
        ("a", " The backup finished, starting the migration."),
        ("c", " Found it under the home directory."),
        ("b", " I am forcing the push to main."),
        ("a", " Migration done, checking the row counts."),
        ("e", " A new session joins late."),
    ];
    // Small n_batch so a batch is split across several llama_decode calls; 4 sequences
    // for 5 sessions so that rounds and LRU eviction happen too.
    let mut batched = engine_with(&layers, 2048, 24, 4);
    let mut sequential = engine_with(&layers, 2048, 24, 4);
    let mut worst = 0.0f32;
    for items in [&texts[..], &follow[..]] {
        let owned: Vec<(&str, Vec<i32>)> = items.iter().map(|(s, t)| (*s, tokens(t))).collect();
        let refs: Vec<(&str, &[i32])> = owned.iter().map(|(s, t)| (*s, t.as_slice())).collect();
        let mut got: Rows = vec![Vec::new(); refs.len()];
        let mut order = vec![0usize; refs.len()];
        let results = batched.append_many(&refs, &mut |item, tap| {
            assert_eq!(tap.index, order[item], "item {item} in order");
            order[item] += 1;
            let mut row = tap.rows.layer(6).unwrap().to_vec();
            row.extend_from_slice(tap.rows.layer(29).unwrap());
            got[item].push(row);
        });
        for (i, r) in results.iter().enumerate() {
            let outcome = r.as_ref().expect("batched item");
            assert_eq!(outcome.new_tokens, refs[i].1.len());
            assert_eq!(got[i].len(), refs[i].1.len());
        }
        for (i, (session, toks)) in refs.iter().enumerate() {
            let mut want = Vec::new();
            sequential
                .append_tokens(session, toks, &mut |tap| {
                    let mut row = tap.rows.layer(6).unwrap().to_vec();
                    row.extend_from_slice(tap.rows.layer(29).unwrap());
                    want.push(row);
                })
                .unwrap();
            for (a, b) in want.iter().zip(&got[i]) {
                worst = worst.max(compare(a, b).0);
            }
        }
    }
    let stats = batched.stats();
    assert!(stats.batched_decodes > 0, "{stats:?}");
    assert!(
        stats.decode_calls < sequential.stats().decode_calls,
        "batching saves decode calls: {} vs {}",
        stats.decode_calls,
        sequential.stats().decode_calls
    );
    eprintln!("batched vs sequential: relative max diff {worst}");
    assert!(worst < 1e-3, "batched rows drifted: {worst}");
    for s in ["a", "b", "c", "d", "e"] {
        assert_eq!(batched.session_tokens(s), sequential.session_tokens(s));
    }
}

#[test]
fn batch_items_fail_alone_and_long_items_share_the_batch() {
    let layer = 8;
    let mut e = engine(&[layer], 512, 2);
    let long: Vec<i32> = (0..12).flat_map(|i| tokens(&step_text(i))).collect();
    assert!(long.len() > e.session_window());
    let short = tokens("A short calm step.");
    let items: Vec<(&str, &[i32])> = vec![
        ("x", &long),
        ("y", &[]),
        ("z", &short),
        ("w", &[99_999_999]),
        ("x", &short),
    ];
    let mut counts = [0usize; 5];
    let results = e.append_many(&items, &mut |item, _| counts[item] += 1);
    assert!(results[0].as_ref().is_ok_and(|o| o.pieces > 1));
    assert!(matches!(results[1], Err(EngineError::EmptyText)));
    assert!(results[2].is_ok());
    assert!(matches!(results[3], Err(EngineError::Decode(_))));
    assert!(
        results[4].is_ok(),
        "same session again, applied after the first"
    );
    assert_eq!(counts, [long.len(), 0, short.len(), 0, short.len()]);
    assert!(e.session_tokens("x").unwrap().ends_with(&short));
    assert!(!e.has_session("w") || e.session_len("w") == Some(0));
}

#[test]
fn evicted_sessions_restore_from_saved_state_like_a_fresh_decode() {
    let layer = 12;
    let first = "Session A starts with a calm review of the deployment logs.";
    let next = " A continues with the database checks.";
    let mut e = engine(&[layer], 2048, 2);
    capture(&mut e, "a", first);
    capture(&mut e, "b", "Session B is about the billing export.");
    capture(&mut e, "c", "Session C watches the robot arm.");
    assert!(!e.is_resident("a") && e.has_saved_state("a"));
    let bytes = e.stats().state_bytes;
    assert!(bytes > 0);
    let mut got = Vec::new();
    let outcome = e
        .append_text("a", next, &mut |t| {
            got.push(t.rows.layer(layer).unwrap().to_vec())
        })
        .unwrap();
    assert!(outcome.restored, "{outcome:?}");
    assert_eq!(outcome.redecoded_tokens, 0);
    let stats = e.stats();
    assert_eq!(stats.states_restored, 1);
    assert_eq!(stats.redecodes, 0);
    // "b" was evicted to make room for "a" and saved in turn.
    assert!(e.has_saved_state("b"));

    let mut fresh = engine(&[layer], 2048, 2);
    capture(&mut fresh, "a", first);
    let want = capture(&mut fresh, "a", next);
    let mut worst = 0.0f32;
    for (g, w) in got.iter().zip(&want) {
        worst = worst.max(compare(&w[0].1, g).0);
    }
    eprintln!("restored vs fresh decode: relative max diff {worst}");
    assert_eq!(got.len(), want.len());
    assert!(worst < 1e-3, "restore drifted: {worst}");

    // Over budget: nothing is saved and sessions are re-decoded instead.
    let mut tight = engine(&[layer], 2048, 2);
    tight.set_state_budget(1024);
    capture(&mut tight, "a", first);
    capture(&mut tight, "b", "Session B is about the billing export.");
    capture(&mut tight, "c", "Session C watches the robot arm.");
    assert!(!tight.has_saved_state("a"));
    let outcome = tight.append_text("a", next, &mut |_| {}).unwrap();
    assert!(!outcome.restored && outcome.redecoded_tokens > 0);
    assert!(tight.stats().states_dropped > 0);
    assert_eq!(tight.stats().state_bytes, 0);

    // Lowering the budget drops saved states; closing a session frees its state.
    e.set_state_budget(0);
    assert_eq!(e.stats().state_bytes, 0);
    assert!(!e.has_saved_state("b"));
}

#[test]
fn a_budget_keeps_the_most_recently_used_states() {
    let mut e = engine(&[4], 2048, 1);
    capture(&mut e, "a", "First session text about logs.");
    capture(&mut e, "b", "Second session text about logs.");
    let one = e.stats().state_bytes as usize;
    let len = e.session_len("a").unwrap();
    eprintln!("saved state: {one} bytes for {len} tokens");
    assert!(one > len * 1000, "keys and values of every layer");
    // Room for about one state: saving "b" must displace "a", never the reverse.
    e.set_state_budget(one + one / 2);
    capture(&mut e, "c", "Third session text about logs.");
    assert!(e.has_saved_state("b"));
    assert!(!e.has_saved_state("a"));
    assert!(e.stats().state_bytes as usize <= e.state_budget());
    e.close_session("b");
    assert_eq!(e.stats().state_bytes, 0);
}

/// The real model's metadata with one change, and a single placeholder tensor: every
/// crafted file would reach llama.cpp's hparam loading without limbic's check.
fn crafted(name: &str, edit: &dyn Fn(&mut limbic_gguf::GgufWriter)) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("limbic-engine-hparams-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let real = limbic_gguf::GgufFile::open(model_path()).unwrap();
    let mut w = limbic_gguf::GgufWriter::new();
    for (k, v) in real.metadata_entries() {
        w.set(k, v.clone());
    }
    edit(&mut w);
    w.add_tensor_f32("placeholder", &[4], vec![0.0; 4]);
    let path = dir.join(name);
    w.write(&path).unwrap();
    path
}

#[test]
fn absurd_hyperparameters_are_refused_before_llama_cpp_sees_them() {
    use limbic_gguf::{Value, ValueType};
    let opts = ModelOptions::default();
    let ff3 = Value::Array(ValueType::U32, vec![Value::U32(1536); 3]);
    let no_tokens = Value::Array(ValueType::String, vec![]);
    // (file, key, value, what the error must name)
    let cases = [
        (
            "zero-blocks.gguf",
            "llama.block_count",
            Value::U32(0),
            "llama.block_count",
        ),
        (
            "huge-blocks.gguf",
            "llama.block_count",
            Value::U32(100_000),
            "llama.block_count",
        ),
        (
            "text-blocks.gguf",
            "llama.block_count",
            Value::String("30".into()),
            "llama.block_count",
        ),
        (
            "zero-width.gguf",
            "llama.embedding_length",
            Value::U32(0),
            "llama.embedding_length",
        ),
        (
            "huge-width.gguf",
            "llama.embedding_length",
            Value::U64(1 << 40),
            "llama.embedding_length",
        ),
        (
            "zero-heads.gguf",
            "llama.attention.head_count",
            Value::U32(0),
            "llama.attention.head_count",
        ),
        (
            "odd-heads.gguf",
            "llama.attention.head_count",
            Value::U32(7),
            "divisible",
        ),
        (
            "zero-kv-heads.gguf",
            "llama.attention.head_count_kv",
            Value::U32(0),
            "head_count_kv",
        ),
        (
            "bad-kv-heads.gguf",
            "llama.attention.head_count_kv",
            Value::U32(5),
            "head_count_kv",
        ),
        (
            "short-ff.gguf",
            "llama.feed_forward_length",
            ff3,
            "feed_forward_length",
        ),
        (
            "zero-ctx.gguf",
            "llama.context_length",
            Value::U32(0),
            "llama.context_length",
        ),
        (
            "no-vocab.gguf",
            "tokenizer.ggml.tokens",
            no_tokens,
            "tokenizer.ggml.tokens",
        ),
    ];
    for (name, key, value, expect) in cases {
        let path = crafted(name, &|w| {
            w.set(key, value.clone());
        });
        let msg = match Model::load(&path, &opts) {
            Ok(_) => panic!("{name} loaded"),
            Err(e) => e.to_string(),
        };
        assert!(msg.contains(name) && msg.contains(expect), "{name}: {msg}");
        assert!(limbic_engine::check_model_file(&path).is_err());
    }
    // Control: the same header unchanged passes the check (llama.cpp then refuses the
    // placeholder tensors with an error, not an abort).
    let path = crafted("unchanged.gguf", &|_| {});
    let facts = limbic_engine::check_model_file(&path).expect("valid hparams");
    assert_eq!((facts.n_layer, facts.n_embd), (30, 576));
    assert!(matches!(
        Model::load(&path, &opts),
        Err(EngineError::Load { .. })
    ));
    if let Some(dir) = path.parent() {
        std::fs::remove_dir_all(dir).ok();
    }
}
