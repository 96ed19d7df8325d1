//! The C ABI of migration: `sluice_migrate` and `sluice_superseded`.

use std::ffi::{c_char, c_int, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{
    code_of, guard, put, size_of_caller, str_arg, usable, write_message, Growing, SLUICE_ERR_NULL,
    SLUICE_ERR_SIZE, SLUICE_OK,
};
use super::{sluice, SLUICE_ERR_ARGUMENT};
use crate::Limiter;

/// The migration cannot be made (the path to migrate to exists, the capacity changes for a
/// table too small to re-home its keys, a locked key finds no free slot in the new table, the
/// new table's path was taken meanwhile); the error buffer says which. Nothing was created,
/// and the source table was not changed.
pub const SLUICE_ERR_MIGRATION: c_int = -37;

/// What `sluice_migrate` carried.
///
/// Grows (see "Structs that grow" above): set `size = sizeof(struct sluice_migration)`
/// before the call; the library writes the fields that fit and sets `size` to the bytes it
/// wrote.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct sluice_migration {
    /// Set by the caller to `sizeof(struct sluice_migration)`; on return, the bytes written.
    pub size: usize,
    /// Keys carried into the new table.
    pub keys: u64,
    /// Of those, keys with an active lockout.
    pub locked_keys: u64,
    /// Keys left behind because nothing in their state mattered any more.
    pub expired: u64,
    /// Unlocked keys left behind for want of a free slot in the new table.
    pub dropped: u64,
    /// Active locks not carried because the new policy has no lockout for their category.
    pub locks_of_removed_lockouts: u64,
    /// Capacity of the source table and of the new one.
    pub from_capacity: u64,
    pub to_capacity: u64,
    /// Format version of the source table.
    pub from_format: u64,
    /// 1 if the new table replaced the source at the same path.
    pub in_place: u8,
}

// SAFETY: repr(C), `size: usize` first, only integers; FIRST is its size in its first header.
unsafe impl Growing for sluice_migration {
    const FIRST: usize = std::mem::size_of::<sluice_migration>();
    fn set_size(&mut self, n: usize) {
        self.size = n;
    }
}

/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn path_arg<'a>(p: *const c_char) -> Result<&'a Path, c_int> {
    if p.is_null() {
        return Err(SLUICE_ERR_NULL);
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract. Paths are bytes.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.is_empty() {
        return Err(SLUICE_ERR_ARGUMENT);
    }
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

/// Migrate the table file `from` to a new table file `to` for `policy` (NUL-terminated
/// UTF-8), or for `from`'s own policy when `policy` is NULL.
///
/// Every live key's state is carried: every active lockout with its end and escalation level,
/// the logs of rules that are unchanged, of changed rules what is still exact; new rules start
/// empty. The new table keeps `from`'s hash secret and file mode, and appears at `to`
/// complete (built in a temporary file, made durable, then linked). Then `from` is marked
/// superseded: `sluice_superseded` on a handle still attached to it returns `to`.
///
/// `to` naming the same file as `from` migrates in place: the new table is renamed over the
/// old one, so the next `sluice_open` of the path gets it (what an nginx reload whose policy
/// changed does); handles still open on the old table keep working on it until they are
/// closed, and `sluice_superseded` tells them.
///
/// Errors (nothing created, `from` unchanged; the error buffer says what and where):
/// SLUICE_ERR_POLICY (`policy` does not parse: line and column), SLUICE_ERR_NO_TABLE /
/// SLUICE_ERR_NOT_A_TABLE / SLUICE_ERR_FORMAT_VERSION (`from` is missing, not a table, or
/// already superseded), SLUICE_ERR_MIGRATION (`to` exists, a capacity change the source
/// cannot support, a locked key without a free slot in the new table), SLUICE_ERR_IO,
/// SLUICE_ERR_NULL (`from` or `to` NULL), SLUICE_ERR_ARGUMENT (an empty path),
/// SLUICE_ERR_SIZE (`report` with its `size` unset).
/// `report` is NULL or a `sluice_migration` with `size` set; written only on success.
/// Not for the hot path: it reads the whole source table and writes a new one.
///
/// # Safety
/// `from`, `to` are NULL or NUL-terminated; `policy` is NULL or NUL-terminated; `report` is
/// NULL or points to a writable `sluice_migration` of at least its `size` bytes; `err_buf`
/// is NULL or points to `err_cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sluice_migrate(
    from: *const c_char,
    to: *const c_char,
    policy: *const c_char,
    report: *mut sluice_migration,
    err_buf: *mut c_char,
    err_cap: usize,
) -> c_int {
    guard(|| {
        let fail = |code: c_int, msg: &str| {
            // SAFETY: forwarded caller contract on err_buf/err_cap.
            unsafe { write_message(err_buf, err_cap, msg) };
            code
        };
        // SAFETY: caller contract.
        let (from, to) = match unsafe { (path_arg(from), path_arg(to)) } {
            (Ok(f), Ok(t)) => (f, t),
            (Err(code), _) => return fail(code, "sluice_migrate: from is NULL or empty"),
            (_, Err(code)) => return fail(code, "sluice_migrate: to is NULL or empty"),
        };
        // SAFETY: caller contract.
        let policy = match unsafe { str_arg(policy) } {
            Ok(t) => Some(t),
            Err(SLUICE_ERR_NULL) => None,
            Err(code) => return fail(code, "sluice_migrate: policy is not valid UTF-8"),
        };
        let n = if report.is_null() {
            0
        } else {
            // SAFETY: non-NULL, readable for a usize by contract.
            match usable::<sluice_migration>(unsafe { size_of_caller(report) }) {
                Ok(n) => n,
                Err(code) => {
                    return fail(
                        code,
                        &format!(
                            "sluice_migrate: report.size is not set: set it to sizeof(struct sluice_migration) ({})",
                            std::mem::size_of::<sluice_migration>()
                        ),
                    )
                }
            }
        };
        match Limiter::migrate(from, to, policy) {
            Ok(r) => {
                if !report.is_null() {
                    let value = sluice_migration {
                        size: 0,
                        keys: r.keys,
                        locked_keys: r.locked_keys,
                        expired: r.expired,
                        dropped: r.dropped,
                        locks_of_removed_lockouts: r.locks_of_removed_lockouts,
                        from_capacity: r.from_capacity,
                        to_capacity: r.to_capacity,
                        from_format: r.from_format,
                        in_place: r.in_place as u8,
                    };
                    // SAFETY: `n` from `usable` on the caller's size; writable by contract.
                    unsafe { put(report, value, n) };
                }
                SLUICE_OK
            }
            Err(e) => fail(code_of(&e), &e.to_string()),
        }
    })
}

/// The path of the table that superseded the table of `s` (a `sluice_migrate` carried its keys
/// there), so that a host still attached to the old table can reopen: returns its length in
/// bytes (not counting a NUL), 0 while the table is current or lives in private memory. If
/// the length is less than `cap`, the path and a NUL were written to `buf`; otherwise only a
/// NUL at `buf[0]` (if `cap` > 0): call again with more room. `buf` may be NULL only when
/// `cap` is 0. A few loads and, once superseded, a `pread`: poll it now and then (on a timer,
/// on a reload), not per request. Negative: SLUICE_ERR_NULL.
///
/// # Safety
/// `s` is NULL or a live handle; `buf` is NULL or points to `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn sluice_superseded(
    s: *const sluice,
    buf: *mut c_char,
    cap: usize,
) -> c_int {
    guard(|| {
        // SAFETY: caller contract.
        let Some(s) = (unsafe { s.as_ref() }) else {
            return SLUICE_ERR_NULL;
        };
        if buf.is_null() && cap != 0 {
            return SLUICE_ERR_NULL;
        }
        let Some(by) = s.limiter.superseded() else {
            // SAFETY: caller contract.
            unsafe { write_message(buf, cap, "") };
            return 0;
        };
        let bytes = by.as_os_str().as_bytes();
        if bytes.len() < cap {
            // SAFETY: `cap` > len writable bytes at `buf` by contract.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, bytes.len());
                *buf.add(bytes.len()) = 0;
            }
        } else if cap > 0 {
            // SAFETY: at least one writable byte.
            unsafe { *buf = 0 };
        }
        c_int::try_from(bytes.len()).unwrap_or(SLUICE_ERR_SIZE)
    })
}
