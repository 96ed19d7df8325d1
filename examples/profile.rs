//! Loops of the benches' cases for instruction-count profiling, which is repeatable where
//! wall-clock time on a shared machine is not:
//!
//! ```sh
//! cargo build --release --example profile
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/examples/profile hot 1000000
//! callgrind_annotate /tmp/cg.out | head -40
//! ```
//!
//! Cases: `hot` (one key, `global 100/1ms`, explicit now), `allow` (the same through
//! `allow_at`, which skips the report), `multi` (three rules),
//! `window` (one key, `global 10000/10ms`, PER_MS checks a millisecond: the nginx bench's),
//! `random` (one rule over N live keys, default 100,000: set `KEYS`), `batch` (64 at a time
//! over the same keys), `failure`. Instructions per check = total / iterations, less setup.
//! `random` and `batch` use the benches' capacity (twice the live keys) and print the wall
//! clock per check of their loop alone (the fill excluded) on stderr, for A/B runs.
//!
//! Header formatting (one decision of `global 300/1m`, its numbers moving every call):
//! `headers` and `headers-ietf` (through the C ABI's `sluice_headers`, as nginx calls it),
//! `headers-rust` and `headers-rust-ietf` (`Limiter::format_headers` into a stack buffer).
//!
//! Key hashes, over a cycle of keys read in order: `hash-IMPL-SET` with IMPL one of `sluice`
//! (the table's SipHash-1-3), `siphasher` (the crate's one-shot `SipHasher13::hash`), `ahash`
//! (`ahash::RandomState` with fixed seeds, one `write` and `finish`), `std` (std's
//! `RandomState`: SipHash-1-3 through the streaming `Hasher`, one `write` and `finish`), and SET one of `ip` (eight
//! addresses of 7 to 15 bytes) and `api` (eight 40-byte API keys).
//!
//! Every case but `random` and `batch` prints the wall clock per iteration of the whole run
//! (setup included) on stderr.
//!
//! Category lookup by name (the last of the default policy's five): `category-scan`
//! (`Limiter::category`), `category-std` and `category-ahash` (a `HashMap<String, usize>`).

use std::hash::{BuildHasher, Hasher};
use std::hint::black_box;

use sluice::ffi::{sluice_decision, sluice_headers, sluice_open};
use sluice::{Category, Decision, HeaderStyle, Limiter};

const T0: i64 = 1_767_225_600_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map_or("hot", String::as_str);
    let iters: i64 = args.get(2).map_or(1_000_000, |s| s.parse().unwrap());
    let keys: usize = std::env::var("KEYS").map_or(100_000, |s| s.parse().unwrap());
    let mut acc = 0u64;
    let started = std::time::Instant::now();
    match case {
        "hot" => {
            let l = Limiter::open("global 100/1ms").unwrap();
            for t in 0..iters {
                acc += l
                    .check_at("198.51.100.7", Category::GLOBAL, T0 + t)
                    .unwrap()
                    .remaining as u64;
            }
        }
        "window" => {
            // The nginx bench's policy on one hot key: PER_MS checks per millisecond
            // (default 4), so its 10 ms window holds about 10 × PER_MS requests.
            let per_ms: i64 = std::env::var("PER_MS").map_or(4, |s| s.parse().unwrap());
            let l = Limiter::open("global 10000/10ms").unwrap();
            for t in 0..iters {
                acc += l
                    .check_at("127.0.0.1", Category::GLOBAL, T0 + t / per_ms)
                    .unwrap()
                    .remaining as u64;
            }
        }
        "allow" => {
            let l = Limiter::open("global 100/1ms").unwrap();
            for t in 0..iters {
                acc += l
                    .allow_at("198.51.100.7", Category::GLOBAL, T0 + t)
                    .unwrap() as u64;
            }
        }
        "multi" => {
            let l = Limiter::open("global 300/100ms\nwrite 30/10ms\nwrite 500/400ms").unwrap();
            let w = l.category("write").unwrap();
            for t in 0..iters {
                acc += l.check_at("198.51.100.7", w, T0 + t).unwrap().remaining as u64;
            }
        }
        "failure" => {
            let l = Limiter::open("auth lockout 5/3ms for 1d").unwrap();
            let a = l.category("auth").unwrap();
            for t in 0..iters {
                acc += l.failure_at("198.51.100.7", a, T0 + t).unwrap().remaining as u64;
            }
        }
        "random" | "batch" => {
            let l = Limiter::open(&format!("global 10/1s\ncapacity {}", keys * 2)).unwrap();
            let names: Vec<[u8; 16]> = (0..keys)
                .map(|i| {
                    let s = format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
                    let mut a = [0u8; 16];
                    a[..s.len()].copy_from_slice(s.as_bytes());
                    a
                })
                .collect();
            for (i, k) in names.iter().enumerate() {
                l.check_at(k, Category::GLOBAL, T0 + i as i64 / 1000)
                    .unwrap();
            }
            // The random sequence laid out ahead, read in order: the harness adds no misses.
            let mut x = 0x2545F4914F6CDD1Du64;
            let stream: Vec<[u8; 16]> = (0..1 << 20)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    names[(x % keys as u64) as usize]
                })
                .collect();
            let mut i = 0usize;
            let mut next = || {
                i += 1;
                &stream[i & (stream.len() - 1)]
            };
            let t1 = T0 + 10_000_000;
            let started = std::time::Instant::now();
            if case == "random" {
                for t in 0..iters {
                    acc += l
                        .check_at(next(), Category::GLOBAL, t1 + t)
                        .unwrap()
                        .remaining as u64;
                }
            } else {
                let mut out = [Decision::default(); 64];
                for t in 0..iters / 64 {
                    let reqs: [(&[u8; 16], Category); 64] =
                        std::array::from_fn(|_| (next(), Category::GLOBAL));
                    l.check_batch_at(&reqs, t1 + t, &mut out).unwrap();
                    acc += out.iter().map(|d| d.remaining as u64).sum::<u64>();
                }
            }
            // Wall clock of the checks alone (the fill excluded), for A/B runs.
            eprintln!(
                "{case}: {:.1} ns per check",
                started.elapsed().as_nanos() as f64 / iters.max(1) as f64
            );
        }
        "headers" | "headers-ietf" => {
            let style = if case == "headers" {
                sluice::ffi::SLUICE_HEADERS_X_RATELIMIT
            } else {
                sluice::ffi::SLUICE_HEADERS_IETF
            };
            let mut h = std::ptr::null_mut();
            // SAFETY: a NUL-terminated policy, no path, a writable handle pointer.
            let rc = unsafe {
                sluice_open(
                    c"global 300/1m".as_ptr(),
                    std::ptr::null(),
                    &mut h,
                    std::ptr::null_mut(),
                    0,
                )
            };
            assert_eq!(rc, 0);
            let l = Limiter::open("global 300/1m").unwrap();
            let mut d = sluice_decision::from(l.check_at("k", Category::GLOBAL, T0).unwrap());
            let mut buf = [0 as std::ffi::c_char; 256];
            for t in 0..iters {
                d.remaining = (t % 300) as u32;
                d.reset = T0 / 1000 + 60 + t / 1000;
                // SAFETY: a live handle, a readable decision, 256 writable bytes.
                let n =
                    unsafe { sluice_headers(h, black_box(&d), style, buf.as_mut_ptr(), buf.len()) };
                acc += n as u64 + buf[black_box(20)] as u64;
            }
            // SAFETY: opened above, closed once.
            unsafe { sluice::ffi::sluice_close(h) };
        }
        "headers-rust" | "headers-rust-ietf" => {
            let style = if case == "headers-rust" {
                HeaderStyle::XRateLimit
            } else {
                HeaderStyle::Ietf
            };
            let l = Limiter::open("global 300/1m").unwrap();
            let mut d = l.check_at("k", Category::GLOBAL, T0).unwrap();
            let mut buf = [0u8; 256];
            for t in 0..iters {
                d.remaining = (t % 300) as u32;
                d.reset = T0 / 1000 + 60 + t / 1000;
                let n = l.format_headers(black_box(&d), style, &mut buf);
                acc += n as u64 + buf[black_box(20)] as u64;
            }
        }
        _ if case.starts_with("hash-") => {
            const IPS: [&str; 8] = [
                "10.0.0.1",
                "192.168.1.100",
                "198.51.100.7",
                "2001:db8::1",
                "1.2.3.4",
                "203.0.113.255",
                "100.64.10.20",
                "255.255.255.255",
            ];
            let api: Vec<String> = (0..8u64)
                .map(|i| format!("sk_live_{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .collect();
            let (imp, set) = case["hash-".len()..]
                .split_once('-')
                .expect("hash-IMPL-SET");
            let keys: Vec<&[u8]> = match set {
                "ip" => IPS.iter().map(|k| k.as_bytes()).collect(),
                "api" => api.iter().map(|k| k.as_bytes()).collect(),
                other => panic!("unknown key set {other}"),
            };
            let secret = [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210];
            let n = iters as usize;
            match imp {
                "sluice" => {
                    for i in 0..n {
                        acc ^= sluice::__bench_key_hash(secret, black_box(keys[i & 7]));
                    }
                }
                "siphasher" => {
                    let s = siphasher::sip::SipHasher13::new_with_keys(secret[0], secret[1]);
                    for i in 0..n {
                        acc ^= black_box(&s).hash(black_box(keys[i & 7]));
                    }
                }
                "ahash" => {
                    let s = ahash::RandomState::with_seeds(secret[0], secret[1], 3, 4);
                    for i in 0..n {
                        let mut h = black_box(&s).build_hasher();
                        h.write(black_box(keys[i & 7]));
                        acc ^= h.finish();
                    }
                }
                "std" => {
                    let s = std::collections::hash_map::RandomState::new();
                    for i in 0..n {
                        let mut h = black_box(&s).build_hasher();
                        h.write(black_box(keys[i & 7]));
                        acc ^= h.finish();
                    }
                }
                other => panic!("unknown hash {other}"),
            }
        }
        "category-scan" | "category-std" | "category-ahash" => {
            let l = Limiter::open(sluice::DEFAULT_POLICY).unwrap();
            let names = &l.policy().categories;
            let last = names.last().unwrap().clone();
            let std_map: std::collections::HashMap<String, usize> =
                names.iter().cloned().zip(0..).collect();
            let mut a_map =
                std::collections::HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4));
            a_map.extend(names.iter().cloned().zip(0..));
            for _ in 0..iters {
                let name = black_box(last.as_str());
                acc += match case {
                    "category-scan" => l.category(name).unwrap().id() as u64,
                    "category-std" => std_map[name] as u64,
                    _ => a_map[name] as u64,
                };
            }
        }
        other => panic!("unknown case {other}"),
    }
    if !matches!(case, "random" | "batch") {
        // Wall clock of the whole case, setup included: for A/B runs of long loops.
        eprintln!(
            "{case}: {:.1} ns per iteration",
            started.elapsed().as_nanos() as f64 / iters.max(1) as f64
        );
    }
    println!("{acc}");
}
