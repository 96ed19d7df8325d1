//! The one place atomics come from. Under `--cfg loom` they are loom's, so the loom models in
//! `src/loom_tests.rs` explore every interleaving of the real protocol code; otherwise std's.
//! (The same shape as tokio's `src/loom/` and crossbeam's `primitive` module.)

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
