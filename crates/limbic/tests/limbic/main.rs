//! End-to-end tests of the `limbic` binary on the real default model and real SQLite files.
//! One harness (one test binary) with a module per surface.

mod common;

mod audit;
mod daemon;
mod guard;
mod hooks;
mod native;
mod reload;
mod throughput;
mod vectors;
