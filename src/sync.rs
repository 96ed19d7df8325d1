//! The one place atomics come from. Under `--cfg loom` they are loom's, so the loom models in
//! `src/loom_tests.rs` explore every interleaving of the real protocol code; otherwise std's.
//! (The same shape as tokio's `src/loom/` and crossbeam's `primitive` module.)

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

/// A hint to the CPU to bring `word`'s cache line closer (x86-64 `prefetcht0`); a no-op on
/// other targets and under loom (whose atomics are not plain memory).
#[inline(always)]
pub(crate) fn prefetch(word: &AtomicU64) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    // SAFETY: `prefetcht0` is a hint that never faults and reads nothing architecturally; the
    // address is that of a live word anyway. SSE is part of the x86-64 baseline.
    unsafe {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(word as *const AtomicU64 as *const i8);
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = word;
}
