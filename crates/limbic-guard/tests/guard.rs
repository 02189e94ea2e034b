//! The guard library on the real model (`LIMBIC_TEST_MODEL`, else limbic's model cache).

use std::path::PathBuf;

use limbic_engine::{Engine, EngineConfig};
use limbic_guard::render::TurnFrame;

fn model() -> std::sync::Arc<limbic_engine::Model> {
    let path = std::env::var_os("LIMBIC_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::cache_dir()
                .unwrap_or_default()
                .join("limbic/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "{} is missing: run `limbic model fetch` (or set LIMBIC_TEST_MODEL)",
        path.display()
    );
    limbic_guard::models::load_model(Some(&path.to_string_lossy())).unwrap()
}

/// The action range holds exactly the tool and its arguments (the learned action-risk
/// measurement pools over it), after the words and without the `Action:` lead-in.
#[test]
fn rendered_action_range_is_the_action_text() {
    let model = model();
    let frame = TurnFrame::for_model(&model).unwrap();
    let words = "Cleaning the build output before the release build.";
    for action in [
        "Bash {\"command\":\"rm -rf target/\"}",
        "mcp__postgres__query {\"sql\":\"DROP TABLE customers CASCADE;\"}",
        "x",
    ] {
        let step = frame.render(&model, words, Some(action)).unwrap();
        assert!(step.words.end <= step.action.start, "{action}");
        assert!(
            step.action.end < step.tokens.len(),
            "the turn suffix follows"
        );
        let text = model.detokenize(&step.tokens[step.action.clone()]);
        assert_eq!(text.trim(), action, "action range of {action:?}");
        assert!(!text.contains("Action:"));
        // Every action token is seen once by a real decode, and none of the words.
        let mut engine = Engine::new(
            model.clone(),
            EngineConfig {
                n_ctx: 1024,
                max_sessions: 1,
                taps: vec![5],
                threads: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
        let mut seen = 0;
        engine
            .append_tokens("s", &step.tokens, &mut |tap| {
                if step.is_action_token(tap) {
                    assert!(!step.words.contains(&tap.index));
                    seen += 1;
                }
            })
            .unwrap();
        assert_eq!(seen, step.action.len());
    }
    let none = frame.render(&model, words, None).unwrap();
    assert!(none.action.is_empty());
    let blank = frame.render(&model, words, Some("  ")).unwrap();
    assert!(blank.action.is_empty());
}
