//! Criterion benches of sluice's check path against its peers, every case in one run
//! (BENCHMARKS.md): `governor`'s keyed limiter (DashMap store) and direct limiter, given
//! the same quota as GCRA (approximate), and an exact sliding log under a mutex.
//!
//! Each case is measured with an explicit `now` (sluice's `*_at`, the mutex log's argument,
//! governor's `FakeRelativeClock`) and with each library's own clock.
//!
//! Run: `cargo bench --bench check` (about 3 minutes); one group: `cargo bench --bench check -- hot_key`.
//! After the groups, `paired` times the comparisons with governor keyed, and header formatting
//! against `check_at`, in alternating rounds (`-- paired` for that alone; any other filter
//! skips it; `-- paired_headers` runs the header pass alone, in seconds).

mod peers;

use std::ffi::{c_char, c_int};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use peers::*;
use sluice::{Category, Decision, HeaderStyle, Limiter};

const HOT_KEY: &str = "198.51.100.7";

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

/// One hot key, one thread. A quota of 100 per millisecond: with explicit time advancing 1 ms
/// per check every check is admitted and logged; with the library clock most are refused.
fn hot_key(c: &mut Criterion) {
    let mut g = group(c, "hot_key");
    let l = Limiter::open("global 100/1ms").unwrap();
    let mut t = T0;
    g.bench_function("sluice/now", |b| {
        b.iter(|| {
            t += 1;
            black_box(l.check_at(black_box(HOT_KEY), Category::GLOBAL, t).unwrap())
        })
    });
    g.bench_function("sluice/clock", |b| {
        b.iter(|| black_box(l.check(black_box(HOT_KEY), Category::GLOBAL).unwrap()))
    });
    // `allow_at`: the same decision, recorded and counted, as a bool without the report —
    // what governor's `check_key` answers.
    let la = Limiter::open("global 100/1ms").unwrap();
    let mut t = T0;
    g.bench_function("sluice_allow/now", |b| {
        b.iter(|| {
            t += 1;
            black_box(
                la.allow_at(black_box(HOT_KEY), Category::GLOBAL, t)
                    .unwrap(),
            )
        })
    });
    // The same with `CoarseClock` (CLOCK_REALTIME_COARSE): what reading the clock costs.
    let lc = Limiter::builder("global 100/1ms")
        .clock(sluice::CoarseClock)
        .open()
        .unwrap();
    g.bench_function("sluice/coarse_clock", |b| {
        b.iter(|| black_box(lc.check(black_box(HOT_KEY), Category::GLOBAL).unwrap()))
    });

    let key = HOT_KEY.to_string();
    let mut ft = FakeTime::new();
    let gk = gov_keyed_fake::<String>(100, 1, &ft.clock);
    g.bench_function("governor_keyed/now", |b| {
        b.iter(|| {
            ft.tick();
            black_box(gk.check_key(black_box(&key)).is_ok())
        })
    });
    let gk = gov_keyed::<String>(100, 1);
    g.bench_function("governor_keyed/clock", |b| {
        b.iter(|| black_box(gk.check_key(black_box(&key)).is_ok()))
    });
    let mut ft = FakeTime::new();
    let gd = gov_direct_fake(100, 1, &ft.clock);
    g.bench_function("governor_direct/now", |b| {
        b.iter(|| {
            ft.tick();
            black_box(gd.check().is_ok())
        })
    });
    let gd = gov_direct(100, 1);
    g.bench_function("governor_direct/clock", |b| {
        b.iter(|| black_box(gd.check().is_ok()))
    });

    let m = MutexLog::new(&[(100, 1)]);
    let mut t = T0;
    g.bench_function("mutex_log/now", |b| {
        b.iter(|| {
            t += 1;
            black_box(m.check(black_box(HOT_KEY.as_bytes()), t))
        })
    });
    g.bench_function("mutex_log/clock", |b| {
        b.iter(|| black_box(m.check(black_box(HOT_KEY.as_bytes()), wall_ms())))
    });
    g.finish();
}

/// One million live keys in each implementation, quota 10 per second per key.
///
/// Keys are 16-byte arrays ("10.x.y.z" zero-padded), and the random sequence of them is laid
/// out ahead in one contiguous stream that the benches read in order: so reading the next key
/// costs no cache miss of its own (as a key in a request buffer would not), and what is
/// measured is each implementation's own memory traffic.
struct Million {
    stream: Vec<Key>,
    sluice: Limiter,
    /// The same table backed by transparent huge pages (`LimiterBuilder::huge_pages`).
    sluice_huge: Limiter,
    gov_fake: GovKeyedFake<Key>,
    gov_time: FakeTime,
    gov: GovKeyed<Key>,
    mutex: MutexLog,
    floor: MemoryFloor,
}

/// The memory traffic of a check over the million random keys, with no decision around it:
/// a table of the same shape as sluice's for `global 10/1s` (an index of 2M words, 2M slots of
/// 128 bytes), the same keys at the same positions, and per request only what a check does
/// to memory — prefetch the slot's two lines, read the index word, read the counter and the
/// ring entry, CAS both, add to a stats word.
///
/// * `rmw`: the positions read from a precomputed stream. A request is a few dozen
///   instructions, so the out-of-order core starts the next requests' misses while this
///   one's are outstanding: this is below one miss per request.
/// * `rmw_hash`: each position found as a check must find it, by the key's SipHash-1-3 (the
///   keyed hash sluice uses, and governor's DashMap by default). Nothing else differs, yet on
///   this machine each request then waits out its own miss (the hash's instructions fill the
///   out-of-order window before the next request's loads are reached): what this table's
///   shape costs a keyed check before it decides anything, against the 150 ns once targeted.
/// * `read_only`: `rmw` without the CASes and the count.
/// * `dependent_miss`: one read whose address is the previous read's value, over the slots'
///   256 MB (a pointer chase through every slot in random order): the latency of one miss.
struct MemoryFloor {
    index: Vec<AtomicU64>,
    slots: Vec<AtomicU64>,
    stats: AtomicU64,
    /// The positions of the random key stream, in its order.
    stream: Vec<u32>,
    /// The word index where the pointer chase stands.
    chase: usize,
}

const FLOOR_SLOT_WORDS: usize = 16;
const FLOOR_CAPACITY: usize = 2 * LIVE;

impl MemoryFloor {
    fn new(keys: &[Key], order: &[u32]) -> MemoryFloor {
        let index: Vec<AtomicU64> = (0..FLOOR_CAPACITY).map(|_| AtomicU64::new(0)).collect();
        let slots: Vec<AtomicU64> = (0..FLOOR_CAPACITY * FLOOR_SLOT_WORDS)
            .map(|_| AtomicU64::new(0))
            .collect();
        let positions: Vec<u32> = keys.iter().map(MemoryFloor::hash_position).collect();
        for &p in &positions {
            index[p as usize].store(p as u64 | 1 << 63, Ordering::Relaxed);
            slots[p as usize * FLOOR_SLOT_WORDS].store(1, Ordering::Relaxed);
        }
        // The chase: the last word of every slot (a word no request touches) holds the index
        // of the next one's, one cycle through all slots in random order.
        let lines = slots.len() / FLOOR_SLOT_WORDS;
        let mut cycle: Vec<u32> = (0..lines as u32).collect();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in (1..lines).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cycle.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let word = |line: u32| (line as usize + 1) * FLOOR_SLOT_WORDS - 1;
        for (i, &line) in cycle.iter().enumerate() {
            let next = cycle[(i + 1) % lines];
            slots[word(line)].store(word(next) as u64, Ordering::Relaxed);
        }
        MemoryFloor {
            index,
            slots,
            stats: AtomicU64::new(0),
            stream: order.iter().map(|&i| positions[i as usize]).collect(),
            chase: word(cycle[0]),
        }
    }

    /// One step of the pointer chase.
    #[inline]
    fn dependent_miss(&mut self) -> usize {
        self.chase = self.slots[self.chase].load(Ordering::Relaxed) as usize;
        self.chase
    }

    /// A key's home position, as sluice computes it (under a fixed secret).
    #[inline]
    fn hash_position(key: &Key) -> u32 {
        let h = sluice::__bench_key_hash([1, 2], key);
        ((h as u128 * FLOOR_CAPACITY as u128) >> 64) as u32
    }

    /// The `i`-th position of the random stream, precomputed.
    #[inline]
    fn position(&self, i: usize) -> u32 {
        self.stream[i & (self.stream.len() - 1)]
    }

    /// One request's memory traffic at position `p`; the slot's counter picks the entry.
    #[inline]
    fn request(&self, p: u32, rmw: bool) -> u64 {
        let p = p as usize;
        let slot = &self.slots[p * FLOOR_SLOT_WORDS..(p + 1) * FLOOR_SLOT_WORDS];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetches never fault; both addresses are inside `slot`.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(slot.as_ptr() as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(slot[8..].as_ptr() as *const i8);
        }
        let fp = self.index[p].load(Ordering::Acquire);
        let (counter, ring) = (&slot[1], &slot[2..12]);
        let c = counter.load(Ordering::Acquire);
        let entry = &ring[(c % 10) as usize];
        let e = entry.load(Ordering::Acquire);
        if rmw {
            let _ = entry.compare_exchange(e, e + 1, Ordering::AcqRel, Ordering::Relaxed);
            let _ = counter.compare_exchange(c, c + 1, Ordering::AcqRel, Ordering::Relaxed);
            self.stats.fetch_add(1, Ordering::Relaxed);
        }
        fp ^ e
    }
}

type Key = [u8; 16];

const LIVE: usize = 1_000_000;

impl Million {
    fn new() -> Million {
        let keys: Vec<Key> = ip_keys(LIVE)
            .iter()
            .map(|k| {
                let mut a = [0u8; 16];
                a[..k.len()].copy_from_slice(k.as_bytes());
                a
            })
            .collect();
        // Twice the live keys: at 80 % load some 16-position neighbourhoods fill up and evict
        // (2 % of a million keys did, in a trial), which would bench re-installs instead.
        let policy = format!("global 10/1s\ncapacity {}", LIVE * 2);
        let sluice = Limiter::open(&policy).unwrap();
        let sluice_huge = Limiter::builder(&policy).huge_pages(true).open().unwrap();
        let gov_time = FakeTime::new();
        let gov_fake = gov_keyed_fake::<Key>(10, 1000, &gov_time.clock);
        let gov = gov_keyed::<Key>(10, 1000);
        let mutex = MutexLog::with_capacity(&[(10, 1000)], LIVE);
        for (i, k) in keys.iter().enumerate() {
            let t = T0 + i as i64 / 1000;
            assert!(sluice.check_at(k, Category::GLOBAL, t).unwrap().allowed);
            assert!(
                sluice_huge
                    .check_at(k, Category::GLOBAL, t)
                    .unwrap()
                    .allowed
            );
            let _ = gov_fake.check_key(k);
            let _ = gov.check_key(k);
            mutex.check(k, t);
        }
        let st = sluice.stats();
        eprintln!(
            "random_1M: {} live keys in sluice, {} evicted while filling",
            st.live_keys, st.evictions
        );
        let order = random_indexes(LIVE, 1 << 20);
        Million {
            floor: MemoryFloor::new(&keys, &order),
            stream: order.iter().map(|&i| keys[i as usize]).collect(),
            sluice,
            sluice_huge,
            gov_fake,
            gov_time,
            gov,
            mutex,
        }
    }

    /// The i-th key of the shared random sequence.
    #[inline]
    fn key(&self, i: usize) -> &Key {
        &self.stream[i & (self.stream.len() - 1)]
    }
}

/// Random keys over 1,000,000 live keys (one rule, `global 10/1s`, so that a million keys
/// fit in memory; the same quota in every peer).
fn random_keys(c: &mut Criterion, m: &mut Million) {
    let mut g = group(c, "random_1M");
    let mut i = 0usize;
    let mut t = T0 + 10_000;
    g.bench_function("sluice/now", |b| {
        b.iter(|| {
            i += 1;
            t += 1;
            black_box(m.sluice.check_at(m.key(i), Category::GLOBAL, t).unwrap())
        })
    });
    g.bench_function("sluice/clock", |b| {
        b.iter(|| {
            i += 1;
            black_box(m.sluice.check(m.key(i), Category::GLOBAL).unwrap())
        })
    });
    g.bench_function("sluice_allow/now", |b| {
        b.iter(|| {
            i += 1;
            t += 1;
            black_box(m.sluice.allow_at(m.key(i), Category::GLOBAL, t).unwrap())
        })
    });
    g.bench_function("sluice_huge_pages/now", |b| {
        b.iter(|| {
            i += 1;
            t += 1;
            black_box(
                m.sluice_huge
                    .check_at(m.key(i), Category::GLOBAL, t)
                    .unwrap(),
            )
        })
    });
    g.bench_function("governor_keyed/now", |b| {
        b.iter(|| {
            i += 1;
            m.gov_time.tick();
            black_box(m.gov_fake.check_key(m.key(i)).is_ok())
        })
    });
    g.bench_function("governor_keyed/clock", |b| {
        b.iter(|| {
            i += 1;
            black_box(m.gov.check_key(m.key(i)).is_ok())
        })
    });
    g.bench_function("mutex_log/now", |b| {
        b.iter(|| {
            i += 1;
            t += 1;
            black_box(m.mutex.check(m.key(i), t))
        })
    });
    g.bench_function("mutex_log/clock", |b| {
        b.iter(|| {
            i += 1;
            black_box(m.mutex.check(m.key(i), wall_ms()))
        })
    });
    g.bench_function("floor_memory/rmw", |b| {
        b.iter(|| {
            i += 1;
            black_box(m.floor.request(m.floor.position(i), true))
        })
    });
    g.bench_function("floor_memory/rmw_hash", |b| {
        b.iter(|| {
            i += 1;
            black_box(m.floor.request(MemoryFloor::hash_position(m.key(i)), true))
        })
    });
    g.bench_function("floor_memory/read_only", |b| {
        b.iter(|| {
            i += 1;
            black_box(m.floor.request(m.floor.position(i), false))
        })
    });
    g.bench_function("floor_memory/dependent_miss", |b| {
        b.iter(|| black_box(m.floor.dependent_miss()))
    });
    g.finish();
}

/// `check_batch_at` of 16 and 64 random keys (over the million) against the same keys one
/// by one, and against governor keyed one by one.
fn batch(c: &mut Criterion, m: &Million) {
    let mut g = group(c, "batch");
    let mut i = 0usize;
    let mut t = T0 + 100_000_000;
    for n in [16usize, 64] {
        g.throughput(Throughput::Elements(n as u64));
        let mut reqs: Vec<(&Key, Category)> = vec![(m.key(0), Category::GLOBAL); n];
        let mut out = vec![Decision::default(); n];
        g.bench_function(format!("sluice_batch/{n}"), |b| {
            b.iter(|| {
                fill(m, &mut reqs, &mut i);
                t += 1;
                m.sluice.check_batch_at(&reqs, t, &mut out).unwrap();
                black_box(&out);
            })
        });
        g.bench_function(format!("sluice_one_by_one/{n}"), |b| {
            b.iter(|| {
                fill(m, &mut reqs, &mut i);
                t += 1;
                for ((k, cat), d) in reqs.iter().zip(out.iter_mut()) {
                    *d = m.sluice.check_at(k, *cat, t).unwrap();
                }
                black_box(&out);
            })
        });
        let mut admitted = vec![false; n];
        g.bench_function(format!("governor_keyed_one_by_one/{n}"), |b| {
            b.iter(|| {
                fill(m, &mut reqs, &mut i);
                for ((k, _), a) in reqs.iter().zip(admitted.iter_mut()) {
                    *a = m.gov.check_key(k).is_ok();
                }
                black_box(&admitted);
            })
        });
    }
    g.finish();
}

/// The next `reqs.len()` keys of the shared random sequence.
fn fill<'m>(m: &'m Million, reqs: &mut [(&'m Key, Category)], i: &mut usize) {
    for r in reqs.iter_mut() {
        *i += 1;
        r.0 = m.key(*i);
    }
}

/// Run `f(thread, iters)` on `threads` threads at once; the time until all are done.
fn on_threads(threads: usize, iters: u64, f: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    let go = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let go = &go;
                s.spawn(move || {
                    while !go.load(Ordering::Acquire) {
                        std::hint::spin_loop();
                    }
                    f(i, iters)
                })
            })
            .collect();
        let start = Instant::now();
        go.store(true, Ordering::Release);
        for h in handles {
            h.join().unwrap();
        }
        start.elapsed()
    })
}

/// Throughput of one thread, two threads on distinct keys, two threads on one key. Each
/// thread does `iters` checks; criterion's time is per check per thread, and the reported
/// throughput counts the checks of all threads.
fn threads(c: &mut Criterion) {
    let mut g = group(c, "threads");
    let keys = ["198.51.100.7", "203.0.113.9"];
    let cases: [(&str, usize, bool); 3] = [
        ("one_thread", 1, false),
        ("two_threads_distinct_keys", 2, false),
        ("two_threads_one_key", 2, true),
    ];
    let l = Limiter::open("global 100/1ms").unwrap();
    let gk = gov_keyed::<String>(100, 1);
    let gd = gov_direct(100, 1);
    let m = MutexLog::new(&[(100, 1)]);
    let skeys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    for (name, n, same) in cases {
        g.throughput(Throughput::Elements(n as u64));
        let key = |i: usize| if same { 0 } else { i };
        let base = std::sync::atomic::AtomicI64::new(T0);
        g.bench_function(format!("sluice/now/{name}"), |b| {
            b.iter_custom(|iters| {
                let t0 = base.fetch_add(iters as i64 + 1, Ordering::Relaxed);
                on_threads(n, iters, &|i, iters| {
                    let k = keys[key(i)];
                    for j in 0..iters as i64 {
                        black_box(l.check_at(k, Category::GLOBAL, t0 + j).unwrap());
                    }
                })
            })
        });
        g.bench_function(format!("governor_keyed/clock/{name}"), |b| {
            b.iter_custom(|iters| {
                on_threads(n, iters, &|i, iters| {
                    let k = &skeys[key(i)];
                    for _ in 0..iters {
                        black_box(gk.check_key(k).is_ok());
                    }
                })
            })
        });
        if same || n == 1 {
            g.bench_function(format!("governor_direct/clock/{name}"), |b| {
                b.iter_custom(|iters| {
                    on_threads(n, iters, &|_, iters| {
                        for _ in 0..iters {
                            black_box(gd.check().is_ok());
                        }
                    })
                })
            });
        }
        if !same {
            // Control: work that shares nothing (SipHash of a thread-local key). What it scales
            // by is what this machine gave two threads during the run.
            g.bench_function(format!("control_no_sharing/{name}"), |b| {
                b.iter_custom(|iters| {
                    on_threads(n, iters, &|i, iters| {
                        use std::hash::{BuildHasher, Hasher};
                        let s =
                            std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default();
                        for j in 0..iters {
                            let mut h = s.build_hasher();
                            h.write(keys[i].as_bytes());
                            h.write_u64(j);
                            black_box(h.finish());
                        }
                    })
                })
            });
        }
        g.bench_function(format!("mutex_log/now/{name}"), |b| {
            b.iter_custom(|iters| {
                let t0 = base.fetch_add(iters as i64 + 1, Ordering::Relaxed);
                on_threads(n, iters, &|i, iters| {
                    let k = keys[key(i)].as_bytes();
                    for j in 0..iters as i64 {
                        black_box(m.check(k, t0 + j));
                    }
                })
            })
        });
    }
    g.finish();
}

/// A request in a category with global and category rules: the default policy's `write`
/// shape (global 300/1m, write 30/1m, write 500/1h), scaled so that one check per
/// millisecond is admitted by all three and logged in all three.
fn multi_rule(c: &mut Criterion) {
    let mut g = group(c, "multi_rule");
    let rules = [(300usize, 100i64), (30, 10), (500, 400)];
    let l = Limiter::open("global 300/100ms\nwrite 30/10ms\nwrite 500/400ms").unwrap();
    let write = l.category("write").unwrap();
    let mut t = T0;
    g.bench_function("sluice/now", |b| {
        b.iter(|| {
            t += 1;
            let d = l.check_at(black_box(HOT_KEY), write, t).unwrap();
            debug_assert!(d.allowed);
            black_box(d)
        })
    });
    // governor has one quota per limiter: one keyed limiter per rule, checked in turn (not
    // all-or-nothing: a refusal by a later rule still consumed the earlier ones).
    let key = HOT_KEY.to_string();
    let mut ft = FakeTime::new();
    let govs: Vec<_> = rules
        .iter()
        .map(|&(n, w)| gov_keyed_fake::<String>(n as u32, w as u64, &ft.clock))
        .collect();
    g.bench_function("governor_keyed_x3/now", |b| {
        b.iter(|| {
            ft.tick();
            black_box(govs.iter().all(|gk| gk.check_key(black_box(&key)).is_ok()))
        })
    });
    let m = MutexLog::new(&rules);
    let mut t = T0;
    g.bench_function("mutex_log/now", |b| {
        b.iter(|| {
            t += 1;
            black_box(m.check(black_box(HOT_KEY.as_bytes()), t))
        })
    });
    g.finish();
}

/// A failed login attempt: sluice's `failure` on a lockout of 5 failures in 3 ms, with time
/// advancing 1 ms per call (every failure is logged and counted, none locks); and a check of
/// a key that is locked out. The peers count failures with the same quota.
fn lockout(c: &mut Criterion) {
    let mut g = group(c, "lockout");
    let l = Limiter::open("auth lockout 5/3ms for 1d").unwrap();
    let auth = l.category("auth").unwrap();
    let mut t = T0;
    g.bench_function("sluice/failure", |b| {
        b.iter(|| {
            t += 1;
            let d = l.failure_at(black_box(HOT_KEY), auth, t).unwrap();
            debug_assert!(d.allowed);
            black_box(d)
        })
    });
    let locked = "192.0.2.1";
    for i in 0..5 {
        l.failure_at(locked, auth, T0 + i).unwrap();
    }
    g.bench_function("sluice/check_while_locked", |b| {
        b.iter(|| {
            let d = l.check_at(black_box(locked), auth, T0 + 10).unwrap();
            debug_assert!(!d.allowed);
            black_box(d)
        })
    });
    let key = HOT_KEY.to_string();
    let mut ft = FakeTime::new();
    let gk = gov_keyed_fake::<String>(5, 3, &ft.clock);
    g.bench_function("governor_keyed/failure", |b| {
        b.iter(|| {
            ft.tick();
            black_box(gk.check_key(black_box(&key)).is_ok())
        })
    });
    let m = MutexLog::new(&[(5, 3)]);
    let mut t = T0;
    g.bench_function("mutex_log/failure", |b| {
        b.iter(|| {
            t += 1;
            black_box(m.check(black_box(HOT_KEY.as_bytes()), t))
        })
    });
    g.finish();
}

/// A decision to format, from one check of `global 300/1m`, its numbers moved every call
/// (`remaining` by one, `reset` by a second every thousand calls) so nothing is cached.
struct HeaderCase {
    limiter: Limiter,
    decision: Decision,
    /// The same decision as the C ABI returns it, as a C host holds it.
    c_decision: sluice::ffi::sluice_decision,
    handle: *mut sluice::ffi::sluice,
    calls: i64,
    /// The host's buffer, reused as a server reuses its response buffer.
    buf: [u8; 256],
}

impl HeaderCase {
    fn new() -> HeaderCase {
        let limiter = Limiter::open("global 300/1m").unwrap();
        let decision = limiter.check_at(HOT_KEY, Category::GLOBAL, T0).unwrap();
        let mut handle = std::ptr::null_mut();
        // SAFETY: a NUL-terminated policy, no path, a writable handle pointer.
        let rc = unsafe {
            sluice::ffi::sluice_open(
                c"global 300/1m".as_ptr(),
                std::ptr::null(),
                &mut handle,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(rc, sluice::ffi::SLUICE_OK);
        HeaderCase {
            limiter,
            decision,
            c_decision: decision.into(),
            handle,
            calls: 0,
            buf: [0; 256],
        }
    }

    /// The next call's `(remaining, reset)`.
    #[inline]
    fn next(&mut self) -> (u32, i64) {
        self.calls += 1;
        (
            (self.calls % 300) as u32,
            T0 / 1000 + 60 + self.calls / 1000,
        )
    }

    /// `Limiter::format_headers` into the host's buffer: the Rust host's path.
    #[inline]
    fn rust(&mut self, style: HeaderStyle) -> usize {
        (self.decision.remaining, self.decision.reset) = self.next();
        let d = &self.decision;
        let n = self
            .limiter
            .format_headers(black_box(d), style, &mut self.buf);
        black_box(&self.buf);
        n
    }

    /// `sluice_headers`, the C ABI's call (as nginx and the Python binding make it).
    #[inline]
    fn c(&mut self, style: c_int) -> c_int {
        (self.c_decision.remaining, self.c_decision.reset) = self.next();
        let (d, buf) = (&self.c_decision, self.buf.as_mut_ptr() as *mut c_char);
        // SAFETY: a live handle, a readable decision, 256 writable bytes.
        let n = unsafe { sluice::ffi::sluice_headers(self.handle, black_box(d), style, buf, 256) };
        black_box(&self.buf);
        n
    }
}

impl Drop for HeaderCase {
    fn drop(&mut self) {
        // SAFETY: opened in `new`, closed once.
        unsafe { sluice::ffi::sluice_close(self.handle) };
    }
}

/// Formatting the response headers of a decision, in both styles, from Rust and through the
/// C ABI, beside the hot-key `check_at` that made the decision (the target: at most half of it).
fn headers(c: &mut Criterion) {
    let mut g = group(c, "headers");
    let l = Limiter::open("global 100/1ms").unwrap();
    let mut t = T0;
    g.bench_function("check_at", |b| {
        b.iter(|| {
            t += 1;
            black_box(l.check_at(black_box(HOT_KEY), Category::GLOBAL, t).unwrap())
        })
    });
    let mut h = HeaderCase::new();
    g.bench_function("format_headers/x_ratelimit", |b| {
        b.iter(|| h.rust(HeaderStyle::XRateLimit))
    });
    g.bench_function("format_headers/ietf", |b| {
        b.iter(|| h.rust(HeaderStyle::Ietf))
    });
    g.bench_function("sluice_headers/x_ratelimit", |b| {
        b.iter(|| h.c(sluice::ffi::SLUICE_HEADERS_X_RATELIMIT))
    });
    g.bench_function("sluice_headers/ietf", |b| {
        b.iter(|| h.c(sluice::ffi::SLUICE_HEADERS_IETF))
    });
    g.finish();
}

/// What any keyed check costs at least on this machine, whatever its algorithm: the key's
/// SipHash-1-3 (sluice's and governor's DashMap's hash; a keyed hash is required) or
/// ahash (what a private table may use instead, see `src/hash.rs`), and the three atomic read-modify-writes a check does (sluice: claim, advance, count; governor
/// keyed: shard lock, state CAS, unlock), here on one cache line with nothing else. Against
/// the 15 ns once targeted for a hot-key check.
fn floor(c: &mut Criterion) {
    let mut g = group(c, "floor");
    g.bench_function("siphash13_key", |b| {
        b.iter(|| {
            black_box(sluice::__bench_key_hash(
                [1, 2],
                black_box(HOT_KEY.as_bytes()),
            ))
        })
    });
    // ahash, keyed as `KeyHasher::for_table` keys it for a private table.
    let ahash = ahash::RandomState::with_seeds(1, 2, 3, 4);
    g.bench_function("ahash_key", |b| {
        b.iter(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = black_box(&ahash).build_hasher();
            h.write(black_box(HOT_KEY.as_bytes()));
            black_box(h.finish())
        })
    });
    #[repr(align(64))]
    struct Line([AtomicU64; 8]);
    let line = Line(Default::default());
    g.bench_function("three_atomic_rmw", |b| {
        b.iter(|| {
            let [_, counter, entry, .., stat] = &line.0;
            let c = counter.load(Ordering::Acquire);
            let e = entry.load(Ordering::Acquire);
            let _ =
                black_box(entry).compare_exchange(e, e + 1, Ordering::AcqRel, Ordering::Relaxed);
            let _ =
                black_box(counter).compare_exchange(c, c + 1, Ordering::AcqRel, Ordering::Relaxed);
            black_box(stat).fetch_add(1, Ordering::Relaxed);
        })
    });
    g.finish();
}

/// Rounds of `paired` in which every case is timed once (after one warm-up round).
const PAIRED_ROUNDS: usize = 21;

/// One implementation in `paired`: runs `n` calls, and keeps each round's ns per call.
struct PairedCase<'a> {
    name: &'static str,
    run: Box<dyn FnMut(u64) + 'a>,
    ns: Vec<f64>,
}

fn paired_case<'a>(name: &'static str, run: impl FnMut(u64) + 'a) -> PairedCase<'a> {
    PairedCase {
        name,
        run: Box::new(run),
        ns: Vec::new(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Time `cases` (the reference, governor keyed or `check_at`, last) in alternating rounds of
/// `calls` calls each, the order rotated every round, and print each case's median and its
/// per-round ratios to the reference.
fn paired_rounds(title: &str, calls: u64, cases: &mut [PairedCase]) {
    for r in 0..=PAIRED_ROUNDS {
        for k in 0..cases.len() {
            let c = &mut cases[(r + k) % cases.len()];
            let start = Instant::now();
            (c.run)(calls);
            if r > 0 {
                c.ns.push(start.elapsed().as_nanos() as f64 / calls as f64);
            }
        }
    }
    let (gov, rest) = cases.split_last().expect("the reference comes last");
    eprintln!("paired/{title}: {PAIRED_ROUNDS} alternating rounds of {calls} calls per case");
    for c in rest {
        let mut ratios: Vec<f64> = gov.ns.iter().zip(&c.ns).map(|(g, s)| g / s).collect();
        ratios.sort_by(f64::total_cmp);
        eprintln!(
            "  {:<27} median {:>6.1} ns; {} / this, per round: median {:.2}, range {:.2}–{:.2}",
            c.name,
            median(c.ns.clone()),
            gov.name,
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1]
        );
    }
    eprintln!(
        "  {:<27} median {:>6.1} ns",
        gov.name,
        median(gov.ns.clone())
    );
}

/// Header formatting against the check that made the decision, in alternating rounds:
/// `check_at / this` is at least 2 when formatting costs at most half a check (the target).
/// Part of `paired`; alone, without the million-key fixtures: `-- paired_headers`.
fn paired_headers() {
    let lh = Limiter::open("global 100/1ms").unwrap();
    let mut th = T0;
    let h = std::cell::RefCell::new(HeaderCase::new());
    paired_rounds(
        "headers",
        200_000,
        &mut [
            paired_case("format_headers/x_ratelimit", |n| {
                let mut h = h.borrow_mut();
                for _ in 0..n {
                    black_box(h.rust(HeaderStyle::XRateLimit));
                }
            }),
            paired_case("format_headers/ietf", |n| {
                let mut h = h.borrow_mut();
                for _ in 0..n {
                    black_box(h.rust(HeaderStyle::Ietf));
                }
            }),
            paired_case("sluice_headers/x_ratelimit", |n| {
                let mut h = h.borrow_mut();
                for _ in 0..n {
                    black_box(h.c(sluice::ffi::SLUICE_HEADERS_X_RATELIMIT));
                }
            }),
            paired_case("sluice_headers/ietf", |n| {
                let mut h = h.borrow_mut();
                for _ in 0..n {
                    black_box(h.c(sluice::ffi::SLUICE_HEADERS_IETF));
                }
            }),
            paired_case("check_at", |n| {
                for _ in 0..n {
                    th += 1;
                    black_box(
                        lh.check_at(black_box(HOT_KEY), Category::GLOBAL, th)
                            .unwrap(),
                    );
                }
            }),
        ],
    );
}

/// The machine's speed moves by ±20–30 % over seconds on this shared guest, and criterion
/// measures each case in turn, seconds apart: two medians of one run can differ by that much
/// for no reason of their own. This pass times the comparisons BENCHMARKS.md's targets make against governor
/// keyed in alternating rounds of a few milliseconds each (the order rotated every round), so
/// each round's ratio compares two measurements taken moments apart, and prints the median
/// time per case and the median and range of the per-round ratios (governor / case: above 1,
/// the case is faster). It runs after criterion's groups, unless a filter excludes "paired".
fn paired(m: &mut Million) {
    let (lc, la) = (
        Limiter::open("global 100/1ms").unwrap(),
        Limiter::open("global 100/1ms").unwrap(),
    );
    let (mut tc, mut ta) = (T0, T0);
    let key = HOT_KEY.to_string();
    let mut ft = FakeTime::new();
    let gk = gov_keyed_fake::<String>(100, 1, &ft.clock);
    paired_rounds(
        "hot_key",
        200_000,
        &mut [
            paired_case("sluice/now", |n| {
                for _ in 0..n {
                    tc += 1;
                    black_box(
                        lc.check_at(black_box(HOT_KEY), Category::GLOBAL, tc)
                            .unwrap(),
                    );
                }
            }),
            paired_case("sluice_allow/now", |n| {
                for _ in 0..n {
                    ta += 1;
                    black_box(
                        la.allow_at(black_box(HOT_KEY), Category::GLOBAL, ta)
                            .unwrap(),
                    );
                }
            }),
            paired_case("governor_keyed/now", |n| {
                for _ in 0..n {
                    ft.tick();
                    black_box(gk.check_key(black_box(&key)).is_ok());
                }
            }),
        ],
    );

    // Each case walks the key stream from its own place, so that no case finds lines another
    // has just brought in; time advances 1 ms per call, as in `random_1M`.
    let Million {
        stream,
        sluice,
        sluice_huge,
        gov_fake,
        gov_time,
        ..
    } = m;
    let (stream, sluice, sluice_huge, gov_fake): (
        &Vec<Key>,
        &Limiter,
        &Limiter,
        &GovKeyedFake<Key>,
    ) = (stream, sluice, sluice_huge, gov_fake);
    let key = |i: usize| &stream[i & (stream.len() - 1)];
    let time = std::cell::Cell::new(T0 + 1_000_000_000);
    let now = || {
        time.set(time.get() + 1);
        time.get()
    };
    let (mut c0, mut c1, mut c2, mut c3) = (0usize, 1 << 18, 2 << 18, 3 << 18);
    paired_rounds(
        "random_1M",
        20_000,
        &mut [
            paired_case("sluice/now", move |n| {
                for _ in 0..n {
                    c0 += 1;
                    black_box(sluice.check_at(key(c0), Category::GLOBAL, now()).unwrap());
                }
            }),
            paired_case("sluice_allow/now", move |n| {
                for _ in 0..n {
                    c1 += 1;
                    black_box(sluice.allow_at(key(c1), Category::GLOBAL, now()).unwrap());
                }
            }),
            paired_case("sluice_huge_pages/now", move |n| {
                for _ in 0..n {
                    c2 += 1;
                    let d = sluice_huge.check_at(key(c2), Category::GLOBAL, now());
                    black_box(d.unwrap());
                }
            }),
            paired_case("governor_keyed/now", move |n| {
                for _ in 0..n {
                    c3 += 1;
                    gov_time.tick();
                    black_box(gov_fake.check_key(key(c3)).is_ok());
                }
            }),
        ],
    );
}

/// Whether the command line's filters (criterion's positional arguments) let `paired` run.
fn paired_wanted() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return false;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| "paired".contains(f.as_str()) || f.contains("paired"))
}

fn main() {
    if std::env::args().any(|a| a == "paired_headers") {
        paired_headers();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    floor(&mut c);
    hot_key(&mut c);
    multi_rule(&mut c);
    lockout(&mut c);
    headers(&mut c);
    threads(&mut c);
    let mut m = Million::new();
    random_keys(&mut c, &mut m);
    batch(&mut c, &m);
    c.final_summary();
    if paired_wanted() {
        paired_headers();
        paired(&mut m);
    }
}
