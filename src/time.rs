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

/// The system's wall clock (`CLOCK_REALTIME`, millisecond resolution).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now_ms(&self) -> i64 {
        realtime_ms(libc::CLOCK_REALTIME)
    }
}

/// Unix milliseconds of `clock` (a realtime clock id), by `clock_gettime` (the vDSO: no system
/// call); 0 if the clock cannot be read or is before 1970.
#[inline]
#[allow(clippy::unnecessary_cast)] // time_t and c_long are 32-bit on some targets
fn realtime_ms(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call's duration.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as i64 * 1000 + ts.tv_nsec as i64 / 1_000_000).max(0)
}

/// The kernel's tick-granular wall clock (`CLOCK_REALTIME_COARSE`): the time of the last
/// timer tick, read without touching the clock hardware, so it costs a few nanoseconds where
/// [`SystemClock`] costs tens. Its resolution is the tick (1–4 ms, by the kernel's `CONFIG_HZ`;
/// [`CoarseClock::resolution_ms`] says), and it can fall further behind when ticks are late (a
/// busy virtual machine: several ms were seen). Requests within one tick share a timestamp, so
/// a window is effectively measured in ticks: choose it only when every window of the policy
/// is much longer than that (seconds or more). Limits stay exact for the timestamps given;
/// only the timestamps are coarser. Linux only.
///
/// ```
/// use sluice::{Category, CoarseClock, Limiter};
/// let l = Limiter::builder("global 100/1m").clock(CoarseClock).open()?;
/// assert!(l.check("198.51.100.7", Category::GLOBAL)?.allowed);
/// # Ok::<(), sluice::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct CoarseClock;

impl CoarseClock {
    /// The clock's resolution in milliseconds (rounded up), as the kernel reports it.
    #[allow(clippy::unnecessary_cast)] // time_t and c_long are 32-bit on some targets
    pub fn resolution_ms() -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer for the call's duration.
        if unsafe { libc::clock_getres(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 {
            return 0;
        }
        (ts.tv_sec as i64 * 1000 + (ts.tv_nsec as i64 + 999_999) / 1_000_000).max(1)
    }
}

impl Clock for CoarseClock {
    #[inline]
    fn now_ms(&self) -> i64 {
        realtime_ms(libc::CLOCK_REALTIME_COARSE)
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The coarse clock is the wall clock give or take late ticks (100 ms of slack: a loaded
    /// VM delays ticks; a unit error would be off by orders of magnitude), never ahead of it,
    /// and its resolution is what the kernel says (at most a 100 Hz tick).
    #[test]
    fn coarse_clock_follows_the_system_clock_give_or_take_late_ticks() {
        let res = CoarseClock::resolution_ms();
        assert!((1..=10).contains(&res), "resolution {res} ms");
        for _ in 0..1000 {
            let before = SystemClock.now_ms();
            let coarse = CoarseClock.now_ms();
            let after = SystemClock.now_ms();
            assert!(
                coarse <= after,
                "coarse {coarse} is ahead of the wall clock {after}"
            );
            assert!(
                coarse >= before - 100,
                "coarse {coarse} lags {before} by over 100 ms"
            );
        }
    }
}
