//! Time: Unix milliseconds as `i64`, an injectable [`Clock`], and the packing of timestamps.
//!
//! Timestamps are stored as absolute Unix milliseconds in 42 bits (good until the year 2109),
//! so a table never wraps the way a 32-bit millisecond counter does after 49.7 days.

use std::sync::atomic::{AtomicI64, Ordering};

/// Latest instant sluice can represent: 2^42 - 2 ms after the Unix epoch (year 2109).
pub const MAX_TIME_MS: i64 = (1 << 42) - 2;

/// A source of the current time, in Unix milliseconds. Inject your own with
/// [`crate::LimiterBuilder::clock`] (tests use [`ManualClock`]).
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system's wall clock (`CLOCK_REALTIME`).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_millis() as i64,
            Err(_) => 0,
        }
    }
}

/// A clock that only moves when told to: for tests and simulations.
///
/// ```
/// use sluice::{Clock, ManualClock};
/// let c = ManualClock::new(1_000);
/// c.advance(500);
/// assert_eq!(c.now_ms(), 1_500);
/// c.set(10); // backwards is allowed: sluice must cope with wall-clock steps
/// assert_eq!(c.now_ms(), 10);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(now_ms))
    }
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, by_ms: i64) {
        self.0.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_ms(&self) -> i64 {
        (**self).now_ms()
    }
}

/// [`ceil_secs`] of a span known to lie in `0..=2^62` (a table timestamp plus a policy's
/// window): an unsigned multiply-shift instead of a signed division and remainder.
#[inline]
pub(crate) fn ceil_secs_bounded(ms: i64) -> i64 {
    debug_assert!((0..=1 << 62).contains(&ms), "{ms}");
    (ms.max(0) as u64).div_ceil(1000) as i64
}

/// Seconds, rounded up, of a non-negative millisecond span.
#[inline]
pub(crate) fn ceil_secs(ms: i64) -> i64 {
    if ms <= 0 {
        0
    } else {
        // Exact for every i64: `ms + 999` would overflow near i64::MAX.
        ms / 1000 + i64::from(ms % 1000 != 0)
    }
}
