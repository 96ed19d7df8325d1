//! The C ABI called from Rust as a C caller would: regressions found by the fuzzers
//! (fuzz/regressions/) and conventions that C and Python tests rely on.

use std::ffi::{c_char, c_int, CStr};
use std::mem::size_of;
use std::ptr;

use ::sluice::ffi::{
    sluice_check, sluice_close, sluice_decision, sluice_headers, sluice_open, sluice_open_options,
    sluice_packed_request, sluice_request, sluice_rule_counts, sluice_table_stats,
    SLUICE_ERR_POLICY, SLUICE_ERR_SIZE, SLUICE_HEADERS_IETF, SLUICE_OK, SLUICE_STATUS_PASSED,
};

/// fuzz/regressions/ops/headers-window-ms-near-i64-max: `sluice_headers` of a hand-made
/// decision with a huge window panicked (debug) or printed a negative `w=` (release).
#[test]
fn headers_of_a_window_near_i64_max_round_up_without_panicking() {
    unsafe {
        let mut h = ptr::null_mut();
        let policy =
            c"auth 4/300ms\nauth lockout 1/200ms for 55ms..335ms\ncapacity 1\nwhen-full allow";
        assert_eq!(
            sluice_open(policy.as_ptr(), ptr::null(), &mut h, ptr::null_mut(), 0),
            SLUICE_OK
        );
        for (window_ms, w) in [
            (i64::MAX, 9_223_372_036_854_776i64),
            (i64::MAX - 998, 9_223_372_036_854_775),
            (i64::MAX - 999, 9_223_372_036_854_775),
            (2_592_000_000, 2_592_000),
            (1_001, 2),
        ] {
            let d = sluice_decision {
                size: std::mem::size_of::<sluice_decision>(),
                allowed: 1,
                status: SLUICE_STATUS_PASSED,
                limit: 4,
                remaining: 3,
                reset_after: 1,
                reset: 1_767_225_601,
                retry_after: 0,
                rule: 0,
                window_ms,
            };
            let mut buf = [0 as c_char; 256];
            let rc: c_int = sluice_headers(h, &d, SLUICE_HEADERS_IETF, buf.as_mut_ptr(), buf.len());
            assert!(rc > 0, "window_ms {window_ms}: rc {rc}");
            let text = CStr::from_ptr(buf.as_ptr()).to_str().unwrap();
            assert!(
                text.starts_with(&format!("RateLimit-Policy: \"auth\";q=4;w={w}\r\n")),
                "{text:?}"
            );
        }
        sluice_close(h);
    }
}

#[test]
fn sluice_open_error_message_names_line_and_column() {
    let mut h = ptr::null_mut();
    let mut buf = [0 as c_char; 256];
    let rc = unsafe {
        sluice_open(
            c"auth 10/1 minute".as_ptr(),
            ptr::null(),
            &mut h,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    assert_eq!(rc, SLUICE_ERR_POLICY);
    assert!(h.is_null());
    let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap();
    assert_eq!(
        msg,
        "invalid policy: line 1, column 9: expected a duration such as 1m or 30s, found \"1 minute\""
    );
}

/// The structs that grow keep their size first and have no tail padding (a field added in
/// padding would not change `sizeof`, and `size` could no longer tell the versions apart).
/// The sizes on 64-bit targets are pinned: hosts (Go, Python) lay the structs out from the
/// header, and a change here is an ABI change to make on purpose.
#[test]
fn growing_structs_start_with_size_and_end_with_their_last_field() {
    use std::mem::offset_of;
    macro_rules! ends_with {
        ($t:ty, $last:ident, $last_ty:ty) => {
            assert_eq!(offset_of!($t, size), 0, stringify!($t));
            assert_eq!(
                offset_of!($t, $last) + size_of::<$last_ty>(),
                size_of::<$t>(),
                "{} has tail padding",
                stringify!($t)
            );
        };
    }
    ends_with!(sluice_decision, window_ms, i64);
    ends_with!(sluice_table_stats, categories, u32);
    ends_with!(sluice_rule_counts, lockouts, u64);
    ends_with!(sluice_request, key_len, usize);
    ends_with!(sluice_packed_request, category, i32);
    ends_with!(sluice_open_options, mode, u32);
    if cfg!(target_pointer_width = "64") {
        assert_eq!(size_of::<sluice_decision>(), 48);
        assert_eq!(size_of::<sluice_table_stats>(), 80);
        assert_eq!(size_of::<sluice_rule_counts>(), 48);
        assert_eq!(size_of::<sluice_request>(), 32);
        assert_eq!(size_of::<sluice_packed_request>(), 24);
        assert_eq!(size_of::<sluice_open_options>(), 16);
    }
}

/// A decision whose size was never set is refused before anything is recorded, and a set
/// one comes back with `size` = the bytes written. `Default` gives one with its size set.
#[test]
fn a_decision_without_its_size_is_refused_and_records_nothing() {
    unsafe {
        let mut h = ptr::null_mut();
        assert_eq!(
            sluice_open(
                c"global 1/1m".as_ptr(),
                ptr::null(),
                &mut h,
                ptr::null_mut(),
                0
            ),
            SLUICE_OK
        );
        // `Default` sets the size (ready to pass); a C caller's `= {0}` does not.
        assert_eq!(
            sluice_decision::default().size,
            size_of::<sluice_decision>()
        );
        let unset = sluice_decision {
            size: 0,
            ..Default::default()
        };
        let mut d = unset;
        let key = b"k";
        let t = 1_767_225_600_000;
        assert_eq!(
            sluice_check(h, 0, key.as_ptr().cast(), 1, t, &mut d),
            SLUICE_ERR_SIZE
        );
        assert_eq!(d, unset);
        d.size = size_of::<sluice_decision>() + 64;
        assert_eq!(
            sluice_check(h, 0, key.as_ptr().cast(), 1, t, &mut d),
            SLUICE_OK
        );
        assert_eq!((d.size, d.allowed), (size_of::<sluice_decision>(), 1));
        sluice_close(h);
    }
}
