//! Writer → reader round trips and targeted rejection cases.

use limbic_gguf::{GgmlType, GgufError, GgufFile, GgufWriter, Value, ValueType};

fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set("general.architecture", "llama")
        .set("general.name", "tiny")
        .set("llama.embedding_length", 8u32)
        .set("llama.block_count", Value::U64(3))
        .set("llama.rope.freq_base", 10000.0f32)
        .set("test.f64", Value::F64(-2.5))
        .set("test.i8", Value::I8(-7))
        .set("test.u8", Value::U8(200))
        .set("test.i16", Value::I16(-300))
        .set("test.u16", Value::U16(60000))
        .set("test.i32", Value::I32(-70000))
        .set("test.i64", Value::I64(-(1 << 40)))
        .set("test.bool", true)
        .set(
            "tokenizer.ggml.tokens",
            Value::Array(
                ValueType::String,
                vec!["<s>".into(), "hello".into(), "wörld".into()],
            ),
        )
        .set(
            "test.nested",
            Value::Array(
                ValueType::Array,
                vec![
                    Value::Array(ValueType::U32, vec![Value::U32(1), Value::U32(2)]),
                    Value::Array(ValueType::F32, vec![]),
                ],
            ),
        )
        .set("test.empty", Value::Array(ValueType::I64, vec![]));
    w.add_tensor_f32("a", &[8], (0..8).map(|i| i as f32 * 0.5).collect());
    w.add_tensor_f32(
        "b.weight",
        &[3, 2],
        vec![1.0, -1.0, 2.0, -2.0, 3.0, f32::MIN_POSITIVE],
    );
    // Half precision: 1.0, -2.0, 65504, 2^-24
    let halves: Vec<u8> = [0x3c00u16, 0xc000, 0x7bff, 0x0001]
        .iter()
        .flat_map(|h| h.to_le_bytes())
        .collect();
    w.add_tensor_raw("c.half", &[4], GgmlType::F16, halves);
    // One Q8_0 block: 32 elements in 34 bytes (not readable as f32, but valid).
    w.add_tensor_raw("d.q8", &[32], GgmlType::Q8_0, vec![7u8; 34]);
    w
}

#[test]
fn round_trip_preserves_metadata_and_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    sample_writer().write(&path).unwrap();

    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 32);
    assert_eq!(file.data_start() % 32, 0);
    assert_eq!(file.architecture(), Some("llama"));
    assert_eq!(file.get_str("general.name"), Some("tiny"));
    assert_eq!(file.get_u32("llama.embedding_length"), Some(8));
    assert_eq!(file.get_u32("llama.block_count"), Some(3));
    assert_eq!(file.get_u64("test.i32"), None, "negative is not a u64");
    assert_eq!(file.metadata("test.i64"), Some(&Value::I64(-(1 << 40))));
    assert_eq!(file.metadata("test.u16"), Some(&Value::U16(60000)));
    assert_eq!(file.metadata("test.bool"), Some(&Value::Bool(true)));
    assert_eq!(
        file.metadata("test.f64").and_then(Value::as_f64),
        Some(-2.5)
    );
    let tokens = file.metadata("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.as_array().unwrap()[2].as_str(), Some("wörld"));
    assert_eq!(
        file.metadata("test.nested"),
        sample_writer_value("test.nested").as_ref()
    );
    assert_eq!(
        file.metadata("test.empty"),
        Some(&Value::Array(ValueType::I64, vec![]))
    );
    let keys: Vec<&str> = file.metadata_entries().map(|(k, _)| k).collect();
    assert_eq!(keys[0], "general.architecture", "file order is kept");

    let names: Vec<&str> = file.tensors().iter().map(|t| t.name()).collect();
    assert_eq!(names, ["a", "b.weight", "c.half", "d.q8"]);
    let b = file.tensor("b.weight").unwrap();
    assert_eq!(b.dims(), &[3, 2]);
    assert_eq!(b.n_elements(), 6);
    assert_eq!(b.byte_size(), Some(24));
    for t in file.tensors() {
        assert_eq!(t.offset() % 32, 0, "{} is aligned", t.name());
    }

    assert_eq!(
        file.read_tensor_f32("a").unwrap(),
        (0..8).map(|i| i as f32 * 0.5).collect::<Vec<_>>()
    );
    assert_eq!(
        file.read_tensor_f32("b.weight").unwrap(),
        vec![1.0, -1.0, 2.0, -2.0, 3.0, f32::MIN_POSITIVE]
    );
    assert_eq!(
        file.read_tensor_f32("c.half").unwrap(),
        vec![1.0, -2.0, 65504.0, 2f32.powi(-24)]
    );
    let err = file.read_tensor_f32("d.q8").unwrap_err();
    assert!(
        matches!(err, GgufError::UnsupportedTensorType { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Q8_0"), "{err}");
    let err = file.read_tensor_f32("nope").unwrap_err();
    assert!(err.to_string().contains("no tensor named 'nope'"), "{err}");
    assert!(err.to_string().contains("model.gguf"), "{err}");

    // The file ends exactly after the last tensor's padding.
    assert_eq!(file.file_len() % 32, 0);
    assert_eq!(file.file_len(), std::fs::metadata(&path).unwrap().len());
}

fn sample_writer_value(key: &str) -> Option<Value> {
    let bytes = sample_writer().to_bytes().unwrap();
    GgufFile::from_bytes("mem", bytes)
        .unwrap()
        .metadata(key)
        .cloned()
}

#[test]
fn in_memory_and_on_disk_encodings_are_identical() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    let writer = sample_writer();
    writer.write(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), writer.to_bytes().unwrap());
    // No temporary file is left behind.
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn custom_alignment_is_honoured() {
    let mut w = GgufWriter::new();
    w.set("general.alignment", 64u32)
        .add_tensor_f32("x", &[3], vec![1.0, 2.0, 3.0])
        .add_tensor_f32("y", &[1], vec![4.0]);
    let file = GgufFile::from_bytes("mem", w.to_bytes().unwrap()).unwrap();
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_start() % 64, 0);
    assert_eq!(file.tensor("y").unwrap().offset(), 64);
    assert_eq!(file.read_tensor_f32("y").unwrap(), vec![4.0]);
}

#[test]
fn writer_rejects_bad_input_naming_the_destination() {
    let cases: Vec<(GgufWriter, &str)> = vec![
        (
            {
                let mut w = GgufWriter::new();
                w.add_tensor_f32("x", &[4], vec![1.0; 3]);
                w
            },
            "need 16 bytes",
        ),
        (
            {
                let mut w = GgufWriter::new();
                w.add_tensor_f32("x", &[1], vec![1.0])
                    .add_tensor_f32("x", &[1], vec![1.0]);
                w
            },
            "duplicate tensor name",
        ),
        (
            {
                let mut w = GgufWriter::new();
                w.add_tensor_f32("n".repeat(64), &[1], vec![1.0]);
                w
            },
            "must be 1 to 63 bytes",
        ),
        (
            {
                let mut w = GgufWriter::new();
                w.set("general.alignment", 48u32);
                w
            },
            "power of two",
        ),
        (
            {
                let mut w = GgufWriter::new();
                w.set(
                    "mixed",
                    Value::Array(ValueType::U32, vec![Value::U32(1), Value::I32(2)]),
                );
                w
            },
            "array of u32 has a i32 at index 1",
        ),
        (
            {
                let mut w = GgufWriter::new();
                w.add_tensor_raw("q", &[31], GgmlType::Q4_0, vec![0; 18]);
                w
            },
            "not a multiple of the Q4_0 block size 32",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    for (writer, expected) in cases {
        let err = writer.write(&path).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("bad.gguf"), "{message}");
        assert!(
            message.contains(expected),
            "{message} (expected {expected:?})"
        );
        assert!(!path.exists());
    }
}

#[test]
fn open_reports_missing_file_with_path() {
    let err = GgufFile::open("/nonexistent/dir/model.gguf").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("/nonexistent/dir/model.gguf"), "{message}");
    assert!(message.contains("cannot open"), "{message}");
}

#[test]
fn bad_magic_and_versions_are_named() {
    let mut bytes = sample_writer().to_bytes().unwrap();
    bytes[..4].copy_from_slice(b"GGML");
    let err = GgufFile::from_bytes("m.bin", bytes.clone()).unwrap_err();
    assert!(matches!(err, GgufError::BadMagic { .. }));
    assert!(
        err.to_string().contains("not a GGUF file (bad magic"),
        "{err}"
    );

    bytes[..4].copy_from_slice(b"GGUF");
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    let err = GgufFile::from_bytes("m.bin", bytes.clone()).unwrap_err();
    assert!(
        err.to_string().contains("unsupported GGUF version 1"),
        "{err}"
    );

    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    let err = GgufFile::from_bytes("m.bin", bytes.clone()).unwrap_err();
    assert!(err.to_string().contains("big-endian"), "{err}");

    // v2 has the same layout as v3 for little-endian files.
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let file = GgufFile::from_bytes("m.bin", bytes).unwrap();
    assert_eq!(file.version(), 2);
}

#[test]
fn tensor_past_end_of_file_is_truncated_error() {
    let bytes = sample_writer().to_bytes().unwrap();
    let cut = bytes.len() - 1;
    let err = GgufFile::from_bytes("cut.gguf", bytes[..cut].to_vec()).unwrap_err();
    match err {
        GgufError::Truncated { need, have, .. } => {
            assert_eq!(have, cut as u64);
            assert_eq!(need, bytes.len() as u64);
        }
        other => panic!("expected Truncated, got {other}"),
    }
}

#[test]
fn huge_announced_lengths_fail_without_allocating() {
    // Header claiming 2^40 tensors.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend((1u64 << 40).to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    let err = GgufFile::from_bytes("h.gguf", bytes).unwrap_err();
    assert!(err.to_string().contains("tensor count"), "{err}");

    // One metadata string claiming u64::MAX bytes.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(u64::MAX.to_le_bytes());
    bytes.extend([0u8; 64]);
    let err = GgufFile::from_bytes("h.gguf", bytes).unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");

    // An array claiming 1M u64 elements in a tiny file.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.push(b'k');
    bytes.extend(ValueType::Array.id().to_le_bytes());
    bytes.extend(ValueType::U64.id().to_le_bytes());
    bytes.extend((1u64 << 20).to_le_bytes());
    let err = GgufFile::from_bytes("h.gguf", bytes).unwrap_err();
    assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
}

#[test]
fn deeply_nested_arrays_are_rejected() {
    let mut bytes = b"GGUF".to_vec();
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(0u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.extend(1u64.to_le_bytes());
    bytes.push(b'k');
    bytes.extend(ValueType::Array.id().to_le_bytes());
    for _ in 0..100 {
        bytes.extend(ValueType::Array.id().to_le_bytes());
        bytes.extend(1u64.to_le_bytes());
    }
    let err = GgufFile::from_bytes("deep.gguf", bytes).unwrap_err();
    assert!(err.to_string().contains("nested deeper"), "{err}");
}

#[test]
fn duplicate_keys_and_misaligned_offsets_are_rejected() {
    // Duplicate key: write a file then rename the second key in place to match the first.
    let mut w = GgufWriter::new();
    w.set("key.a", 1u32).set("key.b", 2u32);
    let mut bytes = w.to_bytes().unwrap();
    let pos = bytes.windows(5).rposition(|win| win == b"key.b").unwrap();
    bytes[pos + 4] = b'a';
    let err = GgufFile::from_bytes("dup.gguf", bytes).unwrap_err();
    assert!(
        err.to_string().contains("duplicate metadata key 'key.a'"),
        "{err}"
    );

    let mut w = GgufWriter::new();
    w.add_tensor_f32("t", &[1], vec![1.0]);
    let mut bytes = w.to_bytes().unwrap();
    // The offset is the last 8 bytes of the tensor info, just before the padding.
    let name_pos = bytes.windows(1).rposition(|win| win == b"t").unwrap();
    let offset_pos = name_pos + 1 + 4 + 8 + 4;
    bytes[offset_pos..offset_pos + 8].copy_from_slice(&4u64.to_le_bytes());
    let err = GgufFile::from_bytes("mis.gguf", bytes).unwrap_err();
    assert!(
        err.to_string().contains("not a multiple of the alignment"),
        "{err}"
    );
}

#[test]
fn require_accessors_explain_problems() {
    let file = GgufFile::from_bytes("r.gguf", sample_writer().to_bytes().unwrap()).unwrap();
    assert_eq!(file.require_u32("llama.block_count").unwrap(), 3);
    assert_eq!(file.require_u64("test.u8").unwrap(), 200);
    assert_eq!(file.require_str("general.name").unwrap(), "tiny");
    let err = file.require_str("missing.key").unwrap_err().to_string();
    assert!(
        err.contains("r.gguf: metadata key 'missing.key': missing"),
        "{err}"
    );
    let err = file.require_u32("general.name").unwrap_err().to_string();
    assert!(err.contains("expected an integer"), "{err}");
    let err = file
        .require_str("tokenizer.ggml.tokens")
        .unwrap_err()
        .to_string();
    assert!(err.contains("array of 3 string"), "{err}");
}

#[test]
fn unknown_tensor_type_opens_but_size_is_unknown() {
    let mut w = GgufWriter::new();
    w.add_tensor_f32("t", &[2], vec![1.0, 2.0]);
    let mut bytes = w.to_bytes().unwrap();
    let name_pos = bytes.windows(1).rposition(|win| win == b"t").unwrap();
    let type_pos = name_pos + 1 + 4 + 8;
    bytes[type_pos..type_pos + 4].copy_from_slice(&200u32.to_le_bytes());
    let file = GgufFile::from_bytes("u.gguf", bytes).unwrap();
    let info = file.tensor("t").unwrap();
    assert_eq!(info.byte_size(), None);
    assert_eq!(info.ggml_type().to_string(), "unknown ggml type 200");
    let err = file.read_tensor_f32("t").unwrap_err().to_string();
    assert!(err.contains("unknown ggml type 200"), "{err}");
}

#[test]
fn file_truncated_after_open_is_reported_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shrink.gguf");
    let mut w = GgufWriter::new();
    w.add_tensor_f32("t", &[64], vec![1.5; 64]);
    w.write(&path).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    let handle = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    handle.set_len(len - 100).unwrap();
    let err = file.read_tensor_f32("t").unwrap_err();
    assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
}
