//! Building a [`Decision`] from what a decision read: the reporting half of the engine.

use super::layout::LockoutLayout;
use super::log::{Observed, SlidingLog, Summary};
use super::{Decision, Status};
use crate::engine::layout::WindowLayout;
use crate::time::{ceil_secs, ceil_secs_bounded};

/// Whether a decision is a check (records) or a peek (records nothing).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    Check,
    Peek,
}

/// A window rule as one decision sees it: its log in the key's state, its layout, and what
/// the last read of the log found.
#[derive(Clone, Copy)]
pub(crate) struct Rule<'a> {
    pub log: SlidingLog<'a>,
    pub wl: &'a WindowLayout,
    pub obs: Observed,
}

/// The decision of `allow`, which reports nothing else.
#[inline]
pub(crate) fn verdict(allowed: bool) -> Decision {
    Decision {
        allowed,
        status: if allowed {
            Status::Passed
        } else {
            Status::Limited
        },
        ..Decision::default()
    }
}

/// Refused: report the refusing enforced rule with the largest `retry_after`.
pub(crate) fn refused_report(rules: &[Rule<'_>], now: i64, op: Op) -> Decision {
    let mut best: Option<Decision> = None;
    for r in rules.iter().filter(|r| !r.obs.admit && !r.wl.dry_run) {
        // After a strict rule logged this refusal, what frees it is the new N-th entry.
        // A peek reports what the check would: as if the refusal had been logged too.
        let s = match (op, r.wl.strict) {
            (Op::Check, true) => r.log.summarize(now),
            (Op::Peek, true) => r.log.refusal_if_logged(&r.obs, now),
            (_, false) => Summary::of_refusal(r.wl.limit, r.obs.nth_ts),
        };
        let d = refusal(r.wl.limit, r.wl.window_ms, r.wl.rule, &s, now);
        if best.is_none_or(|b| d.retry_after > b.retry_after) {
            best = Some(d);
        }
    }
    best.expect("a refusing rule")
}

/// Admitted: report the first dry-run rule that would have refused, or else the rule with
/// the least remaining. `logged`: the request is in the logs (a check); otherwise (a peek)
/// the numbers are computed as if it were.
pub(crate) fn admitted_report(rules: &[Rule<'_>], now: i64, logged: bool) -> Decision {
    if let Some(r) = rules.iter().find(|r| !r.obs.admit) {
        // A check logged the would-be refusal of a strict dry-run rule; a peek reports as if.
        let s = if !logged && r.wl.strict {
            r.log.refusal_if_logged(&r.obs, now)
        } else {
            r.log.summarize(now)
        };
        let mut d = refusal(r.wl.limit, r.wl.window_ms, r.wl.rule, &s, now);
        d.allowed = true;
        d.status = Status::DryRunLimited;
        d.retry_after = 0;
        return d;
    }
    if logged {
        return claimed_report(rules, now);
    }
    // Only the reported rule's Decision is built (its divisions are not free).
    let mut best: Option<(u32, &Rule<'_>, u32, Option<i64>)> = None;
    for r in rules {
        let s = if logged {
            r.log.claimed_summary(&r.obs, now)
        } else {
            r.log.window_summary(now)
        };
        let (count, oldest) = if logged {
            (s.in_window, s.oldest_in_window)
        } else {
            let oldest = s.oldest_in_window.map_or(now, |o| o.min(now));
            (s.in_window + 1, Some(oldest))
        };
        let remaining = r.wl.limit.saturating_sub(count);
        if best.is_none_or(|b| remaining < b.0) {
            best = Some((remaining, r, count, oldest));
        }
    }
    match best {
        Some((_, r, count, oldest)) => {
            admission(r.wl.limit, r.wl.window_ms, r.wl.rule, count, oldest, now)
        }
        None => no_rule(now),
    }
}

/// [`admitted_report`] of a check that claimed every rule (none would refuse): the rule with
/// the least remaining, ties to the first in policy order, counted back from each rule's own
/// ticket.
///
/// Counting a window is a binary search over a ring that may be long, so rules are not all
/// counted. The one with the smallest limit is counted first (the likeliest to have the least
/// remaining). Rule `r` can beat a best of `rem` only if at least `limit_r - rem + 1` of its
/// logged requests are in the window (`limit_r - rem` if it comes first in policy order);
/// the log is in time order, so that is one probe of the entry that far back
/// ([`Log::claimed_reaches`]), and only a rule that passes it is counted. The report is the
/// one counting every rule would give.
fn claimed_report(rules: &[Rule<'_>], now: i64) -> Decision {
    let mut first = 0;
    for (i, r) in rules.iter().enumerate() {
        if r.wl.limit < rules[first].wl.limit {
            first = i;
        }
    }
    let count = |r: &Rule<'_>| {
        let s = r.log.claimed_summary(&r.obs, now);
        (
            r.wl.limit.saturating_sub(s.in_window),
            s.in_window,
            s.oldest_in_window,
        )
    };
    let (mut best, mut best_i) = (count(&rules[first]), first);
    for (i, r) in rules.iter().enumerate() {
        if i == first {
            continue;
        }
        let rem = best.0;
        // remaining_r < rem (or <= rem, coming first) <=> count_r >= need.
        let need = (r.wl.limit as u64 + u64::from(i > best_i)).saturating_sub(rem as u64);
        if need > 1 && !r.log.claimed_reaches(&r.obs, now, need) {
            continue;
        }
        let c = count(r);
        if c.0 < rem || (c.0 == rem && i < best_i) {
            (best, best_i) = (c, i);
        }
    }
    let r = &rules[best_i];
    admission(r.wl.limit, r.wl.window_ms, r.wl.rule, best.1, best.2, now)
}

pub(crate) fn locked(lo: &LockoutLayout, until: i64, now: i64) -> Decision {
    let rest = ceil_secs(until - now).max(1) as u32;
    Decision {
        allowed: false,
        status: Status::Locked,
        limit: lo.failures,
        remaining: 0,
        reset: ceil_secs(until),
        reset_after: rest,
        retry_after: rest,
        rule: Some(lo.rule),
        window_ms: lo.window_ms,
    }
}

pub(crate) fn failures_left(lo: &LockoutLayout, s: &Summary, now: i64) -> Decision {
    let mut d = admission(
        lo.failures,
        lo.window_ms,
        lo.rule,
        s.in_window,
        s.oldest_in_window,
        now,
    );
    d.rule = Some(lo.rule);
    d
}

/// An admitting rule's report: `in_window` logged requests (this one included).
#[inline(always)]
pub(crate) fn admission(
    limit: u32,
    window_ms: i64,
    rule: usize,
    in_window: u32,
    oldest: Option<i64>,
    now: i64,
) -> Decision {
    let reset_ms = oldest.map_or(now, |o| o + window_ms);
    Decision {
        allowed: true,
        status: Status::Passed,
        limit,
        remaining: limit.saturating_sub(in_window),
        // Both spans are a timestamp of the table plus at most a window (the time range and the longest window bound both).
        reset: ceil_secs_bounded(reset_ms),
        reset_after: ceil_secs_bounded(reset_ms - now) as u32,
        retry_after: 0,
        rule: Some(rule),
        window_ms,
    }
}

/// A refusing rule's report.
pub(crate) fn refusal(limit: u32, window_ms: i64, rule: usize, s: &Summary, now: i64) -> Decision {
    let free_at = s.nth_ts.map_or(now, |ts| ts + window_ms);
    let reset_ms = s.oldest_in_window.map_or(free_at, |o| o + window_ms);
    Decision {
        allowed: false,
        status: Status::Limited,
        limit,
        remaining: 0,
        reset: ceil_secs(reset_ms),
        reset_after: ceil_secs(reset_ms - now) as u32,
        retry_after: ceil_secs(free_at - now).max(1) as u32,
        rule: Some(rule),
        window_ms,
    }
}

/// A request in a category to which no window rule applies.
pub(crate) fn no_rule(now: i64) -> Decision {
    Decision {
        allowed: true,
        status: Status::Passed,
        limit: 0,
        remaining: 0,
        reset: ceil_secs(now),
        reset_after: 0,
        retry_after: 0,
        rule: None,
        window_ms: 0,
    }
}
