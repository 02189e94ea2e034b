#!/usr/bin/env python3
"""Cross-check limbic's control-vector files against the reference `gguf` package.

Used by tests/python_interop.rs:
  gguf_interop.py write <path> <n_embd> <layer>...   write a control vector with gguf.GGUFWriter
  gguf_interop.py check <path> <n_embd> <layer>...   read a limbic-written file with gguf.GGUFReader
  gguf_interop.py write-model <path>                  write a model-like file: every metadata
                                                      type, F32/F16/Q8_0 tensors (for limbic-gguf)

Direction values follow expected_value() below; the Rust test uses the same formula.
Exits non-zero with a message on any mismatch.
"""

import math
import sys

import numpy as np
import gguf


def expected_value(layer: int, i: int) -> float:
    # Keep in sync with expected_value() in python_interop.rs.
    return math.sin(layer * 1.7 + i * 0.1) * layer


def expected_direction(layer: int, n_embd: int) -> np.ndarray:
    return np.array([expected_value(layer, i) for i in range(n_embd)], dtype=np.float32)


def field_value(reader: "gguf.GGUFReader", key: str):
    field = reader.fields.get(key)
    if field is None:
        return None
    if hasattr(field, "contents"):
        return field.contents()
    # Older gguf versions: the last part holds the value.
    part = field.parts[field.data[0]]
    if field.types and field.types[0] == gguf.GGUFValueType.STRING:
        return bytes(part).decode("utf-8")
    return part.tolist()[0]


def write(path: str, n_embd: int, layers: list[int]) -> None:
    writer = gguf.GGUFWriter(path, arch="controlvector")
    writer.add_string("controlvector.model_hint", "llama")
    writer.add_uint32("controlvector.layer_count", len(layers))
    for layer in layers:
        writer.add_tensor(f"direction.{layer}", expected_direction(layer, n_embd))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_model(path: str) -> None:
    # Keep in sync with python_written_model_file_opens_in_limbic_gguf().
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -7)
    writer.add_uint16("t.u16", 60000)
    writer.add_int16("t.i16", -300)
    writer.add_uint32("t.u32", 576)
    writer.add_int32("t.i32", -70000)
    writer.add_float32("t.f32", 0.5)
    writer.add_uint64("t.u64", 1 << 40)
    writer.add_int64("t.i64", -(1 << 40))
    writer.add_float64("t.f64", -2.25)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "w\u00f6rld")
    writer.add_array("t.tokens", ["a", "bb", "ccc"])
    writer.add_array("t.ints", [1, 2, 3])
    writer.add_array("t.nested", [[1, 2], [3]])
    writer.add_tensor("f32", np.arange(12, dtype=np.float32).reshape(3, 4))
    writer.add_tensor("f16", np.array([1.0, -2.0, 0.5], dtype=np.float16))
    quantized = gguf.quants.quantize(
        np.linspace(-1, 1, 64, dtype=np.float32), gguf.GGMLQuantizationType.Q8_0
    )
    writer.add_tensor("q8", quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def check(path: str, n_embd: int, layers: list[int]) -> None:
    reader = gguf.GGUFReader(path)
    problems = []
    arch = field_value(reader, "general.architecture")
    if arch != "controlvector":
        problems.append(f"general.architecture is {arch!r}")
    hint = field_value(reader, "controlvector.model_hint")
    if hint != "llama":
        problems.append(f"controlvector.model_hint is {hint!r}")
    count = field_value(reader, "controlvector.layer_count")
    if count != len(layers):
        problems.append(f"controlvector.layer_count is {count!r}, expected {len(layers)}")
    names = [t.name for t in reader.tensors]
    expected_names = [f"direction.{layer}" for layer in layers]
    if sorted(names) != sorted(expected_names):
        problems.append(f"tensor names {names}, expected {expected_names}")
    for tensor in reader.tensors:
        if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
            problems.append(f"{tensor.name} has type {tensor.tensor_type!r}")
            continue
        layer = int(tensor.name.split(".", 1)[1])
        data = np.asarray(tensor.data, dtype=np.float32).reshape(-1)
        if data.shape != (n_embd,):
            problems.append(f"{tensor.name} has shape {data.shape}")
        elif not np.allclose(data, expected_direction(layer, n_embd), atol=1e-6):
            problems.append(f"{tensor.name} values differ")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print("ok")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "write-model":
        write_model(sys.argv[2])
        return
    if len(sys.argv) < 4 or sys.argv[1] not in ("write", "check"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    command, path, n_embd = sys.argv[1], sys.argv[2], int(sys.argv[3])
    layers = [int(x) for x in sys.argv[4:]]
    (write if command == "write" else check)(path, n_embd, layers)


if __name__ == "__main__":
    main()
