//! A tight loop of checks on one hot key, for profilers: `perf record ./target/release/examples/hot`.
fn main() {
    let l = sluice::Limiter::open("global 100/1ms").unwrap();
    let mut t = 1_767_225_600_000i64;
    let mut n = 0u64;
    for _ in 0..20_000_000 {
        t += 1;
        n += l
            .check_at("198.51.100.7", sluice::Category::GLOBAL, t)
            .unwrap()
            .remaining as u64;
    }
    println!("{n}");
}
