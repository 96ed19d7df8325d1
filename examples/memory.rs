//! Memory per key: sluice's from its API (`Limiter::bytes_per_key`, fixed by the policy), and
//! the peers' measured by a counting global allocator after inserting 1,000,000 keys.
//!
//! Run: `cargo run --release --example memory`

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use governor::{Quota, RateLimiter};
use sluice::{Category, Limiter, DEFAULT_POLICY};

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const KEYS: usize = 1_000_000;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Resident set size in bytes (Linux), 0 elsewhere.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}

/// Heap bytes per key held by what `build` returns, keys included.
fn per_key<T>(build: impl FnOnce() -> T) -> (f64, T) {
    let before = live();
    let t = build();
    ((live() - before) as f64 / KEYS as f64, t)
}

fn main() {
    println!("sluice (fixed by the policy; the table is one mapping, not the heap):");
    for (name, policy) in [
        ("default policy", DEFAULT_POLICY.to_string()),
        ("global 10/1s", "global 10/1s".to_string()),
        ("global 300/1m", "global 300/1m".to_string()),
    ] {
        let l = Limiter::open(policy.as_str()).unwrap();
        let logged: u64 = l
            .policy()
            .rules
            .iter()
            .map(|r| match &r.kind {
                sluice::policy::RuleKind::Window(w) => w.limit as u64,
                sluice::policy::RuleKind::Lockout(lo) => lo.failures as u64,
            })
            .sum();
        let bpk = l.bytes_per_key() as u64;
        println!(
            "  {name:28} {bpk:6} bytes per key = 8 x {logged} logged requests + {} of header, padding and index word",
            bpk - 8 * logged
        );
    }
    let before = live();
    let rss_before = rss();
    let l = Limiter::open(&format!("global 10/1s\ncapacity {}", 2 * KEYS)).unwrap();
    for i in 0..KEYS {
        l.check_at(ip(i), Category::GLOBAL, 1_767_225_600_000)
            .unwrap();
    }
    println!(
        "  1M keys in `global 10/1s` (capacity 2M): table {} MB of address space, {} MB resident \
         (pages touched by keys hashed all over it), {} bytes of heap per key",
        l.table_bytes() >> 20,
        rss().saturating_sub(rss_before) >> 20,
        (live() - before) / KEYS as isize
    );
    drop(l);

    let quota = Quota::with_period(Duration::from_millis(100))
        .unwrap()
        .allow_burst(NonZeroU32::new(10).unwrap());
    let (bytes, g) = per_key(|| {
        let g = RateLimiter::keyed(quota);
        for i in 0..KEYS {
            let _ = g.check_key(&ip(i));
        }
        g
    });
    println!(
        "governor keyed (DashMap), String keys (\"10.x.y.z\"), one quota (GCRA: 8 bytes of state):"
    );
    println!("  {bytes:.1} heap bytes per key (x one limiter per rule for a multi-rule policy)");
    drop(g);
    let (bytes, g) = per_key(|| {
        let g = RateLimiter::keyed(quota);
        for i in 0..KEYS as u64 {
            let _ = g.check_key(&i);
        }
        g
    });
    println!("governor keyed (DashMap), u64 keys:\n  {bytes:.1} heap bytes per key");
    drop(g);

    let (bytes, m) = per_key(|| {
        let mut m: HashMap<Vec<u8>, VecDeque<i64>> = HashMap::new();
        for i in 0..KEYS {
            let mut q = VecDeque::new();
            for t in 0..10 {
                q.push_back(t);
            }
            m.insert(ip(i).into_bytes(), q);
        }
        m
    });
    println!(
        "HashMap<Vec<u8>, VecDeque<i64>> sliding log, 10 requests logged per key:\n  {bytes:.1} heap bytes per key"
    );
    drop(m);
}
