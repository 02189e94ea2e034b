//! Vector packs through the CLI: inspect files written by another GGUF implementation,
//! evaluate on labelled steps, and rebuild a committed vector reproducibly.

use std::process::Command;

use crate::common::*;

fn python_has_gguf() -> bool {
    Command::new("python3")
        .args(["-c", "import gguf"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn inspect_reads_a_control_vector_written_by_the_gguf_python_package() {
    assert!(
        python_has_gguf(),
        "this test needs the gguf Python package (pip install gguf; .ci/setup installs it)"
    );
    let dir = tempdir();
    let path = dir.path().join("foreign.gguf");
    let script = r#"
import sys, numpy as np, gguf
w = gguf.GGUFWriter(sys.argv[1], "controlvector")
w.add_string("controlvector.model_hint", "llama")
w.add_uint32("controlvector.layer_count", 2)
w.add_tensor("direction.3", np.full(576, 0.5, dtype=np.float32))
w.add_tensor("direction.7", np.full(576, -0.25, dtype=np.float32))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
"#;
    let st = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success());
    let out = run(limbic(dir.path()).args(["vectors", "inspect"]).arg(&path));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("model hint: llama"), "{text}");
    assert!(text.contains("width (n_embd): 576"), "{text}");
    assert!(text.contains("layers: 2 (3..=7)"), "{text}");
    // norms: 0.5*sqrt(576) = 12 and 0.25*24 = 6
    assert!(
        text.contains("12.0000") && text.contains("6.0000"),
        "{text}"
    );

    // And a limbic pack file loads in that tool.
    let ours = repo().join("vectors/smollm2-135m-instruct/desperation.gguf");
    let check = r#"
import sys, gguf
r = gguf.GGUFReader(sys.argv[1])
arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
assert arch == "controlvector", arch
names = [t.name for t in r.tensors]
assert all(n.startswith("direction.") for n in names) and len(names) >= 3, names
assert all(t.data.shape[-1] == 576 for t in r.tensors)
print(len(names))
"#;
    let out = Command::new("python3")
        .args(["-c", check])
        .arg(&ours)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // A pack directory is summarised, and garbage is a clear error.
    let out = run(limbic(dir.path())
        .args(["vectors", "inspect"])
        .arg(repo().join("vectors/smollm2-135m-instruct")));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("desperation"));
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF but not really").unwrap();
    let out = run(limbic(dir.path()).args(["vectors", "inspect"]).arg(&junk));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("junk.gguf"), "{}", stderr(&out));
}

#[test]
fn eval_reports_auroc_with_controls_and_a_plot() {
    let dir = tempdir();
    // The first 60 steps of the development set keep this test short.
    let all = std::fs::read_to_string(repo().join("tests/data/dev_trajectories.jsonl")).unwrap();
    let subset: Vec<&str> = all.lines().take(60).collect();
    let data = dir.path().join("subset.jsonl");
    std::fs::write(&data, subset.join("\n")).unwrap();
    let plot = dir.path().join("eval.png");
    let out = run(limbic(dir.path())
        .args(["vectors", "eval", "--resamples", "100", "--json", "--data"])
        .arg(&data)
        .arg("--plot")
        .arg(&plot));
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let summary = v["summary"]["cells"].as_array().unwrap();
    let get = |name: &str| {
        summary
            .iter()
            .find(|c| c["emotion"] == name)
            .unwrap()
            .clone()
    };
    let sig = get("stress_signature");
    let kw = get("keyword_baseline");
    for cell in [&sig, &kw] {
        let auroc = cell["auroc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auroc));
        assert!(
            cell["ci_low"].as_f64().unwrap() <= auroc && auroc <= cell["ci_high"].as_f64().unwrap()
        );
        assert!(
            (cell["perm_auroc"].as_f64().unwrap() - 0.5).abs() < 0.1,
            "{cell}"
        );
    }
    assert!(
        sig["auroc"].as_f64().unwrap() > kw["auroc"].as_f64().unwrap(),
        "probes must beat keywords: {sig} vs {kw}"
    );
    assert!(v["per_layer"]["cells"].as_array().unwrap().len() >= 6 * 20);
    let png = std::fs::read(&plot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG plot is written");
}

#[test]
fn rebuilding_a_vector_reproduces_the_committed_file() {
    let dir = tempdir();
    let out_dir = dir.path().join("pack");
    let out = run(limbic(dir.path())
        .args(["vectors", "build", "--emotions", "urgency", "--out"])
        .arg(&out_dir));
    assert!(out.status.success(), "{}", stderr(&out));
    let rebuilt = std::fs::read(out_dir.join("urgency.gguf")).unwrap();
    let committed =
        std::fs::read(repo().join("vectors/smollm2-135m-instruct/urgency.gguf")).unwrap();
    assert!(
        rebuilt == committed,
        "urgency.gguf differs from the committed vector"
    );
    let manifest = std::fs::read_to_string(out_dir.join("pack.toml")).unwrap();
    let committed_manifest =
        std::fs::read_to_string(repo().join("vectors/smollm2-135m-instruct/pack.toml")).unwrap();
    // The chosen layers and calibration of the emotion match the committed pack.
    let section = |m: &str| {
        m.split("[emotions.urgency]")
            .nth(1)
            .and_then(|s| s.split("\n[").next())
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(!section(&manifest).is_empty());
    assert_eq!(section(&manifest), section(&committed_manifest));
}
