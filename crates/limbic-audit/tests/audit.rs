//! Integration tests of limbic-audit, one harness: real SQLite files in
//! temporary directories, tampered with through separate connections the
//! way an attacker with the sqlite3 tool would.

mod common;

#[path = "audit/anchor.rs"]
mod anchor;
#[path = "audit/concurrency.rs"]
mod concurrency;
#[path = "audit/files.rs"]
mod files;
#[path = "audit/log.rs"]
mod log;
#[path = "audit/read.rs"]
mod read;
#[path = "audit/steps.rs"]
mod steps;
#[path = "audit/tamper.rs"]
mod tamper;
