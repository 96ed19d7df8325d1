//! The C ABI: the only module with `extern "C"` and raw pointers from callers.
//!
//! Conventions, as in rustls-ffi: opaque handles with `_open`/`_close` pairs (NULL is fine
//! for close); 0 is success and errors are negative codes, grouped by tens and never
//! renumbered; out-parameters come last and are written only on success; a NULL argument is an
//! error code, not a crash; every function runs inside a panic boundary (`guard`) so no
//! panic crosses into C; error detail goes into a caller's buffer, never a thread-local. Every
//! doc comment here is copied into `include/sluice.h` by cbindgen (`build.rs`), after the
//! header's opening comment (`intro.h`: the conventions and how structs grow).

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::{Category, Decision, Error, HeaderStyle, Limiter, Status};

mod migrate;
pub use migrate::*;
mod python;
pub use python::*;

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
/// An argument was out of range (an unknown header style, a rule index past the last rule,
/// unknown flag bits, a mode outside 0666, a batch request whose key lies outside the keys
/// buffer).
pub const SLUICE_ERR_ARGUMENT: c_int = -6;
/// A struct's `size` field is not one this library can use: not set (0 or garbage), smaller
/// than the struct's first version, or not a multiple of its alignment. Set it to `sizeof`
/// the struct before the call (see "Structs that grow" at the top of this header).
pub const SLUICE_ERR_SIZE: c_int = -7;
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
/// Not supported by this build of sluice; also: an input struct larger than this library's
/// version of it has bytes set past the fields this library knows (an option from a newer
/// header that this library cannot honour; nothing was done).
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

/// `sluice_open_options.flags` (and `sluice_open_flags`): back the table with transparent
/// huge pages (`madvise(MADV_HUGEPAGE)`).
/// Checks of many distinct keys spread over a large table then miss the TLB far less often
/// (on the benchmark machine, random keys over a million live keys: 11-36 % faster), but
/// resident memory grows in 2 MiB steps as keys arrive, up to the whole table, instead of
/// 4 KiB at a time. Advice only: a kernel without transparent huge pages ignores it, and for
/// a table file the kernel's shmem setting decides. Flags are bits, never renumbered.
pub const SLUICE_OPEN_HUGE_PAGES: u32 = 1;

/// `sluice_open_options.flags`: attach to an existing table file for reading only. The file
/// is opened and mapped read-only, so a user who may only read it (an operator's dashboard,
/// a monitoring agent) can still inspect it: `sluice_peek`, `sluice_stats`,
/// `sluice_rule_stats`, `sluice_policy` and `sluice_headers` work; every call that would
/// record something (`sluice_check`, `sluice_allow`, `sluice_failure`, `sluice_success`,
/// `sluice_reset`, the batches) returns SLUICE_ERR_READ_ONLY and records nothing. A missing
/// file is an error, never created. Needs a path (SLUICE_ERR_ARGUMENT without one).
pub const SLUICE_OPEN_READ_ONLY: u32 = 2;

/// Every flag `sluice_open_with` and `sluice_open_flags` know.
const OPEN_FLAGS: u32 = SLUICE_OPEN_HUGE_PAGES | SLUICE_OPEN_READ_ONLY;

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

/// A limiter: one table and its policy. Opaque; made by `sluice_open`, `sluice_open_with` (or
/// `sluice_open_flags`), freed by `sluice_close`. Safe to share between threads: every
/// function taking a `const sluice *` may be called concurrently.
pub struct sluice {
    limiter: Limiter,
    /// The policy text as a C string, for `sluice_policy`.
    policy: std::ffi::CString,
    /// The category names as C strings, by id, for the `*_info` structs.
    names: Vec<std::ffi::CString>,
}

/// The answer to a request, for its deciding rule (see README, "Semantics in short").
///
/// Grows (see "Structs that grow" above): set `size = sizeof(struct sluice_decision)` before
/// passing it to `sluice_check`, `sluice_peek` or `sluice_failure` (for a batch: in the
/// array's first element); the library writes the fields that fit and sets `size` to the
/// bytes it wrote, so a decision reused for the next call needs no new assignment.
///
/// Why a size field and not reserved words: reserved words fix the struct's size forever
/// and run out; a field added in them reads as 0 from an older library, which a caller
/// cannot tell from a real 0; and every caller pays for writing them on every call. A size
/// field lets a struct grow without end, tells a newer caller exactly which fields an older
/// library filled, and lets an older caller keep its smaller struct on a newer library (it
/// gets the fields it knows). The price is this one assignment by the caller (forgetting it
/// is SLUICE_ERR_SIZE on the first call, never a silent misreading) and, in the library, one
/// load of `size` (from the line about to be written), two compares and a branch per call.
/// Counted with callgrind (`tests/c/callgrind_check.c`, a one-rule policy): a whole
/// `sluice_check` went from 977.6 to 984.6 instructions, the caller's store of `size`
/// included (+0.7 %).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct sluice_decision {
    /// Set by the caller to `sizeof(struct sluice_decision)`; on return, the bytes the library
    /// wrote (less than the caller's `sizeof` on an older library: fields past it are not
    /// written).
    pub size: usize,
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
    /// Whole seconds (at least 1) until this request would be admitted; 0 when allowed.
    pub retry_after: u32,
    /// Index of the deciding rule in policy order, or -1 when no rule applies.
    pub rule: i32,
    /// Unix seconds (rounded up) when `remaining` next grows; the lock's end when locked.
    pub reset: i64,
    /// The deciding rule's window in milliseconds.
    pub window_ms: i64,
}

/// One request of `sluice_check_batch`: a category id (from `sluice_category`) and a key.
///
/// Grows (see "Structs that grow" above): set `size = sizeof(struct sluice_request)` in every
/// request.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct sluice_request {
    /// Set by the caller to `sizeof(struct sluice_request)`, the same in every request.
    pub size: usize,
    /// A category id from `sluice_category`.
    pub category: c_int,
    /// The key's bytes (borrowed for the duration of the call; need not be NUL-terminated).
    pub key: *const c_void,
    /// The key's length in bytes (1 to 65535).
    pub key_len: usize,
}

/// One request of `sluice_check_packed`: a key given as a span of the call's keys buffer, and
/// a category id. It holds no pointer, so an array of them may live in memory that a garbage
/// collector moves or scans (Go's cgo rules forbid passing Go memory that holds Go pointers).
///
/// Grows (see "Structs that grow" above): set `size = sizeof(struct sluice_packed_request)`
/// in every request.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct sluice_packed_request {
    /// Set by the caller to `sizeof(struct sluice_packed_request)`, the same in every request.
    pub size: usize,
    /// Where the key starts in the keys buffer (bytes from its start).
    pub key_offset: u64,
    /// The key's length in bytes (1 to 65535); the key is
    /// `keys[key_offset .. key_offset + key_len]`, which must lie within the buffer.
    pub key_len: u32,
    /// A category id from `sluice_category`.
    pub category: i32,
}

/// Options of `sluice_open_with`. Zero-initialise it, set `size`, then the options wanted:
/// every field's zero is its default, so a field a caller's (older) header lacks is simply
/// the default.
///
/// Grows (see "Structs that grow" above): set `size = sizeof(struct sluice_open_options)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct sluice_open_options {
    /// Set by the caller to `sizeof(struct sluice_open_options)`.
    pub size: usize,
    /// 0, or SLUICE_OPEN_HUGE_PAGES and/or SLUICE_OPEN_READ_ONLY (bits, or-ed). Unknown bits
    /// give SLUICE_ERR_ARGUMENT.
    pub flags: u32,
    /// The permission bits a new table file is created with; 0 means 0600 (the creating user
    /// only). 0660 lets a group share it (nginx workers running as `www-data` and an
    /// application of the same group). Bits outside 0666 give SLUICE_ERR_ARGUMENT; the
    /// process umask does not apply; an existing file keeps its own mode. Needs a path, and
    /// means nothing with SLUICE_OPEN_READ_ONLY (which never creates): both are
    /// SLUICE_ERR_ARGUMENT.
    pub mode: u32,
}

/// Table-wide counts, from `sluice_stats`.
///
/// Grows (see "Structs that grow" above): set `size = sizeof(struct sluice_table_stats)`
/// before the call; the library writes the fields that fit and sets `size` to the bytes it
/// wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct sluice_table_stats {
    /// Set by the caller to `sizeof(struct sluice_table_stats)`; on return, the bytes written.
    pub size: usize,
    /// Most live keys the table holds.
    pub capacity: u64,
    /// Keys that hold a slot now.
    pub live_keys: u64,
    /// Keys with an active lockout now.
    pub locked_keys: u64,
    /// Slots being claimed for a new key right now. A claim left by a process killed in the
    /// middle of one stays counted here until an install that needs its position takes it
    /// over (2 s after it was made): a number that stays above zero on an idle table is the
    /// trace of a killed process, and harmless.
    pub installing: u64,
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
    /// Categories in the policy (ids 0..categories for the per-request functions; `global`
    /// is 0).
    pub categories: u32,
}

/// Counts of one rule or lockout, from `sluice_rule_stats`.
///
/// Grows (see "Structs that grow" above): set `size = sizeof(struct sluice_rule_counts)`
/// before the call; the library writes the fields that fit and sets `size` to the bytes it
/// wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct sluice_rule_counts {
    /// Set by the caller to `sizeof(struct sluice_rule_counts)`; on return, the bytes written.
    pub size: usize,
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

/// `sluice_rule_info.kind`: a sliding-window rule (`CATEGORY N/WINDOW`).
pub const SLUICE_RULE_WINDOW: u16 = 0;
/// `sluice_rule_info.kind`: a lockout (`CATEGORY lockout F/WINDOW for BAN[..MAX]`).
pub const SLUICE_RULE_LOCKOUT: u16 = 1;
/// `sluice_rule_info.flags` bit: the rule is `strict` (refused requests are logged too).
pub const SLUICE_RULE_STRICT: u16 = 1;
/// `sluice_rule_info.flags` bit: the rule is a `dry-run` (never refuses; reports would-be
/// refusals).
pub const SLUICE_RULE_DRY_RUN: u16 = 2;

/// What a category is, from `sluice_describe_category`: enough for a host to know, without
/// reading the policy text, whether `sluice_failure` may be called and which rule locks.
///
/// Grows (see "Structs that grow" above): set `size = sizeof(struct sluice_category_info)`
/// before the call; the library writes the fields that fit and sets `size` to the bytes it
/// wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct sluice_category_info {
    /// Set by the caller to `sizeof(struct sluice_category_info)`; on return, the bytes
    /// written.
    pub size: usize,
    /// The category's name, NUL-terminated. Owned by the handle: valid until `sluice_close`;
    /// do not free.
    pub name: *const c_char,
    /// How many window rules apply to a request of this category (the `global` ones
    /// included).
    pub rules: u32,
    /// The index (policy order, as `sluice_decision.rule`) of the category's lockout, or -1
    /// if it has none (then `sluice_failure` and `sluice_success` return
    /// SLUICE_ERR_NO_LOCKOUT). Describe it with `sluice_describe_rule`.
    pub lockout_rule: i32,
}

/// One rule or lockout of the policy, from `sluice_describe_rule`.
///
/// Grows (see "Structs that grow" above): set `size = sizeof(struct sluice_rule_info)` before
/// the call; the library writes the fields that fit and sets `size` to the bytes it wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct sluice_rule_info {
    /// Set by the caller to `sizeof(struct sluice_rule_info)`; on return, the bytes written.
    pub size: usize,
    /// The name of the rule's category (`global` for rules of every request),
    /// NUL-terminated. Owned by the handle: valid until `sluice_close`; do not free.
    pub category_name: *const c_char,
    /// The id of that category (as `sluice_category` returns it).
    pub category: i32,
    /// SLUICE_RULE_WINDOW or SLUICE_RULE_LOCKOUT.
    pub kind: u16,
    /// SLUICE_RULE_STRICT and SLUICE_RULE_DRY_RUN bits (window rules; 0 for a lockout).
    pub flags: u16,
    /// A window rule's N (requests per window); a lockout's F (failures that lock).
    pub limit: u32,
    /// The 1-based line of the directive in the policy text.
    pub line: u32,
    /// The window W in milliseconds (a lockout: the window its failures are counted in).
    pub window_ms: i64,
    /// A lockout's first ban in milliseconds; 0 for a window rule.
    pub ban_ms: i64,
    /// A lockout's longest ban (equal to `ban_ms` without escalation); 0 for a window rule.
    pub max_ban_ms: i64,
}

/// A struct that grows by the size-field rule (see "Structs that grow" in the header).
///
/// # Safety
/// `Self` is `repr(C)`, starts with its `size: usize` field, holds only plain integers (and,
/// for `sluice_request`, a raw pointer), and `FIRST` is its size in the first version of the
/// header that had the field (0.2): every later version is larger.
unsafe trait Growing: Copy {
    /// The struct's size in the first header with a size field (0.2).
    const FIRST: usize;
    fn set_size(&mut self, n: usize);
}

// When a struct gets a field, its FIRST must stay its 0.2 size: give it here as the sum of
// the 0.2 fields (or a constant per target), no longer `size_of`.
macro_rules! sized {
    ($($t:ty),*) => {$(
        // SAFETY: each of these is repr(C) with `size: usize` first; FIRST is its 0.2 size.
        unsafe impl Growing for $t {
            const FIRST: usize = std::mem::size_of::<$t>();
            fn set_size(&mut self, n: usize) {
                self.size = n;
            }
        }

        /// Every field zero (NULL for a pointer) but `size`, which is set to this struct's
        /// size: ready to pass to the library, as a C caller's `x = {0}; x.size = sizeof x`.
        impl Default for $t {
            fn default() -> $t {
                // SAFETY: every field is an integer or a raw pointer, for which all-zero
                // bytes are a valid value (0, or NULL).
                let mut value: $t = unsafe { std::mem::zeroed() };
                value.size = std::mem::size_of::<$t>();
                value
            }
        }
    )*};
}
sized!(
    sluice_decision,
    sluice_request,
    sluice_packed_request,
    sluice_open_options,
    sluice_table_stats,
    sluice_rule_counts,
    sluice_category_info,
    sluice_rule_info
);

/// The bytes of a caller's struct the library may use, from the caller's `size`: Ok(at most
/// `size_of::<T>()`), or SLUICE_ERR_SIZE when `size` is below the first version's size or not
/// a multiple of the struct's alignment (a `size` left unset).
#[inline(always)]
fn usable<T: Growing>(size: usize) -> Result<usize, c_int> {
    if size < T::FIRST || size % std::mem::align_of::<T>() != 0 {
        return Err(SLUICE_ERR_SIZE);
    }
    Ok(size.min(std::mem::size_of::<T>()))
}

/// The caller's `size` of the struct at `p` (its first field).
///
/// # Safety
/// `p` is non-NULL, aligned and readable for a `usize`.
#[inline(always)]
unsafe fn size_of_caller<T: Growing>(p: *const T) -> usize {
    // SAFETY: caller contract; every Growing starts with `size: usize`.
    unsafe { std::ptr::read(p as *const usize) }
}

/// Write `value` to an output struct whose caller's size is `size` (from `usable`): the
/// fields that fit, with `size` set to the bytes written. Nothing past them is touched.
///
/// # Safety
/// `out` points to `size` writable bytes, aligned for `T`; `n` came from `usable::<T>`.
#[inline(always)]
unsafe fn put<T: Growing>(out: *mut T, mut value: T, n: usize) {
    value.set_size(n);
    if n == std::mem::size_of::<T>() {
        // SAFETY: `n` = size_of::<T>() writable, aligned bytes by contract.
        unsafe { std::ptr::write(out, value) };
    } else {
        // An older caller's smaller struct: its prefix (fields only ever grow at the end).
        // SAFETY: `n` < size_of::<T>() writable bytes by contract.
        unsafe {
            std::ptr::copy_nonoverlapping(&value as *const T as *const u8, out as *mut u8, n)
        };
    }
}

/// Read an input struct: the caller's fields, the rest (a caller with an older header) left
/// at their defaults, zero. A caller's struct larger than this library's must hold only zero
/// bytes past the fields this library knows, else SLUICE_ERR_UNSUPPORTED: an option the
/// caller asked for and this library cannot honour.
///
/// # Safety
/// `p` is non-NULL, aligned, and points to as many readable bytes as its `size` field says.
unsafe fn take<T: Growing + Default>(p: *const T) -> Result<T, c_int> {
    // SAFETY: caller contract.
    let size = unsafe { size_of_caller(p) };
    // SAFETY: caller contract.
    unsafe { take_sized(p, size) }
}

/// `take` of a struct whose `size` is already known to be `size` (an array's stride).
///
/// # Safety
/// `p` is non-NULL, aligned, and points to `size` readable bytes.
#[inline(always)]
unsafe fn take_sized<T: Growing + Default>(p: *const T, size: usize) -> Result<T, c_int> {
    let own = std::mem::size_of::<T>();
    if size == own {
        // SAFETY: `own` readable, aligned bytes by contract (the common case: same header).
        return Ok(unsafe { std::ptr::read(p) });
    }
    let n = usable::<T>(size)?;
    if size > own {
        // SAFETY: `size` readable bytes by contract.
        let extra = unsafe { std::slice::from_raw_parts((p as *const u8).add(own), size - own) };
        if extra.iter().any(|&b| b != 0) {
            return Err(SLUICE_ERR_UNSUPPORTED);
        }
    }
    // SAFETY: `n` <= `size` readable bytes by contract.
    Ok(unsafe { read_prefix(p, n) })
}

/// The first `n` bytes of the struct at `p` (from `usable`), the rest at their defaults.
///
/// # Safety
/// `p` is non-NULL, aligned, and points to `n` readable bytes.
#[inline(always)]
unsafe fn read_prefix<T: Growing + Default>(p: *const T, n: usize) -> T {
    if n == std::mem::size_of::<T>() {
        // SAFETY: caller contract.
        return unsafe { std::ptr::read(p) };
    }
    let mut value = T::default();
    // SAFETY: `n` < size_of::<T>() readable bytes at `p`, as many writable at `value`; T
    // holds only integers (and a raw pointer), valid for any bytes.
    unsafe { std::ptr::copy_nonoverlapping(p as *const u8, &mut value as *mut T as *mut u8, n) };
    value
}

/// Element `i` of a caller's array of input structs of `stride` bytes each (the first
/// element's `size`, checked by `usable`): every element's own `size` must equal the stride,
/// else SLUICE_ERR_SIZE.
///
/// # Safety
/// `base` points to at least `i + 1` elements of `stride` readable bytes, aligned for `T`.
#[inline(always)]
unsafe fn element<T: Growing + Default>(
    base: *const T,
    stride: usize,
    i: usize,
) -> Result<T, c_int> {
    // SAFETY: caller contract: element i starts `i * stride` bytes into the array.
    let p = unsafe { (base as *const u8).add(i * stride) } as *const T;
    // SAFETY: as above.
    if unsafe { size_of_caller(p) } != stride {
        return Err(SLUICE_ERR_SIZE);
    }
    // SAFETY: as above.
    unsafe { take_sized(p, stride) }
}

impl From<Decision> for sluice_decision {
    fn from(d: Decision) -> sluice_decision {
        sluice_decision {
            size: std::mem::size_of::<sluice_decision>(),
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

/// Shared body of the calls that fill one growing struct from a handle: the NULL checks and
/// the caller's `size`, then `value` (which may refuse with a code), then the write of the
/// fields that fit, all inside the panic boundary.
///
/// # Safety
/// `s` is NULL or a live handle; `out` is NULL or points to a `T` of at least its `size`
/// writable bytes.
#[inline(always)]
unsafe fn fill<T: Growing>(
    s: *const sluice,
    out: *mut T,
    value: impl FnOnce(&sluice) -> Result<T, c_int>,
) -> c_int {
    guard(|| {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_ref() }) else {
            return SLUICE_ERR_NULL;
        };
        if out.is_null() {
            return SLUICE_ERR_NULL;
        }
        // SAFETY: non-NULL, aligned and readable by contract.
        let n = match usable::<T>(unsafe { size_of_caller(out) }) {
            Ok(n) => n,
            Err(code) => return code,
        };
        match value(s) {
            Ok(v) => {
                // SAFETY: its `size` (>= n) writable bytes by contract.
                unsafe { put(out, v, n) };
                SLUICE_OK
            }
            Err(code) => code,
        }
    })
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
        Error::Migration { .. } => migrate::SLUICE_ERR_MIGRATION,
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
/// created for `policy` (mode 0600, sparse; `sluice_open_with` takes another mode); many
/// processes may do so at the same moment and all get the one table. An existing file is
/// checked and attached: with a non-NULL `policy` it
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
/// Caveats of table files:
/// - Local file systems only: tmpfs (`/dev/shm`), ext4, xfs, btrfs. Never NFS, SMB, CIFS or a
///   FUSE mount: processes on two machines mapping one file each see their own copy of its
///   pages, so neither their limits nor their lockouts are shared, and the kernels' write-backs
///   overwrite each other. Creating a file also needs hard links (`link(2)`).
/// - fork(): a handle of a table file keeps working in the child, which shares the table with
///   the parent (the file is mapped `MAP_SHARED`): opening once before forking workers is
///   fine. A private table (NULL `path`) becomes the child's own copy at the fork, and the
///   parent and the child limit separately from then on. Parent and child each close their
///   handle.
/// - Processes that die: a process killed at any instruction leaves no lock behind; its
///   half-made install is taken over after 2 seconds (until then it is counted in
///   `sluice_table_stats.installing`). Nothing needs cleaning up after a crash.
/// - The file lives until it is removed. Opening it with another policy fails
///   (SLUICE_ERR_POLICY_MISMATCH); `sluice_migrate` carries its keys and lockouts to a table
///   for the new policy (at a new path or in place), and `sluice_superseded` tells a process
///   still attached to the old table. Never truncate or rewrite a table file that processes
///   have open.
/// - Permissions: the file is created 0600 by default, so processes sharing it run as one
///   user; `sluice_open_with` takes a mode (0660 for a group) and SLUICE_OPEN_READ_ONLY for a
///   user who may only read it.
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
    guard(|| unsafe { open_common("sluice_open", policy, path, 0, 0, out, err_buf, err_cap) })
}

/// Open a limiter as `sluice_open` does, with options: `options` is NULL (the defaults:
/// `sluice_open`) or points to a `sluice_open_options` whose `size` is set (else
/// SLUICE_ERR_SIZE). Bad options give SLUICE_ERR_ARGUMENT (unknown flag bits, a mode outside
/// 0666, SLUICE_OPEN_READ_ONLY or a mode without a path, a mode with SLUICE_OPEN_READ_ONLY),
/// and options from a newer header that this library does not know, set to anything but
/// zero, SLUICE_ERR_UNSUPPORTED; the error buffer says which, and nothing is opened or
/// created. Arguments, ownership, errors and caveats are otherwise those of `sluice_open`;
/// `options` is borrowed for the call.
///
/// ```c
/// struct sluice_open_options o = {0};
/// o.size = sizeof o;
/// o.mode = 0660;                        /* nginx workers and the app share a group */
/// rc = sluice_open_with(policy, "/dev/shm/api.sluice", &o, &s, err, sizeof err);
/// ```
///
/// # Safety
/// As for `sluice_open`; `options` is NULL or points to a readable `sluice_open_options` of
/// at least its `size` bytes.
#[no_mangle]
pub unsafe extern "C" fn sluice_open_with(
    policy: *const c_char,
    path: *const c_char,
    options: *const sluice_open_options,
    out: *mut *mut sluice,
    err_buf: *mut c_char,
    err_cap: usize,
) -> c_int {
    const NAME: &str = "sluice_open_with";
    guard(|| {
        let o = if options.is_null() {
            sluice_open_options::default()
        } else {
            // SAFETY: caller contract: readable for its `size` bytes.
            match unsafe { take(options) } {
                Ok(o) => o,
                Err(code) => {
                    let msg = if code == SLUICE_ERR_SIZE {
                        format!(
                            "{NAME}: options.size is {}: set it to sizeof(struct \
                             sluice_open_options) ({} in this library's header)",
                            // SAFETY: as above; read again for the message only.
                            unsafe { size_of_caller(options) },
                            std::mem::size_of::<sluice_open_options>()
                        )
                    } else {
                        format!(
                            "{NAME}: options has fields past the {} bytes this library ({}) \
                             knows, and they are not zero: it cannot honour them",
                            std::mem::size_of::<sluice_open_options>(),
                            env!("CARGO_PKG_VERSION")
                        )
                    };
                    // SAFETY: forwarded caller contract on err_buf/err_cap.
                    unsafe { write_message(err_buf, err_cap, &msg) };
                    return code;
                }
            }
        };
        // SAFETY: forwarded caller contract.
        unsafe { open_common(NAME, policy, path, o.flags, o.mode, out, err_buf, err_cap) }
    })
}

/// Open a limiter as `sluice_open` does, with `flags`: 0, or SLUICE_OPEN_HUGE_PAGES and/or
/// SLUICE_OPEN_READ_ONLY. Bits this library does not know give SLUICE_ERR_ARGUMENT (the error
/// buffer names them), and nothing is opened or created. Arguments, ownership and errors are
/// otherwise those of `sluice_open`. Kept for callers of 0.1; `sluice_open_with` has every
/// option.
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
        open_common(
            "sluice_open_flags",
            policy,
            path,
            flags,
            0,
            out,
            err_buf,
            err_cap,
        )
    })
}

/// `sluice_open`, `sluice_open_with` and `sluice_open_flags`; `name` is the one called, for
/// the messages; `mode` 0 is the default.
///
/// # Safety
/// The contract of `sluice_open`.
#[allow(clippy::too_many_arguments)]
unsafe fn open_common(
    name: &str,
    policy: *const c_char,
    path: *const c_char,
    flags: u32,
    mode: u32,
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
                 (known: SLUICE_OPEN_HUGE_PAGES = {SLUICE_OPEN_HUGE_PAGES:#x}, \
                 SLUICE_OPEN_READ_ONLY = {SLUICE_OPEN_READ_ONLY:#x})"
            ),
        );
    }
    let read_only = flags & SLUICE_OPEN_READ_ONLY != 0;
    if mode & !0o666 != 0 {
        return fail(
            SLUICE_ERR_ARGUMENT,
            &format!(
                "{name}: mode 0{mode:o} has bits outside 0666 (0{:o}): a table file is \
                 never executable, setuid or sticky",
                mode & !0o666
            ),
        );
    }
    if path.is_null() && (read_only || mode != 0) {
        let what = if read_only {
            "SLUICE_OPEN_READ_ONLY"
        } else {
            "a mode"
        };
        return fail(
            SLUICE_ERR_ARGUMENT,
            &format!("{name}: {what} needs a path (a table file); path is NULL"),
        );
    }
    if read_only && mode != 0 {
        return fail(
            SLUICE_ERR_ARGUMENT,
            &format!(
                "{name}: mode 0{mode:o} with SLUICE_OPEN_READ_ONLY: a read-only open never \
                 creates the file, so a mode means nothing (pass 0)"
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
    let mut builder = crate::LimiterBuilder::new()
        .huge_pages(flags & SLUICE_OPEN_HUGE_PAGES != 0)
        .read_only(read_only);
    if mode != 0 {
        builder = builder.mode(mode);
    }
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
            // Category names are words of the policy language: no NUL either.
            let names = limiter
                .policy()
                .categories
                .iter()
                .map(|c| std::ffi::CString::new(c.as_str()).unwrap_or_default())
                .collect();
            let handle = Box::into_raw(Box::new(sluice {
                limiter,
                policy,
                names,
            }));
            // SAFETY: `out` is non-NULL and writable by contract.
            unsafe { *out = handle };
            SLUICE_OK
        }
        Err(e) => fail(code_of(&e), &e.to_string()),
    }
}

/// Free a limiter made by `sluice_open`, `sluice_open_with` or `sluice_open_flags`. NULL is
/// fine (does nothing). The handle must not be used afterwards, and no other thread may be
/// using it during the call. A table file stays (remove it with `unlink` when no process needs
/// it any more).
///
/// # Safety
/// `s` is NULL or a handle from `sluice_open`, `sluice_open_with` or `sluice_open_flags` not
/// yet closed.
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
    // SAFETY: caller contract, passed on.
    unsafe {
        fill(s, out, |s| {
            // SAFETY: caller contract.
            let key = key_arg(key, key_len)?;
            let cat = category_arg(&s.limiter, category)?;
            match op(&s.limiter, key, cat, now_arg(&s.limiter, now_ms)) {
                Ok(d) => Ok(d.into()),
                Err(e) => Err(code_of(&e)),
            }
        })
    }
}

/// May this request go ahead? Checks the key against every `global` rule and every rule of
/// `category` and records it if admitted, writing the decision to `*out`.
/// `key`/`key_len`: the client's key (1..=65535 bytes, borrowed for the call). `now_ms`: Unix
/// milliseconds, or SLUICE_NOW. `out`: a decision whose `size` the caller set to
/// `sizeof(struct sluice_decision)` (else SLUICE_ERR_SIZE); the library sets `out->size` to
/// the bytes it wrote. Returns SLUICE_OK or a negative code (then `*out` is untouched and
/// nothing was recorded). Thread-safe and lock-free.
///
/// ```c
/// struct sluice_decision d;
/// d.size = sizeof d;                     /* once; the library keeps it set */
/// if (sluice_check(s, auth, ip, ip_len, SLUICE_NOW, &d) == SLUICE_OK && !d.allowed) ...
/// ```
///
/// # Safety
/// `s` is NULL or a live handle; `key` is NULL or points to `key_len` readable bytes; `out`
/// is NULL or points to a `sluice_decision` of at least its `size` writable bytes.
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
/// (its `size` not the first request's, or that not a usable size: SLUICE_ERR_SIZE; a NULL
/// key, an empty or too long key, an unknown category) the call returns that error, records
/// nothing, writes no decision, and writes the index of the first invalid request to
/// `*bad_request` (unless `bad_request` is NULL; it is written only then, an error detail
/// like `sluice_open`'s message). Set `size` in every request, and in `decisions[0]` (the
/// array's element size; the library sets every decision's `size` to the bytes it wrote);
/// an unusable `decisions[0].size` is SLUICE_ERR_SIZE with `*bad_request` not written.
/// Both arrays are borrowed for the call; `decisions` must have room for `n`. `n` = 0 is
/// fine. Allocates nothing. Thread-safe.
///
/// Go and other hosts whose garbage-collected memory may not hold pointers passed to C:
/// `sluice_check_packed`.
///
/// # Safety
/// `s` is NULL or a live handle; `requests` is NULL or points to `n` readable requests whose
/// keys point to `key_len` readable bytes; `decisions` is NULL or points to `n` writable
/// decisions of `decisions[0].size` bytes each; `bad_request` is NULL or writable.
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
        // SAFETY: at least one readable request by contract.
        let stride = unsafe { size_of_caller(requests) };
        let request = |i: usize| -> Result<(&[u8], Category), c_int> {
            usable::<sluice_request>(stride)?;
            // SAFETY: `n` > i readable requests of `stride` bytes each by contract.
            let r = unsafe { element(requests, stride, i) }?;
            // SAFETY: each key points to key_len readable bytes by contract.
            let key = unsafe { key_arg(r.key, r.key_len) }?;
            let cat = category_arg(&s.limiter, r.category)?;
            s.limiter.validate(key, cat).map_err(|e| code_of(&e))?;
            Ok((key, cat))
        };
        // SAFETY: forwarded caller contract.
        unsafe { batch(s, n, now_ms, decisions, bad_request, request) }
    })
}

/// `sluice_check_batch` with no pointer in the request array: every key is a span of one
/// buffer, `keys` (`keys_len` bytes, keys back to back in any order; a span may be used by
/// several requests), and `requests[i]` names its key by `key_offset` and `key_len` and its
/// category by id. For hosts whose memory may not hold pointers handed to C (Go's cgo rules
/// forbid passing Go memory that holds Go pointers; a `[]byte` and a slice of these structs
/// hold none). Validation, errors, `bad_request`, the `size` fields, ownership and
/// allocation (none) are those of `sluice_check_batch`; a span outside the buffer is
/// SLUICE_ERR_ARGUMENT for that request; `keys` may not be NULL when `n` > 0.
///
/// ```c
/// const char keys[] = "198.51.100.7" "203.0.113.9";
/// struct sluice_packed_request r[2] = {{sizeof r[0], 0, 12, 0}, {sizeof r[0], 12, 11, auth}};
/// struct sluice_decision d[2];
/// d[0].size = sizeof d[0];
/// size_t bad;
/// rc = sluice_check_packed(s, keys, sizeof keys - 1, r, 2, SLUICE_NOW, d, &bad);
/// ```
///
/// # Safety
/// `s` is NULL or a live handle; `keys` is NULL or points to `keys_len` readable bytes;
/// `requests` is NULL or points to `n` readable requests; `decisions` is NULL or points to
/// `n` writable decisions of `decisions[0].size` bytes each; `bad_request` is NULL or
/// writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn sluice_check_packed(
    s: *const sluice,
    keys: *const c_void,
    keys_len: usize,
    requests: *const sluice_packed_request,
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
        if keys.is_null() || requests.is_null() || decisions.is_null() {
            return SLUICE_ERR_NULL;
        }
        // SAFETY: `keys_len` readable bytes by contract.
        let keys = unsafe { std::slice::from_raw_parts(keys as *const u8, keys_len) };
        // SAFETY: at least one readable request by contract.
        let stride = unsafe { size_of_caller(requests) };
        let request = |i: usize| -> Result<(&[u8], Category), c_int> {
            usable::<sluice_packed_request>(stride)?;
            // SAFETY: `n` > i readable requests of `stride` bytes each by contract.
            let r = unsafe { element(requests, stride, i) }?;
            let key = usize::try_from(r.key_offset)
                .ok()
                .and_then(|start| keys.get(start..start.checked_add(r.key_len as usize)?))
                .ok_or(SLUICE_ERR_ARGUMENT)?;
            let cat = category_arg(&s.limiter, r.category)?;
            s.limiter.validate(key, cat).map_err(|e| code_of(&e))?;
            Ok((key, cat))
        };
        // SAFETY: forwarded caller contract.
        unsafe { batch(s, n, now_ms, decisions, bad_request, request) }
    })
}

/// The body of both batches once the arguments are known non-NULL and `n` > 0: `request(i)`
/// is request `i` validated (key, category) as `check_batch_at` would. Every request is
/// validated before anything is recorded; then they are decided a chunk at a time in arrays
/// on the stack, so a batch allocates nothing.
///
/// # Safety
/// `decisions` points to `n` writable decisions of `decisions[0].size` bytes each;
/// `bad_request` is NULL or writable.
unsafe fn batch<'k>(
    s: &sluice,
    n: usize,
    now_ms: i64,
    decisions: *mut sluice_decision,
    bad_request: *mut usize,
    request: impl Fn(usize) -> Result<(&'k [u8], Category), c_int>,
) -> c_int {
    // SAFETY: at least one decision, aligned and readable for its size, by contract.
    let stride = unsafe { size_of_caller(decisions) };
    let written = match usable::<sluice_decision>(stride) {
        Ok(w) => w,
        Err(code) => return code,
    };
    // Every request is valid before any is recorded.
    for i in 0..n {
        if let Err(code) = request(i) {
            // SAFETY: NULL or writable by contract.
            if let Some(bad) = unsafe { bad_request.as_mut() } {
                *bad = i;
            }
            return code;
        }
    }
    let now = now_arg(&s.limiter, now_ms);
    // Only the time (or a read-only table) can fail now, and then on the first chunk, before
    // anything is recorded.
    const CHUNK: usize = 64;
    let mut reqs = [(&[][..], Category::GLOBAL); CHUNK];
    let mut out = [Decision::default(); CHUNK];
    let mut start = 0;
    while start < n {
        let m = (n - start).min(CHUNK);
        for (j, r) in reqs[..m].iter_mut().enumerate() {
            match request(start + j) {
                Ok(req) => *r = req,
                Err(code) => return code, // validated above: not reached
            }
        }
        if let Err(e) = s.limiter.check_batch_at(&reqs[..m], now, &mut out[..m]) {
            return code_of(&e);
        }
        for (j, d) in out[..m].iter().enumerate() {
            // SAFETY: element start + j < n of the caller's array, `stride` bytes apart (a
            // multiple of the alignment, checked by `usable`), each `stride` >= `written`
            // writable bytes.
            unsafe {
                let p = (decisions as *mut u8).add((start + j) * stride) as *mut sluice_decision;
                put(p, (*d).into(), written);
            }
        }
        start += m;
    }
    SLUICE_OK
}

/// Format the response headers of `decision` as `Name: value\r\n` lines in `buf`.
/// `style`: SLUICE_HEADERS_X_RATELIMIT (the default style) or SLUICE_HEADERS_IETF.
/// Returns the length of the whole block in bytes, not counting a terminating NUL; if it is
/// less than `cap`, the block and a NUL were written; otherwise only a NUL at `buf[0]` (if
/// `cap` > 0), never a partial block — call again with at least the returned length + 1
/// bytes. `buf` may be NULL only when `cap` is 0 (to ask for the length).
/// `decision`: one the library wrote (its `size` is set), or one made by hand with `size` set
/// to `sizeof(struct sluice_decision)`; fields past those this library knows are not read.
/// Negative codes: SLUICE_ERR_NULL, SLUICE_ERR_SIZE, SLUICE_ERR_ARGUMENT (unknown style or
/// status). Thread-safe; `decision` is borrowed for the call.
///
/// # Safety
/// `s` is NULL or a live handle; `decision` is NULL or points to a `sluice_decision` of at
/// least its `size` readable bytes; `buf` is NULL or points to `cap` writable bytes.
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
        let (Some(s), false) = (unsafe { s.as_ref() }, decision.is_null()) else {
            return SLUICE_ERR_NULL;
        };
        // A decision is the library's output handed back: fields past those this library
        // knows (a newer caller's) are not read, whatever they hold.
        // SAFETY: non-NULL, aligned and readable for its `size` bytes by contract.
        let d = match usable::<sluice_decision>(unsafe { size_of_caller(decision) }) {
            Ok(n) => unsafe { read_prefix(decision, n) },
            Err(code) => return code,
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
        if cap == 0 {
            // SAFETY: with a capacity of 0 nothing is written.
            let len = unsafe {
                let nowhere = std::ptr::NonNull::<u8>::dangling().as_ptr();
                s.limiter.format_headers_raw(&decision, style, nowhere, 0)
            };
            return c_int::try_from(len).unwrap_or(SLUICE_ERR_ARGUMENT);
        }
        if buf.is_null() {
            return SLUICE_ERR_NULL;
        }
        let buf = buf as *mut u8;
        // SAFETY: `cap` > 0 writable bytes at `buf` by contract. The block goes in the first
        // `cap - 1`, leaving room for its NUL, and only if it fits there (`len < cap`).
        let len = unsafe { s.limiter.format_headers_raw(&decision, style, buf, cap - 1) };
        // SAFETY: `buf[len]` when the block was written (`len < cap`), else `buf[0]`.
        unsafe { *buf.add(if len < cap { len } else { 0 }) = 0 };
        c_int::try_from(len).unwrap_or(SLUICE_ERR_ARGUMENT)
    })
}

/// Table-wide counts into `*out`, judging "locked" at `now_ms` (Unix milliseconds, or
/// SLUICE_NOW). Set `out->size` to `sizeof(struct sluice_table_stats)` first; the library
/// sets it to the bytes written. Returns SLUICE_OK, SLUICE_ERR_NULL, SLUICE_ERR_SIZE or
/// SLUICE_ERR_TIME. Counts live and locked keys by a scan of the table: for operators, not for
/// the request path. Works on a read-only table. Thread-safe.
///
/// # Safety
/// `s` is NULL or a live handle; `out` is NULL or points to a `sluice_table_stats` of at least
/// its `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sluice_stats(
    s: *const sluice,
    now_ms: i64,
    out: *mut sluice_table_stats,
) -> c_int {
    // SAFETY: caller contract, passed on.
    unsafe {
        fill(s, out, |s| {
            let now = now_arg(&s.limiter, now_ms);
            if !(0..=crate::MAX_TIME_MS).contains(&now) {
                return Err(SLUICE_ERR_TIME);
            }
            let st = s.limiter.stats_at(now);
            let value = sluice_table_stats {
                size: 0, // set by put
                capacity: st.capacity,
                live_keys: st.live_keys,
                locked_keys: st.locked_keys,
                installing: st.installing,
                evictions: st.evictions,
                reclaimed: st.reclaimed,
                full: st.full,
                bytes_per_key: st.bytes_per_key,
                rules: st.rules.len() as u32,
                categories: s.limiter.policy().categories.len() as u32,
            };
            Ok(value)
        })
    }
}

/// Counts of rule `rule` (0-based, policy order, as in `sluice_decision.rule`;
/// `sluice_table_stats.rules` says how many) into `*out`. Set `out->size` to
/// `sizeof(struct sluice_rule_counts)` first; the library sets it to the bytes written.
/// Returns SLUICE_OK, SLUICE_ERR_NULL, SLUICE_ERR_SIZE or SLUICE_ERR_ARGUMENT (no such rule).
/// Thread-safe.
///
/// # Safety
/// `s` is NULL or a live handle; `out` is NULL or points to a `sluice_rule_counts` of at least
/// its `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sluice_rule_stats(
    s: *const sluice,
    rule: i32,
    out: *mut sluice_rule_counts,
) -> c_int {
    // SAFETY: caller contract, passed on.
    unsafe {
        fill(s, out, |s| {
            let Some(r) = usize::try_from(rule)
                .ok()
                .and_then(|r| s.limiter.rule_stats(r))
            else {
                return Err(SLUICE_ERR_ARGUMENT);
            };
            let value = sluice_rule_counts {
                size: 0, // set by put
                passed: r.passed,
                limited: r.limited,
                dry_run_limited: r.dry_run_limited,
                locked: r.locked,
                lockouts: r.lockouts,
            };
            Ok(value)
        })
    }
}

/// Describe category `category` (an id from `sluice_category`; `sluice_table_stats.categories`
/// says how many there are) into `*out`: its name, how many window rules apply to it, and its
/// lockout's rule index or -1. Set `out->size` to `sizeof(struct sluice_category_info)` first.
/// Returns SLUICE_OK, SLUICE_ERR_NULL, SLUICE_ERR_SIZE or SLUICE_ERR_UNKNOWN_CATEGORY.
/// Thread-safe; works on a read-only handle.
///
/// # Safety
/// `s` is NULL or a live handle; `out` is NULL or points to a `sluice_category_info` of at
/// least its `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sluice_describe_category(
    s: *const sluice,
    category: c_int,
    out: *mut sluice_category_info,
) -> c_int {
    // SAFETY: caller contract, passed on.
    unsafe {
        fill(s, out, |s| {
            let cat = category_arg(&s.limiter, category)?;
            let policy = s.limiter.policy();
            let name = &policy.categories[cat.id()];
            let applies =
                |r: &crate::policy::Rule| r.name == *name || r.name == crate::policy::GLOBAL;
            let rules = policy
                .rules
                .iter()
                .filter(|r| applies(r) && matches!(r.kind, crate::policy::RuleKind::Window(_)))
                .count();
            let lockout_rule = policy
                .rules
                .iter()
                .position(|r| {
                    r.name == *name && matches!(r.kind, crate::policy::RuleKind::Lockout(_))
                })
                .map_or(-1, |i| i as i32);
            let value = sluice_category_info {
                size: 0, // set by put
                name: s.names[cat.id()].as_ptr(),
                rules: rules as u32,
                lockout_rule,
            };
            Ok(value)
        })
    }
}

/// Describe rule `rule` (0-based, policy order, as in `sluice_decision.rule`;
/// `sluice_table_stats.rules` says how many) into `*out`: its category, kind, limit, window,
/// flags, bans and line. Set `out->size` to `sizeof(struct sluice_rule_info)` first. Returns
/// SLUICE_OK, SLUICE_ERR_NULL, SLUICE_ERR_SIZE or SLUICE_ERR_ARGUMENT (no such rule).
/// Thread-safe; works on a read-only handle.
///
/// # Safety
/// `s` is NULL or a live handle; `out` is NULL or points to a `sluice_rule_info` of at least
/// its `size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sluice_describe_rule(
    s: *const sluice,
    rule: i32,
    out: *mut sluice_rule_info,
) -> c_int {
    // SAFETY: caller contract, passed on.
    unsafe {
        fill(s, out, |s| {
            let policy = s.limiter.policy();
            let Some(r) = usize::try_from(rule).ok().and_then(|i| policy.rules.get(i)) else {
                return Err(SLUICE_ERR_ARGUMENT);
            };
            let category = policy
                .categories
                .iter()
                .position(|c| *c == r.name)
                .unwrap_or(0);
            let mut value = sluice_rule_info {
                size: 0, // set by put
                category_name: s.names[category].as_ptr(),
                category: category as i32,
                kind: SLUICE_RULE_WINDOW,
                limit: 0,
                flags: 0,
                window_ms: 0,
                ban_ms: 0,
                max_ban_ms: 0,
                line: r.line as u32,
            };
            match &r.kind {
                crate::policy::RuleKind::Window(w) => {
                    value.limit = w.limit;
                    value.window_ms = w.window_ms;
                    value.flags = if w.strict { SLUICE_RULE_STRICT } else { 0 }
                        | if w.dry_run { SLUICE_RULE_DRY_RUN } else { 0 };
                }
                crate::policy::RuleKind::Lockout(l) => {
                    value.kind = SLUICE_RULE_LOCKOUT;
                    value.limit = l.failures;
                    value.window_ms = l.window_ms;
                    value.ban_ms = l.ban_ms;
                    value.max_ban_ms = l.max_ban_ms.unwrap_or(l.ban_ms);
                }
            }
            Ok(value)
        })
    }
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
        SLUICE_ERR_SIZE => {
            c"a struct's size field is not set to sizeof the struct (or is smaller than its first version)"
        }
        SLUICE_ERR_POLICY => c"invalid policy",
        SLUICE_ERR_POLICY_TOO_LARGE => c"policy cannot be laid out as a table",
        SLUICE_ERR_UNKNOWN_CATEGORY => c"unknown category",
        SLUICE_ERR_NO_LOCKOUT => c"the category has no lockout",
        SLUICE_ERR_IO => c"the operating system refused memory or a file",
        SLUICE_ERR_UNSUPPORTED => {
            c"not supported by this build of sluice (or an option of a newer header it does not know)"
        }
        SLUICE_ERR_NOT_A_TABLE => c"the file is not a usable sluice table; it was not changed",
        SLUICE_ERR_FORMAT_VERSION => {
            c"the table file has another format version; it was not changed"
        }
        SLUICE_ERR_POLICY_MISMATCH => {
            c"the table file was made for another policy; it was not changed"
        }
        SLUICE_ERR_NO_TABLE => c"no table file at the path, and no policy to create one",
        SLUICE_ERR_READ_ONLY => c"the table was opened read-only; nothing was recorded",
        migrate::SLUICE_ERR_MIGRATION => {
            c"the migration cannot be made; nothing was created, and the source was not changed"
        }
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

/// The library's version, e.g. "0.2.0" (static, NUL-terminated; compare with
/// SLUICE_VERSION from the header to detect a header/library mismatch).
#[no_mangle]
pub extern "C" fn sluice_version() -> *const c_char {
    const V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    V.as_ptr() as *const c_char
}
