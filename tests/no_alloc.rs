//! `check` allocates nothing: a counting global allocator around the hot path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sluice::{Limiter, DEFAULT_POLICY};

struct Counting;

thread_local! {
    // Only the test's own thread is counted, in its own counter: the test harness's threads
    // may allocate at any moment (its progress timer did, once, on a loaded machine), and the
    // tests of this file run on threads of their own at the same time.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn allocs() -> usize {
    ALLOCS.with(|a| a.get())
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The limiter (default policy, fixed secret), 100 client keys and a start time.
fn fixture() -> (Limiter, Vec<String>, i64) {
    let l = Limiter::builder(DEFAULT_POLICY)
        .secret([1, 2])
        .open()
        .unwrap();
    let keys = (0..100).map(|i| format!("198.51.100.{i}")).collect();
    (l, keys, 1_767_225_600_000)
}

#[test]
fn check_peek_and_failure_do_not_allocate() {
    let (l, keys, t0) = fixture();
    let cats: Vec<_> = ["global", "media", "write", "auth"]
        .iter()
        .map(|c| l.category(c).unwrap())
        .collect();
    let auth = l.category("auth").unwrap();
    // Warm up once (nothing here should allocate either, but the assertion is on the loop).
    l.check_at(&keys[0], cats[0], t0).unwrap();
    COUNTING.with(|c| c.set(true));
    let before = allocs();
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
    let after = allocs();
    COUNTING.with(|c| c.set(false));
    assert!(admitted > 1000);
    assert_eq!(
        after - before,
        0,
        "{} allocations on the check path",
        after - before
    );
}

#[test]
fn allow_and_batches_do_not_allocate_in_rust_or_through_the_c_abi() {
    use sluice::ffi;
    use std::ptr;
    let (l, keys, t0) = fixture();
    let write = l.category("write").unwrap();
    let mut h: *mut ffi::sluice = ptr::null_mut();
    let policy = std::ffi::CString::new(DEFAULT_POLICY).unwrap();
    // SAFETY: valid C string, NULL path, a writable out-pointer, no error buffer.
    let rc = unsafe { ffi::sluice_open(policy.as_ptr(), ptr::null(), &mut h, ptr::null_mut(), 0) };
    assert_eq!(rc, ffi::SLUICE_OK);
    // 150 requests: three of the C batch's 64-request chunks.
    let reqs: Vec<ffi::sluice_request> = (0..150)
        .map(|i| {
            let k = &keys[i % 100];
            ffi::sluice_request {
                size: std::mem::size_of::<ffi::sluice_request>(),
                category: (i % 4) as i32,
                key: k.as_ptr().cast(),
                key_len: k.len(),
            }
        })
        .collect();
    let rust_reqs: Vec<(&str, sluice::Category)> =
        (0..64).map(|i| (keys[i % 100].as_str(), write)).collect();
    // The same 150 requests with no pointer in them: spans of one buffer of the keys.
    let mut packed_keys = Vec::new();
    let packed: Vec<ffi::sluice_packed_request> = (0..150)
        .map(|i| {
            let k = &keys[i % 100];
            let r = ffi::sluice_packed_request {
                size: std::mem::size_of::<ffi::sluice_packed_request>(),
                key_offset: packed_keys.len() as u64,
                key_len: k.len() as u32,
                category: (i % 4) as i32,
            };
            packed_keys.extend_from_slice(k.as_bytes());
            r
        })
        .collect();
    let mut out = vec![ffi::sluice_decision::default(); reqs.len()];
    out[0].size = std::mem::size_of::<ffi::sluice_decision>();
    let mut packed_out = out.clone();
    let mut rust_out = vec![sluice::Decision::default(); rust_reqs.len()];
    let mut bad = usize::MAX;
    COUNTING.with(|c| c.set(true));
    let before = allocs();
    let mut admitted = 0u32;
    for n in 0..200i64 {
        let t = t0 + n * 1000;
        admitted += l.allow_at(&keys[(n % 100) as usize], write, t).unwrap() as u32;
        l.check_batch_at(&rust_reqs, t, &mut rust_out).unwrap();
        // SAFETY: a live handle, 150 readable requests and 150 writable decisions.
        let rc = unsafe {
            ffi::sluice_check_batch(h, reqs.as_ptr(), reqs.len(), t, out.as_mut_ptr(), &mut bad)
        };
        assert_eq!(rc, ffi::SLUICE_OK);
        // SAFETY: a live handle, the keys buffer, 150 readable requests and 150 writable
        // decisions.
        let rc = unsafe {
            ffi::sluice_check_packed(
                h,
                packed_keys.as_ptr().cast(),
                packed_keys.len(),
                packed.as_ptr(),
                packed.len(),
                t,
                packed_out.as_mut_ptr(),
                &mut bad,
            )
        };
        assert_eq!(rc, ffi::SLUICE_OK);
        let k = &keys[(n % 100) as usize];
        // SAFETY: a live handle and `k.len()` readable bytes.
        let rc = unsafe { ffi::sluice_allow(h, 2, k.as_ptr().cast(), k.len(), t) };
        assert!(rc == 0 || rc == 1);
    }
    let after = allocs();
    COUNTING.with(|c| c.set(false));
    // SAFETY: the handle from sluice_open, closed once.
    unsafe { ffi::sluice_close(h) };
    assert!(admitted > 0 && out.iter().any(|d| d.allowed != 0));
    assert!(packed_out.iter().any(|d| d.allowed != 0));
    assert!(packed_out.iter().all(|d| d.size == out[0].size));
    assert_eq!(
        after - before,
        0,
        "{} allocations in allow / check_batch / check_packed",
        after - before
    );
}
