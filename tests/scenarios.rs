//! Worked examples of docs/semantics.md, one behaviour per test, with the numbers a client would see.

use sluice::{Category, Error, HeaderStyle, Limiter, Status, DEFAULT_POLICY};

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn limiter(policy: &str) -> Limiter {
    Limiter::builder(policy).secret([7, 11]).open().unwrap()
}

#[test]
fn sliding_window_is_exact_at_the_boundary() {
    let l = limiter("global 3/10s");
    let g = Category::GLOBAL;
    for i in 0..3 {
        let d = l.check_at("k", g, T0 + i * 1000).unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 2 - i as u32);
    }
    let d = l.check_at("k", g, T0 + 9_999).unwrap();
    assert_eq!(d.status, Status::Limited);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.retry_after, 1); // the first request leaves the window at T0 + 10 s
    assert_eq!(d.reset, (T0 + 10_000) / 1000);
    // At exactly T0 + 10 s the first request is out of (t - W, t].
    let d = l.check_at("k", g, T0 + 10_000).unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.reset, (T0 + 11_000) / 1000); // oldest in window is T0 + 1 s
}

#[test]
fn rounding_of_reset_and_retry_after() {
    let l = limiter("global 1/1500ms");
    let g = Category::GLOBAL;
    let d = l.check_at("k", g, T0 + 1).unwrap();
    assert_eq!(d.reset, (T0 + 1 + 1500 + 999) / 1000); // rounded up
    assert_eq!(d.reset_after, 2);
    let d = l.check_at("k", g, T0 + 1400).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, 1); // 101 ms, rounded up to a whole second
}

#[test]
fn most_restrictive_rule_decides_and_refusal_records_nothing() {
    let l = limiter("global 5/1m\nwrite 2/1m\nwrite 3/1h");
    let w = l.category("write").unwrap();
    let d = l.check_at("k", w, T0).unwrap();
    assert_eq!((d.limit, d.remaining, d.rule), (2, 1, Some(1)));
    l.check_at("k", w, T0 + 1).unwrap();
    let d = l.check_at("k", w, T0 + 2).unwrap();
    assert_eq!((d.status, d.rule), (Status::Limited, Some(1)));
    // The refused write was not counted by global: 3 global requests remain after 2 writes.
    let d = l.check_at("k", Category::GLOBAL, T0 + 3).unwrap();
    assert_eq!(d.remaining, 2);
    // After a minute the per-minute rule frees up but the hour rule (3/1h) has 2 logged.
    let d = l.check_at("k", w, T0 + 60_001).unwrap();
    assert!(d.allowed);
    assert_eq!((d.limit, d.remaining), (3, 0));
    let d = l.check_at("k", w, T0 + 120_002).unwrap();
    assert_eq!((d.status, d.rule), (Status::Limited, Some(2)));
    assert_eq!(d.retry_after, 3600 - 120); // the hour rule decides: largest retry_after
}

#[test]
fn strict_rule_keeps_a_hammering_client_refused() {
    let l = limiter("global 2/10s strict");
    let g = Category::GLOBAL;
    l.check_at("k", g, T0).unwrap();
    l.check_at("k", g, T0 + 1000).unwrap();
    // Hammer every second: each refusal is logged, so the window never frees.
    for s in 2..30 {
        let d = l.check_at("k", g, T0 + s * 1000).unwrap();
        assert!(!d.allowed, "second {s}");
    }
    // After a quiet full window it passes again.
    assert!(l.check_at("k", g, T0 + 29_000 + 10_000).unwrap().allowed);
    // A non-strict rule would have let it through at T0 + 10 s.
    let l = limiter("global 2/10s");
    l.check_at("k", g, T0).unwrap();
    l.check_at("k", g, T0 + 1000).unwrap();
    for s in 2..10 {
        assert!(!l.check_at("k", g, T0 + s * 1000).unwrap().allowed);
    }
    assert!(l.check_at("k", g, T0 + 10_000).unwrap().allowed);
}

#[test]
fn dry_run_never_refuses_but_reports_and_counts() {
    let l = limiter("global 10/1m\nmedia 1/1m dry-run");
    let m = l.category("media").unwrap();
    assert_eq!(l.check_at("k", m, T0).unwrap().status, Status::Passed);
    let d = l.check_at("k", m, T0 + 1).unwrap();
    assert!(d.allowed);
    assert_eq!(
        (d.status, d.rule, d.remaining),
        (Status::DryRunLimited, Some(1), 0)
    );
    let st = l.stats_at(T0 + 2);
    assert_eq!(st.rules[1].dry_run_limited, 1);
    assert_eq!(st.rules[0].passed, 2);
    assert_eq!(st.rules[1].passed, 1);
}

#[test]
fn peek_records_nothing() {
    let l = limiter("global 2/1m");
    let g = Category::GLOBAL;
    let p = l.peek_at("k", g, T0).unwrap();
    let c = l.check_at("k", g, T0).unwrap();
    assert_eq!(p, c);
    for _ in 0..5 {
        assert_eq!(l.peek_at("k", g, T0 + 1).unwrap().remaining, 0);
    }
    assert!(l.check_at("k", g, T0 + 1).unwrap().allowed);
    let p = l.peek_at("k", g, T0 + 2).unwrap();
    let c = l.check_at("k", g, T0 + 2).unwrap();
    assert_eq!(p, c);
    assert!(!c.allowed);
}

#[test]
fn lockout_escalates_and_forgets() {
    let l = limiter("auth 100/1m\nauth lockout 3/15m for 1m..4m");
    let a = l.category("auth").unwrap();
    let mut t = T0;
    let lock_for = |t: i64| {
        for i in 0..2 {
            let d = l.failure_at("u", a, t + i).unwrap();
            assert_eq!((d.status, d.remaining), (Status::Passed, 2 - i as u32));
        }
        let d = l.failure_at("u", a, t + 2).unwrap();
        assert_eq!(d.status, Status::Locked);
        d.retry_after
    };
    assert_eq!(lock_for(t), 60);
    // Locked: check refuses and charges nothing; failures don't count or extend.
    let d = l.check_at("u", a, t + 30_002).unwrap();
    assert_eq!((d.status, d.retry_after), (Status::Locked, 30));
    let d = l.failure_at("u", a, t + 30_002).unwrap();
    assert_eq!((d.status, d.retry_after), (Status::Locked, 30));
    // Second lockout doubles, third doubles again, fourth is capped at 4m.
    t += 60_002;
    assert!(l.check_at("u", a, t).unwrap().allowed);
    assert_eq!(lock_for(t), 120);
    t += 120_002;
    assert_eq!(lock_for(t), 240);
    t += 240_002;
    assert_eq!(lock_for(t), 240);
    // Quiet for MAX (4m) after the lock ended: the level is forgotten.
    t += 240_002 + 240_000;
    assert_eq!(lock_for(t), 60);
    assert_eq!(l.stats_at(t).rules[1].lockouts, 5);
}

#[test]
fn success_clears_failures_and_reset_unlocks() {
    let l = limiter("auth lockout 3/15m for 1m..4m");
    let a = l.category("auth").unwrap();
    l.failure_at("u", a, T0).unwrap();
    l.failure_at("u", a, T0 + 1).unwrap();
    l.success_at("u", a, T0 + 2).unwrap();
    assert_eq!(l.failure_at("u", a, T0 + 3).unwrap().remaining, 2);
    l.failure_at("u", a, T0 + 4).unwrap();
    assert_eq!(l.failure_at("u", a, T0 + 5).unwrap().status, Status::Locked);
    assert_eq!(l.stats_at(T0 + 6).locked_keys, 1);
    l.reset_at("u", a, T0 + 6).unwrap();
    assert!(l.check_at("u", a, T0 + 7).unwrap().allowed);
    assert_eq!(l.stats_at(T0 + 7).locked_keys, 0);
    // reset also forgot the level: the next lock is BAN again.
    for i in 0..3 {
        l.failure_at("u", a, T0 + 10 + i).unwrap();
    }
    assert_eq!(l.check_at("u", a, T0 + 20).unwrap().retry_after, 60);
}

#[test]
fn time_going_backwards_never_over_admits() {
    let l = limiter("global 2/10s");
    let g = Category::GLOBAL;
    assert!(l.check_at("k", g, T0 + 50_000).unwrap().allowed);
    assert!(l.check_at("k", g, T0 + 50_001).unwrap().allowed);
    // The wall clock steps back a minute: the logged requests are "in the future", in the
    // window, and nothing more is admitted.
    for dt in [0, 1000, 30_000, 59_000] {
        assert!(!l.check_at("k", g, T0 - 10_000 + dt).unwrap().allowed);
    }
    assert!(l.check_at("k", g, T0 + 60_000).unwrap().allowed);
}

#[test]
fn tables_older_than_49_7_days_keep_working() {
    let l = limiter("global 2/1h\nauth lockout 2/1d for 1d");
    let a = l.category("auth").unwrap();
    let day = 86_400_000;
    l.failure_at("old", a, T0).unwrap();
    for age_days in [0, 49, 50, 100, 400, 3650] {
        let t = T0 + age_days * day + 1;
        let key = format!("key-{age_days}");
        assert!(l.check_at(&key, Category::GLOBAL, t).unwrap().allowed);
        assert!(l.check_at(&key, Category::GLOBAL, t + 1).unwrap().allowed);
        assert!(!l.check_at(&key, Category::GLOBAL, t + 2).unwrap().allowed);
        assert!(
            l.check_at(&key, Category::GLOBAL, t + 3_600_000)
                .unwrap()
                .allowed
        );
    }
    // The lock of a key 50 days in is exact too (2^32 ms = 49.7 days).
    let t = T0 + 50 * day;
    l.failure_at("late", a, t).unwrap();
    let d = l.failure_at("late", a, t + 1).unwrap();
    assert_eq!((d.status, d.retry_after), (Status::Locked, 86_400));
    assert_eq!(d.reset, (t + 1 + day + 999) / 1000);
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let l = limiter(DEFAULT_POLICY);
    let g = Category::GLOBAL;
    l.check_at("k", g, T0).unwrap();
    assert!(matches!(l.check_at("", g, T0), Err(Error::EmptyKey)));
    let long = vec![b'x'; 65_536];
    assert!(matches!(
        l.check_at(&long, g, T0),
        Err(Error::KeyTooLong(65_536))
    ));
    assert!(l.check_at(vec![b'x'; 65_535], g, T0).is_ok());
    let e = l.category("uploads").unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown category \"uploads\": the policy defines global, media, analytics, write, auth"
    );
    assert!(matches!(
        l.check_at("k", Category::GLOBAL, -1),
        Err(Error::TimeOutOfRange(-1))
    ));
    let e = l.failure_at("k", g, T0).unwrap_err();
    assert!(e.to_string().contains("has no lockout"), "{e}");
    // Nothing above changed what "k" holds: one request logged.
    assert_eq!(l.peek_at("k", g, T0).unwrap().remaining, 298);
    let e = Limiter::open("global 300/1 minute").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid policy: line 1, column 12: expected a duration such as 1m or 30s, found \"1 minute\""
    );
}

#[test]
fn headers_in_both_styles() {
    let l = limiter("write 2/1m\nwrite 500/1h");
    let w = l.category("write").unwrap();
    let d = l.check_at("k", w, T0).unwrap();
    let mut s = String::new();
    l.write_headers(&d, HeaderStyle::XRateLimit, &mut s);
    assert_eq!(
        s,
        "X-RateLimit-Limit: 2\r\nX-RateLimit-Remaining: 1\r\nX-RateLimit-Reset: 1767225660\r\n"
    );
    l.check_at("k", w, T0 + 10_000).unwrap();
    let d = l.check_at("k", w, T0 + 20_500).unwrap();
    let mut s = String::new();
    l.write_headers(&d, HeaderStyle::Ietf, &mut s);
    assert_eq!(
        s,
        "RateLimit-Policy: \"write\";q=2;w=60\r\nRateLimit: \"write\";r=0;t=40\r\nRetry-After: 40\r\n"
    );
}

#[test]
fn unknown_category_id_is_an_error() {
    let l = limiter("global 1/1s");
    let other = limiter("global 1/1s\nauth 1/1s");
    let auth = other.category("auth").unwrap();
    assert!(matches!(
        l.check_at("k", auth, T0),
        Err(Error::InvalidCategory(1))
    ));
}

#[test]
fn ties_go_to_the_rule_first_in_the_policy_even_after_a_global_one() {
    // `write` comes before `global` in the policy: of two rules with the same remaining, the
    // decision names the write rule (index 0), admitted or refused.
    let l = Limiter::open("write 2/1m\nglobal 2/1m").unwrap();
    let write = l.category("write").unwrap();
    let d = l.check_at("k", write, 1_000).unwrap();
    assert_eq!((d.rule, d.remaining), (Some(0), 1));
    l.check_at("k", write, 1_001).unwrap();
    let d = l.check_at("k", write, 1_002).unwrap();
    assert_eq!((d.allowed, d.rule), (false, Some(0)));
    assert_eq!(l.peek_at("new", write, 1_002).unwrap().rule, Some(0));
}

#[test]
fn a_peek_of_a_strict_refusal_says_what_the_check_says() {
    // `global 2/10s strict`: requests at 0 s and 1 s; at 2 s a check is refused and logged,
    // so it frees up 10 s after the 1 s request; a peek at that instant must say the same.
    for policy in [
        "global 2/10s strict",
        "global 2/10s strict dry-run\nglobal 5/1m",
    ] {
        let l = Limiter::open(policy).unwrap();
        let g = Category::GLOBAL;
        let t = 1_700_000_000_000;
        l.check_at("k", g, t).unwrap();
        l.check_at("k", g, t + 1_000).unwrap();
        let peek = l.peek_at("k", g, t + 2_000).unwrap();
        let check = l.check_at("k", g, t + 2_000).unwrap();
        assert_eq!(peek, check, "{policy}");
    }
}
