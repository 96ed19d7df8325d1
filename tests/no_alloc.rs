//! `check` allocates nothing: a counting global allocator around the hot path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use sluice::{Limiter, DEFAULT_POLICY};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Only the test's own thread is counted: the test harness's threads may allocate at any
    // moment (its progress timer did, once, on a loaded machine).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn check_peek_and_failure_do_not_allocate() {
    let l = Limiter::builder(DEFAULT_POLICY)
        .secret([1, 2])
        .open()
        .unwrap();
    let cats: Vec<_> = ["global", "media", "write", "auth"]
        .iter()
        .map(|c| l.category(c).unwrap())
        .collect();
    let auth = l.category("auth").unwrap();
    let keys: Vec<String> = (0..100).map(|i| format!("198.51.100.{i}")).collect();
    let t0 = 1_767_225_600_000i64;
    // Warm up once (nothing here should allocate either, but the assertion is on the loop).
    l.check_at(&keys[0], cats[0], t0).unwrap();
    COUNTING.with(|c| c.set(true));
    let before = ALLOCS.load(Ordering::SeqCst);
    let mut admitted = 0;
    for n in 0..20_000i64 {
        let key = &keys[(n % 100) as usize];
        let d = l.check_at(key, cats[(n % 4) as usize], t0 + n).unwrap();
        admitted += d.allowed as u32;
        l.peek_at(key, cats[0], t0 + n).unwrap();
        if n % 10 == 0 {
            l.failure_at(key, auth, t0 + n).unwrap();
        }
    }
    let after = ALLOCS.load(Ordering::SeqCst);
    COUNTING.with(|c| c.set(false));
    assert!(admitted > 1000);
    assert_eq!(
        after - before,
        0,
        "{} allocations on the check path",
        after - before
    );
}
