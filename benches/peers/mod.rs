//! The peers sluice is measured against (BENCHMARKS.md), shared by the benches.
//!
//! * [`MutexLog`]: the straightforward exact sliding log, `Mutex<HashMap<Vec<u8>, VecDeque>>`,
//!   one deque of admitted timestamps per key and rule, all-or-nothing across rules.
//! * `governor`'s keyed limiter (its default `DashMap` store) and its direct limiter, given the
//!   same quota: `N/W` becomes a GCRA cell with burst `N` replenishing one every `W / N`
//!   ([`gcra_quota`]). GCRA is an approximation of a sliding window, not an exact log.

#![allow(dead_code)] // each bench target uses part of this

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::{DefaultClock, FakeRelativeClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Unix milliseconds, 2026-01-01.
pub const T0: i64 = 1_767_225_600_000;

/// The library clock of the mutex log: the same wall clock sluice's `SystemClock` reads.
#[inline]
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `limit` per `window_ms` as a governor quota: burst `limit`, one cell back every
/// `window / limit`.
pub fn gcra_quota(limit: u32, window_ms: u64) -> Quota {
    let period = Duration::from_nanos(window_ms * 1_000_000 / limit as u64);
    Quota::with_period(period)
        .expect("non-zero period")
        .allow_burst(NonZeroU32::new(limit).expect("non-zero limit"))
}

pub type GovKeyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;
pub type GovKeyedFake<K> = RateLimiter<
    K,
    DefaultKeyedStateStore<K>,
    FakeRelativeClock,
    NoOpMiddleware<governor::nanos::Nanos>,
>;
pub type GovDirect = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;
pub type GovDirectFake =
    RateLimiter<NotKeyed, InMemoryState, FakeRelativeClock, NoOpMiddleware<governor::nanos::Nanos>>;

pub fn gov_keyed<K: std::hash::Hash + Eq + Clone>(limit: u32, window_ms: u64) -> GovKeyed<K> {
    RateLimiter::keyed(gcra_quota(limit, window_ms))
}

pub fn gov_keyed_fake<K: std::hash::Hash + Eq + Clone>(
    limit: u32,
    window_ms: u64,
    clock: &FakeRelativeClock,
) -> GovKeyedFake<K> {
    RateLimiter::dashmap_with_clock(gcra_quota(limit, window_ms), clock.clone())
}

pub fn gov_direct(limit: u32, window_ms: u64) -> GovDirect {
    RateLimiter::direct(gcra_quota(limit, window_ms))
}

pub fn gov_direct_fake(limit: u32, window_ms: u64, clock: &FakeRelativeClock) -> GovDirectFake {
    RateLimiter::direct_with_clock(gcra_quota(limit, window_ms), clock.clone())
}

/// The fake clock moves by `every` ms once per `every` calls: governor's explicit-time
/// variant pays one clock CAS per `every` checks instead of one per check.
pub struct FakeTime {
    pub clock: FakeRelativeClock,
    n: u32,
}

impl FakeTime {
    pub fn new() -> FakeTime {
        FakeTime {
            clock: FakeRelativeClock::default(),
            n: 0,
        }
    }

    #[inline]
    pub fn tick(&mut self) {
        self.n += 1;
        if self.n == 16 {
            self.n = 0;
            self.clock.advance(Duration::from_millis(16));
        }
    }
}

/// An exact sliding log under one mutex: for each key, one deque of admitted timestamps per
/// rule. A request is admitted iff every rule has fewer than N timestamps in `(t - W, t]`,
/// and then recorded in all of them (the same semantics as sluice).
pub struct MutexLog {
    rules: Vec<(usize, i64)>,
    map: Mutex<HashMap<Vec<u8>, Vec<VecDeque<i64>>>>,
}

impl MutexLog {
    /// `rules`: (N, W in ms).
    pub fn new(rules: &[(usize, i64)]) -> MutexLog {
        MutexLog {
            rules: rules.to_vec(),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_capacity(rules: &[(usize, i64)], keys: usize) -> MutexLog {
        MutexLog {
            rules: rules.to_vec(),
            map: Mutex::new(HashMap::with_capacity(keys)),
        }
    }

    pub fn check(&self, key: &[u8], now: i64) -> bool {
        let mut map = self.map.lock().unwrap();
        if !map.contains_key(key) {
            let logs = self.rules.iter().map(|_| VecDeque::new()).collect();
            map.insert(key.to_vec(), logs);
        }
        let logs = map.get_mut(key).expect("inserted");
        let mut admit = true;
        for (log, &(limit, window)) in logs.iter_mut().zip(&self.rules) {
            while log.front().is_some_and(|&ts| ts <= now - window) {
                log.pop_front();
            }
            admit &= log.len() < limit;
        }
        if admit {
            for log in logs.iter_mut() {
                log.push_back(now);
            }
        }
        admit
    }
}

/// `n` distinct client keys shaped like IPv4 addresses ("10.x.y.z").
pub fn ip_keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff))
        .collect()
}

/// A fixed pseudo-random sequence of indexes below `n` (xorshift64), so every implementation
/// sees the same keys in the same order.
pub fn random_indexes(n: usize, len: usize) -> Vec<u32> {
    let mut x = 0x2545F4914F6CDD1Du64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as u32
        })
        .collect()
}
