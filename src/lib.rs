//! # sluice
//!
//! An embedded rate-limiting engine: exact sliding-window-log limits per client, several rules
//! at once (the most restrictive wins, all-or-nothing), and brute-force lockouts, in a
//! fixed-size table of cache-line-aligned slots updated lock-free.
//!
//! ```
//! use sluice::{Limiter, DEFAULT_POLICY};
//!
//! let limiter = Limiter::open(DEFAULT_POLICY)?;
//! let write = limiter.category("write")?;
//! let d = limiter.check("203.0.113.9", write)?;
//! assert!(d.allowed);
//! assert_eq!((d.limit, d.remaining), (30, 29)); // `write 30/1m` is the tightest rule
//! # Ok::<(), sluice::Error>(())
//! ```
//!
//! What every call decides and reports — the policy language, the sliding-window rule, several
//! rules, the [`Decision`] and its fields, lockouts, headers, time, the table and the
//! concurrency guarantees — is written out in `docs/semantics.md` in the repository;
//! `ARCHITECTURE.md` explains the table and the lock-free protocol, and why it never admits
//! more than a rule allows.
//!
//! Where to start: [`Limiter::open`] (private memory) or [`Limiter::open_file`] (a table shared
//! by every process that opens the path), [`Limiter::category`] once per category, then
//! [`Limiter::check`] per request and [`Limiter::headers`] for the response. Lockouts:
//! [`Limiter::failure`], [`Limiter::success`], [`Limiter::reset`].

mod engine;
mod error;
#[cfg(not(loom))]
pub mod ffi;
mod hash;
mod headers;
mod limiter;
pub mod policy;
mod sync;
mod table;
mod time;

#[cfg(all(test, loom))]
mod loom_tests;

pub use engine::{
    Category, Decision, KeyEngine, KeySnapshot, KeyState, LockoutSnapshot, Status, Unlock,
};
pub use error::{Error, MAX_KEY_LEN};
pub use headers::HeaderStyle;
pub use limiter::{Limiter, LimiterBuilder, RuleStats, Stats};
pub use policy::{Policy, PolicyError, DEFAULT_POLICY};
#[cfg(not(loom))]
pub use table::migrate::{MigrationReport, RuleCarried, REHOME_MIN_CAPACITY};
pub use time::{Clock, CoarseClock, ManualClock, SystemClock, MAX_TIME_MS};

/// For `benches/check.rs` only (the `floor` group): the key hash a check computes, so the
/// bench can time it alone. Not part of the API.
#[doc(hidden)]
pub fn __bench_key_hash(secret: [u64; 2], key: &[u8]) -> u64 {
    hash::hash_key(secret, key)
}

/// The README's examples, compiled and run as doctests so they cannot drift.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
