//! The C ABI (SPEC §6): the only module with `extern "C"` and raw pointers from callers.
//!
//! Conventions, as in rustls-ffi: opaque handles with `_open`/`_close` pairs (NULL is fine
//! for close); 0 is success and errors are negative codes, grouped by tens and never
//! renumbered; out-parameters come last and are written only on success; a NULL argument is an
//! error code, not a crash; every function runs inside a panic boundary ([`guard`]) so no
//! panic crosses into C; error detail goes into a caller's buffer, never a thread-local. Every
//! doc comment here is copied into `include/sluice.h` by cbindgen (`build.rs`).

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::{Category, Decision, Error, HeaderStyle, Limiter, Status};

/// Success.
pub const SLUICE_OK: c_int = 0;
/// A pointer argument was NULL.
pub const SLUICE_ERR_NULL: c_int = -1;
/// A string argument was not valid UTF-8.
pub const SLUICE_ERR_UTF8: c_int = -2;
/// The key was empty (keys are 1 to 65535 bytes).
pub const SLUICE_ERR_EMPTY_KEY: c_int = -3;
/// The key was longer than 65535 bytes.
pub const SLUICE_ERR_KEY_TOO_LONG: c_int = -4;
/// `now_ms` was neither SLUICE_NOW nor a Unix time in milliseconds from 0 to 2^42-2.
pub const SLUICE_ERR_TIME: c_int = -5;
/// An argument was out of range (an unknown header style, a rule index past the last rule).
pub const SLUICE_ERR_ARGUMENT: c_int = -6;
/// The policy text does not parse; the error buffer says which line and column.
pub const SLUICE_ERR_POLICY: c_int = -10;
/// The policy parses but cannot be laid out (too many rules for a category, too large).
pub const SLUICE_ERR_POLICY_TOO_LARGE: c_int = -11;
/// A category name or id the policy does not define.
pub const SLUICE_ERR_UNKNOWN_CATEGORY: c_int = -20;
/// `sluice_failure`/`sluice_success` on a category without a lockout.
pub const SLUICE_ERR_NO_LOCKOUT: c_int = -21;
/// The operating system refused memory or a file (the error buffer names the path and the
/// reason: no such directory, permission denied, ...).
pub const SLUICE_ERR_IO: c_int = -30;
/// Not supported by this build of sluice.
pub const SLUICE_ERR_UNSUPPORTED: c_int = -31;
/// The file at the path is not a usable sluice table (too short, zeros, a bad magic number, a
/// corrupt header, truncated). The file was not changed.
pub const SLUICE_ERR_NOT_A_TABLE: c_int = -32;
/// The table file has a format version this library does not read. It was not changed.
pub const SLUICE_ERR_FORMAT_VERSION: c_int = -33;
/// The table file was made for another policy; the error buffer names the rules that differ.
/// It was not changed.
pub const SLUICE_ERR_POLICY_MISMATCH: c_int = -34;
/// No table file at the path, and no policy was given to create one.
pub const SLUICE_ERR_NO_TABLE: c_int = -35;
/// The table was opened read-only: the call would record something, and recorded nothing.
pub const SLUICE_ERR_READ_ONLY: c_int = -36;
/// A bug: the library caught a panic. Nothing was changed by the failing call.
pub const SLUICE_ERR_PANIC: c_int = -99;

/// Pass as `now_ms` to use the library's own clock (the system's wall clock).
pub const SLUICE_NOW: i64 = i64::MIN;

/// `sluice_open_flags`: back the table with transparent huge pages (`madvise(MADV_HUGEPAGE)`).
/// Checks of many distinct keys spread over a large table then miss the TLB far less often
/// (on the benchmark machine, random keys over a million live keys: 11-36 % faster), but
/// resident memory grows in 2 MiB steps as keys arrive, up to the whole table, instead of
/// 4 KiB at a time. Advice only: a kernel without transparent huge pages ignores it, and for
/// a table file the kernel's shmem setting decides. Flags are bits, never renumbered.
pub const SLUICE_OPEN_HUGE_PAGES: u32 = 1;

/// Every flag `sluice_open_flags` knows.
const OPEN_FLAGS: u32 = SLUICE_OPEN_HUGE_PAGES;

/// `sluice_decision.status`: admitted by every rule.
pub const SLUICE_STATUS_PASSED: u8 = 0;
/// Refused by a rule.
pub const SLUICE_STATUS_LIMITED: u8 = 1;
/// Refused: the key is locked out of the category.
pub const SLUICE_STATUS_LOCKED: u8 = 2;
/// No slot for a new key; the policy's `when-full` decided.
pub const SLUICE_STATUS_FULL: u8 = 3;
/// Admitted, but a dry-run rule would have refused it.
pub const SLUICE_STATUS_DRY_RUN_LIMITED: u8 = 4;

/// `sluice_headers` style: `X-RateLimit-Limit`, `-Remaining`, `-Reset`, and `Retry-After`
/// when refused.
pub const SLUICE_HEADERS_X_RATELIMIT: c_int = 0;
/// `sluice_headers` style: IETF draft `RateLimit-Policy` and `RateLimit`, and `Retry-After`
/// when refused.
pub const SLUICE_HEADERS_IETF: c_int = 1;

/// A limiter: one table and its policy. Opaque; made by `sluice_open` (or
/// `sluice_open_flags`), freed by `sluice_close`. Safe to share between threads: every function taking a
/// `const sluice *` may be called concurrently.
pub struct sluice {
    limiter: Limiter,
    /// The policy text as a C string, for `sluice_policy`.
    policy: std::ffi::CString,
}

/// The answer to a request, for its deciding rule (see README, "Semantics in short").
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct sluice_decision {
    /// 1 if the request may go ahead, 0 if it must be refused (HTTP 429).
    pub allowed: u8,
    /// One of SLUICE_STATUS_*.
    pub status: u8,
    /// N of the deciding rule (F for a lockout); 0 when no rule applies.
    pub limit: u32,
    /// Requests the deciding rule would still admit now, after this one; 0 when refused.
    pub remaining: u32,
    /// Seconds until `reset`, rounded up (the IETF `t`).
    pub reset_after: u32,
    /// Unix seconds (rounded up) when `remaining` next grows; the lock's end when locked.
    pub reset: i64,
    /// Whole seconds (at least 1) until this request would be admitted; 0 when allowed.
    pub retry_after: u32,
    /// Index of the deciding rule in policy order, or -1 when no rule applies.
    pub rule: i32,
    /// The deciding rule's window in milliseconds.
    pub window_ms: i64,
}

/// One request of a batch: a category id (from `sluice_category`) and a key.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct sluice_request {
    pub category: c_int,
    /// The key's bytes (borrowed for the duration of the call; need not be NUL-terminated).
    pub key: *const c_void,
    pub key_len: usize,
}

/// Table-wide counts, from `sluice_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct sluice_table_stats {
    pub capacity: u64,
    pub live_keys: u64,
    pub locked_keys: u64,
    /// Slots taken from a key whose state still mattered.
    pub evictions: u64,
    /// Slots taken from a key whose state had expired.
    pub reclaimed: u64,
    /// Requests for which no slot could be had.
    pub full: u64,
    /// Bytes of table memory per key.
    pub bytes_per_key: u64,
    /// Rules and lockouts in the policy (indexes 0..rules for `sluice_rule_stats`).
    pub rules: u32,
}

/// Counts of one rule or lockout, from `sluice_rule_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct sluice_rule_counts {
    /// Requests this rule admitted (and the request was admitted).
    pub passed: u64,
    /// Requests this rule refused; a check refused after losing races with other threads or
    /// processes counts here too, under its category's first rule (the one its decision names).
    pub limited: u64,
    /// Requests this dry-run rule would have refused.
    pub dry_run_limited: u64,
    /// Lockout: checks refused because the key was locked.
    pub locked: u64,
    /// Lockout: lockouts started.
    pub lockouts: u64,
}

impl From<Decision> for sluice_decision {
    fn from(d: Decision) -> sluice_decision {
        sluice_decision {
            allowed: d.allowed as u8,
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
}

fn status_from(code: u8) -> Option<Status> {
    Some(match code {
        SLUICE_STATUS_PASSED => Status::Passed,
        SLUICE_STATUS_LIMITED => Status::Limited,
        SLUICE_STATUS_LOCKED => Status::Locked,
        SLUICE_STATUS_FULL => Status::Full,
        SLUICE_STATUS_DRY_RUN_LIMITED => Status::DryRunLimited,
        _ => return None,
    })
}

/// The panic boundary: run `f`, turning a panic into SLUICE_ERR_PANIC.
fn guard(f: impl FnOnce() -> c_int) -> c_int {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(SLUICE_ERR_PANIC)
}

fn code_of(e: &Error) -> c_int {
    match e {
        Error::Policy(_) => SLUICE_ERR_POLICY,
        Error::PolicyTooLarge(_) => SLUICE_ERR_POLICY_TOO_LARGE,
        Error::UnknownCategory { .. } | Error::InvalidCategory(_) => SLUICE_ERR_UNKNOWN_CATEGORY,
        Error::NoLockout { .. } => SLUICE_ERR_NO_LOCKOUT,
        Error::EmptyKey => SLUICE_ERR_EMPTY_KEY,
        Error::KeyTooLong(_) => SLUICE_ERR_KEY_TOO_LONG,
        Error::TimeOutOfRange(_) => SLUICE_ERR_TIME,
        Error::InBatch { error, .. } => code_of(error),
        Error::Io(_) | Error::File { .. } => SLUICE_ERR_IO,
        Error::NotATable { .. } => SLUICE_ERR_NOT_A_TABLE,
        Error::FormatVersion { .. } => SLUICE_ERR_FORMAT_VERSION,
        Error::PolicyMismatch { .. } => SLUICE_ERR_POLICY_MISMATCH,
        Error::NoTable { .. } => SLUICE_ERR_NO_TABLE,
        Error::NoPolicy => SLUICE_ERR_NULL,
        Error::ReadOnly { .. } => SLUICE_ERR_READ_ONLY,
        Error::InvalidState(_) => SLUICE_ERR_ARGUMENT,
    }
}

/// Copy `msg` into the caller's buffer, truncated and always NUL-terminated.
///
/// # Safety
/// `buf` is NULL or points to `cap` writable bytes.
unsafe fn write_message(buf: *mut c_char, cap: usize, msg: &str) {
    if buf.is_null() || cap == 0 {
        return;
    }
    let mut n = msg.len().min(cap - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: the caller promises `cap` writable bytes at `buf`; we write n + 1 <= cap.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
}

/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn str_arg<'a>(p: *const c_char) -> Result<&'a str, c_int> {
    if p.is_null() {
        return Err(SLUICE_ERR_NULL);
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| SLUICE_ERR_UTF8)
}

/// # Safety
/// `key` is NULL or points to `len` readable bytes.
unsafe fn key_arg<'a>(key: *const c_void, len: usize) -> Result<&'a [u8], c_int> {
    if key.is_null() {
        return Err(SLUICE_ERR_NULL);
    }
    // SAFETY: non-NULL, `len` readable bytes by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(key as *const u8, len) })
}

fn category_arg(l: &Limiter, id: c_int) -> Result<Category, c_int> {
    usize::try_from(id)
        .ok()
        .filter(|&i| i < l.policy().categories.len())
        .map(Category)
        .ok_or(SLUICE_ERR_UNKNOWN_CATEGORY)
}

fn now_arg(l: &Limiter, now_ms: i64) -> i64 {
    if now_ms == SLUICE_NOW {
        l.now_ms()
    } else {
        now_ms
    }
}

/// Open a limiter.
///
/// `policy`: the policy text (NUL-terminated UTF-8), e.g. `sluice_default_policy()`.
/// `path`: NULL for a table in this process's private memory; otherwise the table file that
/// every process opening the same path shares (e.g. "/dev/shm/api.sluice"). A missing file is
/// created for `policy` (mode 0600, sparse); many processes may do so at the same moment and
/// all get the one table. An existing file is checked and attached: with a non-NULL `policy` it
/// must be the file's policy (else SLUICE_ERR_POLICY_MISMATCH, naming the rules that differ);
/// with a NULL `policy` the file's own policy is used. A file that is not a table gives
/// SLUICE_ERR_NOT_A_TABLE, another format SLUICE_ERR_FORMAT_VERSION, a missing file with a
/// NULL policy SLUICE_ERR_NO_TABLE, a missing directory or a permission problem SLUICE_ERR_IO;
/// in every case the file is left unchanged.
/// On success writes a new handle to `*out` (owned by the caller, freed with `sluice_close`)
/// and returns SLUICE_OK. On failure returns a negative code, leaves `*out` untouched and, if
/// `err_buf` is not NULL, writes a NUL-terminated message of at most `err_cap` bytes there
/// (e.g. `invalid policy: line 3, column 12: expected a duration such as 1m or 30s, found
/// "1 minute"`).
/// All pointers are borrowed for the duration of the call only.
///
/// # Safety
/// `policy` and `path` are NULL or NUL-terminated strings; `out` is NULL or writable;
/// `err_buf` is NULL or points to `err_cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sluice_open(
    policy: *const c_char,
    path: *const c_char,
    out: *mut *mut sluice,
    err_buf: *mut c_char,
    err_cap: usize,
) -> c_int {
    // SAFETY: forwarded caller contract.
    guard(|| unsafe { open_with("sluice_open", policy, path, 0, out, err_buf, err_cap) })
}

/// Open a limiter as `sluice_open` does, with `flags`: 0, or SLUICE_OPEN_HUGE_PAGES. Bits this
/// library does not know give SLUICE_ERR_ARGUMENT (the error buffer names them), and nothing
/// is opened or created. Arguments, ownership and errors are otherwise those of `sluice_open`.
///
/// # Safety
/// As for `sluice_open`.
#[no_mangle]
pub unsafe extern "C" fn sluice_open_flags(
    policy: *const c_char,
    path: *const c_char,
    flags: u32,
    out: *mut *mut sluice,
    err_buf: *mut c_char,
    err_cap: usize,
) -> c_int {
    // SAFETY: forwarded caller contract.
    guard(|| unsafe {
        open_with(
            "sluice_open_flags",
            policy,
            path,
            flags,
            out,
            err_buf,
            err_cap,
        )
    })
}

/// `sluice_open` and `sluice_open_flags`; `name` is the one called, for the messages.
///
/// # Safety
/// The contract of `sluice_open`.
unsafe fn open_with(
    name: &str,
    policy: *const c_char,
    path: *const c_char,
    flags: u32,
    out: *mut *mut sluice,
    err_buf: *mut c_char,
    err_cap: usize,
) -> c_int {
    let fail = |code: c_int, msg: &str| {
        // SAFETY: forwarded caller contract on err_buf/err_cap.
        unsafe { write_message(err_buf, err_cap, msg) };
        code
    };
    if out.is_null() {
        return fail(SLUICE_ERR_NULL, &format!("{name}: out is NULL"));
    }
    let unknown = flags & !OPEN_FLAGS;
    if unknown != 0 {
        return fail(
            SLUICE_ERR_ARGUMENT,
            &format!(
                "{name}: unknown flag bits {unknown:#x} in flags {flags:#x} \
                 (known: SLUICE_OPEN_HUGE_PAGES = {SLUICE_OPEN_HUGE_PAGES:#x})"
            ),
        );
    }
    // SAFETY: caller contract.
    let text = match unsafe { str_arg(policy) } {
        Ok(t) => Some(t),
        Err(SLUICE_ERR_NULL) if !path.is_null() => None,
        Err(SLUICE_ERR_NULL) => {
            return fail(
                SLUICE_ERR_NULL,
                &format!("{name}: policy is NULL (and no path given)"),
            )
        }
        Err(code) => return fail(code, &format!("{name}: policy is not valid UTF-8")),
    };
    let mut builder = crate::LimiterBuilder::new().huge_pages(flags & SLUICE_OPEN_HUGE_PAGES != 0);
    if let Some(text) = text {
        builder = builder.policy(text);
    }
    if !path.is_null() {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: non-NULL and NUL-terminated by the caller's contract. Paths are bytes.
        let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
        if bytes.is_empty() {
            return fail(SLUICE_ERR_ARGUMENT, &format!("{name}: path is empty"));
        }
        builder = builder.path(std::ffi::OsStr::from_bytes(bytes));
    }
    match builder.open() {
        Ok(limiter) => {
            // A policy that parsed holds no NUL (the parser refuses control characters).
            let policy = std::ffi::CString::new(limiter.policy_text()).unwrap_or_default();
            let handle = Box::into_raw(Box::new(sluice { limiter, policy }));
            // SAFETY: `out` is non-NULL and writable by contract.
            unsafe { *out = handle };
            SLUICE_OK
        }
        Err(e) => fail(code_of(&e), &e.to_string()),
    }
}

/// Free a limiter made by `sluice_open` or `sluice_open_flags`. NULL is fine (does nothing).
/// The handle must not be used afterwards, and no other thread may be using it during the call.
///
/// # Safety
/// `s` is NULL or a handle from `sluice_open` or `sluice_open_flags` not yet closed.
#[no_mangle]
pub unsafe extern "C" fn sluice_close(s: *mut sluice) {
    guard(|| {
        if !s.is_null() {
            // SAFETY: made by Box::into_raw in sluice_open, closed once by contract.
            drop(unsafe { Box::from_raw(s) });
        }
        SLUICE_OK
    });
}

/// The id of the category called `name` (`"global"` is always 0): resolve each category once
/// and pass the id to the per-request functions. Returns the id (>= 0) or
/// SLUICE_ERR_UNKNOWN_CATEGORY / SLUICE_ERR_NULL / SLUICE_ERR_UTF8. Thread-safe.
///
/// # Safety
/// `s` is NULL or a live handle; `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn sluice_category(s: *const sluice, name: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_ref() }) else {
            return SLUICE_ERR_NULL;
        };
        // SAFETY: caller contract.
        let name = match unsafe { str_arg(name) } {
            Ok(n) => n,
            Err(code) => return code,
        };
        match s.limiter.category(name) {
            Ok(c) => c.id() as c_int,
            Err(e) => code_of(&e),
        }
    })
}

type KeyOp = fn(&Limiter, &[u8], Category, i64) -> Result<Decision, Error>;

/// Shared body of check / peek / failure.
///
/// # Safety
/// As for `sluice_check`.
unsafe fn decide(
    s: *const sluice,
    category: c_int,
    key: *const c_void,
    key_len: usize,
    now_ms: i64,
    out: *mut sluice_decision,
    op: KeyOp,
) -> c_int {
    guard(|| {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_ref() }) else {
            return SLUICE_ERR_NULL;
        };
        if out.is_null() {
            return SLUICE_ERR_NULL;
        }
        // SAFETY: caller contract.
        let key = match unsafe { key_arg(key, key_len) } {
            Ok(k) => k,
            Err(code) => return code,
        };
        let cat = match category_arg(&s.limiter, category) {
            Ok(c) => c,
            Err(code) => return code,
        };
        match op(&s.limiter, key, cat, now_arg(&s.limiter, now_ms)) {
            Ok(d) => {
                // SAFETY: non-NULL and writable by contract.
                unsafe { *out = d.into() };
                SLUICE_OK
            }
            Err(e) => code_of(&e),
        }
    })
}

/// May this request go ahead? Checks the key against every `global` rule and every rule of
/// `category` and records it if admitted, writing the decision to `*out`.
/// `key`/`key_len`: the client's key (1..=65535 bytes, borrowed for the call). `now_ms`: Unix
/// milliseconds, or SLUICE_NOW. Returns SLUICE_OK or a negative code (then `*out` is
/// untouched and nothing was recorded). Thread-safe and lock-free.
///
/// # Safety
/// `s` is NULL or a live handle; `key` is NULL or points to `key_len` readable bytes; `out`
/// is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sluice_check(
    s: *const sluice,
    category: c_int,
    key: *const c_void,
    key_len: usize,
    now_ms: i64,
    out: *mut sluice_decision,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe {
        decide(s, category, key, key_len, now_ms, out, |l, k, c, t| {
            l.check_at(k, c, t)
        })
    }
}

/// `sluice_check` without the decision: the same answer, recorded and counted the same way,
/// but only whether the request may go ahead, and without the work of counting the window
/// for `remaining` and `reset`. For hosts that send no rate-limit headers. Arguments as for
/// `sluice_check` (the key is borrowed for the call). Returns 1 if the request may go ahead,
/// 0 if not (limited, locked, or a full table that denies), or a negative code (then nothing
/// was recorded). Thread-safe and lock-free.
///
/// # Safety
/// `s` is NULL or a live handle; `key` is NULL or points to `key_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn sluice_allow(
    s: *const sluice,
    category: c_int,
    key: *const c_void,
    key_len: usize,
    now_ms: i64,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe {
        key_code(s, category, key, key_len, now_ms, |l, k, c, t| {
            l.allow_at(k, c, t).map(c_int::from)
        })
    }
}

/// The decision `sluice_check` would give now, recording nothing. Arguments, ownership and
/// return as for `sluice_check`.
///
/// # Safety
/// As for `sluice_check`.
#[no_mangle]
pub unsafe extern "C" fn sluice_peek(
    s: *const sluice,
    category: c_int,
    key: *const c_void,
    key_len: usize,
    now_ms: i64,
    out: *mut sluice_decision,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe {
        decide(s, category, key, key_len, now_ms, out, |l, k, c, t| {
            l.peek_at(k, c, t)
        })
    }
}

/// Record a failed attempt (a wrong password) of the key in `category`, which must have a
/// lockout (else SLUICE_ERR_NO_LOCKOUT). Writes the key's state after recording: status
/// SLUICE_STATUS_LOCKED with `retry_after` = the rest of the lock, or
/// SLUICE_STATUS_PASSED with `remaining` = failures left before a lockout. Arguments,
/// ownership and return as for `sluice_check`.
///
/// # Safety
/// As for `sluice_check`.
#[no_mangle]
pub unsafe extern "C" fn sluice_failure(
    s: *const sluice,
    category: c_int,
    key: *const c_void,
    key_len: usize,
    now_ms: i64,
    out: *mut sluice_decision,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe {
        decide(s, category, key, key_len, now_ms, out, |l, k, c, t| {
            l.failure_at(k, c, t)
        })
    }
}

/// An operation on one key that answers with a non-negative code of its own.
type KeyCodeOp = fn(&Limiter, &[u8], Category, i64) -> Result<c_int, Error>;

/// Shared body of allow / success / reset.
///
/// # Safety
/// As for `sluice_success`.
unsafe fn key_code(
    s: *const sluice,
    category: c_int,
    key: *const c_void,
    key_len: usize,
    now_ms: i64,
    op: KeyCodeOp,
) -> c_int {
    guard(|| {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_ref() }) else {
            return SLUICE_ERR_NULL;
        };
        // SAFETY: caller contract.
        let key = match unsafe { key_arg(key, key_len) } {
            Ok(k) => k,
            Err(code) => return code,
        };
        let cat = match category_arg(&s.limiter, category) {
            Ok(c) => c,
            Err(code) => return code,
        };
        match op(&s.limiter, key, cat, now_arg(&s.limiter, now_ms)) {
            Ok(code) => code,
            Err(e) => code_of(&e),
        }
    })
}

/// A successful attempt: clears the key's failure log in `category` (which must have a
/// lockout); the lockout level is kept. Returns SLUICE_OK or a negative code. Thread-safe.
///
/// # Safety
/// `s` is NULL or a live handle; `key` is NULL or points to `key_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn sluice_success(
    s: *const sluice,
    category: c_int,
    key: *const c_void,
    key_len: usize,
    now_ms: i64,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe {
        key_code(s, category, key, key_len, now_ms, |l, k, c, t| {
            l.success_at(k, c, t).map(|()| SLUICE_OK)
        })
    }
}

/// Clear everything `sluice_check(key, category)` consults: the logs of the category's rules
/// and of the global rules, and the category's lockout (failures, lock and level) — the
/// support desk's "unlock". Returns SLUICE_OK or a negative code. Thread-safe.
///
/// # Safety
/// As for `sluice_success`.
#[no_mangle]
pub unsafe extern "C" fn sluice_reset(
    s: *const sluice,
    category: c_int,
    key: *const c_void,
    key_len: usize,
    now_ms: i64,
) -> c_int {
    // SAFETY: forwarded caller contract.
    unsafe {
        key_code(s, category, key, key_len, now_ms, |l, k, c, t| {
            l.reset_at(k, c, t).map(|()| SLUICE_OK)
        })
    }
}

/// Check `n` requests at once (many keys, one call), all at `now_ms` (or SLUICE_NOW), writing
/// `decisions[i]` for `requests[i]`. Every request is validated first: if any is invalid
/// (NULL key, empty or too long key, unknown category) the call returns that error, records
/// nothing, writes no decision, and writes the index of the first invalid request to
/// `*bad_request` (unless `bad_request` is NULL; it is written only then, an error detail
/// like `sluice_open`'s message). Both arrays are borrowed for the call; `decisions` must
/// have room for `n`. `n` = 0 is fine. Allocates nothing. Thread-safe.
///
/// # Safety
/// `s` is NULL or a live handle; `requests` is NULL or points to `n` readable requests whose
/// keys point to `key_len` readable bytes; `decisions` is NULL or points to `n` writable
/// decisions; `bad_request` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sluice_check_batch(
    s: *const sluice,
    requests: *const sluice_request,
    n: usize,
    now_ms: i64,
    decisions: *mut sluice_decision,
    bad_request: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_ref() }) else {
            return SLUICE_ERR_NULL;
        };
        if n == 0 {
            return SLUICE_OK;
        }
        if requests.is_null() || decisions.is_null() {
            return SLUICE_ERR_NULL;
        }
        // SAFETY: `n` readable requests by contract.
        let reqs = unsafe { std::slice::from_raw_parts(requests, n) };
        let now = now_arg(&s.limiter, now_ms);
        // A request as the engine takes it, validated as `check_batch_at` would (key length
        // and category) so that an invalid one is found before anything is recorded.
        let request = |r: &sluice_request| -> Result<(&[u8], Category), c_int> {
            // SAFETY: each key points to key_len readable bytes by contract.
            let key = unsafe { key_arg(r.key, r.key_len) }?;
            let cat = category_arg(&s.limiter, r.category)?;
            s.limiter.validate(key, cat).map_err(|e| code_of(&e))?;
            Ok((key, cat))
        };
        // Every request is valid before any is recorded.
        for (i, r) in reqs.iter().enumerate() {
            if let Err(code) = request(r) {
                // SAFETY: NULL or writable by contract.
                if let Some(bad) = unsafe { bad_request.as_mut() } {
                    *bad = i;
                }
                return code;
            }
        }
        // SAFETY: `n` writable decisions by contract.
        let dst = unsafe { std::slice::from_raw_parts_mut(decisions, n) };
        // Decided a chunk at a time in arrays on the stack: a batch allocates nothing. Only
        // the time can fail now, and then on the first chunk, before anything is recorded.
        const CHUNK: usize = 64;
        let mut batch = [(&[][..], Category::GLOBAL); CHUNK];
        let mut out = [Decision::default(); CHUNK];
        for (reqs, dst) in reqs.chunks(CHUNK).zip(dst.chunks_mut(CHUNK)) {
            let m = reqs.len();
            for (b, r) in batch.iter_mut().zip(reqs) {
                match request(r) {
                    Ok(req) => *b = req,
                    Err(code) => return code, // validated above: not reached
                }
            }
            if let Err(e) = s.limiter.check_batch_at(&batch[..m], now, &mut out[..m]) {
                return code_of(&e);
            }
            for (d, o) in dst.iter_mut().zip(&out[..m]) {
                *d = (*o).into();
            }
        }
        SLUICE_OK
    })
}

/// Format the response headers of `decision` as `Name: value\r\n` lines in `buf`.
/// `style`: SLUICE_HEADERS_X_RATELIMIT (the default style) or SLUICE_HEADERS_IETF.
/// Returns the length of the whole block in bytes, not counting a terminating NUL; if it is
/// less than `cap`, the block and a NUL were written; otherwise only a NUL at `buf[0]` (if
/// `cap` > 0), never a partial block — call again with at least the returned length + 1
/// bytes. `buf` may be NULL only when `cap` is 0 (to ask for the length).
/// Negative codes: SLUICE_ERR_NULL, SLUICE_ERR_ARGUMENT (unknown style or status).
/// Thread-safe; `decision` is borrowed for the call.
///
/// # Safety
/// `s` is NULL or a live handle; `decision` is NULL or readable; `buf` is NULL or points to
/// `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sluice_headers(
    s: *const sluice,
    decision: *const sluice_decision,
    style: c_int,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: caller contract.
        let (Some(s), Some(d)) = (unsafe { s.as_ref() }, unsafe { decision.as_ref() }) else {
            return SLUICE_ERR_NULL;
        };
        let style = match style {
            SLUICE_HEADERS_X_RATELIMIT => HeaderStyle::XRateLimit,
            SLUICE_HEADERS_IETF => HeaderStyle::Ietf,
            _ => return SLUICE_ERR_ARGUMENT,
        };
        let Some(status) = status_from(d.status) else {
            return SLUICE_ERR_ARGUMENT;
        };
        let decision = Decision {
            allowed: d.allowed != 0,
            status,
            limit: d.limit,
            remaining: d.remaining,
            reset: d.reset,
            reset_after: d.reset_after,
            retry_after: d.retry_after,
            rule: usize::try_from(d.rule).ok(),
            window_ms: d.window_ms,
        };
        let mut text = String::new();
        s.limiter.write_headers(&decision, style, &mut text);
        let Ok(len) = c_int::try_from(text.len()) else {
            return SLUICE_ERR_ARGUMENT;
        };
        if cap == 0 {
            return len;
        }
        if buf.is_null() {
            return SLUICE_ERR_NULL;
        }
        // SAFETY: `cap` > 0 writable bytes at `buf` by contract; we write at most `cap`.
        unsafe {
            if text.len() < cap {
                std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, text.len());
                *buf.add(text.len()) = 0;
            } else {
                *buf = 0;
            }
        }
        len
    })
}

/// Table-wide counts into `*out`, judging "locked" at `now_ms` (Unix milliseconds, or
/// SLUICE_NOW). Returns SLUICE_OK, SLUICE_ERR_NULL or SLUICE_ERR_TIME. Counts live and locked
/// keys by a scan of the table: for operators, not for the request path. Thread-safe.
///
/// # Safety
/// `s` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sluice_stats(
    s: *const sluice,
    now_ms: i64,
    out: *mut sluice_table_stats,
) -> c_int {
    guard(|| {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_ref() }) else {
            return SLUICE_ERR_NULL;
        };
        if out.is_null() {
            return SLUICE_ERR_NULL;
        }
        let now = now_arg(&s.limiter, now_ms);
        if !(0..=crate::MAX_TIME_MS).contains(&now) {
            return SLUICE_ERR_TIME;
        }
        let st = s.limiter.stats_at(now);
        // SAFETY: non-NULL and writable by contract.
        unsafe {
            *out = sluice_table_stats {
                capacity: st.capacity,
                live_keys: st.live_keys,
                locked_keys: st.locked_keys,
                evictions: st.evictions,
                reclaimed: st.reclaimed,
                full: st.full,
                bytes_per_key: st.bytes_per_key,
                rules: st.rules.len() as u32,
            }
        };
        SLUICE_OK
    })
}

/// Counts of rule `rule` (0-based, policy order, as in `sluice_decision.rule`;
/// `sluice_table_stats.rules` says how many) into `*out`. Returns SLUICE_OK, SLUICE_ERR_NULL
/// or SLUICE_ERR_ARGUMENT (no such rule). Thread-safe.
///
/// # Safety
/// `s` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn sluice_rule_stats(
    s: *const sluice,
    rule: i32,
    out: *mut sluice_rule_counts,
) -> c_int {
    guard(|| {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_ref() }) else {
            return SLUICE_ERR_NULL;
        };
        if out.is_null() {
            return SLUICE_ERR_NULL;
        }
        let Some(r) = usize::try_from(rule)
            .ok()
            .and_then(|r| s.limiter.rule_stats(r))
        else {
            return SLUICE_ERR_ARGUMENT;
        };
        // SAFETY: non-NULL and writable by contract.
        unsafe {
            *out = sluice_rule_counts {
                passed: r.passed,
                limited: r.limited,
                dry_run_limited: r.dry_run_limited,
                locked: r.locked,
                lockouts: r.lockouts,
            }
        };
        SLUICE_OK
    })
}

/// A static, NUL-terminated description of a return code (never NULL; owned by the library,
/// do not free). Unknown codes give "unknown error code". Thread-safe.
#[no_mangle]
pub extern "C" fn sluice_strerror(code: c_int) -> *const c_char {
    let s: &'static CStr = match code {
        SLUICE_OK => c"success",
        SLUICE_ERR_NULL => c"a pointer argument was NULL",
        SLUICE_ERR_UTF8 => c"a string argument was not valid UTF-8",
        SLUICE_ERR_EMPTY_KEY => c"empty key: keys are 1 to 65535 bytes",
        SLUICE_ERR_KEY_TOO_LONG => c"key too long: keys are 1 to 65535 bytes",
        SLUICE_ERR_TIME => {
            c"time out of range: expected SLUICE_NOW or Unix milliseconds from 0 to 2^42-2"
        }
        SLUICE_ERR_ARGUMENT => c"an argument was out of range",
        SLUICE_ERR_POLICY => c"invalid policy",
        SLUICE_ERR_POLICY_TOO_LARGE => c"policy cannot be laid out as a table",
        SLUICE_ERR_UNKNOWN_CATEGORY => c"unknown category",
        SLUICE_ERR_NO_LOCKOUT => c"the category has no lockout",
        SLUICE_ERR_IO => c"the operating system refused memory or a file",
        SLUICE_ERR_UNSUPPORTED => c"not supported by this build of sluice",
        SLUICE_ERR_NOT_A_TABLE => c"the file is not a usable sluice table; it was not changed",
        SLUICE_ERR_FORMAT_VERSION => {
            c"the table file has another format version; it was not changed"
        }
        SLUICE_ERR_POLICY_MISMATCH => {
            c"the table file was made for another policy; it was not changed"
        }
        SLUICE_ERR_NO_TABLE => c"no table file at the path, and no policy to create one",
        SLUICE_ERR_READ_ONLY => c"the table was opened read-only; nothing was recorded",
        SLUICE_ERR_PANIC => c"internal error (a bug in sluice): the call changed nothing",
        _ => c"unknown error code",
    };
    s.as_ptr()
}

/// The policy text of the limiter `s` (for a table attached by path with a NULL policy: the
/// policy stored in the file), NUL-terminated. Owned by the handle: valid until
/// `sluice_close(s)`. NULL if `s` is NULL.
///
/// # Safety
/// `s` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn sluice_policy(s: *const sluice) -> *const c_char {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: caller contract.
        match unsafe { s.as_ref() } {
            Some(s) => s.policy.as_ptr(),
            None => std::ptr::null(),
        }
    }))
    .unwrap_or(std::ptr::null())
}

/// The default policy that ships with sluice (the limits of the docs' example API), as a
/// static NUL-terminated string owned by the library: pass it to `sluice_open`.
#[no_mangle]
pub extern "C" fn sluice_default_policy() -> *const c_char {
    const P: &str = concat!(include_str!("../../policies/default.policy"), "\0");
    P.as_ptr() as *const c_char
}

/// The library's version, e.g. "0.1.0" (static, NUL-terminated; compare with
/// SLUICE_VERSION from the header to detect a header/library mismatch).
#[no_mangle]
pub extern "C" fn sluice_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr() as *const c_char
}
