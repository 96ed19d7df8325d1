//! A table in no file, opened before the process forks (a server's master and its workers):
//! every child and the parent use one table, so a limit stays one limit and a lockout one
//! lockout, however many processes answer. With a private (copy-on-write) mapping each child
//! would get its own copy at its first write, and every count here would come out per child.

#[path = "support/fork.rs"]
mod fork;

use std::io::Write;

use sluice::{Category, Limiter, Status};

const T: i64 = 1_767_225_600_000;
const POLICY: &str = "api 5/1m\nauth lockout 3/15m for 15m\ncapacity 1000";
const CHILDREN: usize = 3;
const CHECKS: usize = 10;
/// Checks the parent makes (and has admitted) before it forks.
const BEFORE: u64 = 2;

/// `passed limited` of the `api` rule, and live and locked keys, as a child reports them.
fn counts(l: &Limiter) -> String {
    let st = l.stats_at(T + 5);
    format!(
        "{} {} {} {}",
        st.rules[0].passed, st.rules[0].limited, st.live_keys, st.locked_keys
    )
}

fn parse(report: &str) -> Vec<u64> {
    report
        .split_whitespace()
        .map(|w| {
            w.parse()
                .unwrap_or_else(|_| panic!("bad report {report:?}"))
        })
        .collect()
}

#[test]
fn children_forked_after_opening_share_one_private_table() {
    let _lock = fork::fork_lock();
    let l = Limiter::open(POLICY).unwrap();
    let api = l.category("api").unwrap();
    let auth = l.category("auth").unwrap();
    for i in 0..BEFORE {
        assert!(l.check_at("hot", api, T + i as i64).unwrap().allowed);
    }

    // Three children check one key at once, released together: of the 5 the rule allows, 2
    // went to the parent, so exactly 3 are admitted among the 30 checks of the children.
    let mut go = [0; 2];
    // SAFETY: `go` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(go.as_mut_ptr()) }, 0);
    let children: Vec<fork::Forked> = (0..CHILDREN)
        .map(|_| {
            fork::fork(|out| {
                // Wait until the parent closes its end of `go`: all children start together.
                let mut b = [0u8; 1];
                // SAFETY: the child's own copy of the read end of `go`.
                unsafe {
                    libc::close(go[1]);
                    libc::read(go[0], b.as_mut_ptr().cast(), 1);
                }
                let mut admitted = 0;
                for _ in 0..CHECKS {
                    let d = l.check_at("hot", api, T + 3).unwrap();
                    if d.allowed {
                        admitted += 1;
                    } else {
                        assert_eq!(d.status, Status::Limited);
                    }
                }
                let _ = write!(out, "{admitted} {}", counts(&l));
                0
            })
        })
        .collect();
    // SAFETY: the parent's ends of `go`; closing the write end releases the children.
    unsafe {
        libc::close(go[0]);
        libc::close(go[1]);
    }
    let mut admitted = 0;
    for c in children {
        let (code, report) = c.wait();
        assert_eq!(code, 0, "{report}");
        let r = parse(&report);
        admitted += r[0];
        // What a child sees when it is done: its own checks and the parent's at least, and
        // never more than were made nor more admitted than the rule allows.
        let (passed, limited) = (r[1], r[2]);
        assert!(passed <= 5, "a child saw {passed} passed: {report}");
        assert!(
            (BEFORE + CHECKS as u64..=BEFORE + (CHILDREN * CHECKS) as u64)
                .contains(&(passed + limited)),
            "a child saw {passed} passed and {limited} limited: {report}"
        );
    }
    assert_eq!(admitted, 5 - BEFORE, "children admitted {admitted} in all");
    let d = l.peek_at("hot", api, T + 4).unwrap();
    assert_eq!((d.allowed, d.remaining), (false, 0));
    let st = l.stats_at(T + 5);
    let refused = (CHILDREN * CHECKS) as u64 - admitted;
    assert_eq!(
        (st.rules[0].passed, st.rules[0].limited, st.live_keys),
        (5, refused, 1)
    );

    // A lockout recorded in one child locks the key for a child forked later and for the
    // parent; the first child sees its own lockout in its stats.
    let (code, report) = fork::in_child(|out| {
        for i in 0..3 {
            l.failure_at("guess", auth, T + i).unwrap();
        }
        let _ = write!(out, "{}", counts(&l));
        0
    });
    assert_eq!(
        (code, report.as_str()),
        (0, format!("5 {refused} 2 1").as_str())
    );
    let (code, report) = fork::in_child(|out| {
        let d = l.check_at("guess", auth, T + 4).unwrap();
        let _ = write!(out, "{} {}", d.status as u8, counts(&l));
        0
    });
    assert_eq!(
        (code, report.as_str()),
        (
            0,
            format!("{} 5 {refused} 2 1", Status::Locked as u8).as_str()
        )
    );
    let d = l.check_at("guess", auth, T + 5).unwrap();
    assert_eq!((d.allowed, d.status), (false, Status::Locked));
    let st = l.stats_at(T + 5);
    assert_eq!((st.live_keys, st.locked_keys), (2, 1));
    assert_eq!(st.rules[1].lockouts, 1);
    // The child's check of the locked key, and the parent's, each counted once.
    assert_eq!(st.rules[1].locked, 2);

    // Still one table after the parent has written: a child sees the parent's check.
    assert!(l.check_at("late", Category::GLOBAL, T + 5).unwrap().allowed);
    let (code, report) = fork::in_child(|out| {
        let _ = write!(out, "{}", l.stats_at(T + 5).live_keys);
        0
    });
    assert_eq!((code, report.as_str()), (0, "3"));
}
