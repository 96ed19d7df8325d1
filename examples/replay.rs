//! Replays a script of operations through the Rust API and prints every decision, one line
//! each: the reference other hosts' tests compare their decisions with.
//!
//! ```sh
//! cargo build --release --example replay
//! target/release/examples/replay POLICY_FILE < SCRIPT
//! ```
//!
//! Script lines: `OP KEY CATEGORY NOW_MS`, OP one of `check`, `allow`, `peek`, `failure`,
//! `success`, `reset`. Output per line: for a decision `allowed status limit remaining reset
//! reset_after retry_after rule window_ms` (`rule` -1 when none, `allowed` 1 or 0); for
//! `allow` `1` or `0`; for `success` and `reset` `ok`; an error as `error: MESSAGE`.

use std::io::{self, BufRead, Write};

use sluice::{Decision, Error, Limiter};

fn line(d: &Decision) -> String {
    format!(
        "{} {} {} {} {} {} {} {} {}",
        u8::from(d.allowed),
        d.status.as_str(),
        d.limit,
        d.remaining,
        d.reset,
        d.reset_after,
        d.retry_after,
        d.rule.map_or(-1, |r| r as i64),
        d.window_ms
    )
}

fn run(l: &Limiter, op: &str, key: &str, cat: &str, now: i64) -> Result<String, Error> {
    let c = l.category(cat)?;
    Ok(match op {
        "check" => line(&l.check_at(key, c, now)?),
        "allow" => u8::from(l.allow_at(key, c, now)?).to_string(),
        "peek" => line(&l.peek_at(key, c, now)?),
        "failure" => line(&l.failure_at(key, c, now)?),
        "success" => l.success_at(key, c, now).map(|()| "ok".to_string())?,
        "reset" => l.reset_at(key, c, now).map(|()| "ok".to_string())?,
        other => format!("error: unknown operation {other:?}"),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: replay POLICY_FILE < SCRIPT");
        std::process::exit(2);
    };
    let policy = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!("replay: {path}: {e}");
        std::process::exit(2)
    });
    let l = Limiter::open(&policy).unwrap_or_else(|e| {
        eprintln!("replay: {e}");
        std::process::exit(2)
    });
    let stdout = io::stdout();
    let mut out = stdout.lock();
    for text in io::stdin().lock().lines() {
        let text = text.expect("stdin");
        let f: Vec<&str> = text.split_whitespace().collect();
        let answer = match f.as_slice() {
            [op, key, cat, now] => match now.parse::<i64>() {
                Ok(now) => run(&l, op, key, cat, now).unwrap_or_else(|e| format!("error: {e}")),
                Err(_) => format!("error: not a time: {now:?}"),
            },
            _ => format!("error: expected OP KEY CATEGORY NOW_MS, found {text:?}"),
        };
        writeln!(out, "{answer}").expect("stdout");
    }
}
