//! Control-vector files: round trip and rejection of files llama.cpp would misread.

use std::collections::BTreeMap;

use limbic_gguf::{GgmlType, GgufFile, GgufWriter, Value};
use limbic_vectors::cvec::{ControlVector, CvecError, LAYER_COUNT_KEY, MODEL_HINT_KEY};

fn sample() -> ControlVector {
    let mut cv = ControlVector::new("llama", 6);
    for layer in [1u32, 7, 29] {
        cv.directions.insert(
            layer,
            (0..6).map(|i| (layer as f32) * 0.25 - i as f32).collect(),
        );
    }
    cv
}

#[test]
fn round_trip_and_file_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fear.gguf");
    let cv = sample();
    cv.write(&path).unwrap();
    assert_eq!(ControlVector::read(&path).unwrap(), cv);

    // The on-disk layout is what llama.cpp's loader expects.
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.architecture(), Some("controlvector"));
    assert_eq!(file.get_str(MODEL_HINT_KEY), Some("llama"));
    assert_eq!(file.metadata(LAYER_COUNT_KEY), Some(&Value::U32(3)));
    let names: Vec<&str> = file.tensors().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["direction.1", "direction.7", "direction.29"]);
    for t in file.tensors() {
        assert_eq!(t.ggml_type(), GgmlType::F32);
        assert_eq!(t.dims(), &[6]);
    }
    assert_eq!(cv.direction(7), Some(&cv.directions[&7][..]));
    assert_eq!(cv.direction(2), None);
}

fn write_raw(path: &std::path::Path, build: impl FnOnce(&mut GgufWriter)) {
    let mut w = GgufWriter::new();
    build(&mut w);
    w.write(path).unwrap();
}

fn read_err(build: impl FnOnce(&mut GgufWriter)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    write_raw(&path, build);
    let err = ControlVector::read(&path).unwrap_err();
    assert!(matches!(
        err,
        CvecError::Invalid { .. } | CvecError::Gguf(_)
    ));
    let message = err.to_string();
    assert!(message.contains("bad.gguf"), "{message}");
    message
}

#[test]
fn rejects_malformed_control_vectors() {
    let err = read_err(|w| {
        w.add_tensor_f32("direction.1", &[4], vec![0.0; 4]);
    });
    assert!(err.contains("missing general.architecture"), "{err}");

    let err = read_err(|w| {
        w.set("general.architecture", "llama")
            .add_tensor_f32("direction.1", &[4], vec![0.0; 4]);
    });
    assert!(err.contains("is 'llama', not 'controlvector'"), "{err}");

    let err = read_err(|w| {
        w.set("general.architecture", "controlvector")
            .add_tensor_f32("direction.0", &[4], vec![0.0; 4]);
    });
    assert!(
        err.contains("direction.0") && err.contains("layer 0"),
        "{err}"
    );

    let err = read_err(|w| {
        w.set("general.architecture", "controlvector")
            .add_tensor_f32("direction.1", &[4], vec![0.0; 4])
            .add_tensor_f32("direction.2", &[5], vec![0.0; 5]);
    });
    assert!(
        err.contains("has 5 values but 'direction.1' has 4"),
        "{err}"
    );

    let err = read_err(|w| {
        w.set("general.architecture", "controlvector")
            .add_tensor_raw("direction.1", &[32], GgmlType::Q8_0, vec![0; 34]);
    });
    assert!(err.contains("Q8_0"), "{err}");

    let err = read_err(|w| {
        w.set("general.architecture", "controlvector")
            .add_tensor_f32("direction.1", &[2, 2], vec![0.0; 4]);
    });
    assert!(err.contains("1-D"), "{err}");

    let err = read_err(|w| {
        w.set("general.architecture", "controlvector")
            .add_tensor_f32("direction.1", &[2], vec![0.0; 2])
            .add_tensor_f32("direction.01", &[2], vec![0.0; 2]);
    });
    assert!(err.contains("two tensors target layer 1"), "{err}");

    let err = read_err(|w| {
        w.set("general.architecture", "controlvector")
            .add_tensor_f32("output.weight", &[2], vec![0.0; 2]);
    });
    assert!(err.contains("not named direction.<layer>"), "{err}");

    let err = read_err(|w| {
        w.set("general.architecture", "controlvector")
            .add_tensor_f32("direction.3", &[2], vec![0.0, f32::INFINITY]);
    });
    assert!(err.contains("non-finite"), "{err}");

    let err = read_err(|w| {
        w.set("general.architecture", "controlvector");
    });
    assert!(err.contains("no direction tensors"), "{err}");

    let err = read_err(|w| {
        w.set("general.architecture", "controlvector")
            .set(MODEL_HINT_KEY, 5u32)
            .add_tensor_f32("direction.1", &[2], vec![0.0; 2]);
    });
    assert!(err.contains("must be a string"), "{err}");
}

#[test]
fn reads_f16_directions_and_missing_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.gguf");
    write_raw(&path, |w| {
        // 1.0, -2.0, 0.5 as IEEE half.
        let bytes = [0x3c00u16, 0xc000, 0x3800]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        w.set("general.architecture", "controlvector")
            .add_tensor_raw("direction.4", &[3], GgmlType::F16, bytes);
    });
    let cv = ControlVector::read(&path).unwrap();
    assert_eq!(cv.model_hint, "");
    assert_eq!(cv.n_embd, 3);
    assert_eq!(cv.direction(4), Some(&[1.0, -2.0, 0.5][..]));
}

#[test]
fn write_refuses_what_llama_cpp_would_reject() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let mut cv = sample();
    cv.directions.insert(0, vec![0.0; 6]);
    let err = cv.write(&path).unwrap_err().to_string();
    assert!(err.contains("layer 0 cannot be stored"), "{err}");

    let mut cv = sample();
    cv.directions.insert(3, vec![0.0; 5]);
    let err = cv.write(&path).unwrap_err().to_string();
    assert!(
        err.contains("layer 3 has 5 values, expected n_embd 6"),
        "{err}"
    );

    let cv = ControlVector {
        model_hint: "llama".into(),
        n_embd: 6,
        directions: BTreeMap::new(),
    };
    assert!(cv
        .write(&path)
        .unwrap_err()
        .to_string()
        .contains("no directions"));

    let mut cv = sample();
    cv.directions.get_mut(&7).unwrap()[2] = f32::NAN;
    assert!(cv
        .write(&path)
        .unwrap_err()
        .to_string()
        .contains("non-finite"));
    assert!(!path.exists());
}
