//! Property tests: truncated and random input is rejected cleanly, never panics.

use limbic_gguf::{GgufError, GgufFile, GgufWriter, Value, ValueType};
use proptest::prelude::*;

/// A small but varied valid file built from generated parts.
fn build_file(
    strings: &[String],
    numbers: &[u32],
    tensors: &[Vec<f32>],
    alignment_exp: Option<u32>,
) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", "controlvector");
    if let Some(exp) = alignment_exp {
        w.set("general.alignment", 1u32 << exp);
    }
    for (i, s) in strings.iter().enumerate() {
        w.set(format!("s.{i}"), s.as_str());
    }
    w.set(
        "numbers",
        Value::Array(
            ValueType::U32,
            numbers.iter().map(|&n| Value::U32(n)).collect(),
        ),
    );
    for (i, data) in tensors.iter().enumerate() {
        w.add_tensor_f32(
            format!("direction.{}", i + 1),
            &[data.len() as u64],
            data.clone(),
        );
    }
    w.to_bytes().unwrap()
}

fn file_parts() -> impl Strategy<Value = (Vec<String>, Vec<u32>, Vec<Vec<f32>>, Option<u32>)> {
    (
        prop::collection::vec(".{0,12}", 0..4),
        prop::collection::vec(any::<u32>(), 0..6),
        prop::collection::vec(prop::collection::vec(-1e3f32..1e3, 0..9), 0..4),
        prop::option::of(0u32..7),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn valid_files_round_trip((strings, numbers, tensors, alignment_exp) in file_parts()) {
        let bytes = build_file(&strings, &numbers, &tensors, alignment_exp);
        let file = GgufFile::from_bytes("p.gguf", bytes).unwrap();
        for (i, s) in strings.iter().enumerate() {
            prop_assert_eq!(file.get_str(&format!("s.{i}")), Some(s.as_str()));
        }
        let stored = file.metadata("numbers").and_then(Value::as_array).unwrap();
        prop_assert_eq!(stored.len(), numbers.len());
        for (i, data) in tensors.iter().enumerate() {
            let read = file.read_tensor_f32(&format!("direction.{}", i + 1)).unwrap();
            prop_assert_eq!(&read, data);
        }
    }

    /// Every strict prefix of a valid file is rejected with an error — never accepted,
    /// never a panic — and the error names the file.
    #[test]
    fn every_prefix_is_rejected((strings, numbers, tensors, alignment_exp) in file_parts()) {
        let bytes = build_file(&strings, &numbers, &tensors, alignment_exp);
        for cut in 0..bytes.len() {
            let result = GgufFile::from_bytes("prefix.gguf", bytes[..cut].to_vec());
            match result {
                Ok(_) => prop_assert!(false, "prefix of {} of {} bytes was accepted", cut, bytes.len()),
                Err(err) => {
                    prop_assert!(err.to_string().starts_with("prefix.gguf: "), "{}", err);
                    prop_assert!(matches!(err, GgufError::Truncated { .. }), "cut {}: {}", cut, err);
                }
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = GgufFile::from_bytes("random.gguf", bytes);
    }

    /// Random bytes behind a valid magic and version reach the deeper parsing code.
    #[test]
    fn random_bodies_never_panic(
        version in prop::sample::select(vec![2u32, 3]),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(version.to_le_bytes());
        bytes.extend(body);
        if let Ok(file) = GgufFile::from_bytes("random.gguf", bytes) {
            for info in file.tensors() {
                let _ = file.read_tensor_f32(info.name());
            }
        }
    }

    /// Flipping single bytes of a valid file gives either a file or an error, never a panic.
    #[test]
    fn corrupted_bytes_never_panic(
        (strings, numbers, tensors, alignment_exp) in file_parts(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = build_file(&strings, &numbers, &tensors, alignment_exp);
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(file) = GgufFile::from_bytes("flip.gguf", bytes) {
            for info in file.tensors() {
                let _ = file.read_tensor_f32(info.name());
            }
        }
    }
}
