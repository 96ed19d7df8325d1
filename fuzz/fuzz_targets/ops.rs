//! Fuzz target `ops`: the C ABI against the serial reference model.
//!
//! The input is decoded (with `arbitrary::Unstructured`, so every input is valid) into a small
//! policy of the shape `tests/model.rs` generates — up to 2 `global` rules, up to 2 `api`
//! rules, up to 1 `auth` rule (N 1..=4, window 20, 50, 100 or 300 ms, optionally strict and/or
//! dry-run), an `auth` lockout (F 1..=3 in 50 or 200 ms, ban 10..=79 ms, optionally up to
//! 80..=399 ms), capacity 1..=5, when-full deny or allow, lines in any order — and up to 200
//! operations on 6 keys and the policy's categories, each at a strictly later time.
//!
//! Every operation goes through the `extern "C"` functions with raw pointers, as a C caller
//! would, and through `tests/support/model.rs`; every decision must agree field by field, and
//! so must the headers `sluice_headers` formats for it. Interleaved are calls with one bad
//! argument (NULL pointers, empty or too long keys, unknown category ids, times out of range,
//! a category without a lockout, a bad header style or status, a bad request in a batch):
//! each must return its documented code, write nothing, and change nothing (the following
//! peek and the per-rule counters still equal the model's). At the end, `sluice_stats` and
//! `sluice_rule_stats` equal the model's counts.
//!
//! The model agrees with the engine only when capacity <= 16 and times strictly increase (no
//! ties in "least recently active"). A batch is at one instant, so it uses at most two distinct
//! keys, and when it used two, the first is checked again a millisecond later so that no two
//! keys share a last-active time when an eviction has to choose between them.

#![no_main]

#[path = "../../tests/support/model.rs"]
mod model;

use std::ffi::{c_char, c_int, CStr, CString};
use std::fmt::Write as _;
use std::mem::size_of;
use std::ptr;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use model::{Model, Op};
use sluice::ffi::{
    self, sluice as Sluice, sluice_decision, sluice_packed_request, sluice_request,
    sluice_rule_counts, sluice_table_stats,
};
use sluice::policy::Policy;
use sluice::{Decision, MAX_TIME_MS};

/// 2026-01-01T00:00:00Z, as in tests/model.rs.
const T0: i64 = 1_767_225_600_000;
const MAX_OPS: usize = 200;

/// The six keys. Lengths differ, one has a NUL byte, one is a prefix of others: keys are
/// `key_len` bytes, not C strings.
const KEYS: [&[u8]; 6] = [
    b"k",
    b"k\0",
    b"k1",
    b"kk",
    b"client-203.0.113.9",
    b"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
];

/// Set `SLUICE_FUZZ_TRACE=1` to print each run's policy, operations and the statuses the
/// decisions had (to see what a corpus exercises, or to read a crashing input).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("SLUICE_FUZZ_TRACE").is_some())
}

/// A key one byte longer than the longest allowed.
static TOO_LONG: [u8; 65_536] = [b'x'; 65_536];

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(text) = policy_text(&mut u) else {
        return;
    };
    // The decoder never fails (Unstructured answers the lowest choice when data runs out),
    // but stay total anyway.
    let _ = run(&text, &mut u);
});

// ---- the policy ---------------------------------------------------------------------------

fn policy_text(u: &mut Unstructured) -> Result<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut seen: Vec<(&str, u32, i64)> = Vec::new();
    for (name, most) in [("global", 2), ("api", 2), ("auth", 1)] {
        for _ in 0..u.int_in_range(0..=most)? {
            let n = u.int_in_range(1u32..=4)?;
            let w = *u.choose(&[20i64, 50, 100, 300])?;
            let flags = match u.int_in_range(0u8..=7)? {
                0 | 1 => " strict",
                2 | 3 => " dry-run",
                4 => " strict dry-run",
                _ => "",
            };
            // The same name, N and window twice is a duplicate-rule error.
            if seen.contains(&(name, n, w)) {
                continue;
            }
            seen.push((name, n, w));
            lines.push(format!("{name} {n}/{w}ms{flags}"));
        }
    }
    // Any order: it decides the rule indexes and the category ids.
    for i in (1..lines.len()).rev() {
        let j = u.int_in_range(0..=i)?;
        lines.swap(i, j);
    }
    let f = u.int_in_range(1u32..=3)?;
    let d = *u.choose(&[50i64, 200])?;
    let ban = u.int_in_range(10i64..=79)?;
    let max = if u.arbitrary::<bool>()? {
        format!("..{}ms", u.int_in_range(80i64..=399)?)
    } else {
        String::new()
    };
    let at = u.int_in_range(0..=lines.len())?;
    lines.insert(at, format!("auth lockout {f}/{d}ms for {ban}ms{max}"));
    lines.push(format!("capacity {}", u.int_in_range(1u32..=5)?));
    lines.push(format!(
        "when-full {}",
        if u.arbitrary::<bool>()? {
            "allow"
        } else {
            "deny"
        }
    ));
    Ok(lines.join("\n"))
}

// ---- the C side ---------------------------------------------------------------------------

/// The model's decision as the C struct, field by field (independent of the library's own
/// `From<Decision>`).
fn c_of(d: &Decision) -> sluice_decision {
    sluice_decision {
        size: size_of::<sluice_decision>(),
        allowed: u8::from(d.allowed),
        status: d.status as u8,
        limit: d.limit,
        remaining: d.remaining,
        reset_after: d.reset_after,
        reset: d.reset,
        retry_after: d.retry_after,
        rule: d.rule.map_or(-1, |r| r as i32),
        window_ms: d.window_ms,
    }
}

/// An out-parameter filled with a pattern no call writes, to see whether a call wrote it.
fn sentinel() -> sluice_decision {
    sluice_decision {
        // A usable size (the library requires one), which a successful call writes back
        // unchanged; every other field is a pattern no call writes.
        size: size_of::<sluice_decision>(),
        allowed: 0xAA,
        status: 0xAA,
        limit: 0xAAAA_AAAA,
        remaining: 0xAAAA_AAAA,
        reset_after: 0xAAAA_AAAA,
        reset: -0x5555_5555,
        retry_after: 0xAAAA_AAAA,
        rule: -0x5555_5555,
        window_ms: -0x5555_5555,
    }
}

/// Whole seconds, rounded up (0 for no time), for every `ms` (no overflow near `i64::MAX`: a
/// caller may hand `sluice_headers` any `window_ms`).
fn ceil_secs(ms: i64) -> i64 {
    if ms <= 0 {
        0
    } else {
        ms / 1000 + i64::from(ms % 1000 != 0)
    }
}

/// The header block the README and `Limiter::headers` describe for a decision: the quota fields
/// of its rule (none without a rule, or when the key is locked: a lockout's numbers count
/// failures, not requests), and `Retry-After` when refused.
fn expected_headers(policy: &Policy, d: &sluice_decision, style: c_int) -> String {
    let mut out = String::new();
    let quota = usize::try_from(d.rule)
        .ok()
        .filter(|_| d.status != ffi::SLUICE_STATUS_LOCKED);
    if let Some(rule) = quota.and_then(|r| policy.rules.get(r)) {
        if style == ffi::SLUICE_HEADERS_X_RATELIMIT {
            let _ = write!(
                out,
                "X-RateLimit-Limit: {}\r\nX-RateLimit-Remaining: {}\r\nX-RateLimit-Reset: {}\r\n",
                d.limit, d.remaining, d.reset
            );
        } else {
            let _ = write!(
                out,
                "RateLimit-Policy: \"{}\";q={};w={}\r\nRateLimit: \"{}\";r={};t={}\r\n",
                rule.name,
                d.limit,
                ceil_secs(d.window_ms),
                rule.name,
                d.remaining,
                d.reset_after
            );
        }
    }
    if d.allowed == 0 {
        let _ = write!(out, "Retry-After: {}\r\n", d.retry_after);
    }
    out
}

/// `sluice_headers` on `d` in both styles, with the buffer protocol: a length query (NULL
/// buffer, or any buffer with `cap` 0: nothing written), a buffer one byte too small (only a
/// NUL at `buf[0]`, never a partial block), then one just large enough (the block and a NUL).
unsafe fn check_headers(h: *const Sluice, policy: &Policy, d: &sluice_decision, what: &str) {
    for style in [ffi::SLUICE_HEADERS_X_RATELIMIT, ffi::SLUICE_HEADERS_IETF] {
        let want = expected_headers(policy, d, style);
        let len = ffi::sluice_headers(h, d, style, ptr::null_mut(), 0);
        assert_eq!(
            len,
            want.len() as c_int,
            "{what}: header length, style {style}"
        );
        let mut buf = vec![0x7Fu8; want.len() + 2];
        let bp = buf.as_mut_ptr() as *mut c_char;
        let rc = ffi::sluice_headers(h, d, style, bp, 0);
        assert_eq!(rc, len, "{what}: cap 0");
        assert!(
            buf.iter().all(|&b| b == 0x7F),
            "{what}: cap 0 wrote the buffer"
        );
        if !want.is_empty() {
            assert_eq!(
                ffi::sluice_headers(h, d, style, ptr::null_mut(), want.len() + 1),
                ffi::SLUICE_ERR_NULL,
                "{what}: NULL buffer with a capacity"
            );
            let rc = ffi::sluice_headers(h, d, style, bp, want.len());
            assert_eq!(rc, len, "{what}: short buffer");
            assert_eq!(buf[0], 0, "{what}: short buffer not emptied");
            assert!(
                buf[1..].iter().all(|&b| b == 0x7F),
                "{what}: short buffer written"
            );
        }
        let rc = ffi::sluice_headers(h, d, style, bp, want.len() + 1);
        assert_eq!(rc, len, "{what}: exact buffer");
        assert_eq!(
            &buf[..want.len()],
            want.as_bytes(),
            "{what}: headers, style {style}"
        );
        assert_eq!(buf[want.len()], 0, "{what}: headers not NUL-terminated");
        assert_eq!(
            buf[want.len() + 1],
            0x7F,
            "{what}: headers written past the NUL"
        );
    }
}

struct Run<'a> {
    h: *mut Sluice,
    text: &'a str,
    model: Model,
    ncat: usize,
    auth: usize,
    t: i64,
    step: usize,
    log: String,
}

impl Run<'_> {
    fn fail(&self, what: &str) -> ! {
        panic!(
            "step {} at +{} ms: {what}\npolicy:\n{}\noperations:\n{}",
            self.step,
            self.t - T0,
            self.text,
            self.log
        )
    }

    fn note(&mut self, op: std::fmt::Arguments) {
        let _ = writeln!(self.log, "  {:>3} +{:<6} {op}", self.step, self.t - T0);
    }

    /// A C decision must equal the model's.
    fn agree(&self, rc: c_int, got: &sluice_decision, want: &Decision, what: &str) {
        if rc != ffi::SLUICE_OK {
            self.fail(&format!("{what}: returned {rc}, expected SLUICE_OK"));
        }
        let want = c_of(want);
        if trace() {
            eprintln!("    {what}: {got:?}");
        }
        if *got != want {
            self.fail(&format!("{what}:\n   C ABI {got:?}\n   model {want:?}"));
        }
        unsafe { check_headers(self.h, &self.model.policy, got, what) };
    }

    fn c_check(&self, c: c_int, key: &[u8], t: i64) -> (c_int, sluice_decision) {
        // A buffer with a byte past the key: only `key_len` bytes may be read.
        let mut buf = key.to_vec();
        buf.push(b'#');
        let mut d = sentinel();
        let rc = unsafe { ffi::sluice_check(self.h, c, buf.as_ptr().cast(), key.len(), t, &mut d) };
        (rc, d)
    }

    fn c_peek(&self, c: c_int, key: &[u8], t: i64) -> (c_int, sluice_decision) {
        let mut d = sentinel();
        let rc = unsafe { ffi::sluice_peek(self.h, c, key.as_ptr().cast(), key.len(), t, &mut d) };
        (rc, d)
    }

    fn c_failure(&self, c: c_int, key: &[u8], t: i64) -> (c_int, sluice_decision) {
        let mut d = sentinel();
        let rc =
            unsafe { ffi::sluice_failure(self.h, c, key.as_ptr().cast(), key.len(), t, &mut d) };
        (rc, d)
    }

    /// Nothing changed: a peek of `key` in category `c` now, and every rule's counters, still
    /// equal the model's.
    fn unchanged(&mut self, key: &[u8], c: usize, what: &str) {
        let (rc, d) = self.c_peek(c as c_int, key, self.t);
        let want = self.model.decide(key, c, self.t, Op::Peek);
        self.agree(rc, &d, &want, &format!("peek after {what}"));
        self.counters(what);
    }

    fn counters(&self, what: &str) {
        for r in 0..self.model.policy.rules.len() {
            let mut got = sluice_rule_counts {
                size: size_of::<sluice_rule_counts>(),
                ..Default::default()
            };
            let rc = unsafe { ffi::sluice_rule_stats(self.h, r as i32, &mut got) };
            let want = sluice_rule_counts {
                size: size_of::<sluice_rule_counts>(),
                passed: self.model.passed[r],
                limited: self.model.limited[r],
                dry_run_limited: self.model.dry[r],
                locked: self.model.locked[r],
                lockouts: self.model.lockouts[r],
            };
            if rc != ffi::SLUICE_OK || got != want {
                self.fail(&format!(
                    "counters of rule {r} after {what}: rc {rc}\n   C ABI {got:?}\n   model {want:?}"
                ));
            }
        }
    }

    fn expect_code(&self, rc: c_int, code: c_int, what: &str) {
        if rc != code {
            self.fail(&format!("{what}: returned {rc}, expected {code}"));
        }
    }

    fn expect_untouched(&self, d: &sluice_decision, what: &str) {
        if *d != sentinel() {
            self.fail(&format!("{what}: wrote {d:?} although it failed"));
        }
    }
}

fn run(text: &str, u: &mut Unstructured) -> Result<()> {
    let policy = Policy::parse(text).expect("generated policies parse");
    let c_text = CString::new(text).expect("no NUL in generated policies");
    let mut h: *mut Sluice = ptr::null_mut();
    let mut err = [0 as c_char; 256];
    let rc = unsafe {
        ffi::sluice_open(
            c_text.as_ptr(),
            ptr::null(),
            &mut h,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    assert_eq!(rc, ffi::SLUICE_OK, "sluice_open({text:?}): {:?}", unsafe {
        CStr::from_ptr(err.as_ptr())
    });
    assert!(!h.is_null());

    // Categories resolve by name to their ids; unknown, NULL and non-UTF-8 names do not.
    for (id, name) in policy.categories.iter().enumerate() {
        let c_name = CString::new(name.as_str()).unwrap();
        assert_eq!(
            unsafe { ffi::sluice_category(h, c_name.as_ptr()) },
            id as c_int
        );
    }
    unsafe {
        assert_eq!(ffi::sluice_category(h, c"global".as_ptr()), 0);
        assert_eq!(
            ffi::sluice_category(h, c"nope".as_ptr()),
            ffi::SLUICE_ERR_UNKNOWN_CATEGORY
        );
        assert_eq!(
            ffi::sluice_category(h, c"".as_ptr()),
            ffi::SLUICE_ERR_UNKNOWN_CATEGORY
        );
        assert_eq!(ffi::sluice_category(h, ptr::null()), ffi::SLUICE_ERR_NULL);
        assert_eq!(
            ffi::sluice_category(h, b"au\xffth\0".as_ptr() as *const c_char),
            ffi::SLUICE_ERR_UTF8
        );
        assert_eq!(
            ffi::sluice_category(ptr::null(), c"global".as_ptr()),
            ffi::SLUICE_ERR_NULL
        );
    }

    let auth = policy.category_id("auth").expect("the lockout names auth");
    let mut run = Run {
        h,
        text,
        ncat: policy.categories.len(),
        auth,
        model: Model::new(policy),
        t: T0,
        step: 0,
        log: String::new(),
    };

    let n = u.int_in_range(1..=MAX_OPS)?;
    for step in 0..n {
        if u.is_empty() {
            break;
        }
        run.step = step;
        run.t += match u.int_in_range(0u8..=5)? {
            0..=2 => u.int_in_range(1i64..=4)?,
            3 | 4 => u.int_in_range(5i64..=59)?,
            _ => u.int_in_range(60i64..=499)?,
        };
        let k = u.int_in_range(0..=KEYS.len() - 1)?;
        let key = KEYS[k];
        let c = u.int_in_range(0..=2usize)? % run.ncat;
        match u.int_in_range(0u8..=15)? {
            5 => {
                run.note(format_args!("allow k{k} c{c}"));
                let rc = unsafe {
                    ffi::sluice_allow(run.h, c as c_int, key.as_ptr().cast(), key.len(), run.t)
                };
                let want = run.model.decide(key, c, run.t, Op::Check);
                if rc != c_int::from(want.allowed) {
                    run.fail(&format!(
                        "allow key {k} category {c}: C ABI {rc}, model {want:?}"
                    ));
                }
            }
            0..=4 => {
                run.note(format_args!("check k{k} c{c}"));
                let (rc, got) = run.c_check(c as c_int, key, run.t);
                let want = run.model.decide(key, c, run.t, Op::Check);
                run.agree(rc, &got, &want, &format!("check key {k} category {c}"));
            }
            6 | 7 => {
                run.note(format_args!("peek k{k} c{c}"));
                let (rc, got) = run.c_peek(c as c_int, key, run.t);
                let want = run.model.decide(key, c, run.t, Op::Peek);
                run.agree(rc, &got, &want, &format!("peek key {k} category {c}"));
            }
            8..=10 => {
                run.note(format_args!("failure k{k}"));
                let (rc, got) = run.c_failure(run.auth as c_int, key, run.t);
                let want = run.model.failure(key, run.auth, run.t);
                run.agree(rc, &got, &want, &format!("failure key {k}"));
            }
            11 => {
                run.note(format_args!("success k{k}"));
                let rc = unsafe {
                    ffi::sluice_success(
                        run.h,
                        run.auth as c_int,
                        key.as_ptr().cast(),
                        key.len(),
                        run.t,
                    )
                };
                run.expect_code(rc, ffi::SLUICE_OK, "success");
                run.model.success(key, run.auth);
            }
            12 => {
                run.note(format_args!("reset k{k} c{c}"));
                let rc = unsafe {
                    ffi::sluice_reset(run.h, c as c_int, key.as_ptr().cast(), key.len(), run.t)
                };
                run.expect_code(rc, ffi::SLUICE_OK, "reset");
                run.model.reset(key, c);
            }
            13 => batch(&mut run, u)?,
            _ => fault(&mut run, u, k, c)?,
        }
    }

    // Table-wide counts, judging "locked" at the last step's time.
    let mut st = sluice_table_stats {
        size: size_of::<sluice_table_stats>(),
        ..Default::default()
    };
    unsafe {
        assert_eq!(ffi::sluice_stats(run.h, run.t, &mut st), ffi::SLUICE_OK);
        assert_eq!(
            ffi::sluice_stats(run.h, run.t, ptr::null_mut()),
            ffi::SLUICE_ERR_NULL
        );
        assert_eq!(
            ffi::sluice_stats(ptr::null(), run.t, &mut st),
            ffi::SLUICE_ERR_NULL
        );
        let mut untouched = sluice_table_stats {
            size: size_of::<sluice_table_stats>(),
            capacity: 77,
            ..Default::default()
        };
        for t in [-1, MAX_TIME_MS + 1, i64::MAX, i64::MIN + 1] {
            assert_eq!(
                ffi::sluice_stats(run.h, t, &mut untouched),
                ffi::SLUICE_ERR_TIME
            );
        }
        assert_eq!(
            untouched.capacity, 77,
            "a failed sluice_stats wrote its out-parameter"
        );
    }
    // The only lockout is auth's: a key is locked when the model's peek in auth says so.
    let keys: Vec<Vec<u8>> = run.model.keys.keys().cloned().collect();
    let locked = keys
        .iter()
        .filter(|k| run.model.decide(k, run.auth, run.t, Op::Peek).status == sluice::Status::Locked)
        .count() as u64;
    let m = &run.model;
    let want = (
        m.policy.capacity,
        m.keys.len() as u64,
        locked,
        m.evictions,
        m.reclaimed,
        m.policy.rules.len() as u32,
    );
    let got = (
        st.capacity,
        st.live_keys,
        st.locked_keys,
        st.evictions,
        st.reclaimed,
        st.rules,
    );
    if got != want || st.bytes_per_key == 0 {
        run.fail(&format!(
            "sluice_stats (capacity, live, locked, evictions, reclaimed, rules):\n   C ABI {got:?} {st:?}\n   model {want:?}"
        ));
    }
    run.counters("the last step");
    if trace() {
        eprintln!("policy:\n{text}\noperations:\n{}stats: {st:?}", run.log);
    }
    unsafe {
        ffi::sluice_close(run.h);
        ffi::sluice_close(ptr::null_mut());
    }
    Ok(())
}

/// `sluice_check_batch` at one instant, with at most two distinct keys (then a check of the
/// first one 1 ms later); or a batch with one bad request, which must fail as a whole.
fn batch(run: &mut Run, u: &mut Unstructured) -> Result<()> {
    let a = u.int_in_range(0..=KEYS.len() - 1)?;
    let b = u.int_in_range(0..=KEYS.len() - 1)?;
    let n = u.int_in_range(0..=4usize)?;
    let mut picks = Vec::with_capacity(n);
    for _ in 0..n {
        let k = if u.arbitrary::<bool>()? { a } else { b };
        let c = u.int_in_range(0..=2usize)? % run.ncat;
        picks.push((k, c));
    }
    let mut reqs: Vec<sluice_request> = picks
        .iter()
        .map(|&(k, c)| sluice_request {
            size: size_of::<sluice_request>(),
            category: c as c_int,
            key: KEYS[k].as_ptr().cast(),
            key_len: KEYS[k].len(),
        })
        .collect();
    let mut out = vec![sentinel(); n];
    // One bad request in a non-empty batch, one time in four.
    let bad = if n > 0 && u.int_in_range(0u8..=3)? == 0 {
        let i = u.int_in_range(0..=n - 1)?;
        let code = match u.int_in_range(0u8..=3)? {
            0 => {
                reqs[i].key = ptr::null();
                ffi::SLUICE_ERR_NULL
            }
            1 => {
                reqs[i].key_len = 0;
                ffi::SLUICE_ERR_EMPTY_KEY
            }
            2 => {
                reqs[i].category = bad_category(run.ncat, u)?;
                ffi::SLUICE_ERR_UNKNOWN_CATEGORY
            }
            _ => {
                reqs[i].key = TOO_LONG.as_ptr().cast();
                reqs[i].key_len = TOO_LONG.len();
                ffi::SLUICE_ERR_KEY_TOO_LONG
            }
        };
        Some((i, code))
    } else {
        None
    };
    // The same requests through sluice_check_packed, half the time: every key a span of one
    // buffer (a NULL key becomes a span past the buffer's end: SLUICE_ERR_ARGUMENT).
    let packed = u.arbitrary::<bool>()?;
    let mut keys = Vec::new();
    let mut spans = Vec::with_capacity(n);
    for r in &reqs {
        let (offset, len) = if r.key.is_null() {
            (u64::MAX - u64::from(u.arbitrary::<u8>()?), 1)
        } else {
            // SAFETY: key_len readable bytes at key (a KEYS entry or TOO_LONG).
            let key = unsafe { std::slice::from_raw_parts(r.key as *const u8, r.key_len) };
            keys.extend_from_slice(key);
            ((keys.len() - key.len()) as u64, key.len() as u32)
        };
        spans.push(sluice_packed_request {
            size: size_of::<sluice_packed_request>(),
            key_offset: offset,
            key_len: len,
            category: r.category,
        });
    }
    let bad = match bad {
        Some((i, ffi::SLUICE_ERR_NULL)) if packed => Some((i, ffi::SLUICE_ERR_ARGUMENT)),
        other => other,
    };
    run.note(format_args!("batch {picks:?} bad {bad:?} packed {packed}"));
    let mut bad_index = usize::MAX;
    let rc = unsafe {
        if packed {
            ffi::sluice_check_packed(
                run.h,
                keys.as_ptr().cast(),
                keys.len(),
                spans.as_ptr(),
                n,
                run.t,
                out.as_mut_ptr(),
                &mut bad_index,
            )
        } else {
            ffi::sluice_check_batch(
                run.h,
                reqs.as_ptr(),
                n,
                run.t,
                out.as_mut_ptr(),
                &mut bad_index,
            )
        }
    };
    match bad {
        None => {
            run.expect_code(rc, ffi::SLUICE_OK, "batch");
            if bad_index != usize::MAX {
                run.fail(&format!(
                    "a batch that succeeded wrote bad_request = {bad_index}"
                ));
            }
            for (i, &(k, c)) in picks.iter().enumerate() {
                let want = run.model.decide(KEYS[k], c, run.t, Op::Check);
                run.agree(
                    rc,
                    &out[i],
                    &want,
                    &format!("batch request {i}: key {k} category {c}"),
                );
            }
            // Two keys were active at this instant: a later eviction choosing between them
            // would be a tie, which the model and the engine break differently. Touch the
            // first one a millisecond later (a check records activity even when refused).
            if picks.iter().any(|&(k, _)| k != picks[0].0) {
                run.t += 1;
                let (k, c) = picks[0];
                run.note(format_args!("check k{k} c{c} (after the batch)"));
                let (rc, got) = run.c_check(c as c_int, KEYS[k], run.t);
                let want = run.model.decide(KEYS[k], c, run.t, Op::Check);
                run.agree(
                    rc,
                    &got,
                    &want,
                    &format!("check key {k} category {c} after a batch"),
                );
            }
        }
        Some((i, code)) => {
            run.expect_code(rc, code, &format!("batch with bad request {i}"));
            if bad_index != i {
                run.fail(&format!(
                    "batch with bad request {i} reported bad_request {bad_index}"
                ));
            }
            for d in &out {
                run.expect_untouched(d, "failed batch");
            }
            for &(k, c) in &picks {
                run.unchanged(KEYS[k], c, "failed batch");
            }
        }
    }
    // An empty batch needs no arrays.
    let rc = unsafe {
        ffi::sluice_check_batch(
            run.h,
            ptr::null(),
            0,
            run.t,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    run.expect_code(rc, ffi::SLUICE_OK, "empty batch");
    Ok(())
}

fn bad_category(ncat: usize, u: &mut Unstructured) -> Result<c_int> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => -1,
        1 => c_int::MIN,
        2 => ncat as c_int,
        3 => c_int::MAX,
        _ => ncat as c_int + u.int_in_range(1..=1000)?,
    })
}

fn bad_time(u: &mut Unstructured) -> Result<i64> {
    Ok(match u.int_in_range(0u8..=4)? {
        0 => -1,
        1 => i64::MIN + 1, // i64::MIN itself is SLUICE_NOW
        2 => MAX_TIME_MS + 1,
        3 => i64::MAX,
        _ => -u.int_in_range(2i64..=1 << 50)?,
    })
}

/// Which function a fault is injected into.
#[derive(Clone, Copy, Debug)]
enum Func {
    Check,
    Allow,
    Peek,
    Failure,
    Success,
    Reset,
}

/// One call with exactly one bad argument: it returns the documented code, writes nothing
/// and changes nothing.
fn fault(run: &mut Run, u: &mut Unstructured, k: usize, c: usize) -> Result<()> {
    let func = *u.choose(&[
        Func::Check,
        Func::Allow,
        Func::Peek,
        Func::Failure,
        Func::Success,
        Func::Reset,
    ])?;
    // failure/success need a category with a lockout; the others take any.
    let cat = match func {
        Func::Failure | Func::Success => run.auth,
        _ => c,
    };
    let key = KEYS[k];
    let mut cat_arg = cat as c_int;
    let mut key_ptr: *const std::ffi::c_void = key.as_ptr().cast();
    let mut key_len = key.len();
    let mut t = run.t;
    let mut null_handle = false;
    let mut null_out = false;
    let kind = u.int_in_range(0u8..=9)?;
    let code = match kind {
        0 => {
            null_handle = true;
            ffi::SLUICE_ERR_NULL
        }
        1 if matches!(func, Func::Check | Func::Peek | Func::Failure) => {
            null_out = true;
            ffi::SLUICE_ERR_NULL
        }
        1 | 2 => {
            key_ptr = ptr::null();
            key_len = u.int_in_range(0..=16)?;
            ffi::SLUICE_ERR_NULL
        }
        3 => {
            key_len = 0;
            ffi::SLUICE_ERR_EMPTY_KEY
        }
        4 => {
            key_ptr = TOO_LONG.as_ptr().cast();
            key_len = TOO_LONG.len();
            ffi::SLUICE_ERR_KEY_TOO_LONG
        }
        5 | 6 => {
            cat_arg = bad_category(run.ncat, u)?;
            ffi::SLUICE_ERR_UNKNOWN_CATEGORY
        }
        7 => {
            t = bad_time(u)?;
            ffi::SLUICE_ERR_TIME
        }
        8 if matches!(func, Func::Failure | Func::Success) => {
            // Every category but auth has no lockout.
            let others: Vec<usize> = (0..run.ncat).filter(|&i| i != run.auth).collect();
            cat_arg = *u.choose(&others)? as c_int;
            ffi::SLUICE_ERR_NO_LOCKOUT
        }
        _ => return other_fault(run, u, k, c),
    };
    run.note(format_args!(
        "fault {func:?} k{k} cat {cat_arg} key_len {key_len} null key {} t {t} null handle {null_handle} null out {null_out} -> {code}",
        key_ptr.is_null()
    ));
    let h: *const Sluice = if null_handle { ptr::null() } else { run.h };
    let mut d = sentinel();
    let out: *mut sluice_decision = if null_out { ptr::null_mut() } else { &mut d };
    let rc = unsafe {
        match func {
            Func::Check => ffi::sluice_check(h, cat_arg, key_ptr, key_len, t, out),
            Func::Allow => ffi::sluice_allow(h, cat_arg, key_ptr, key_len, t),
            Func::Peek => ffi::sluice_peek(h, cat_arg, key_ptr, key_len, t, out),
            Func::Failure => ffi::sluice_failure(h, cat_arg, key_ptr, key_len, t, out),
            Func::Success => ffi::sluice_success(h, cat_arg, key_ptr, key_len, t),
            Func::Reset => ffi::sluice_reset(h, cat_arg, key_ptr, key_len, t),
        }
    };
    let what = format!("{func:?} with a bad argument");
    run.expect_code(rc, code, &what);
    run.expect_untouched(&d, &what);
    // The category the call was about, if it was a real one.
    let c_ok = usize::try_from(cat_arg)
        .ok()
        .filter(|&i| i < run.ncat)
        .unwrap_or(cat);
    run.unchanged(key, c_ok, &what);
    Ok(())
}

/// Faults of the functions around the decisions: headers, stats, rule stats, strerror.
fn other_fault(run: &mut Run, u: &mut Unstructured, k: usize, c: usize) -> Result<()> {
    let nrules = run.model.policy.rules.len();
    let mut d = sluice_decision {
        size: size_of::<sluice_decision>(),
        allowed: u.arbitrary::<u8>()?,
        status: u.int_in_range(0u8..=6)?,
        limit: u.arbitrary::<u32>()?,
        remaining: u.arbitrary::<u32>()?,
        reset_after: u.arbitrary::<u32>()?,
        reset: u.arbitrary::<i64>()?,
        retry_after: u.arbitrary::<u32>()?,
        rule: u.int_in_range(-2..=nrules as i32 + 1)?,
        window_ms: u.arbitrary::<i64>()?,
    };
    if u.arbitrary::<bool>()? {
        d.allowed &= 1;
    }
    run.note(format_args!("other faults, decision {d:?}"));
    let policy = &run.model.policy;
    let mut buf = [0x7Fu8; 512];
    let bp = buf.as_mut_ptr() as *mut c_char;
    unsafe {
        // A made-up decision: any status above 4 is an argument error; else the headers of
        // whatever it says (a rule index outside the policy gives no rate-limit fields).
        let rc = ffi::sluice_headers(run.h, &d, ffi::SLUICE_HEADERS_X_RATELIMIT, bp, buf.len());
        if d.status > ffi::SLUICE_STATUS_DRY_RUN_LIMITED {
            run.expect_code(rc, ffi::SLUICE_ERR_ARGUMENT, "headers of a bad status");
        } else {
            // `allowed` is read as `!= 0`.
            let mut norm = d;
            norm.allowed = u8::from(d.allowed != 0);
            for style in [ffi::SLUICE_HEADERS_X_RATELIMIT, ffi::SLUICE_HEADERS_IETF] {
                let want = expected_headers(policy, &norm, style);
                let rc = ffi::sluice_headers(run.h, &d, style, bp, buf.len());
                if rc != want.len() as c_int || &buf[..want.len()] != want.as_bytes() {
                    run.fail(&format!(
                        "headers of {d:?}, style {style}: rc {rc}: {:?}, expected {want:?}",
                        String::from_utf8_lossy(&buf[..(rc.max(0) as usize).min(buf.len())])
                    ));
                }
            }
        }
        buf.fill(0x7F);
        for style in [2, -1, c_int::MAX, c_int::MIN] {
            let rc = ffi::sluice_headers(run.h, &d, style, bp, buf.len());
            run.expect_code(rc, ffi::SLUICE_ERR_ARGUMENT, "headers of a bad style");
        }
        run.expect_code(
            ffi::sluice_headers(run.h, ptr::null(), 0, bp, buf.len()),
            ffi::SLUICE_ERR_NULL,
            "headers of NULL",
        );
        let unsized_d = sluice_decision { size: 0, ..d };
        run.expect_code(
            ffi::sluice_headers(run.h, &unsized_d, 0, bp, buf.len()),
            ffi::SLUICE_ERR_SIZE,
            "headers of a decision without its size",
        );
        run.expect_code(
            ffi::sluice_headers(ptr::null(), &d, 0, bp, buf.len()),
            ffi::SLUICE_ERR_NULL,
            "headers with a NULL handle",
        );
        if buf.iter().any(|&b| b != 0x7F) {
            run.fail("a failed sluice_headers wrote its buffer");
        }
        // Rule stats past the last rule, and NULL out-parameters.
        let mut rs = sluice_rule_counts {
            size: size_of::<sluice_rule_counts>(),
            passed: 7,
            ..Default::default()
        };
        let past = nrules as i32 + u.int_in_range(0..=3)?;
        run.expect_code(
            ffi::sluice_rule_stats(run.h, past, &mut rs),
            ffi::SLUICE_ERR_ARGUMENT,
            "rule stats past the last rule",
        );
        for rule in [-1, i32::MIN, i32::MAX] {
            run.expect_code(
                ffi::sluice_rule_stats(run.h, rule, &mut rs),
                ffi::SLUICE_ERR_ARGUMENT,
                "rule stats of a rule index out of range",
            );
        }
        run.expect_code(
            ffi::sluice_rule_stats(run.h, 0, ptr::null_mut()),
            ffi::SLUICE_ERR_NULL,
            "rule stats into NULL",
        );
        run.expect_code(
            ffi::sluice_rule_stats(ptr::null(), 0, &mut rs),
            ffi::SLUICE_ERR_NULL,
            "rule stats of NULL",
        );
        if rs.passed != 7 {
            run.fail("a failed sluice_rule_stats wrote its out-parameter");
        }
        // Batches with a NULL handle or NULL arrays.
        let req = sluice_request {
            size: size_of::<sluice_request>(),
            category: c as c_int,
            key: KEYS[k].as_ptr().cast(),
            key_len: KEYS[k].len(),
        };
        let mut out = sentinel();
        run.expect_code(
            ffi::sluice_check_batch(ptr::null(), &req, 1, run.t, &mut out, ptr::null_mut()),
            ffi::SLUICE_ERR_NULL,
            "batch of NULL",
        );
        run.expect_code(
            ffi::sluice_check_batch(run.h, ptr::null(), 1, run.t, &mut out, ptr::null_mut()),
            ffi::SLUICE_ERR_NULL,
            "batch of NULL requests",
        );
        run.expect_code(
            ffi::sluice_check_batch(run.h, &req, 1, run.t, ptr::null_mut(), ptr::null_mut()),
            ffi::SLUICE_ERR_NULL,
            "batch into NULL",
        );
        run.expect_code(
            ffi::sluice_check_batch(run.h, &req, 1, bad_time(u)?, &mut out, ptr::null_mut()),
            ffi::SLUICE_ERR_TIME,
            "batch at a bad time",
        );
        run.expect_untouched(&out, "failed batch");
        // strerror: a static, NUL-terminated string for every code, known or not.
        let code: c_int = u.arbitrary()?;
        for code in [code, ffi::SLUICE_OK, ffi::SLUICE_ERR_PANIC] {
            let s = ffi::sluice_strerror(code);
            assert!(!s.is_null());
            assert!(!CStr::from_ptr(s).to_bytes().is_empty());
        }
        let v = CStr::from_ptr(ffi::sluice_version());
        assert!(v.to_str().is_ok_and(|v| !v.is_empty()));
    }
    run.unchanged(KEYS[k], c, "other faults");
    Ok(())
}
