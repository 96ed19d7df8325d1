//! Response headers from a decision (SPEC §3): the common `X-RateLimit-*` trio and the IETF
//! draft `RateLimit-Policy` / `RateLimit` fields. Both add `Retry-After` when refused.

use std::fmt::Write;

use crate::engine::{Decision, Status};
use crate::limiter::Limiter;
use crate::time::ceil_secs;

/// Which header fields to write. The numbers are part of the C ABI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum HeaderStyle {
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (Unix seconds), and
    /// `Retry-After` when refused. The default.
    #[default]
    XRateLimit = 0,
    /// `RateLimit-Policy: "NAME";q=N;w=SECONDS` and `RateLimit: "NAME";r=REMAINING;t=SECONDS`
    /// (draft-ietf-httpapi-ratelimit-headers), and `Retry-After` when refused.
    Ietf = 1,
}

impl Limiter {
    /// The header fields for `decision`, as (name, value) pairs in the order they should be
    /// sent. A decision with no rule (a category without window rules, or a full table)
    /// carries only `Retry-After`, when refused; so does a locked key's, since the lockout's
    /// numbers (failures, not requests) would read as a request quota.
    ///
    /// ```
    /// use sluice::{HeaderStyle, Limiter};
    /// let limiter = Limiter::open("global 300/1m")?;
    /// let d = limiter.check_at("client", sluice::Category::GLOBAL, 1_700_000_000_000)?;
    /// assert_eq!(
    ///     limiter.headers(&d, HeaderStyle::XRateLimit),
    ///     vec![
    ///         ("X-RateLimit-Limit", "300".to_string()),
    ///         ("X-RateLimit-Remaining", "299".to_string()),
    ///         ("X-RateLimit-Reset", "1700000060".to_string()),
    ///     ]
    /// );
    /// # Ok::<(), sluice::Error>(())
    /// ```
    pub fn headers(&self, decision: &Decision, style: HeaderStyle) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(4);
        let quota = decision.rule.filter(|_| decision.status != Status::Locked);
        if let Some(rule) = quota.and_then(|r| self.policy().rules.get(r)) {
            match style {
                HeaderStyle::XRateLimit => {
                    out.push(("X-RateLimit-Limit", decision.limit.to_string()));
                    out.push(("X-RateLimit-Remaining", decision.remaining.to_string()));
                    out.push(("X-RateLimit-Reset", decision.reset.to_string()));
                }
                HeaderStyle::Ietf => {
                    out.push((
                        "RateLimit-Policy",
                        format!(
                            "\"{}\";q={};w={}",
                            rule.name,
                            decision.limit,
                            ceil_secs(decision.window_ms)
                        ),
                    ));
                    out.push((
                        "RateLimit",
                        format!(
                            "\"{}\";r={};t={}",
                            rule.name, decision.remaining, decision.reset_after
                        ),
                    ));
                }
            }
        }
        if !decision.allowed {
            out.push(("Retry-After", decision.retry_after.to_string()));
        }
        out
    }

    /// The same fields as one block of `Name: value\r\n` lines, appended to `out`.
    pub fn write_headers(&self, decision: &Decision, style: HeaderStyle, out: &mut String) {
        for (name, value) in self.headers(decision, style) {
            let _ = write!(out, "{name}: {value}\r\n");
        }
    }
}
