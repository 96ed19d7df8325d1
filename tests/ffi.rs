//! The C ABI called from Rust as a C caller would: regressions found by the fuzzers
//! (fuzz/regressions/) and conventions that C and Python tests rely on.

use std::ffi::{c_char, c_int, CStr};
use std::ptr;

use ::sluice::ffi::{
    sluice_close, sluice_decision, sluice_headers, sluice_open, SLUICE_ERR_POLICY,
    SLUICE_HEADERS_IETF, SLUICE_OK, SLUICE_STATUS_PASSED,
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
