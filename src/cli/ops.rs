//! The operator's commands of the `sluice` tool: `stat`, `check`, `peek`, `unlock` on a table
//! file. Each returns its exit status; output goes to the writer given.
//!
//! Exit status, for scripts: 0 allowed / done; 1 refused (check, peek) or not locked (unlock);
//! 2 usage (including an unknown category); 3 the table file cannot be opened; 4 unlock of a
//! key the table holds nothing for.

use std::io::{self, Write};
use std::path::Path;

use sluice::{Decision, Error, Limiter, LimiterBuilder, Stats, Unlock};

pub const EXIT_OK: u8 = 0;
pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_TABLE: u8 = 3;
pub const EXIT_NO_KEY: u8 = 4;

/// A command's failure: its message (for stderr) and exit status.
pub struct Failure(pub String, pub u8);

/// Attach to the table at `path` with the policy stored in it. `stat` and `peek` attach
/// read-only (so read permission on the file is enough, and they cannot change it); `check`
/// and `unlock` record, so they need read and write permission.
fn attach(path: &Path, read_only: bool) -> Result<Limiter, Failure> {
    LimiterBuilder::new()
        .path(path)
        .read_only(read_only)
        .open()
        .map_err(|e| Failure(e.to_string(), EXIT_TABLE))
}

fn category(l: &Limiter, name: &str) -> Result<sluice::Category, Failure> {
    l.category(name)
        .map_err(|e| Failure(format!("{e} (in the policy of {})", path_of(l)), EXIT_USAGE))
}

fn path_of(l: &Limiter) -> String {
    l.path()
        .map_or_else(String::new, |p| p.display().to_string())
}

fn request_error(e: Error) -> Failure {
    match e {
        Error::NoLockout { .. } | Error::EmptyKey | Error::KeyTooLong(_) => {
            Failure(e.to_string(), EXIT_USAGE)
        }
        e => Failure(e.to_string(), EXIT_TABLE),
    }
}

/// JSON string literal.
fn js(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One text line per rule, in policy order (the canonical spelling).
fn rule_texts(l: &Limiter) -> Vec<String> {
    let canonical = l.policy().canonical();
    canonical
        .lines()
        .take(l.policy().rules.len())
        .map(str::to_owned)
        .collect()
}

pub fn stat(path: &Path, json: bool, out: &mut dyn Write) -> Result<u8, Failure> {
    let l = attach(path, true)?;
    let st: Stats = l.stats();
    let rules = rule_texts(&l);
    let table_bytes = l.table_bytes();
    let w = |e: io::Error| Failure(e.to_string(), EXIT_TABLE);
    if json {
        let rule_objs: Vec<String> = st
            .rules
            .iter()
            .zip(&rules)
            .zip(&l.policy().rules)
            .map(|((r, text), rule)| {
                format!(
                    "{{\"rule\":{},\"category\":{},\"passed\":{},\"limited\":{},\"dry_run_limited\":{},\"locked\":{},\"lockouts\":{}}}",
                    js(text),
                    js(&rule.name),
                    r.passed,
                    r.limited,
                    r.dry_run_limited,
                    r.locked,
                    r.lockouts
                )
            })
            .collect();
        writeln!(
            out,
            "{{\"path\":{},\"capacity\":{},\"live_keys\":{},\"locked_keys\":{},\"installing\":{},\"evictions\":{},\"reclaimed\":{},\"full\":{},\"bytes_per_key\":{},\"table_bytes\":{},\"rules\":[{}]}}",
            js(&path.to_string_lossy()),
            st.capacity,
            st.live_keys,
            st.locked_keys,
            st.installing,
            st.evictions,
            st.reclaimed,
            st.full,
            st.bytes_per_key,
            table_bytes,
            rule_objs.join(",")
        )
        .map_err(w)?;
        return Ok(EXIT_OK);
    }
    let mut s = String::new();
    s.push_str(&format!("table        {}\n", path.display()));
    s.push_str(&format!(
        "capacity     {} keys × {} bytes = {} bytes mapped (resident memory grows with live keys)\n",
        st.capacity, st.bytes_per_key, table_bytes
    ));
    s.push_str(&format!("live keys    {}\n", st.live_keys));
    s.push_str(&format!("locked keys  {}\n", st.locked_keys));
    s.push_str(&format!("installing   {}\n", st.installing));
    s.push_str(&format!("evictions    {}\n", st.evictions));
    s.push_str(&format!("reclaimed    {}\n", st.reclaimed));
    s.push_str(&format!("full         {}\n\n", st.full));
    let width = rules.iter().map(|r| r.len()).max().unwrap_or(4).max(4);
    s.push_str(&format!(
        "{:<width$}  {:>10} {:>10} {:>10} {:>10} {:>10}\n",
        "rule", "passed", "limited", "dry-run", "locked", "lockouts"
    ));
    for (r, text) in st.rules.iter().zip(&rules) {
        s.push_str(&format!(
            "{:<width$}  {:>10} {:>10} {:>10} {:>10} {:>10}\n",
            text, r.passed, r.limited, r.dry_run_limited, r.locked, r.lockouts
        ));
    }
    out.write_all(s.as_bytes()).map_err(w)?;
    Ok(EXIT_OK)
}

fn print_decision(
    l: &Limiter,
    d: &Decision,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let rules = rule_texts(l);
    let rule = d.rule.and_then(|r| rules.get(r).cloned());
    let w = |e: io::Error| Failure(e.to_string(), EXIT_TABLE);
    if json {
        writeln!(
            out,
            "{{\"allowed\":{},\"status\":{},\"limit\":{},\"remaining\":{},\"reset\":{},\"reset_after\":{},\"retry_after\":{},\"rule\":{},\"window_ms\":{}}}",
            d.allowed,
            js(d.status.as_str()),
            d.limit,
            d.remaining,
            d.reset,
            d.reset_after,
            d.retry_after,
            rule.as_deref().map_or("null".to_string(), js),
            d.window_ms
        )
        .map_err(w)
    } else {
        writeln!(
            out,
            "{} ({}): limit {}, remaining {}, reset in {} s, retry after {} s, rule {}",
            if d.allowed { "allowed" } else { "refused" },
            d.status.as_str(),
            d.limit,
            d.remaining,
            d.reset_after,
            d.retry_after,
            rule.as_deref().unwrap_or("none")
        )
        .map_err(w)
    }
}

/// `check` (records the request) or `peek` (records nothing).
pub fn decide(
    path: &Path,
    key: &[u8],
    category_name: &str,
    record: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, Failure> {
    let l = attach(path, !record)?;
    let c = category(&l, category_name)?;
    let now = l.now_ms();
    let d = if record {
        l.check_at(key, c, now)
    } else {
        l.peek_at(key, c, now)
    }
    .map_err(request_error)?;
    print_decision(&l, &d, json, out)?;
    Ok(if d.allowed { EXIT_OK } else { EXIT_REFUSED })
}

pub fn unlock(
    path: &Path,
    key: &[u8],
    category_name: &str,
    out: &mut dyn Write,
) -> Result<u8, Failure> {
    let l = attach(path, false)?;
    let c = category(&l, category_name)?;
    let now = l.now_ms();
    let shown = String::from_utf8_lossy(key);
    let w = |e: io::Error| Failure(e.to_string(), EXIT_TABLE);
    match l.unlock_at(key, c, now).map_err(request_error)? {
        Unlock::Unlocked { until_ms } => {
            writeln!(
                out,
                "unlocked {shown:?} in {category_name:?} (it was locked for {} s more)",
                (until_ms - now + 999) / 1000
            )
            .map_err(w)?;
            Ok(EXIT_OK)
        }
        Unlock::NotLocked => {
            writeln!(out, "{shown:?} was not locked in {category_name:?}; its failure count was cleared").map_err(w)?;
            Ok(EXIT_REFUSED)
        }
        Unlock::UnknownKey => Err(Failure(
            format!(
                "the table {} holds nothing for key {shown:?} (never seen, or evicted): nothing changed",
                path.display()
            ),
            EXIT_NO_KEY,
        )),
    }
}
