//! Response headers from a decision (docs/semantics.md): the common `X-RateLimit-*` trio and the IETF
//! draft `RateLimit-Policy` / `RateLimit` fields. Both add `Retry-After` when refused.
//!
//! Hosts format headers on every response, so the block is written without `fmt` and without
//! allocating: the length of each number is counted first (a multiply and a comparison), so
//! the whole block's length is known before a byte is written, and then constant text and
//! numbers (two digits at a time) are written straight in. [`Limiter::format_headers`] writes
//! into the caller's buffer; [`Limiter::write_headers`] and [`Limiter::headers`] are built on
//! it, so all three agree. A property test checks the block against `format!`.

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

/// The field names a block can hold, for [`Limiter::headers`] to give back as `&'static str`.
const FIELD_NAMES: [&str; 6] = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
    "Retry-After",
];

// The constant text of each style, between the numbers (and the rule's name).
const X_LIMIT: &[u8; 19] = b"X-RateLimit-Limit: ";
const X_REMAINING: &[u8; 25] = b"\r\nX-RateLimit-Remaining: ";
const X_RESET: &[u8; 21] = b"\r\nX-RateLimit-Reset: ";
const IETF_POLICY: &[u8; 19] = b"RateLimit-Policy: \"";
const IETF_Q: &[u8; 4] = b"\";q=";
const IETF_W: &[u8; 3] = b";w=";
const IETF_LIMIT: &[u8; 14] = b"\r\nRateLimit: \"";
const IETF_R: &[u8; 4] = b"\";r=";
const IETF_T: &[u8; 3] = b";t=";
const RETRY: &[u8; 13] = b"Retry-After: ";
const CRLF: &[u8; 2] = b"\r\n";

/// "00" to "99", two bytes each.
const PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// 10^i for i in 0..20.
const POW10: [u64; 20] = {
    let mut t = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// Digits of `m` in decimal (1 for 0): log2 scaled by log10(2) ≈ 1233 / 4096 gives the
/// count or one less, and a comparison with a power of ten settles which.
#[inline(always)]
fn digits(m: u64) -> usize {
    let m = m | 1; // 0 has one digit, as 1 does
    let bits = 64 - m.leading_zeros() as usize;
    let t = (bits * 1233) >> 12;
    t + usize::from(m >= POW10[t])
}

/// Bytes of `v` in decimal, with a `-` if negative.
#[inline(always)]
fn decimal_len(v: i64) -> usize {
    digits(v.unsigned_abs()) + usize::from(v < 0)
}

/// Writes `v` in decimal to end just before `end`: eight digits per division of the whole
/// number, split into four independent pairs by 32-bit arithmetic, then the rest (below
/// 10^8) four and two at a time.
///
/// # Safety
/// The [`decimal_len`] of `v` bytes before `end` are writable.
#[inline(always)]
unsafe fn write_decimal(mut end: *mut u8, v: i64) {
    // SAFETY (each write below): the number has as many digits as are written before `end`.
    let pair = |end: *mut u8, p: u32| unsafe {
        // `p` < 100, so both bytes are in PAIRS.
        std::ptr::copy_nonoverlapping(PAIRS.as_ptr().add(p as usize * 2), end.sub(2), 2);
    };
    let four = |end: *mut u8, f: u32| {
        pair(end, f % 100);
        pair(unsafe { end.sub(2) }, f / 100);
    };
    let mut m = v.unsigned_abs();
    unsafe {
        while m >= 100_000_000 {
            let eight = (m % 100_000_000) as u32;
            m /= 100_000_000;
            four(end, eight % 10_000);
            four(end.sub(4), eight / 10_000);
            end = end.sub(8);
        }
        let mut m = m as u32;
        if m >= 10_000 {
            four(end, m % 10_000);
            m /= 10_000;
            end = end.sub(4);
        }
        if m >= 100 {
            pair(end, m % 100);
            m /= 100;
            end = end.sub(2);
        }
        if m >= 10 {
            pair(end, m);
            end = end.sub(2);
        } else {
            end = end.sub(1);
            *end = b'0' + m as u8;
        }
        if v < 0 {
            *end.sub(1) = b'-';
        }
    }
}

/// Copies `src` to `dst`. A category name is a few bytes, and a call of `memcpy` costs more
/// than copying them: up to 16 bytes are copied inline by two reads that overlap (each within
/// `src`) and two writes (each within the destination's `src.len()` bytes). For constant text
/// the length is known and only one branch remains.
///
/// # Safety
/// `src.len()` bytes at `dst` are writable and do not overlap `src`.
#[inline(always)]
unsafe fn copy_short(src: &[u8], dst: *mut u8) {
    let n = src.len();
    let s = src.as_ptr();
    // SAFETY: every read is within `src` and every write within `dst[..n]`, by the bounds of
    // each branch.
    unsafe {
        if n > 16 {
            std::ptr::copy_nonoverlapping(s, dst, n);
        } else if n >= 8 {
            let (a, b) = (
                s.cast::<u64>().read_unaligned(),
                s.add(n - 8).cast::<u64>().read_unaligned(),
            );
            dst.cast::<u64>().write_unaligned(a);
            dst.add(n - 8).cast::<u64>().write_unaligned(b);
        } else if n >= 4 {
            let (a, b) = (
                s.cast::<u32>().read_unaligned(),
                s.add(n - 4).cast::<u32>().read_unaligned(),
            );
            dst.cast::<u32>().write_unaligned(a);
            dst.add(n - 4).cast::<u32>().write_unaligned(b);
        } else if n > 0 {
            let (a, b, c) = (*s, *s.add(n / 2), *s.add(n - 1));
            *dst = a;
            *dst.add(n / 2) = b;
            *dst.add(n - 1) = c;
        }
    }
}

/// Writes forward into a buffer whose length has been checked to hold everything written.
struct Cursor {
    out: *mut u8,
    /// Bytes writable at `out` (for debug checks).
    cap: usize,
    at: usize,
}

impl Cursor {
    /// Appends `t`.
    ///
    /// # Safety
    /// `t.len()` bytes from `at` are within `out`.
    #[inline(always)]
    unsafe fn text(&mut self, t: &[u8]) {
        debug_assert!(self.at + t.len() <= self.cap);
        // SAFETY: by the caller, the bytes written are within `out`.
        unsafe { copy_short(t, self.out.add(self.at)) };
        self.at += t.len();
    }

    /// Appends `v`, whose [`decimal_len`] is `n`.
    ///
    /// # Safety
    /// `n` bytes from `at` are within `out`.
    #[inline(always)]
    unsafe fn int(&mut self, v: i64, n: usize) {
        debug_assert!(self.at + n <= self.cap && n == decimal_len(v));
        self.at += n;
        // SAFETY: by the caller; the `n` bytes before `at` are the number's.
        unsafe { write_decimal(self.out.add(self.at), v) };
    }
}

impl Limiter {
    /// Writes the header fields of `decision` as one block of `Name: value\r\n` lines at the
    /// start of `out`, if the block fits, and returns its length in bytes either way: when
    /// the length is more than `out.len()`, nothing at all was written (never a partial
    /// block; call again with a buffer at least that long). Allocates nothing. The fields are
    /// those of [`Limiter::headers`], in the same order.
    ///
    /// ```
    /// use sluice::{HeaderStyle, Limiter};
    /// let limiter = Limiter::open("global 300/1m")?;
    /// let d = limiter.check_at("client", sluice::Category::GLOBAL, 1_700_000_000_000)?;
    /// let mut buf = [0u8; 256];
    /// let n = limiter.format_headers(&d, HeaderStyle::XRateLimit, &mut buf);
    /// assert_eq!(
    ///     &buf[..n],
    ///     b"X-RateLimit-Limit: 300\r\nX-RateLimit-Remaining: 299\r\nX-RateLimit-Reset: 1700000060\r\n"
    /// );
    /// assert_eq!(limiter.format_headers(&d, HeaderStyle::XRateLimit, &mut buf[..10]), n);
    /// # Ok::<(), sluice::Error>(())
    /// ```
    #[inline(always)]
    pub fn format_headers(&self, decision: &Decision, style: HeaderStyle, out: &mut [u8]) -> usize {
        // SAFETY: `out.len()` bytes at `out` are writable, and nothing else refers to them.
        unsafe { self.format_headers_raw(decision, style, out.as_mut_ptr(), out.len()) }
    }

    /// [`Limiter::format_headers`] into `cap` bytes at `out`, which need not be initialised
    /// (a C caller's buffer): the block is written only if its length, returned either way,
    /// is at most `cap`; nothing at `out` is read.
    ///
    /// # Safety
    /// `out` is valid for writes of `cap` bytes (any pointer when `cap` is 0), and no
    /// reference to those bytes is used during the call.
    #[inline(always)]
    pub(crate) unsafe fn format_headers_raw(
        &self,
        decision: &Decision,
        style: HeaderStyle,
        out: *mut u8,
        cap: usize,
    ) -> usize {
        let d = decision;
        // A locked key's numbers count failures, not requests: they would read as a quota.
        let quota = d.rule.filter(|_| d.status != Status::Locked);
        let rule = quota.and_then(|r| self.policy().rules.get(r));
        let retry = i64::from(d.retry_after);
        let retry_len = if d.allowed {
            0
        } else {
            RETRY.len() + decimal_len(retry) + CRLF.len()
        };
        let (limit, remaining) = (i64::from(d.limit), i64::from(d.remaining));
        let mut w = match (rule, style) {
            (None, _) => {
                if retry_len > cap {
                    return retry_len;
                }
                Cursor { out, cap, at: 0 }
            }
            (Some(_), HeaderStyle::XRateLimit) => {
                let n = [
                    decimal_len(limit),
                    decimal_len(remaining),
                    decimal_len(d.reset),
                ];
                let len = X_LIMIT.len() + X_REMAINING.len() + X_RESET.len() + CRLF.len();
                let len = len + n[0] + n[1] + n[2] + retry_len;
                if len > cap {
                    return len;
                }
                let mut w = Cursor { out, cap, at: 0 };
                // SAFETY: `len`, the sum of what is written here and below, is at most `cap`.
                unsafe {
                    w.text(X_LIMIT);
                    w.int(limit, n[0]);
                    w.text(X_REMAINING);
                    w.int(remaining, n[1]);
                    w.text(X_RESET);
                    w.int(d.reset, n[2]);
                    w.text(CRLF);
                }
                w
            }
            (Some(rule), HeaderStyle::Ietf) => {
                let name = rule.name.as_bytes();
                let (window, reset_after) = (ceil_secs(d.window_ms), i64::from(d.reset_after));
                let n = [
                    decimal_len(limit),
                    decimal_len(window),
                    decimal_len(remaining),
                    decimal_len(reset_after),
                ];
                let len = IETF_POLICY.len() + IETF_Q.len() + IETF_W.len() + IETF_LIMIT.len();
                let len = len + IETF_R.len() + IETF_T.len() + CRLF.len() + 2 * name.len();
                let len = len + n[0] + n[1] + n[2] + n[3] + retry_len;
                if len > cap {
                    return len;
                }
                let mut w = Cursor { out, cap, at: 0 };
                // SAFETY: `len`, the sum of what is written here and below, is at most `cap`.
                unsafe {
                    w.text(IETF_POLICY);
                    w.text(name);
                    w.text(IETF_Q);
                    w.int(limit, n[0]);
                    w.text(IETF_W);
                    w.int(window, n[1]);
                    w.text(IETF_LIMIT);
                    w.text(name);
                    w.text(IETF_R);
                    w.int(remaining, n[2]);
                    w.text(IETF_T);
                    w.int(reset_after, n[3]);
                    w.text(CRLF);
                }
                w
            }
        };
        if !d.allowed {
            // SAFETY: the last `retry_len` bytes of the length checked above.
            unsafe {
                w.text(RETRY);
                w.int(retry, retry_len - RETRY.len() - CRLF.len());
                w.text(CRLF);
            }
        }
        w.at
    }

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
        let mut block = String::new();
        self.write_headers(decision, style, &mut block);
        block
            .split_terminator("\r\n")
            .filter_map(|line| {
                let (name, value) = line.split_once(": ")?;
                let name = FIELD_NAMES.iter().find(|n| **n == name)?;
                Some((*name, value.to_string()))
            })
            .collect()
    }

    /// The same fields as one block of `Name: value\r\n` lines, appended to `out`.
    pub fn write_headers(&self, decision: &Decision, style: HeaderStyle, out: &mut String) {
        let mut block = [0u8; 256];
        let n = self.format_headers(decision, style, &mut block);
        let mut long = Vec::new();
        let bytes = match block.get(..n) {
            Some(b) => b,
            None => {
                // Only for category names of a hundred bytes or more.
                long.resize(n, 0);
                self.format_headers(decision, style, &mut long);
                &long
            }
        };
        // The block is ASCII (constant text, decimal digits and a category name of lowercase
        // letters, digits, `-` and `_`): UTF-8 as it is, and every byte a char if not.
        match std::str::from_utf8(bytes) {
            Ok(text) => out.push_str(text),
            Err(_) => out.extend(bytes.iter().map(|&b| char::from(b))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Category;

    const T0: i64 = 1_767_225_600_000;

    fn block(l: &Limiter, d: &Decision, style: HeaderStyle) -> String {
        let mut s = String::from("kept|");
        l.write_headers(d, style, &mut s);
        let rest = s
            .strip_prefix("kept|")
            .expect("write_headers appends")
            .to_string();
        // format_headers writes the same bytes, and nothing into a buffer one byte short.
        let mut buf = vec![b'#'; rest.len() + 8];
        assert_eq!(l.format_headers(d, style, &mut buf), rest.len());
        assert_eq!(&buf[..rest.len()], rest.as_bytes());
        assert!(buf[rest.len()..].iter().all(|&b| b == b'#'));
        let mut short = vec![b'#'; rest.len().saturating_sub(1)];
        assert_eq!(l.format_headers(d, style, &mut short), rest.len());
        assert!(short.iter().all(|&b| b == b'#'), "partial block written");
        // headers() gives the same fields, line by line.
        let joined: String = l
            .headers(d, style)
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect();
        assert_eq!(joined, rest);
        rest
    }

    #[test]
    fn decimals_of_every_width_and_sign() {
        let mut cases = vec![0i64, 1, -1, i64::MAX, i64::MIN, i64::MIN + 1];
        let mut p = 1i64;
        for _ in 0..19 {
            cases.extend([p - 1, p, p + 1, -p, -p + 1, 7 * p / 3]);
            p = p.saturating_mul(10);
        }
        for v in cases {
            let n = decimal_len(v);
            assert_eq!(n, v.to_string().len(), "{v}");
            let mut out = vec![b'#'; n + 2];
            // SAFETY: n + 2 bytes: the number in the middle.
            unsafe { write_decimal(out.as_mut_ptr().add(n + 1), v) };
            assert_eq!((out[0], out[n + 1]), (b'#', b'#'), "{v}");
            let out = &out[1..n + 1];
            assert_eq!(std::str::from_utf8(out).unwrap(), v.to_string(), "{v}");
        }
    }

    #[test]
    fn short_copies_of_every_length() {
        let src: Vec<u8> = (1..=40).collect();
        for n in 0..=40 {
            let mut out = vec![0u8; n + 2];
            // SAFETY: n + 2 bytes; the copy goes to the n in the middle.
            unsafe { copy_short(&src[..n], out.as_mut_ptr().add(1)) };
            assert_eq!(&out[1..n + 1], &src[..n], "n {n}");
            assert_eq!((out[0], out[n + 1]), (0, 0), "n {n}: wrote outside");
        }
    }

    #[test]
    fn x_ratelimit_admitted_and_refused() {
        let l = Limiter::open("global 2/1m").unwrap();
        let d = l.check_at("k", Category::GLOBAL, T0).unwrap();
        assert_eq!(
            block(&l, &d, HeaderStyle::XRateLimit),
            "X-RateLimit-Limit: 2\r\nX-RateLimit-Remaining: 1\r\nX-RateLimit-Reset: 1767225660\r\n"
        );
        l.check_at("k", Category::GLOBAL, T0 + 1).unwrap();
        let d = l.check_at("k", Category::GLOBAL, T0 + 20_500).unwrap();
        assert!(!d.allowed);
        assert_eq!(
            block(&l, &d, HeaderStyle::XRateLimit),
            "X-RateLimit-Limit: 2\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: 1767225660\r\n\
             Retry-After: 40\r\n"
        );
    }

    #[test]
    fn ietf_names_the_rules_category() {
        let l = Limiter::open("global 300/1m\nmedia-upload_2 3/90s").unwrap();
        let c = l.category("media-upload_2").unwrap();
        let d = l.check_at("k", c, T0 + 250).unwrap();
        assert_eq!(
            block(&l, &d, HeaderStyle::Ietf),
            "RateLimit-Policy: \"media-upload_2\";q=3;w=90\r\n\
             RateLimit: \"media-upload_2\";r=2;t=90\r\n"
        );
        l.check_at("k", c, T0 + 300).unwrap();
        l.check_at("k", c, T0 + 400).unwrap();
        let d = l.check_at("k", c, T0 + 30_000).unwrap();
        assert_eq!(
            block(&l, &d, HeaderStyle::Ietf),
            "RateLimit-Policy: \"media-upload_2\";q=3;w=90\r\n\
             RateLimit: \"media-upload_2\";r=0;t=61\r\nRetry-After: 61\r\n"
        );
    }

    #[test]
    fn a_long_category_name_is_written_whole() {
        let name = format!("c{}", "-x_9".repeat(60));
        let l = Limiter::open(&format!("{name} 7/2h")).unwrap();
        let c = l.category(&name).unwrap();
        let d = l.check_at("k", c, T0).unwrap();
        let text = block(&l, &d, HeaderStyle::Ietf);
        assert!(text.len() > 256);
        assert_eq!(
            text,
            format!(
                "RateLimit-Policy: \"{name}\";q=7;w=7200\r\nRateLimit: \"{name}\";r=6;t=7200\r\n"
            )
        );
    }

    #[test]
    fn no_rule_or_locked_gives_only_retry_after() {
        let l = Limiter::open("global 5/1s\nauth lockout 1/1m for 10m").unwrap();
        let auth = l.category("auth").unwrap();
        // No rule, admitted: an empty block.
        let d = Decision::default();
        for style in [HeaderStyle::XRateLimit, HeaderStyle::Ietf] {
            assert_eq!(block(&l, &d, style), "");
            let refused = Decision {
                allowed: false,
                status: Status::Full,
                retry_after: 1,
                ..d
            };
            assert_eq!(block(&l, &refused, style), "Retry-After: 1\r\n");
        }
        l.failure_at("k", auth, T0).unwrap();
        let d = l.check_at("k", auth, T0 + 1_000).unwrap();
        assert_eq!(d.status, Status::Locked);
        assert!(d.rule.is_some());
        for style in [HeaderStyle::XRateLimit, HeaderStyle::Ietf] {
            assert_eq!(block(&l, &d, style), "Retry-After: 599\r\n");
        }
    }

    #[test]
    fn extreme_numbers_are_written_whole() {
        let l = Limiter::open("global 5/1s").unwrap();
        let d = Decision {
            allowed: false,
            status: Status::Limited,
            limit: u32::MAX,
            remaining: u32::MAX,
            reset: i64::MIN,
            reset_after: u32::MAX,
            retry_after: u32::MAX,
            rule: Some(0),
            window_ms: i64::MAX,
        };
        assert_eq!(
            block(&l, &d, HeaderStyle::XRateLimit),
            "X-RateLimit-Limit: 4294967295\r\nX-RateLimit-Remaining: 4294967295\r\n\
             X-RateLimit-Reset: -9223372036854775808\r\nRetry-After: 4294967295\r\n"
        );
        assert_eq!(
            block(&l, &d, HeaderStyle::Ietf),
            "RateLimit-Policy: \"global\";q=4294967295;w=9223372036854776\r\n\
             RateLimit: \"global\";r=4294967295;t=4294967295\r\nRetry-After: 4294967295\r\n"
        );
        let d = Decision {
            reset: i64::MAX,
            window_ms: -5,
            limit: 0,
            remaining: 0,
            ..d
        };
        assert_eq!(
            block(&l, &d, HeaderStyle::XRateLimit),
            "X-RateLimit-Limit: 0\r\nX-RateLimit-Remaining: 0\r\n\
             X-RateLimit-Reset: 9223372036854775807\r\nRetry-After: 4294967295\r\n"
        );
        assert_eq!(
            block(&l, &d, HeaderStyle::Ietf),
            "RateLimit-Policy: \"global\";q=0;w=0\r\n\
             RateLimit: \"global\";r=0;t=4294967295\r\nRetry-After: 4294967295\r\n"
        );
        // A rule index past the policy's rules is no rule.
        let d = Decision { rule: Some(7), ..d };
        assert_eq!(
            block(&l, &d, HeaderStyle::Ietf),
            "Retry-After: 4294967295\r\n"
        );
    }

    /// The block as `format!` writes it: the fields docs/semantics.md lists, from the decision alone.
    fn with_fmt(l: &Limiter, d: &Decision, style: HeaderStyle) -> String {
        let mut out = String::new();
        let rule = d.rule.filter(|_| d.status != Status::Locked);
        if let Some(rule) = rule.and_then(|r| l.policy().rules.get(r)) {
            match style {
                HeaderStyle::XRateLimit => {
                    out += &format!("X-RateLimit-Limit: {}\r\n", d.limit);
                    out += &format!("X-RateLimit-Remaining: {}\r\n", d.remaining);
                    out += &format!("X-RateLimit-Reset: {}\r\n", d.reset);
                }
                HeaderStyle::Ietf => {
                    let w = ceil_secs(d.window_ms);
                    out += &format!(
                        "RateLimit-Policy: \"{}\";q={};w={w}\r\n",
                        rule.name, d.limit
                    );
                    out += &format!(
                        "RateLimit: \"{}\";r={};t={}\r\n",
                        rule.name, d.remaining, d.reset_after
                    );
                }
            }
        }
        if !d.allowed {
            out += &format!("Retry-After: {}\r\n", d.retry_after);
        }
        out
    }

    proptest::proptest! {
        /// Any decision, with numbers of any width (a C caller may pass any), formats as
        /// `format!` would, in both styles.
        #[test]
        fn any_decision_formats_as_fmt_would(
            allowed: bool,
            status in 0..5u8,
            limit: u32,
            remaining: u32,
            reset: i64,
            reset_after: u32,
            retry_after: u32,
            rule in proptest::option::of(0..4usize),
            window_ms: i64,
            small in proptest::bool::ANY,
        ) {
            let l = Limiter::open("global 9/1s\nx 3/1m\nmedia-upload_v2 5/1h").unwrap();
            let status = [
                Status::Passed,
                Status::Limited,
                Status::Locked,
                Status::Full,
                Status::DryRunLimited,
            ][status as usize];
            // Half the cases with small numbers, where digit counts change most often.
            let (limit, remaining, reset) = if small {
                (limit % 1000, remaining % 1000, reset % 100_000)
            } else {
                (limit, remaining, reset)
            };
            let d = Decision {
                allowed,
                status,
                limit,
                remaining,
                reset,
                reset_after,
                retry_after,
                rule,
                window_ms,
            };
            for style in [HeaderStyle::XRateLimit, HeaderStyle::Ietf] {
                proptest::prop_assert_eq!(block(&l, &d, style), with_fmt(&l, &d, style));
            }
        }
    }
}
