//! Criterion benches of the check path: one hot key, and random keys over many live keys.
//! (The comparisons with governor and a mutex-guarded sliding log come with issue 5.)
//!
//! Run: `cargo bench --bench check`

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use sluice::{Category, Limiter, DEFAULT_POLICY};

const T0: i64 = 1_767_225_600_000;

fn hot_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_key");
    // A limit that never refuses, so every iteration takes the admit-and-record path.
    let l = Limiter::open("global 100/1ms").unwrap();
    let mut t = T0;
    g.bench_function("check_at/one_rule", |b| {
        b.iter(|| {
            t += 1;
            black_box(
                l.check_at(black_box("198.51.100.7"), Category::GLOBAL, t)
                    .unwrap(),
            )
        })
    });
    g.bench_function("check/library_clock", |b| {
        b.iter(|| {
            black_box(
                l.check(black_box("198.51.100.7"), Category::GLOBAL)
                    .unwrap(),
            )
        })
    });
    let l = Limiter::open(DEFAULT_POLICY).unwrap();
    let write = l.category("write").unwrap();
    let mut t = T0;
    g.bench_function("check_at/default_policy_write_3_rules", |b| {
        b.iter(|| {
            t += 1;
            black_box(l.check_at(black_box("198.51.100.7"), write, t).unwrap())
        })
    });
    g.finish();
}

fn random_keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("random_keys");
    let live = 1_000_000usize;
    let l = Limiter::open(&format!("global 10/1s\ncapacity {}", live * 5 / 4)).unwrap();
    let keys: Vec<[u8; 8]> = (0..live as u64)
        .map(|i| (i.wrapping_mul(0x9E3779B97F4A7C15)).to_le_bytes())
        .collect();
    for (i, k) in keys.iter().enumerate() {
        l.check_at(k, Category::GLOBAL, T0 + i as i64 / 1000)
            .unwrap();
    }
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut t = T0 + 10_000;
    g.bench_function("check_at/1M_live_keys", |b| {
        b.iter_batched(
            || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                t += 1;
                (&keys[(rng % live as u64) as usize], t)
            },
            |(k, t)| black_box(l.check_at(k, Category::GLOBAL, t).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, hot_key, random_keys);
criterion_main!(benches);
