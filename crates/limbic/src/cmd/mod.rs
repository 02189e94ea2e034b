//! One module per subcommand. Each uses the libraries, never another command module;
//! shared command-line options live in `crate::args`.

pub mod audit;
pub mod bench;
pub mod check;
pub mod demo;
pub mod eval;
pub mod model;
pub mod serve;
pub mod taps;
pub mod vectors;
