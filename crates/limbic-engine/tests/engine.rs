//! Engine tests on the real default model (SmolLM2-135M-Instruct Q4_1).
//! The model is found through `LIMBIC_TEST_MODEL`, else limbic's model cache
//! (`$LIMBIC_HOME`, else ~/.cache/limbic); `limbic model fetch` puts it there.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use limbic_engine::{
    CopyFormat, CpuCopy, Engine, EngineConfig, EngineError, GenerateParams, Grammar, Model,
    ModelOptions, StopReason,
};

#[path = "engine/windows.rs"]
mod windows;

const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LIMBIC_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("LIMBIC_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/limbic")))
        .expect("HOME or LIMBIC_HOME must be set");
    let path = home.join("models").join(MODEL_FILE);
    assert!(
        path.exists(),
        "{} is missing: run `cargo run -p limbic -- model fetch` first (or set LIMBIC_TEST_MODEL)",
        path.display()
    );
    path
}

fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| Model::load(&model_path(), &ModelOptions::default()).expect("load model"))
        .clone()
}

fn engine(taps: &[u32], n_ctx: u32, max_sessions: u32) -> Engine {
    Engine::new(
        model(),
        EngineConfig {
            n_ctx,
            n_batch: 512,
            max_sessions,
            taps: taps.to_vec(),
            threads: Some(2),
        },
    )
    .expect("engine")
}

/// Rows per (token index, layer) for one append.
fn capture(engine: &mut Engine, session: &str, text: &str) -> Vec<Vec<(u32, Vec<f32>)>> {
    let mut rows = Vec::new();
    engine
        .append_text(session, text, &mut |tap| {
            assert_eq!(tap.index, rows.len(), "tokens arrive in order");
            rows.push(tap.rows.iter().map(|(l, r)| (l, r.to_vec())).collect());
        })
        .expect("append");
    rows
}

/// A user message in the model's chat template, ready to generate from.
fn chat_prompt(user: &str) -> Vec<i32> {
    let m = model();
    let prompt = m
        .apply_chat_template(&[limbic_engine::ChatMessage::new("user", user)], true)
        .unwrap();
    m.tokenize_templated(&prompt, false).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn norm(a: &[f32]) -> f32 {
    a.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn model_identity_is_read() {
    let m = model();
    let info = m.info();
    assert_eq!(info.arch, "llama");
    assert_eq!(info.n_layer, 30);
    assert_eq!(info.n_embd, 576);
    assert_eq!(info.n_vocab, 49152);
    assert_eq!(
        info.sha256,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert!(info
        .chat_template
        .as_deref()
        .unwrap_or("")
        .contains("im_start"));
    let templated = m
        .apply_chat_template(&[limbic_engine::ChatMessage::new("user", "hi")], true)
        .unwrap();
    assert!(templated.contains("<|im_start|>user\nhi<|im_end|>"));
    let toks = m.tokenize_templated(&templated, false).unwrap();
    assert!(
        toks.len() < 12,
        "control markers become single tokens: {toks:?}"
    );
    assert_eq!(
        m.detokenize(&m.tokenize("hello world", false).unwrap()),
        "hello world"
    );
}

#[test]
fn taps_deliver_every_token_for_every_requested_layer() {
    // Includes the last layer (29), which llama.cpp prunes unless every token is an output.
    let layers = [0, 7, 15, 29];
    let mut e = engine(&layers, 2048, 2);
    let text = "The build failed again. I will read the log before changing anything.";
    let n_tokens = model().tokenize(text, false).unwrap().len();
    let rows = capture(&mut e, "a", text);
    assert_eq!(rows.len(), n_tokens);
    for token_rows in &rows {
        let got: Vec<u32> = token_rows.iter().map(|(l, _)| *l).collect();
        assert_eq!(got, layers);
        for (_, row) in token_rows {
            assert_eq!(row.len(), 576);
            assert!(row.iter().all(|v| v.is_finite()));
            assert!(norm(row) > 0.0);
        }
    }
    // Rows differ across tokens (they are not one row repeated).
    assert!(max_abs_diff(&rows[1][1].1, &rows[2][1].1) > 1e-3);
}

#[test]
fn attention_sink_token_has_an_outsized_norm() {
    let mut e = engine(&[15], 2048, 1);
    let rows = capture(
        &mut e,
        "a",
        "Checking the deployment logs for the payment service now.",
    );
    // BOS-less SmolLM2: the first token of the sequence is the sink.
    let sink = norm(&rows[0][0].1);
    let rest: f32 = rows[1..].iter().map(|r| norm(&r[0].1)).sum::<f32>() / (rows.len() - 1) as f32;
    assert!(sink > 5.0 * rest, "sink norm {sink} vs mean {rest}");
}

#[test]
fn step_by_step_decode_matches_one_shot_decode() {
    let layers = [5, 20];
    let parts = [
        "I ran the tests and three of them failed.",
        " The failures are in the parser module.",
        " Next I will read the parser code carefully.",
    ];
    let mut one = engine(&layers, 2048, 1);
    let whole = capture(&mut one, "s", &parts.concat());

    let mut inc = engine(&layers, 2048, 1);
    let mut stepwise = Vec::new();
    for p in parts {
        let out = capture(&mut inc, "s", p);
        stepwise.extend(out);
    }
    // Tokenizing parts separately may split differently; compare only if token streams agree.
    let m = model();
    let whole_tokens = m.tokenize(&parts.concat(), false).unwrap();
    let part_tokens: Vec<i32> = parts
        .iter()
        .flat_map(|p| m.tokenize(p, false).unwrap())
        .collect();
    assert_eq!(
        whole_tokens, part_tokens,
        "test text must tokenize identically in parts"
    );
    assert_eq!(whole.len(), stepwise.len());
    let mut worst = 0.0f32;
    for (a, b) in whole.iter().zip(&stepwise) {
        for ((la, ra), (lb, rb)) in a.iter().zip(b) {
            assert_eq!(la, lb);
            worst = worst.max(max_abs_diff(ra, rb) / norm(ra).max(1.0));
        }
    }
    assert!(worst < 1e-3, "KV reuse drifted: relative max diff {worst}");
}

#[test]
fn sessions_do_not_see_each_others_tokens() {
    let layers = [12];
    let mut e = engine(&layers, 2048, 4);
    capture(
        &mut e,
        "alice",
        "My favourite colour is green and I work on robots.",
    );
    capture(
        &mut e,
        "bob",
        "The database migration needs a rollback plan first.",
    );
    let alice_next = capture(&mut e, "alice", " Now I check the motor driver.");

    let mut fresh = engine(&layers, 2048, 4);
    capture(
        &mut fresh,
        "solo",
        "My favourite colour is green and I work on robots.",
    );
    let solo_next = capture(&mut fresh, "solo", " Now I check the motor driver.");
    for (a, b) in alice_next.iter().zip(&solo_next) {
        let d = max_abs_diff(&a[0].1, &b[0].1) / norm(&a[0].1).max(1.0);
        assert!(d < 1e-3, "bob's tokens leaked into alice's session: {d}");
    }
    assert_eq!(
        e.session_len("alice"),
        Some(e.session_len("alice").unwrap())
    );
}

#[test]
fn eviction_and_redecode_keep_results_exact() {
    // Two KV sequences for three sessions: the least recently used one is evicted and
    // transparently re-decoded when it comes back.
    let layers = [12];
    let mut e = engine(&layers, 2048, 2);
    // No saved states: this test covers the re-decode path (restore has its own test).
    e.set_state_budget(0);
    capture(
        &mut e,
        "a",
        "Session A starts with a calm review of the logs.",
    );
    capture(&mut e, "b", "Session B is about the billing export.");
    capture(&mut e, "c", "Session C watches the robot arm.");
    let mut out = Vec::new();
    let outcome = e
        .append_text("a", " A continues.", &mut |t| {
            out.push(t.rows.layer(12).unwrap().to_vec())
        })
        .unwrap();
    assert!(outcome.redecoded_tokens > 0, "a was evicted and rebuilt");

    let mut fresh = engine(&layers, 2048, 2);
    capture(
        &mut fresh,
        "a",
        "Session A starts with a calm review of the logs.",
    );
    let expect = capture(&mut fresh, "a", " A continues.");
    for (got, want) in out.iter().zip(&expect) {
        assert!(max_abs_diff(got, &want[0].1) / norm(got).max(1.0) < 1e-3);
    }
}

#[test]
fn outgrowing_the_window_drops_oldest_steps_and_stays_exact() {
    // 256 tokens for one session: appending ~30-token steps overflows after a few.
    let layers = [10];
    let mut e = engine(&layers, 256, 1);
    // The re-decode fallback (KV shift has its own test): results equal a fresh decode.
    e.set_kv_shift(false);
    let step = |i: usize| {
        format!(" Step {i}: I looked at the next failing check and wrote down what it says about the cache.")
    };
    let mut dropped = 0;
    let mut last_rows = Vec::new();
    for i in 0..20 {
        let mut rows = Vec::new();
        let outcome = e
            .append_text("s", &step(i), &mut |t| {
                rows.push(t.rows.layer(10).unwrap().to_vec())
            })
            .unwrap();
        dropped += outcome.dropped_steps;
        assert!(e.session_len("s").unwrap() <= e.session_window());
        last_rows = rows;
    }
    assert!(dropped > 0, "the session must have outgrown its window");
    // The last step's rows equal a fresh decode of the retained window plus that step.
    let retained = e.session_tokens("s").unwrap().to_vec();
    let last_tokens = model().tokenize(&step(19), false).unwrap();
    assert!(retained.ends_with(&last_tokens));
    // The fresh session adds its own BOS (if the model uses one).
    let skip = usize::from(model().bos_token().is_some());
    let history = &retained[skip..retained.len() - last_tokens.len()];
    let mut fresh = engine(&layers, 256, 1);
    fresh.append_tokens("s", history, &mut |_| {}).unwrap();
    let mut rows = Vec::new();
    fresh
        .append_tokens("s", &last_tokens, &mut |t| {
            rows.push(t.rows.layer(10).unwrap().to_vec())
        })
        .unwrap();
    assert_eq!(rows.len(), last_rows.len());
    for (a, b) in rows.iter().zip(&last_rows) {
        assert!(max_abs_diff(a, b) / norm(a).max(1.0) < 1e-3);
    }
}

#[test]
fn steering_shifts_the_tapped_row_by_the_vector() {
    let layer = 14;
    let mut e = engine(&[layer], 2048, 1);
    let text = "The deploy is blocked until the review is done.";
    let plain = capture(&mut e, "s", text);
    let vector: Vec<f32> = (0..576).map(|i| ((i % 7) as f32 - 3.0) * 0.25).collect();
    e.set_steering(Some(&[(layer, vector.clone())])).unwrap();
    e.close_session("s");
    let steered = capture(&mut e, "s", text);
    // The first token sees no earlier (steered) context, so its row moves by exactly the vector.
    let shift: Vec<f32> = steered[0][0]
        .1
        .iter()
        .zip(&plain[0][0].1)
        .map(|(s, p)| s - p)
        .collect();
    assert!(
        max_abs_diff(&shift, &vector) < 1e-3,
        "shift differs from the vector"
    );
    // Later tokens move too (attention sees the steered past) — but by something else.
    assert!(max_abs_diff(&steered[3][0].1, &plain[3][0].1) > 1e-2);

    e.set_steering(None).unwrap();
    e.close_session("s");
    let cleared = capture(&mut e, "s", text);
    assert!(max_abs_diff(&cleared[0][0].1, &plain[0][0].1) < 1e-4);

    assert!(matches!(
        e.set_steering(Some(&[(0, vector.clone())])),
        Err(EngineError::Steering(_))
    ));
    assert!(matches!(
        e.set_steering(Some(&[(layer, vec![0.0; 3])])),
        Err(EngineError::Steering(_))
    ));
}

#[test]
fn generation_is_reproducible_and_taps_each_token() {
    let mut e = engine(&[8], 2048, 2);
    let tokens = chat_prompt("Name one colour.");
    let run = |e: &mut Engine, id: &str, params: &GenerateParams| {
        let mut tapped = 0;
        let out = e
            .generate(id, &tokens, params, &mut |_| {}, &mut |tap, _piece| {
                assert_eq!(tap.rows.layer(8).map(|r| r.len()), Some(576));
                tapped += 1;
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(tapped, out.tokens.len());
        out
    };
    let greedy = GenerateParams {
        max_tokens: 12,
        ..Default::default()
    };
    let a = run(&mut e, "g1", &greedy);
    let b = run(&mut e, "g2", &greedy);
    assert!(!a.tokens.is_empty());
    assert_eq!(a.tokens, b.tokens, "greedy decoding is deterministic");

    let sampled = GenerateParams {
        max_tokens: 12,
        temperature: 0.9,
        top_p: 0.9,
        seed: 7,
        grammar: None,
    };
    let c = run(&mut e, "s1", &sampled);
    e.close_session("s1");
    let d = run(&mut e, "s1", &sampled);
    assert_eq!(c.tokens, d.tokens, "same seed, same tokens");
    assert!(matches!(
        c.stop,
        StopReason::MaxTokens | StopReason::EndOfGeneration
    ));

    // Stopping from the callback.
    let out = e
        .generate("stop", &tokens, &greedy, &mut |_| {}, &mut |_, _| {
            std::ops::ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(out.tokens.len(), 1);
    assert_eq!(out.stop, StopReason::Callback);

    // With no layer tapped every token is still reported (streaming, stop sequences),
    // and the greedy answer is the tapped one.
    e.set_taps(&[]).unwrap();
    let mut pieces = String::new();
    let untapped = e
        .generate("plain", &tokens, &greedy, &mut |_| {}, &mut |tap, piece| {
            assert_eq!(tap.rows.iter().count(), 0);
            pieces.push_str(piece);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(untapped.tokens, a.tokens);
    assert_eq!(pieces, untapped.text);
}

#[test]
fn stopping_after_the_deepest_tap_keeps_rows_and_generation_exact() {
    // Observer appends stop the graph after layer 14; the rows must be those of a full
    // forward pass, and a session that then generates must be rebuilt in full.
    let layers = [6, 14];
    let text = "The deploy failed again, third time tonight. I will look at the logs calmly.";
    let mut short = engine(&layers, 2048, 2);
    assert!(short.exit_after_taps(), "on by default");
    let mut full = engine(&layers, 2048, 2);
    full.set_exit_after_taps(false);
    for step in [text, " Then I rerun the tests."] {
        let a = capture(&mut short, "obs", step);
        let b = capture(&mut full, "obs", step);
        assert_eq!(a.len(), b.len());
        for (ra, rb) in a.iter().zip(&b) {
            for ((la, va), (lb, vb)) in ra.iter().zip(rb) {
                assert_eq!(la, lb);
                assert!(
                    max_abs_diff(va, vb) / norm(va).max(1.0) < 1e-5,
                    "layer {la}"
                );
            }
        }
    }
    // Evicted and re-decoded (cut short again) history still gives exact rows.
    short.set_state_budget(0);
    full.set_state_budget(0);
    for id in ["x", "y"] {
        capture(&mut short, id, text);
        capture(&mut full, id, text);
    }
    let a = capture(&mut short, "obs", " And once more.");
    let b = capture(&mut full, "obs", " And once more.");
    for (ra, rb) in a.iter().zip(&b) {
        assert!(max_abs_diff(&ra[1].1, &rb[1].1) / norm(&ra[1].1).max(1.0) < 1e-3);
    }

    // Generating on a session observed with the short graph equals generating on one
    // decoded in full: its upper layers' KV cells are rebuilt first.
    let tokens = chat_prompt("Name one colour.");
    let greedy = GenerateParams {
        max_tokens: 8,
        ..Default::default()
    };
    let generate = |e: &mut Engine| {
        e.generate("obs", &tokens, &greedy, &mut |_| {}, &mut |_, _| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap()
        .tokens
    };
    let after_short = generate(&mut short);
    let after_full = generate(&mut full);
    assert!(!after_short.is_empty());
    assert_eq!(after_short, after_full);
}

#[test]
fn a_q4_1_model_runs_from_a_cpu_copy_with_the_same_identity_and_rows() {
    let dir = std::env::temp_dir().join(format!("limbic-f16-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let options = ModelOptions {
        n_gpu_layers: 0,
        cpu_copy: Some(CpuCopy {
            dir: dir.clone(),
            format: CopyFormat::Q8_0,
        }),
    };
    let copy = Model::load(&model_path(), &options).expect("load through a Q8_0 copy");
    let original = model();
    assert_eq!(
        copy.info().sha256,
        original.info().sha256,
        "identity is the source file's"
    );
    assert_eq!(copy.info().path, original.info().path);
    assert_ne!(copy.info().weights_path, copy.info().path);
    assert!(copy.info().weights_path.starts_with(&dir));
    assert!(
        copy.info().weights_bytes > copy.info().file_size,
        "F16 is larger than Q4_1"
    );
    // Made once: a second load reuses it.
    let made = std::fs::metadata(&copy.info().weights_path)
        .unwrap()
        .modified()
        .unwrap();
    let again = Model::load(&model_path(), &options).unwrap();
    assert_eq!(again.info().weights_path, copy.info().weights_path);
    assert_eq!(
        std::fs::metadata(&again.info().weights_path)
            .unwrap()
            .modified()
            .unwrap(),
        made
    );

    // The same rows as the Q4_1 file, to within the re-rounding of the weights.
    let text = "The nightly export failed twice; checking the schema diff before retrying.";
    let config = |taps: &[u32]| EngineConfig {
        n_ctx: 1024,
        n_batch: 512,
        max_sessions: 1,
        taps: taps.to_vec(),
        threads: Some(2),
    };
    let copy_path = copy.info().weights_path.clone();
    let mut a = Engine::new(copy, config(&[15])).unwrap();
    let mut b = Engine::new(original, config(&[15])).unwrap();
    let ra = capture(&mut a, "s", text);
    let rb = capture(&mut b, "s", text);
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb).skip(1) {
        let rel = max_abs_diff(&x[0].1, &y[0].1) / norm(&y[0].1);
        assert!(rel < 0.05, "relative difference {rel}");
    }
    // A damaged copy is not trusted: the file itself serves, and the copy is made again.
    // (Damaged after every model mapping it is gone: truncating a mapped file is SIGBUS.)
    drop((a, b, again));
    std::fs::write(&copy_path, b"GGUF\x03\x00\x00\x00 truncated").unwrap();
    let fallback = Model::load(&model_path(), &options).expect("falls back to the file");
    assert_eq!(fallback.info().weights_path, fallback.info().path);
    assert!(!copy_path.exists(), "the damaged copy is removed");
    let remade = Model::load(&model_path(), &options).unwrap();
    assert_eq!(remade.info().weights_path, copy_path);
    drop((fallback, remade));

    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_grammar_constrains_what_the_model_writes() {
    let mut e = engine(&[9], 2048, 1);
    let tokens = e.model().tokenize("The weather today is", true).unwrap();
    let strict = GenerateParams {
        max_tokens: 24,
        temperature: 0.9,
        seed: 3,
        grammar: Some(Grammar {
            text: r#"root ::= "{\"go\": " ("true" | "false") "}""#.to_string(),
            lazy_trigger: None,
        }),
        ..Default::default()
    };
    let out = e
        .generate("g", &tokens, &strict, &mut |_| {}, &mut |_, _| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert!(
        out.text == r#"{"go": true}"# || out.text == r#"{"go": false}"#,
        "{:?}",
        out.text
    );
    assert_eq!(
        out.stop,
        StopReason::EndOfGeneration,
        "a finished grammar only allows the end"
    );

    // Lazy: free text until the trigger, then constrained.
    let lazy = GenerateParams {
        max_tokens: 40,
        grammar: Some(Grammar {
            text: r#"root ::= "<x>" [0-9]{2} "</x>""#.to_string(),
            lazy_trigger: Some("[\\s\\S]*?(<x>)".to_string()),
        }),
        ..Default::default()
    };
    let out = e
        .generate("l", &tokens, &lazy, &mut |_| {}, &mut |_, _| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    if let Some(at) = out.text.find("<x>") {
        let tail = &out.text[at..];
        assert!(tail.len() <= "<x>00</x>".len(), "{tail:?}");
    }

    let broken = GenerateParams {
        grammar: Some(Grammar {
            text: "root ::= (".to_string(),
            lazy_trigger: None,
        }),
        ..Default::default()
    };
    let err = e
        .generate("b", &tokens, &broken, &mut |_| {}, &mut |_, _| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap_err();
    assert!(err.to_string().contains("grammar"), "{err}");
}

#[test]
fn rollback_restores_the_earlier_state() {
    let mut e = engine(&[9], 2048, 1);
    capture(&mut e, "s", "First step of the session.");
    let len = e.session_len("s").unwrap();
    let first = capture(&mut e, "s", " Second step, original.");
    capture(&mut e, "s", " Something else.");
    e.rollback("s", len).unwrap();
    let again = capture(&mut e, "s", " Second step, original.");
    for (a, b) in first.iter().zip(&again) {
        assert!(max_abs_diff(&a[0].1, &b[0].1) / norm(&a[0].1).max(1.0) < 1e-3);
    }
    assert!(e.rollback("s", 10_000).is_err());
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("limbic-engine-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = ModelOptions::default();
    let err = |p: &std::path::Path| match Model::load(p, &opts) {
        Ok(_) => panic!("{} loaded", p.display()),
        Err(e) => e.to_string(),
    };

    let missing = dir.join("missing.gguf");
    assert!(err(&missing).contains("missing.gguf"));

    let text = dir.join("notes.gguf");
    std::fs::write(&text, b"this is not a model at all, just text").unwrap();
    let msg = err(&text);
    assert!(
        msg.contains("notes.gguf") && msg.to_lowercase().contains("gguf"),
        "{msg}"
    );

    let real = std::fs::read(model_path()).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    let msg = err(&truncated);
    assert!(
        msg.contains("truncated.gguf") && msg.to_lowercase().contains("truncated"),
        "{msg}"
    );

    let cvec = dir.join("controlvector.gguf");
    let mut w = limbic_gguf::GgufWriter::new();
    w.set("general.architecture", "controlvector");
    w.add_tensor_f32("direction.1", &[576], vec![0.0; 576]);
    w.write(&cvec).unwrap();
    let msg = err(&cvec);
    assert!(
        msg.contains("unsupported architecture") && msg.contains("controlvector"),
        "{msg}"
    );

    // Context too small for the sessions asked for.
    let small = Engine::new(
        model(),
        EngineConfig {
            n_ctx: 128,
            max_sessions: 8,
            ..Default::default()
        },
    );
    assert!(matches!(small, Err(EngineError::Context(m)) if m.contains("too small")));

    let mut e = engine(&[3], 2048, 1);
    assert!(matches!(
        e.append_text("s", "   ", &mut |_| {}),
        Err(EngineError::EmptyText)
    ));
    // Token ids outside the vocabulary are refused before anything is decoded.
    assert!(matches!(
        e.append_tokens("s", &[1, 2, 49152], &mut |_| {}),
        Err(EngineError::Decode(m)) if m.contains("49152")
    ));
    assert!(matches!(
        e.append_tokens("s", &[-1], &mut |_| {}),
        Err(EngineError::Decode(_))
    ));
    assert!(matches!(e.set_taps(&[30]), Err(EngineError::Taps(_))));
    // The engine still works after refusals.
    assert!(!capture(&mut e, "s", "Still working.").is_empty());
    std::fs::remove_dir_all(&dir).ok();
}
