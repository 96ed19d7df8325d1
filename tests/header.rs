//! The checked-in C header agrees with Cargo.toml and with the ABI the crate exports.

use std::path::Path;

fn header() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("include/sluice.h"))
        .expect("include/sluice.h is checked in")
}

fn define(h: &str, name: &str) -> String {
    h.lines()
        .find_map(|l| l.strip_prefix(&format!("#define {name} ")))
        .unwrap_or_else(|| panic!("#define {name} missing from include/sluice.h"))
        .trim()
        .to_string()
}

#[test]
fn version_macros_match_cargo_toml() {
    let h = header();
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(define(&h, "SLUICE_VERSION"), format!("\"{v}\""));
    let parts: Vec<&str> = v.split(['.', '-']).collect();
    assert_eq!(define(&h, "SLUICE_VERSION_MAJOR"), parts[0]);
    assert_eq!(define(&h, "SLUICE_VERSION_MINOR"), parts[1]);
    assert_eq!(define(&h, "SLUICE_VERSION_PATCH"), parts[2]);
    let lib = unsafe { std::ffi::CStr::from_ptr(sluice::ffi::sluice_version()) };
    assert_eq!(lib.to_str().unwrap(), v);
}

#[test]
fn error_codes_statuses_and_flags_are_never_renumbered() {
    // The numbers are ABI: a change here breaks every compiled caller.
    let h = header();
    for (name, value) in [
        ("SLUICE_OK", "0"),
        ("SLUICE_ERR_NULL", "-1"),
        ("SLUICE_ERR_UTF8", "-2"),
        ("SLUICE_ERR_EMPTY_KEY", "-3"),
        ("SLUICE_ERR_KEY_TOO_LONG", "-4"),
        ("SLUICE_ERR_TIME", "-5"),
        ("SLUICE_ERR_ARGUMENT", "-6"),
        ("SLUICE_ERR_SIZE", "-7"),
        ("SLUICE_ERR_POLICY", "-10"),
        ("SLUICE_ERR_POLICY_TOO_LARGE", "-11"),
        ("SLUICE_ERR_UNKNOWN_CATEGORY", "-20"),
        ("SLUICE_ERR_NO_LOCKOUT", "-21"),
        ("SLUICE_ERR_IO", "-30"),
        ("SLUICE_ERR_UNSUPPORTED", "-31"),
        ("SLUICE_ERR_NOT_A_TABLE", "-32"),
        ("SLUICE_ERR_FORMAT_VERSION", "-33"),
        ("SLUICE_ERR_POLICY_MISMATCH", "-34"),
        ("SLUICE_ERR_NO_TABLE", "-35"),
        ("SLUICE_ERR_READ_ONLY", "-36"),
        ("SLUICE_ERR_PANIC", "-99"),
        ("SLUICE_STATUS_PASSED", "0"),
        ("SLUICE_STATUS_LIMITED", "1"),
        ("SLUICE_STATUS_LOCKED", "2"),
        ("SLUICE_STATUS_FULL", "3"),
        ("SLUICE_STATUS_DRY_RUN_LIMITED", "4"),
        ("SLUICE_HEADERS_X_RATELIMIT", "0"),
        ("SLUICE_HEADERS_IETF", "1"),
        ("SLUICE_NOW", "INT64_MIN"),
        ("SLUICE_OPEN_HUGE_PAGES", "1"),
        ("SLUICE_OPEN_READ_ONLY", "2"),
        ("SLUICE_RULE_WINDOW", "0"),
        ("SLUICE_RULE_LOCKOUT", "1"),
        ("SLUICE_RULE_STRICT", "1"),
        ("SLUICE_RULE_DRY_RUN", "2"),
    ] {
        assert_eq!(define(&h, name), value, "{name}");
    }
    assert_eq!(sluice::Status::DryRunLimited as u8, 4);
}
