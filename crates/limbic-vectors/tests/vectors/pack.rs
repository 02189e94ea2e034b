//! Vector packs: save/load round trip, model check, manifest validation.

use std::collections::BTreeMap;
use std::path::Path;

use limbic_vectors::pack::{
    Calibration, EmotionEntry, ModelInfo, Pack, PackError, PackManifest, Pooling, Signature,
    LIMBIC_VERSION, MANIFEST_FILE,
};
use limbic_vectors::{ControlVector, LayerReport, Method};

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const N_EMBD: u32 = 8;

fn vector(seed: f32, layers: &[u32]) -> ControlVector {
    let mut cv = ControlVector::new("llama", N_EMBD);
    for &layer in layers {
        cv.directions.insert(
            layer,
            (0..N_EMBD)
                .map(|i| seed + layer as f32 * 0.1 - i as f32 * 0.01)
                .collect(),
        );
    }
    cv
}

fn entry(file: &str, layers: &[u32], method: Method, sign: i8) -> EmotionEntry {
    EmotionEntry {
        file: file.into(),
        layers: layers.to_vec(),
        pooling: Pooling::Mean,
        sign,
        method,
        calibration: layers
            .iter()
            .map(|&layer| Calibration {
                layer,
                mean: 0.1 * f64::from(layer),
                std: 1.5,
            })
            .collect(),
        selection: layers
            .iter()
            .map(|&layer| LayerReport {
                layer,
                cv_auroc: 0.9,
                perm_auroc: 0.5,
            })
            .collect(),
    }
}

fn sample_pack() -> Pack {
    let mut emotions = BTreeMap::new();
    emotions.insert(
        "desperation".to_owned(),
        entry("desperation.gguf", &[14, 18], Method::DiffOfMeans, 1),
    );
    emotions.insert("calm".to_owned(), entry("calm.gguf", &[12], Method::Pca, 1));
    let manifest = PackManifest {
        limbic_version: LIMBIC_VERSION.to_owned(),
        prompts_hash: "sha256:feedface".to_owned(),
        model: ModelInfo {
            name: "SmolLM2-135M-Instruct".into(),
            sha256: SHA.into(),
            arch: "llama".into(),
            n_embd: N_EMBD,
            n_layer: 30,
        },
        emotions,
        signature: Some(Signature {
            weights: BTreeMap::from([("desperation".to_owned(), 1.0), ("calm".to_owned(), -0.5)]),
        }),
    };
    let vectors = BTreeMap::from([
        // Directions for more layers than chosen are allowed (steering elsewhere).
        ("desperation".to_owned(), vector(1.0, &[10, 14, 18])),
        ("calm".to_owned(), vector(-1.0, &[12])),
    ]);
    Pack::new(manifest, vectors).unwrap()
}

#[test]
fn save_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let pack_dir = dir.path().join("smollm2-pack");
    let mut pack = sample_pack();
    pack.save(&pack_dir).unwrap();
    assert_eq!(pack.dir(), pack_dir);

    let loaded = Pack::load(&pack_dir).unwrap();
    assert_eq!(loaded.manifest(), pack.manifest());
    assert_eq!(
        loaded.emotions().collect::<Vec<_>>(),
        ["calm", "desperation"]
    );
    assert_eq!(
        loaded.direction("desperation", 18),
        pack.direction("desperation", 18)
    );
    assert_eq!(
        loaded.direction("desperation", 10).map(<[f32]>::len),
        Some(N_EMBD as usize)
    );
    assert_eq!(loaded.direction("calm", 14), None);
    assert_eq!(loaded.vector("calm"), pack.vector("calm"));
    let calm = loaded.emotion("calm").unwrap();
    assert_eq!(calm.method, Method::Pca);
    let z = calm.calibration_for(12).unwrap().z_score(1.2 + 3.0);
    assert!((z - 2.0).abs() < 1e-5, "{z}");
    assert_eq!(loaded.signature().unwrap().weights["calm"], -0.5);

    let text = std::fs::read_to_string(pack_dir.join(MANIFEST_FILE)).unwrap();
    assert!(text.contains("method = \"diff_of_means\""), "{text}");
    assert!(text.contains("pooling = \"mean\""), "{text}");
    assert!(text.contains("[emotions.desperation]"), "{text}");
}

#[test]
fn check_model_accepts_match_and_explains_mismatch() {
    let pack = sample_pack();
    pack.check_model(SHA, N_EMBD).unwrap();
    pack.check_model(&SHA.to_uppercase(), N_EMBD).unwrap();

    let other = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    let err = pack.check_model(other, 896).unwrap_err();
    assert!(matches!(err, PackError::ModelMismatch { .. }));
    let message = err.to_string();
    assert!(message.contains("'SmolLM2-135M-Instruct'"), "{message}");
    assert!(message.contains("sha256 0123456789ab"), "{message}");
    assert!(message.contains("fedcba987654"), "{message}");
    assert!(message.contains("n_embd 896"), "{message}");
    assert!(message.contains("n_embd 8"), "{message}");

    // Same file hash but a different width is still a mismatch.
    assert!(pack.check_model(SHA, 576).is_err());
}

fn saved_pack_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    sample_pack().save(dir.path()).unwrap();
    dir
}

fn edit_manifest(dir: &Path, from: &str, to: &str) {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "manifest lacks {from:?}:\n{text}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn load_err(dir: &Path) -> String {
    let err = Pack::load(dir).unwrap_err().to_string();
    assert!(err.contains(&dir.display().to_string()), "{err}");
    err
}

#[test]
fn load_rejects_inconsistent_packs() {
    let dir = saved_pack_dir();
    edit_manifest(dir.path(), "layers = [12]", "layers = [13]");
    let err = load_err(dir.path());
    assert!(
        err.contains("emotion 'calm'") && err.contains("no direction.13"),
        "{err}"
    );

    let dir = saved_pack_dir();
    edit_manifest(dir.path(), "n_embd = 8", "n_embd = 9");
    let err = load_err(dir.path());
    assert!(
        err.contains("n_embd 8 but the pack's model has n_embd 9"),
        "{err}"
    );

    let dir = saved_pack_dir();
    edit_manifest(
        dir.path(),
        "file = \"calm.gguf\"",
        "file = \"../calm.gguf\"",
    );
    let err = load_err(dir.path());
    assert!(err.contains("plain file name"), "{err}");

    let dir = saved_pack_dir();
    edit_manifest(dir.path(), "n_layer = 30", "n_layer = 13");
    let err = load_err(dir.path());
    assert!(err.contains("layer 14 is outside 1..=12"), "{err}");

    let dir = saved_pack_dir();
    edit_manifest(dir.path(), "sign = 1", "sign = 0");
    assert!(load_err(dir.path()).contains("sign must be 1 or -1"));

    let dir = saved_pack_dir();
    edit_manifest(dir.path(), "method = \"pca\"", "method = \"lda\"");
    let err = load_err(dir.path());
    assert!(err.contains("invalid TOML") && err.contains("lda"), "{err}");

    let dir = saved_pack_dir();
    edit_manifest(dir.path(), "std = 1.5", "std = 0.0");
    assert!(load_err(dir.path()).contains("positive std"));

    let dir = saved_pack_dir();
    edit_manifest(dir.path(), "calm = -0.5", "shame = -0.5");
    assert!(load_err(dir.path()).contains("'shame', which is not an emotion"));

    let dir = saved_pack_dir();
    std::fs::remove_file(dir.path().join("desperation.gguf")).unwrap();
    let err = Pack::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("desperation.gguf") && err.contains("cannot open"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let err = Pack::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("pack.toml") && err.contains("cannot read pack manifest"),
        "{err}"
    );
}

#[test]
fn vector_for_another_architecture_is_refused() {
    let dir = saved_pack_dir();
    let mut cv = ControlVector::read(dir.path().join("calm.gguf")).unwrap();
    cv.model_hint = "qwen2".into();
    cv.write(dir.path().join("calm.gguf")).unwrap();
    let err = load_err(dir.path());
    assert!(err.contains("made for architecture 'qwen2'"), "{err}");
}

#[test]
fn new_rejects_layer_zero_and_missing_calibration() {
    let pack = sample_pack();
    let mut manifest = pack.manifest().clone();
    manifest.emotions.get_mut("calm").unwrap().layers = vec![0];
    let vectors = BTreeMap::from([
        ("desperation".to_owned(), vector(1.0, &[14, 18])),
        ("calm".to_owned(), vector(-1.0, &[12])),
    ]);
    let err = Pack::new(manifest, vectors.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer 0 is outside"), "{err}");

    let mut manifest = pack.manifest().clone();
    manifest
        .emotions
        .get_mut("desperation")
        .unwrap()
        .calibration
        .pop();
    let err = Pack::new(manifest, vectors).unwrap_err().to_string();
    assert!(err.contains("no calibration for chosen layer 18"), "{err}");
}
