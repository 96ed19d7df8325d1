//! Multi-thread stress: exactness under contention, replayed from the admitted timestamps;
//! no lost updates on distinct keys; a lockout survives a flood of new keys.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use sluice::{Category, Limiter, Status};

const T0: i64 = 1_767_225_600_000;

#[path = "support/windows.rs"]
mod windows;
use windows::max_in_any_window;

#[test]
fn threads_hammering_one_key_never_exceed_the_limit() {
    const LIMIT: usize = 5;
    const WINDOW: i64 = 20;
    let l = Arc::new(Limiter::open("global 5/20ms\napi 3/7ms").unwrap());
    let api = l.category("api").unwrap();
    // A shared simulated clock that the threads push forward as they go, so that decisions
    // race at equal and at neighbouring instants.
    let clock = Arc::new(AtomicI64::new(T0));
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (l, clock, barrier) = (l.clone(), clock.clone(), barrier.clone());
            thread::spawn(move || {
                let mut global_ok = Vec::new();
                let mut api_ok = Vec::new();
                barrier.wait();
                for n in 0..100_000 {
                    let t = if n % 7 == 0 {
                        clock.fetch_add(1, Ordering::Relaxed) + 1
                    } else {
                        clock.load(Ordering::Relaxed)
                    };
                    let cat = if (n + i) % 3 == 0 {
                        api
                    } else {
                        Category::GLOBAL
                    };
                    let d = l.check_at("hot", cat, t).unwrap();
                    if d.allowed {
                        global_ok.push(t);
                        if cat == api {
                            api_ok.push(t);
                        }
                    }
                }
                (global_ok, api_ok)
            })
        })
        .collect();
    let (mut global, mut api_ts) = (Vec::new(), Vec::new());
    for h in handles {
        let (g, a) = h.join().unwrap();
        global.extend(g);
        api_ts.extend(a);
    }
    assert!(
        global.len() > 100,
        "too few admitted to mean anything: {}",
        global.len()
    );
    assert!(max_in_any_window(&mut global, WINDOW) <= LIMIT);
    assert!(max_in_any_window(&mut api_ts, 7) <= 3);
    // The stats agree with what the threads saw.
    let st = l.stats_at(clock.load(Ordering::Relaxed));
    assert_eq!(st.rules[0].passed as usize, global.len());
    assert_eq!(st.rules[1].passed as usize, api_ts.len());
}

#[test]
fn threads_on_distinct_keys_lose_no_update() {
    let per_thread = 2_000u32;
    let l = Arc::new(Limiter::open("global 65535/1h\ncapacity 1024").unwrap());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let l = l.clone();
            thread::spawn(move || {
                let key = format!("key-{i}");
                for n in 0..per_thread {
                    let d = l.check_at(&key, Category::GLOBAL, T0 + n as i64).unwrap();
                    assert!(d.allowed);
                    assert_eq!(d.remaining, 65_535 - n - 1, "lost update on {key}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for i in 0..4 {
        let d = l
            .peek_at(format!("key-{i}"), Category::GLOBAL, T0 + 10_000)
            .unwrap();
        assert_eq!(d.remaining, 65_535 - per_thread - 1);
    }
    assert_eq!(l.stats_at(T0).rules[0].passed, 4 * per_thread as u64);
}

#[test]
fn a_locked_key_survives_a_flood_of_ten_times_capacity() {
    let capacity = 256;
    let l = Arc::new(
        Limiter::open(&format!(
            "global 100/1m\nauth 100/1m\nauth lockout 3/15m for 15m\ncapacity {capacity}"
        ))
        .unwrap(),
    );
    let auth = l.category("auth").unwrap();
    for i in 0..3 {
        l.failure_at("victim-of-lockout", auth, T0 + i).unwrap();
    }
    assert_eq!(
        l.check_at("victim-of-lockout", auth, T0 + 5)
            .unwrap()
            .status,
        Status::Locked
    );
    // Four threads flood 10 × capacity distinct new keys through every path that installs.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let l = l.clone();
            thread::spawn(move || {
                for n in 0..(10 * capacity / 4) {
                    let key = format!("flood-{i}-{n}");
                    let t = T0 + 10 + n as i64;
                    if n % 2 == 0 {
                        l.check_at(&key, auth, t).unwrap();
                    } else {
                        l.failure_at(&key, auth, t).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let st = l.stats_at(T0 + 10_000);
    assert!(st.evictions > 0, "the flood should have evicted: {st:?}");
    assert_eq!(st.live_keys, capacity as u64);
    let d = l.check_at("victim-of-lockout", auth, T0 + 10_000).unwrap();
    assert_eq!(d.status, Status::Locked, "the lockout was evicted");
    assert_eq!(d.retry_after, 900 - 10 + 1);
}

#[test]
fn simultaneous_first_requests_of_a_new_key_are_not_refused() {
    // Two threads send the first request of 2,000 new keys at the same moment (a new client's
    // parallel requests on two workers). One installs the key; the other re-reads until it is
    // published instead of being refused for having raced the install.
    let l = Arc::new(Limiter::open("global 100/1m\ncapacity 8192").unwrap());
    let rounds = 2_000;
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (l, barrier) = (l.clone(), barrier.clone());
            thread::spawn(move || {
                let mut refused = 0;
                for r in 0..rounds {
                    barrier.wait();
                    if !l
                        .check_at(format!("new-{r}"), Category::GLOBAL, T0)
                        .unwrap()
                        .allowed
                    {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    let refused: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // A descheduled installer can still cost a refusal now and then; 1% is far above that.
    assert!(
        refused <= rounds * 2 / 100,
        "{refused} of {} first requests refused",
        rounds * 2
    );
}
