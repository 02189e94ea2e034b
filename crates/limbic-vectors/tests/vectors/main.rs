//! Integration tests of control vectors, packs, layer selection, evaluation and interop:
//! one harness, a module per concern. (`plot_without_font.rs` stays a separate binary on
//! purpose: it needs a process in which no font was ever registered.)

mod cvec;
mod eval;
mod fuzz;
mod pack;
mod python_interop;
mod select;
