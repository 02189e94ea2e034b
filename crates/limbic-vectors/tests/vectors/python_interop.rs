//! Interoperability with the reference Python `gguf` package (from llama.cpp):
//! files it writes must read in limbic, and files limbic writes must read there.
//! Skipped, with a note, when `python3 -c "import gguf"` fails (`pip install gguf`).

use std::path::{Path, PathBuf};
use std::process::Command;

use limbic_vectors::ControlVector;

const N_EMBD: u32 = 48;
const LAYERS: [u32; 3] = [1, 9, 29];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gguf_interop.py")
}

fn python_gguf_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if !ok {
        println!("note: skipping Python interop test: `python3 -c \"import gguf\"` failed (pip install gguf)");
    }
    ok
}

/// Same formula as expected_value() in gguf_interop.py, computed in f64 then rounded,
/// like numpy's float64 → float32 cast.
fn expected_value(layer: u32, i: u32) -> f32 {
    ((f64::from(layer) * 1.7 + f64::from(i) * 0.1).sin() * f64::from(layer)) as f32
}

fn run_script(args: &[String]) {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gguf_interop.py {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn script_args(command: &str, path: &Path) -> Vec<String> {
    let mut args = vec![
        command.to_owned(),
        path.display().to_string(),
        N_EMBD.to_string(),
    ];
    args.extend(LAYERS.iter().map(u32::to_string));
    args
}

#[test]
fn python_written_control_vector_reads_in_limbic() {
    if !python_gguf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from_python.gguf");
    run_script(&script_args("write", &path));

    let cv = ControlVector::read(&path).unwrap();
    assert_eq!(cv.model_hint, "llama");
    assert_eq!(cv.n_embd, N_EMBD);
    assert_eq!(cv.directions.keys().copied().collect::<Vec<_>>(), LAYERS);
    for layer in LAYERS {
        let direction = cv.direction(layer).unwrap();
        for (i, &value) in direction.iter().enumerate() {
            let expected = expected_value(layer, i as u32);
            assert!(
                (value - expected).abs() <= 1e-6,
                "direction.{layer}[{i}] = {value}, expected {expected}"
            );
        }
    }
}

#[test]
fn limbic_written_control_vector_reads_in_python() {
    if !python_gguf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from_limbic.gguf");
    let mut cv = ControlVector::new("llama", N_EMBD);
    for layer in LAYERS {
        cv.directions.insert(
            layer,
            (0..N_EMBD).map(|i| expected_value(layer, i)).collect(),
        );
    }
    cv.write(&path).unwrap();
    run_script(&script_args("check", &path));
}

#[test]
fn python_written_model_file_opens_in_limbic_gguf() {
    use limbic_gguf::{GgmlType, GgufError, GgufFile, Value, ValueType};
    if !python_gguf_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    run_script(&["write-model".to_owned(), path.display().to_string()]);

    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.architecture(), Some("llama"));
    let expect = [
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-7)),
        ("t.u16", Value::U16(60000)),
        ("t.i16", Value::I16(-300)),
        ("t.u32", Value::U32(576)),
        ("t.i32", Value::I32(-70000)),
        ("t.f32", Value::F32(0.5)),
        ("t.u64", Value::U64(1 << 40)),
        ("t.i64", Value::I64(-(1 << 40))),
        ("t.f64", Value::F64(-2.25)),
        ("t.bool", Value::Bool(true)),
        ("t.str", Value::String("wörld".into())),
        (
            "t.tokens",
            Value::Array(
                ValueType::String,
                vec!["a".into(), "bb".into(), "ccc".into()],
            ),
        ),
        (
            "t.ints",
            Value::Array(
                ValueType::I32,
                vec![Value::I32(1), Value::I32(2), Value::I32(3)],
            ),
        ),
        (
            "t.nested",
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(2)]),
                    Value::Array(ValueType::I32, vec![Value::I32(3)]),
                ],
            ),
        ),
    ];
    for (key, value) in expect {
        assert_eq!(file.metadata(key), Some(&value), "{key}");
    }
    assert_eq!(file.get_u32("t.u32"), Some(576));

    let f32_info = file.tensor("f32").unwrap();
    assert_eq!(f32_info.dims(), &[4, 3]);
    assert_eq!(
        file.read_tensor_f32("f32").unwrap(),
        (0..12).map(|i| i as f32).collect::<Vec<_>>()
    );
    assert_eq!(file.read_tensor_f32("f16").unwrap(), vec![1.0, -2.0, 0.5]);
    let q8 = file.tensor("q8").unwrap();
    assert_eq!(q8.ggml_type(), GgmlType::Q8_0);
    assert_eq!(q8.dims(), &[64]);
    assert_eq!(q8.byte_size(), Some(68));
    assert!(matches!(
        file.read_tensor_f32("q8"),
        Err(GgufError::UnsupportedTensorType { .. })
    ));
}
