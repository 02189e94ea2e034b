//! Integration tests of the GGUF reader and writer: one harness, a module per concern.

mod robustness;
mod roundtrip;
