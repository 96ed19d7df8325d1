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
//! `random` (one rule over N live keys, default 100,000: set `KEYS`), `batch` (64 at a time
//! over the same keys), `failure`. Instructions per check = total / iterations, less setup.
//! `random` and `batch` use the benches' capacity (twice the live keys) and print the wall
//! clock per check of their loop alone (the fill excluded) on stderr, for A/B runs.

use sluice::{Category, Decision, Limiter};

const T0: i64 = 1_767_225_600_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map_or("hot", String::as_str);
    let iters: i64 = args.get(2).map_or(1_000_000, |s| s.parse().unwrap());
    let keys: usize = std::env::var("KEYS").map_or(100_000, |s| s.parse().unwrap());
    let mut acc = 0u64;
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
        other => panic!("unknown case {other}"),
    }
    println!("{acc}");
}
