//! Fuzz target `policy`: arbitrary text into the policy parser, then into `Limiter::open` and
//! `sluice_open`.
//!
//! Properties checked on every input (bytes decoded as UTF-8, lossily):
//!
//! * `Policy::parse` never panics (a panic is a crash of this target).
//! * Accepted policies round-trip: `parse(canonical(p))` succeeds and equals `p` except that
//!   rule `i`'s `line` becomes `i + 1`; the canonical text is a fixed point; categories keep
//!   their ids.
//! * Rejected policies: the message is `line L, column C: MESSAGE` with `1 <= L <=` the number
//!   of lines of the input (after a leading byte-order mark), `1 <= C <=` that line's width in
//!   characters + 1, and MESSAGE starting with `expected`, `unexpected end of line: expected`
//!   or `duplicate`. `Limiter::open` and `sluice_open` reject the text with the same error
//!   (`SLUICE_ERR_POLICY`, a NUL-terminated message in the caller's buffer, cut at a char
//!   boundary when the buffer is small).
//! * Metamorphic: `\n` -> `\r\n` and a leading byte-order mark change nothing.
//! * Accepted policies, with the capacity clamped so the table stays small: `Limiter::open`
//!   succeeds exactly when no category has more than 16 window rules (global ones included),
//!   and otherwise fails with `PolicyTooLarge` naming such a category; an opened limiter
//!   resolves every category, admits the first request of a fresh key with the tightest
//!   rule's numbers, records failures only where there is a lockout, formats headers, reports
//!   sane stats; the C ABI (`sluice_open`, `sluice_category`, `sluice_check`, `sluice_close`)
//!   agrees.

#![no_main]

use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr;

use libfuzzer_sys::fuzz_target;
use sluice::ffi;
use sluice::policy::{Policy, RuleKind};
use sluice::{Error, HeaderStyle, Limiter, Status};

/// Largest capacity opened as written; larger ones are clamped to this.
const MAX_OPEN_CAPACITY: u64 = 4096;
/// Largest table (address space) the target opens, in bytes.
const MAX_TABLE_BYTES: u64 = 64 << 20;
/// Rules per category the table layout accepts (`layout::MAX_RULES_PER_CATEGORY`).
const MAX_RULES_PER_CATEGORY: usize = 16;
/// A fixed instant (2026-01-01T00:00:00Z) for the checks on an opened limiter.
const T0: i64 = 1_767_225_600_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let result = check_parse(&text);

    // Metamorphic checks: CRLF line endings and a byte-order mark are transparent.
    if !text.contains('\r') {
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(
            Policy::parse(&crlf),
            result,
            "CRLF changed the result of {text:?}"
        );
    }
    if !text.starts_with('\u{feff}') {
        let bom = format!("\u{feff}{text}");
        assert_eq!(
            Policy::parse(&bom),
            result,
            "a BOM changed the result of {text:?}"
        );
    }

    match result {
        Ok(policy) => check_open(&text, &policy),
        Err(e) => check_rejected_by_open(&text, &e),
    }
});

/// Parses `text` and checks the invariants of the result, which it returns.
fn check_parse(text: &str) -> Result<Policy, sluice::PolicyError> {
    let result = Policy::parse(text);
    // `FromStr` is the same parser.
    assert_eq!(text.parse::<Policy>(), result);
    match &result {
        Ok(policy) => check_round_trip(text, policy),
        Err(e) => check_error(text, e),
    }
    result
}

fn check_round_trip(text: &str, policy: &Policy) {
    assert!(!policy.categories.is_empty() && policy.categories[0] == "global");
    assert!((1..=sluice::policy::MAX_CAPACITY).contains(&policy.capacity));
    let canonical = policy.canonical();
    let reparsed = Policy::parse(&canonical).unwrap_or_else(|e| {
        panic!("canonical text {canonical:?} of accepted {text:?} is rejected: {e}")
    });
    let lines: Vec<usize> = reparsed.rules.iter().map(|r| r.line).collect();
    assert_eq!(
        lines,
        (1..=policy.rules.len()).collect::<Vec<_>>(),
        "canonical {canonical:?}"
    );
    let mut renumbered = policy.clone();
    for (i, rule) in renumbered.rules.iter_mut().enumerate() {
        rule.line = i + 1;
    }
    assert_eq!(
        reparsed, renumbered,
        "parse(canonical) differs from the policy of {text:?}\ncanonical: {canonical:?}"
    );
    assert_eq!(
        reparsed.canonical(),
        canonical,
        "canonical is not a fixed point"
    );
    // Lines of the original rules point into the text, in increasing order.
    let text_lines = text
        .strip_prefix('\u{feff}')
        .unwrap_or(text)
        .split('\n')
        .count();
    let mut previous = 0;
    for rule in &policy.rules {
        assert!(rule.line > previous && rule.line <= text_lines, "{text:?}");
        previous = rule.line;
        assert!(policy.category_id(&rule.name).is_some());
    }
    for (id, name) in policy.categories.iter().enumerate() {
        assert_eq!(policy.category_id(name), Some(id));
    }
}

fn check_error(text: &str, e: &sluice::PolicyError) {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = body.split('\n').collect();
    assert!(
        e.line >= 1 && e.line <= lines.len(),
        "error line {} outside 1..={} for {text:?}: {e}",
        e.line,
        lines.len()
    );
    let width = lines[e.line - 1].chars().count();
    assert!(
        e.column >= 1 && e.column <= width + 1,
        "error column {} outside 1..={} for {text:?}: {e}",
        e.column,
        width + 1
    );
    let shown = e.to_string();
    let prefix = format!("line {}, column {}: ", e.line, e.column);
    assert!(
        shown.starts_with(&prefix),
        "{shown:?} does not start with {prefix:?}"
    );
    let message = &shown[prefix.len()..];
    assert_eq!(message, e.message);
    assert!(
        message.starts_with("expected ")
            || message.starts_with("unexpected end of line: expected ")
            || message.starts_with("duplicate "),
        "unexpected message shape {message:?} for {text:?}"
    );
    // Messages stay short however long the offending token is (found text is cut at 40
    // characters, plus the fixed wording).
    assert!(
        message.chars().count() <= 400,
        "message of {} characters for {text:?}",
        message.chars().count()
    );
}

/// A policy the parser rejects is rejected by `Limiter::open` and `sluice_open` with the same
/// error.
fn check_rejected_by_open(text: &str, e: &sluice::PolicyError) {
    match Limiter::open(text) {
        Err(Error::Policy(got)) => assert_eq!(&got, e),
        Err(other) => panic!("Limiter::open of rejected {text:?} gave {other:?}, not {e:?}"),
        Ok(_) => panic!("Limiter::open accepted {text:?}, which the parser rejects: {e}"),
    }
    // A C string cannot hold a NUL.
    let Ok(c_text) = CString::new(text) else {
        return;
    };
    let expected = Error::Policy(e.clone()).to_string();
    // A roomy buffer, then a small one (cut short, still NUL-terminated, at a char boundary).
    let small = 1 + (text.len() % 48);
    for cap in [1024usize, small, 1] {
        let mut buf = vec![0x55u8; cap + 8];
        let mut out: *mut ffi::sluice = ptr::null_mut();
        let rc = unsafe {
            ffi::sluice_open(
                c_text.as_ptr(),
                ptr::null(),
                &mut out,
                buf.as_mut_ptr() as *mut c_char,
                cap,
            )
        };
        assert_eq!(rc, ffi::SLUICE_ERR_POLICY, "sluice_open of {text:?}");
        assert!(out.is_null(), "sluice_open wrote *out on failure");
        assert!(
            buf[cap..].iter().all(|&b| b == 0x55),
            "sluice_open wrote past err_cap"
        );
        let nul = buf[..cap]
            .iter()
            .position(|&b| b == 0)
            .expect("message is NUL-terminated within err_cap");
        let got = std::str::from_utf8(&buf[..nul]).expect("message is UTF-8");
        if expected.len() < cap {
            assert_eq!(got, expected);
        } else {
            assert!(
                expected.starts_with(got),
                "{got:?} is not a prefix of {expected:?}"
            );
            assert!(expected.len() - got.len() <= 3 + (expected.len() + 1 - cap));
        }
        if cap == 1024 && expected.len() < cap {
            // The message names the line and column (after the "invalid policy: " prefix).
            let at = format!("line {}, column {}: ", e.line, e.column);
            assert!(got.contains(&at), "{got:?} lacks {at:?}");
        }
    }
}

/// Window rules that apply to each category: the global ones plus its own.
fn rules_per_category(policy: &Policy) -> Vec<Vec<usize>> {
    let windows = |name: &str| -> Vec<usize> {
        policy
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.name == name && matches!(r.kind, RuleKind::Window(_)))
            .map(|(i, _)| i)
            .collect()
    };
    policy
        .categories
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let mut v = windows("global");
            if c != 0 {
                v.extend(windows(name));
            }
            v
        })
        .collect()
}

/// An upper bound of the table's words per key (slot header, counters, lock words, rings,
/// rounding to a cache line, index word).
fn words_per_key(policy: &Policy) -> u64 {
    let mut words = 1u64;
    for rule in &policy.rules {
        words += match &rule.kind {
            RuleKind::Window(w) => 1 + u64::from(w.limit),
            RuleKind::Lockout(l) => 2 + u64::from(l.failures),
        };
    }
    words + 8 + 1
}

fn check_open(text: &str, policy: &Policy) {
    let per_key = words_per_key(policy) * 8;
    let fits = MAX_TABLE_BYTES / per_key;
    if fits == 0 {
        return;
    }
    // Open the text itself when it is small enough; otherwise the canonical text of the same
    // rules with a smaller capacity.
    let (open_text, opened_policy) =
        if policy.capacity <= MAX_OPEN_CAPACITY && policy.capacity <= fits {
            (text.to_string(), policy.clone())
        } else {
            let mut clamped = policy.clone();
            clamped.capacity = policy.capacity.min(MAX_OPEN_CAPACITY).min(fits);
            let canonical = clamped.canonical();
            let reparsed = Policy::parse(&canonical).expect("canonical text parses");
            (canonical, reparsed)
        };
    let policy = &opened_policy;

    let per_category = rules_per_category(policy);
    let too_many = per_category
        .iter()
        .position(|rules| rules.len() > MAX_RULES_PER_CATEGORY);

    let limiter = match (Limiter::open(&open_text), too_many) {
        (Ok(l), None) => l,
        (Err(Error::PolicyTooLarge(why)), Some(c)) => {
            // Some category with too many rules is named (not necessarily the first).
            assert!(
                per_category.iter().enumerate().any(|(i, rules)| {
                    rules.len() > MAX_RULES_PER_CATEGORY
                        && why.contains(&format!("{:?}", policy.categories[i]))
                }),
                "PolicyTooLarge {why:?} names no category with too many rules (first: {:?})",
                policy.categories[c]
            );
            check_c_open_fails(&open_text, ffi::SLUICE_ERR_POLICY_TOO_LARGE);
            return;
        }
        (Err(Error::Io(e)), _) => panic!("Limiter::open of a {per_key}-byte-per-key table: {e}"),
        (Ok(_), Some(c)) => panic!(
            "Limiter::open accepted category {:?} with {} rules (at most {MAX_RULES_PER_CATEGORY})",
            policy.categories[c],
            per_category[c].len()
        ),
        (Err(e), _) => panic!("Limiter::open of accepted {open_text:?}: {e:?}"),
    };

    assert_eq!(limiter.policy(), policy);
    let stats = limiter.stats_at(T0);
    assert_eq!(stats.capacity, policy.capacity);
    assert_eq!((stats.live_keys, stats.locked_keys), (0, 0));
    assert_eq!(stats.rules.len(), policy.rules.len());
    assert!(stats.bytes_per_key as usize == limiter.bytes_per_key() && stats.bytes_per_key > 0);
    assert!(limiter.table_bytes() as u64 >= policy.capacity * (stats.bytes_per_key - 8));
    assert!(limiter.rule_stats(policy.rules.len()).is_none());

    // Every category resolves to its id and back; an unknown name does not.
    for (id, name) in policy.categories.iter().enumerate() {
        let c = limiter.category(name).expect("category resolves");
        assert_eq!(c.id(), id);
        assert_eq!(limiter.category_name(c), Some(name.as_str()));
    }
    assert!(matches!(
        limiter.category("NOT A CATEGORY"),
        Err(Error::UnknownCategory { .. })
    ));

    // A fresh key: the first request is admitted by the tightest rule (first one on ties).
    let key = b"fuzz-key";
    // Each category at its own, later time; the reset at the end of each round clears every
    // log the next round's check consults.
    for (id, rules) in per_category.iter().enumerate().take(32) {
        let c = limiter
            .category(&policy.categories[id])
            .expect("category resolves");
        let base = T0 + 1000 * id as i64;
        let peek = limiter.peek_at(key, c, base).expect("peek");
        let d = limiter.check_at(key, c, base).expect("check");
        assert!(d.allowed && d.status == Status::Passed, "{d:?}");
        assert_eq!(d.retry_after, 0);
        let tightest = rules
            .iter()
            .copied()
            .min_by_key(|&r| match &policy.rules[r].kind {
                RuleKind::Window(w) => w.limit,
                RuleKind::Lockout(_) => unreachable!(),
            });
        match tightest {
            None => assert_eq!(d.rule, None, "no rule applies to category {id}: {d:?}"),
            Some(r) => {
                let RuleKind::Window(w) = &policy.rules[r].kind else {
                    unreachable!()
                };
                let rule = d.rule.expect("a rule applies");
                let RuleKind::Window(dw) = &policy.rules[rule].kind else {
                    panic!("deciding rule {rule} is not a window rule")
                };
                assert!(rules.contains(&rule), "rule {rule} does not apply to {id}");
                assert_eq!(d.limit, w.limit);
                assert_eq!(dw.limit, d.limit);
                assert_eq!(d.window_ms, dw.window_ms);
                // Nothing this check consults is logged yet.
                assert_eq!(d.remaining, w.limit - 1, "{d:?}");
                assert_eq!(peek.remaining, w.limit - 1, "{peek:?}");
                assert_eq!((peek.limit, peek.allowed), (d.limit, true), "{peek:?}");
            }
        }
        for style in [HeaderStyle::XRateLimit, HeaderStyle::Ietf] {
            let headers = limiter.headers(&d, style);
            assert!(headers.iter().all(|(_, v)| !v.contains(['\r', '\n'])));
        }
        // Failures only where the category has a lockout.
        let lockout = policy.rules.iter().find_map(|r| match &r.kind {
            RuleKind::Lockout(l) if r.name == policy.categories[id] => Some(l.failures),
            _ => None,
        });
        let f = limiter.failure_at(key, c, base + 100);
        match (lockout, f) {
            (None, Err(Error::NoLockout { .. })) => {}
            (Some(1), Ok(d)) => assert_eq!(d.status, Status::Locked, "{d:?}"),
            (Some(n), Ok(d)) => {
                assert_eq!(
                    (d.status, d.remaining, d.limit),
                    (Status::Passed, n - 1, n),
                    "{d:?}"
                )
            }
            (lockout, f) => panic!("failure with lockout {lockout:?}: {f:?}"),
        }
        let s = limiter.success_at(key, c, base + 101);
        assert_eq!(s.is_ok(), lockout.is_some());
        limiter.reset_at(key, c, base + 102).expect("reset");
    }
    let stats = limiter.stats_at(T0 + 1000 * 33);
    assert_eq!(stats.live_keys, 1);
    assert_eq!(
        stats.locked_keys, 0,
        "reset clears every lock the check consults"
    );

    // The same text through the C ABI.
    let Ok(c_text) = CString::new(open_text.as_str()) else {
        return;
    };
    let mut handle: *mut ffi::sluice = ptr::null_mut();
    let mut err = [0 as c_char; 256];
    let rc = unsafe {
        ffi::sluice_open(
            c_text.as_ptr(),
            ptr::null(),
            &mut handle,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    assert_eq!(rc, ffi::SLUICE_OK, "sluice_open: {:?}", unsafe {
        CStr::from_ptr(err.as_ptr())
    });
    assert!(!handle.is_null());
    for (id, name) in policy.categories.iter().enumerate().take(32) {
        let c_name = CString::new(name.as_str()).expect("names have no NUL");
        assert_eq!(
            unsafe { ffi::sluice_category(handle, c_name.as_ptr()) },
            id as c_int
        );
        // A key of its own per category, so global rules of N = 1 do not refuse it.
        let key = format!("c{id}");
        let mut d = ffi::sluice_decision::default();
        let rc = unsafe {
            ffi::sluice_check(
                handle,
                id as c_int,
                key.as_ptr().cast(),
                key.len(),
                T0,
                &mut d,
            )
        };
        assert_eq!(rc, ffi::SLUICE_OK);
        assert_eq!(d.allowed, 1);
    }
    let mut st = ffi::sluice_table_stats::default();
    assert_eq!(
        unsafe { ffi::sluice_stats(handle, T0, &mut st) },
        ffi::SLUICE_OK
    );
    assert_eq!(
        st.live_keys,
        policy
            .categories
            .len()
            .min(32)
            .min(policy.capacity as usize) as u64
    );
    assert_eq!(st.capacity, policy.capacity);
    assert_eq!(st.rules as usize, policy.rules.len());
    unsafe { ffi::sluice_close(handle) };
}

/// `sluice_open` of `text` fails with `code` and a message.
fn check_c_open_fails(text: &str, code: c_int) {
    let Ok(c_text) = CString::new(text) else {
        return;
    };
    let mut handle: *mut ffi::sluice = ptr::null_mut();
    let mut err = [0x55 as c_char; 512];
    let rc = unsafe {
        ffi::sluice_open(
            c_text.as_ptr(),
            ptr::null(),
            &mut handle,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    assert_eq!(rc, code);
    assert!(handle.is_null());
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) };
    assert!(!msg.to_bytes().is_empty());
}
