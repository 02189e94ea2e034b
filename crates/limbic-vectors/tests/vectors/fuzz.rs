//! A pack directory and its control-vector files are outside input (a user may point
//! `--pack` anywhere): any edit of the committed pack loads or fails with an error, never
//! a panic.

use std::path::{Path, PathBuf};

use limbic_vectors::cvec::ControlVector;
use limbic_vectors::pack::Pack;
use proptest::prelude::*;

fn committed_pack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vectors/smollm2-135m-instruct")
}

fn mutate(mut bytes: Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
    for (at, value, op) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = at.index(bytes.len());
        match op % 4 {
            0 => bytes[i] = *value,
            1 => bytes.insert(i, *value),
            2 => {
                bytes.remove(i);
            }
            _ => bytes.truncate(i),
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
    prop::collection::vec(
        (any::<prop::sample::Index>(), any::<u8>(), any::<u8>()),
        1..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mutated_pack_manifests_never_panic(edits in edits()) {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(committed_pack()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        let manifest = std::fs::read(dir.path().join("pack.toml")).unwrap();
        std::fs::write(dir.path().join("pack.toml"), mutate(manifest, &edits)).unwrap();
        if let Ok(pack) = Pack::load(dir.path()) {
            let _ = pack.check_model("0", 576);
        }
    }

    #[test]
    fn mutated_control_vectors_never_panic(edits in edits(), header_only in any::<bool>()) {
        let bytes = std::fs::read(committed_pack().join("desperation.gguf")).unwrap();
        // Mutations in the header reach the GGUF parser; anywhere, the tensor reads.
        let mutated = if header_only {
            let (head, tail) = bytes.split_at(512.min(bytes.len()));
            let mut out = mutate(head.to_vec(), &edits);
            out.extend_from_slice(tail);
            out
        } else {
            mutate(bytes, &edits)
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.gguf");
        std::fs::write(&path, mutated).unwrap();
        let _ = ControlVector::read(&path);
    }
}
