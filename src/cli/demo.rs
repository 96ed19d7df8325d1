//! `sluice demo`: the default policy against a simulated, deterministic traffic mix.
//!
//! Every request is checked at an explicit simulated time (no wall clock) with a fixed hash
//! secret, and the clients are driven from one merged event timeline, so the output is the
//! same byte for byte on every run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};

use sluice::policy::format_duration_ms;
use sluice::{Category, Decision, HeaderStyle, Limiter, Stats, Status, DEFAULT_POLICY};

/// 2026-01-01T00:00:00Z in Unix milliseconds: simulated time starts here.
pub(crate) const START_MS: i64 = 1_767_225_600_000;
/// The fixed hash secret that makes the run reproducible (never do this in production).
const SECRET: [u64; 2] = [1, 2];

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
/// How long every client but the attacker sends traffic.
const TRAFFIC_MS: i64 = 10 * MINUTE;
/// The attacker is followed a little longer, past the end of its first 15-minute lock, to
/// show the lockout escalating.
const ATTACK_MS: i64 = 16 * MINUTE;

/// What a client does each time the timeline wakes it up.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// A request every 10 s, rotating over `global`, `media` and `analytics`; when refused it
    /// waits `Retry-After` and retries the same request.
    WellBehaved { turn: usize },
    /// A dashboard refreshing 3 analytics panels every second (180/min against 120/1m); it
    /// ignores `Retry-After`.
    Poller,
    /// 50 uploads 100 ms apart at the start of every minute (against write 30/1m).
    Uploader { sent: u32, burst_start: i64 },
    /// 10 requests a second on `global`, ignoring `Retry-After`.
    Hammer,
    /// A login attempt every second: `check` on auth, then `failure` when it was admitted.
    Attacker,
    /// A real user: two typos, then the right password; later logs in again.
    Login { step: usize },
}

/// The login script of [`Behaviour::Login`]: (time offset, password right?).
const LOGIN_SCRIPT: &[(i64, bool)] = &[
    (2 * MINUTE, false),
    (2 * MINUTE + 6 * SECOND, false),
    (2 * MINUTE + 15 * SECOND, true),
    (7 * MINUTE + 30 * SECOND, true),
];

const WELL_BEHAVED_TURNS: [&str; 3] = ["global", "media", "analytics"];

/// Counts for one client in one category.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub category: &'static str,
    pub requests: u32,
    pub admitted: u32,
    /// Refused by a rate rule (or a full table).
    pub limited: u32,
    /// Refused because the key is locked out of the category.
    pub locked: u32,
    pub last: Status,
    /// Simulated times (Unix ms) of the admitted requests, in order.
    pub admitted_at: Vec<i64>,
}

impl Row {
    /// Most requests admitted within any sliding minute `(t - 1m, t]`.
    pub fn peak_per_minute(&self) -> usize {
        let mut peak = 0;
        let mut first = 0;
        for (i, &t) in self.admitted_at.iter().enumerate() {
            while self.admitted_at[first] <= t - MINUTE {
                first += 1;
            }
            peak = peak.max(i + 1 - first);
        }
        peak
    }
}

/// One simulated client and what happened to its requests.
#[derive(Clone, Debug)]
pub(crate) struct ClientReport {
    pub role: &'static str,
    pub key: &'static str,
    /// One row per category, in order of first use.
    pub rows: Vec<Row>,
}

/// A lockout started by a `failure`.
#[derive(Clone, Debug)]
pub(crate) struct LockEvent {
    pub at_ms: i64,
    pub key: &'static str,
    pub category: &'static str,
    pub ban_ms: i64,
}

/// One request's response, with its headers rendered in both styles.
#[derive(Clone, Debug)]
pub(crate) struct Example {
    pub title: String,
    pub status_line: &'static str,
    pub x_ratelimit: Vec<String>,
    pub ietf: Vec<String>,
}

/// Everything the demo prints, computed by [`simulate`].
#[derive(Clone, Debug)]
pub(crate) struct DemoReport {
    /// The policy's directives in canonical form; the first `rules` of them are its rules.
    pub directives: Vec<String>,
    pub rules: usize,
    /// Simulated time of the last event.
    pub end_ms: i64,
    pub clients: Vec<ClientReport>,
    pub lockouts: Vec<LockEvent>,
    pub examples: Vec<Example>,
    pub stats: Stats,
}

/// Which clients' requests are shown as header examples.
const UPLOADER: usize = 2;
const ATTACKER: usize = 4;

struct Client {
    report: ClientReport,
    start_ms: i64,
    end_ms: i64,
    behaviour: Behaviour,
}

struct Sim {
    limiter: Limiter,
    categories: Vec<(&'static str, Category)>,
    lockouts: Vec<LockEvent>,
    admitted_example: Option<Example>,
    limited_example: Option<Example>,
    locked_example: Option<Example>,
}

impl Sim {
    fn category(&self, name: &str) -> Category {
        self.categories
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, c)| c)
            .expect("category resolved at start")
    }

    fn example(&self, title: String, d: &Decision) -> Example {
        let render = |style| {
            self.limiter
                .headers(d, style)
                .into_iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect()
        };
        Example {
            title,
            status_line: if d.allowed {
                "HTTP/1.1 200 OK"
            } else {
                "HTTP/1.1 429 Too Many Requests"
            },
            x_ratelimit: render(HeaderStyle::XRateLimit),
            ietf: render(HeaderStyle::Ietf),
        }
    }

    /// `check` a request of client `who` and record the decision.
    fn check(
        &mut self,
        who: usize,
        client: &mut ClientReport,
        category: &'static str,
        now: i64,
    ) -> Result<Decision, sluice::Error> {
        let d = self
            .limiter
            .check_at(client.key, self.category(category), now)?;
        let row = match client.rows.iter().position(|r| r.category == category) {
            Some(i) => &mut client.rows[i],
            None => {
                client.rows.push(Row {
                    category,
                    requests: 0,
                    admitted: 0,
                    limited: 0,
                    locked: 0,
                    last: d.status,
                    admitted_at: Vec::new(),
                });
                client.rows.last_mut().expect("just pushed")
            }
        };
        row.requests += 1;
        row.last = d.status;
        if d.allowed {
            row.admitted += 1;
            row.admitted_at.push(now);
        } else if d.status == Status::Locked {
            row.locked += 1;
        } else {
            row.limited += 1;
        }
        let what = format!(
            "{} {}, {} at {}",
            client.role,
            client.key,
            category,
            clock(now)
        );
        if who == UPLOADER && d.allowed && self.admitted_example.is_none() {
            self.admitted_example = Some(self.example(format!("admitted: {what}"), &d));
        }
        if who == UPLOADER && d.status == Status::Limited && self.limited_example.is_none() {
            self.limited_example = Some(self.example(format!("limited:  {what}"), &d));
        }
        if who == ATTACKER && d.status == Status::Locked && self.locked_example.is_none() {
            self.locked_example = Some(self.example(format!("locked:   {what}"), &d));
        }
        Ok(d)
    }

    /// A wrong password after an admitted check; notes the lockout it may start.
    fn failure(
        &mut self,
        client: &ClientReport,
        category: &'static str,
        now: i64,
    ) -> Result<(), sluice::Error> {
        let d = self
            .limiter
            .failure_at(client.key, self.category(category), now)?;
        if d.status == Status::Locked {
            self.lockouts.push(LockEvent {
                at_ms: now,
                key: client.key,
                category,
                ban_ms: i64::from(d.retry_after) * SECOND,
            });
        }
        Ok(())
    }

    /// Let client `who` act at `now`; returns when it next wants to act.
    fn step(&mut self, who: usize, client: &mut Client, now: i64) -> Result<i64, sluice::Error> {
        let report = &mut client.report;
        let next = match &mut client.behaviour {
            Behaviour::WellBehaved { turn } => {
                let d = self.check(who, report, WELL_BEHAVED_TURNS[*turn], now)?;
                if d.allowed {
                    *turn = (*turn + 1) % WELL_BEHAVED_TURNS.len();
                    now + 10 * SECOND
                } else {
                    now + i64::from(d.retry_after) * SECOND
                }
            }
            Behaviour::Poller => {
                for _ in 0..3 {
                    self.check(who, report, "analytics", now)?;
                }
                now + SECOND
            }
            Behaviour::Uploader { sent, burst_start } => {
                if *sent == 0 {
                    *burst_start = now;
                }
                self.check(who, report, "write", now)?;
                *sent += 1;
                if *sent < 50 {
                    now + 100
                } else {
                    *sent = 0;
                    *burst_start + MINUTE
                }
            }
            Behaviour::Hammer => {
                self.check(who, report, "global", now)?;
                now + 100
            }
            Behaviour::Attacker => {
                if self.check(who, report, "auth", now)?.allowed {
                    self.failure(report, "auth", now)?;
                }
                now + SECOND
            }
            Behaviour::Login { step } => {
                let (_, right) = LOGIN_SCRIPT[*step];
                if self.check(who, report, "auth", now)?.allowed {
                    if right {
                        self.limiter
                            .success_at(report.key, self.category("auth"), now)?;
                    } else {
                        self.failure(report, "auth", now)?;
                    }
                }
                *step += 1;
                match LOGIN_SCRIPT.get(*step) {
                    Some(&(at, _)) => START_MS + at,
                    None => i64::MAX,
                }
            }
        };
        Ok(next)
    }
}

/// Run the simulation: every client from one merged timeline, in time order (ties in client
/// order).
pub(crate) fn simulate() -> Result<DemoReport, sluice::Error> {
    let limiter = Limiter::builder(DEFAULT_POLICY).secret(SECRET).open()?;
    let mut categories = Vec::new();
    for name in ["global", "media", "analytics", "write", "auth"] {
        categories.push((name, limiter.category(name)?));
    }
    let client = |role, key, start_ms, end_ms, behaviour| Client {
        report: ClientReport {
            role,
            key,
            rows: Vec::new(),
        },
        start_ms: START_MS + start_ms,
        end_ms: START_MS + end_ms,
        behaviour,
    };
    let mut clients = vec![
        client(
            "well-behaved",
            "198.51.100.10",
            2 * SECOND,
            TRAFFIC_MS,
            Behaviour::WellBehaved { turn: 0 },
        ),
        client(
            "poller",
            "198.51.100.20",
            SECOND,
            TRAFFIC_MS,
            Behaviour::Poller,
        ),
        client(
            "uploader",
            "203.0.113.30",
            30 * SECOND,
            TRAFFIC_MS,
            Behaviour::Uploader {
                sent: 0,
                burst_start: 0,
            },
        ),
        client("hammer", "203.0.113.40", 0, TRAFFIC_MS, Behaviour::Hammer),
        client(
            "attacker",
            "192.0.2.66",
            10 * SECOND,
            ATTACK_MS,
            Behaviour::Attacker,
        ),
        client(
            "user login",
            "198.51.100.77",
            LOGIN_SCRIPT[0].0,
            TRAFFIC_MS,
            Behaviour::Login { step: 0 },
        ),
    ];
    debug_assert_eq!(clients[UPLOADER].report.role, "uploader");
    debug_assert_eq!(clients[ATTACKER].report.role, "attacker");

    let mut sim = Sim {
        limiter,
        categories,
        lockouts: Vec::new(),
        admitted_example: None,
        limited_example: None,
        locked_example: None,
    };
    let mut timeline: BinaryHeap<Reverse<(i64, usize)>> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| Reverse((c.start_ms, i)))
        .collect();
    let mut end_ms = START_MS;
    while let Some(Reverse((now, who))) = timeline.pop() {
        end_ms = now;
        let next = sim.step(who, &mut clients[who], now)?;
        if next < clients[who].end_ms {
            timeline.push(Reverse((next, who)));
        }
    }

    let policy = sim.limiter.policy();
    let directives = policy.canonical().lines().map(str::to_owned).collect();
    let rules = policy.rules.len();
    let stats = sim.limiter.stats_at(end_ms);
    let examples = [
        sim.admitted_example,
        sim.limited_example,
        sim.locked_example,
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(DemoReport {
        directives,
        rules,
        end_ms,
        clients: clients.into_iter().map(|c| c.report).collect(),
        lockouts: sim.lockouts,
        examples,
        stats,
    })
}

/// Simulated wall-clock time of day, `HH:MM:SS` (UTC on 2026-01-01).
fn clock(ms: i64) -> String {
    let s = (ms - START_MS).div_euclid(SECOND);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Run the demo and print its report to `out`.
pub fn run(out: &mut impl Write) -> io::Result<()> {
    let report = simulate().map_err(io::Error::other)?;
    print_report(&report, out)
}

fn print_report(r: &DemoReport, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "sluice demo: the default policy against {} simulated clients, from 2026-01-01 {} UTC",
        r.clients.len(),
        clock(START_MS),
    )?;
    // The policy, wrapped.
    let mut line = String::from("policy:");
    for (i, directive) in r.directives.iter().enumerate() {
        let piece = if i + 1 < r.directives.len() {
            format!(" {directive};")
        } else {
            format!(" {directive}")
        };
        if line.len() + piece.len() > 96 {
            writeln!(out, "{line}")?;
            line = " ".repeat("policy:".len());
        }
        line.push_str(&piece);
    }
    writeln!(out, "{line}")?;
    writeln!(
        out,
        "(traffic for {}; the attacker is followed to {} to show its lockout escalating)",
        format_duration_ms(TRAFFIC_MS),
        clock(START_MS + ATTACK_MS)
    )?;
    writeln!(out)?;

    // The table.
    let client_w = r
        .clients
        .iter()
        .map(|c| c.role.len() + c.key.len() + 1)
        .max()
        .unwrap_or(0)
        .max("client".len());
    writeln!(
        out,
        "{:<client_w$}  {:<9}  {:>8}  {:>8}  {:>7}  {:>6}  {:>7}  last",
        "client", "category", "requests", "admitted", "limited", "locked", "peak/1m"
    )?;
    writeln!(
        out,
        "{}",
        "-".repeat(client_w + 2 + 9 + 2 + 8 + 2 + 8 + 2 + 7 + 2 + 6 + 2 + 7 + 2 + 7)
    )?;
    for c in &r.clients {
        for (i, row) in c.rows.iter().enumerate() {
            let name = if i == 0 {
                format!("{} {}", c.role, c.key)
            } else {
                String::new()
            };
            writeln!(
                out,
                "{:<client_w$}  {:<9}  {:>8}  {:>8}  {:>7}  {:>6}  {:>7}  {}",
                name,
                row.category,
                row.requests,
                row.admitted,
                row.limited,
                row.locked,
                row.peak_per_minute(),
                row.last.as_str()
            )?;
        }
    }
    writeln!(out)?;

    // Lockouts.
    writeln!(out, "Lockouts (started by failure_at)")?;
    for (i, l) in r.lockouts.iter().enumerate() {
        let nth = r.lockouts[..=i].iter().filter(|p| p.key == l.key).count();
        writeln!(
            out,
            "  {}  {} {}: lockout #{nth}, locked for {} (until {})",
            clock(l.at_ms),
            l.key,
            l.category,
            format_duration_ms(l.ban_ms),
            clock(l.at_ms + l.ban_ms)
        )?;
    }
    writeln!(out)?;

    // Header examples, the two styles side by side.
    writeln!(
        out,
        "Example response headers (left: HeaderStyle::XRateLimit, right: HeaderStyle::Ietf)"
    )?;
    let left_w = r
        .examples
        .iter()
        .flat_map(|e| &e.x_ratelimit)
        .map(String::len)
        .max()
        .unwrap_or(0);
    for e in &r.examples {
        writeln!(out, "  {}", e.title)?;
        writeln!(out, "    {}", e.status_line)?;
        let n = e.x_ratelimit.len().max(e.ietf.len());
        for i in 0..n {
            let left = e.x_ratelimit.get(i).map_or("", String::as_str);
            let right = e.ietf.get(i).map_or("", String::as_str);
            writeln!(
                out,
                "    {}",
                format!("{left:<left_w$}    {right}").trim_end()
            )?;
        }
    }
    writeln!(out)?;

    // Stats.
    let s = &r.stats;
    writeln!(
        out,
        "Stats at {}: {} live keys of {}, {} locked, {} evictions, {} bytes per key",
        clock(r.end_ms),
        s.live_keys,
        s.capacity,
        s.locked_keys,
        s.evictions,
        s.bytes_per_key
    )?;
    let rule_w = r.directives[..r.rules]
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0);
    writeln!(
        out,
        "  {:<rule_w$}  {:>7}  {:>7}  {:>6}  {:>8}",
        "rule", "passed", "limited", "locked", "lockouts"
    )?;
    for (directive, rs) in r.directives.iter().zip(&s.rules) {
        writeln!(
            out,
            "  {:<rule_w$}  {:>7}  {:>7}  {:>6}  {:>8}",
            directive, rs.passed, rs.limited, rs.locked, rs.lockouts
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> DemoReport {
        simulate().expect("the demo runs")
    }

    fn client<'a>(r: &'a DemoReport, role: &str) -> &'a ClientReport {
        r.clients
            .iter()
            .find(|c| c.role == role)
            .unwrap_or_else(|| panic!("no client {role:?}"))
    }

    fn row<'a>(r: &'a DemoReport, role: &str, category: &str) -> &'a Row {
        client(r, role)
            .rows
            .iter()
            .find(|row| row.category == category)
            .unwrap_or_else(|| panic!("no {category} row for {role}"))
    }

    fn output() -> Vec<u8> {
        let mut out = Vec::new();
        run(&mut out).expect("the demo prints");
        out
    }

    #[test]
    fn poller_is_limited_on_analytics_but_never_over_the_limit() {
        let r = report();
        let row = row(&r, "poller", "analytics");
        assert!(row.limited > 0, "{row:?}");
        assert!(row.admitted > 0, "{row:?}");
        assert_eq!(row.peak_per_minute(), 120);
        assert_eq!(row.requests, row.admitted + row.limited);
    }

    #[test]
    fn uploader_gets_30_uploads_per_minute() {
        let r = report();
        let row = row(&r, "uploader", "write");
        assert_eq!(row.requests, 10 * 50);
        assert_eq!(row.admitted, 10 * 30);
        assert_eq!(row.limited, 10 * 20);
        assert_eq!(row.peak_per_minute(), 30);
    }

    #[test]
    fn hammer_never_gets_more_than_300_a_minute() {
        let r = report();
        let row = row(&r, "hammer", "global");
        assert!(row.limited > 0, "{row:?}");
        assert_eq!(row.peak_per_minute(), 300);
    }

    #[test]
    fn attacker_is_locked_out_and_the_lockout_escalates() {
        let r = report();
        let row = row(&r, "attacker", "auth");
        assert!(row.locked > 0, "{row:?}");
        assert_eq!(row.last, Status::Locked);
        // Admitted checks within any sliding minute: at most auth 10/1m (in fact the lockout
        // stops it after 5).
        for (i, &t) in row.admitted_at.iter().enumerate() {
            let in_window = row.admitted_at[..=i]
                .iter()
                .filter(|&&u| u > t - MINUTE)
                .count();
            assert!(
                in_window <= 10,
                "{in_window} admitted in the minute up to {t}"
            );
        }
        assert_eq!(row.admitted, 10, "5 failures before each of two lockouts");
        let bans: Vec<i64> = r
            .lockouts
            .iter()
            .filter(|l| l.key == "192.0.2.66")
            .map(|l| l.ban_ms)
            .collect();
        assert_eq!(bans, vec![15 * MINUTE, 30 * MINUTE]);
        let auth = r
            .directives
            .iter()
            .position(|d| d.starts_with("auth lockout"));
        let rs = &r.stats.rules[auth.expect("auth lockout rule")];
        assert_eq!(rs.lockouts, 2);
        assert_eq!(u64::from(row.locked), rs.locked);
    }

    #[test]
    fn well_behaved_clients_are_never_refused() {
        let r = report();
        for role in ["well-behaved", "user login"] {
            let c = client(&r, role);
            assert!(!c.rows.is_empty());
            for row in &c.rows {
                assert_eq!((row.limited, row.locked), (0, 0), "{role}: {row:?}");
                assert_eq!(row.admitted, row.requests);
            }
        }
        assert_eq!(client(&r, "well-behaved").rows.len(), 3);
        assert!(r.lockouts.iter().all(|l| l.key == "192.0.2.66"));
    }

    #[test]
    fn stats_agree_with_the_clients() {
        let r = report();
        assert_eq!(r.stats.live_keys, r.clients.len() as u64);
        assert_eq!(r.stats.locked_keys, 1);
        let limited: u32 = r
            .clients
            .iter()
            .flat_map(|c| &c.rows)
            .map(|row| row.limited)
            .sum();
        let rule_limited: u64 = r.stats.rules.iter().map(|rs| rs.limited).sum();
        // A refusal counts against every rule that refused it, so at least one each.
        assert!(rule_limited >= u64::from(limited));
    }

    #[test]
    fn output_is_deterministic_and_shows_429() {
        let first = output();
        assert_eq!(first, output());
        let text = String::from_utf8(first).expect("UTF-8");
        assert!(text.is_ascii());
        assert!(text.contains("HTTP/1.1 429 Too Many Requests"));
        assert!(text.contains("HTTP/1.1 200 OK"));
        assert!(text.contains("Retry-After: "));
        assert!(text.contains("RateLimit-Policy: "));
        assert!(text.lines().count() <= 60, "{} lines", text.lines().count());
    }

    #[test]
    fn header_examples_cover_admitted_limited_and_locked() {
        let r = report();
        let titles: Vec<&str> = r
            .examples
            .iter()
            .map(|e| e.title.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(titles, ["admitted", "limited", "locked"]);
        let admitted = &r.examples[0];
        assert!(admitted
            .x_ratelimit
            .iter()
            .all(|h| !h.starts_with("Retry-After")));
        for e in &r.examples[1..] {
            assert!(e.status_line.contains("429"));
            assert!(e.x_ratelimit.iter().any(|h| h.starts_with("Retry-After: ")));
            assert!(e.ietf.iter().any(|h| h.starts_with("Retry-After: ")));
        }
    }
}
