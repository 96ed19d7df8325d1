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

/// How `stat` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatFormat {
    Text,
    Json,
    Prometheus,
}

pub fn stat(path: &Path, format: StatFormat, out: &mut dyn Write) -> Result<u8, Failure> {
    let l = attach(path, true)?;
    let st: Stats = l.stats();
    let w = |e: io::Error| Failure(e.to_string(), EXIT_TABLE);
    let text = match format {
        StatFormat::Json => stat_json(&l, path, &st),
        StatFormat::Prometheus => prometheus(&l, path, &st),
        StatFormat::Text => stat_text(&l, path, &st),
    };
    out.write_all(text.as_bytes()).map_err(w)?;
    Ok(EXIT_OK)
}

fn stat_json(l: &Limiter, path: &Path, st: &Stats) -> String {
    let rules = rule_texts(l);
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
    let superseded = l
        .superseded()
        .map_or("null".to_string(), |p| js(&p.to_string_lossy()));
    format!(
        "{{\"path\":{},\"format_version\":{},\"superseded_by\":{},\"capacity\":{},\"live_keys\":{},\"locked_keys\":{},\"installing\":{},\"evictions\":{},\"reclaimed\":{},\"full\":{},\"bytes_per_key\":{},\"table_bytes\":{},\"rules\":[{}]}}\n",
        js(&path.to_string_lossy()),
        l.format_version(),
        superseded,
        st.capacity,
        st.live_keys,
        st.locked_keys,
        st.installing,
        st.evictions,
        st.reclaimed,
        st.full,
        st.bytes_per_key,
        l.table_bytes(),
        rule_objs.join(",")
    )
}

fn stat_text(l: &Limiter, path: &Path, st: &Stats) -> String {
    let rules = rule_texts(l);
    let mut s = String::new();
    s.push_str(&format!("table        {}\n", path.display()));
    if let Some(by) = l.superseded() {
        s.push_str(&format!(
            "superseded   by {} (`sluice migrate` carried its keys there): processes still attached should reopen that table\n",
            by.display()
        ));
    }
    s.push_str(&format!("format       {}\n", l.format_version()));
    s.push_str(&format!("bytes/key    {}\n", st.bytes_per_key));
    s.push_str(&format!(
        "capacity     {} keys × {} bytes = {} bytes mapped (resident memory grows with live keys)\n",
        st.capacity,
        st.bytes_per_key,
        l.table_bytes()
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
    s
}

/// A label value of the text exposition format: backslash, double quote and newline escaped.
fn label(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One counter of a rule's statistics.
type RuleCounter = fn(&sluice::RuleStats) -> u64;

/// The table's statistics in the Prometheus text exposition format: every series carries a
/// `table` label (its path), so that the files of several tables can sit in one textfile
/// directory; per-rule series carry `rule` (its canonical text, `auth 10/1m`) and `category`.
/// Counters count from the table's creation (a migration starts them again at zero, which
/// Prometheus's `rate` and `increase` take as a counter reset).
fn prometheus(l: &Limiter, path: &Path, st: &Stats) -> String {
    let table = label(&path.to_string_lossy());
    let mut s = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{table={table}}} {value}\n"
        ));
    };
    metric(
        "sluice_format_version",
        "gauge",
        "Format version of the table file.",
        l.format_version(),
    );
    metric(
        "sluice_superseded",
        "gauge",
        "1 once a migration superseded the table (sluice stat names the new one).",
        l.superseded().is_some() as u64,
    );
    metric(
        "sluice_capacity_keys",
        "gauge",
        "Most live keys the table holds.",
        st.capacity,
    );
    metric(
        "sluice_bytes_per_key",
        "gauge",
        "Bytes of table memory per key (its slot and index word).",
        st.bytes_per_key,
    );
    metric(
        "sluice_table_bytes",
        "gauge",
        "Bytes of the mapped table (resident memory grows with live keys).",
        l.table_bytes() as u64,
    );
    metric(
        "sluice_live_keys",
        "gauge",
        "Keys that hold a slot now.",
        st.live_keys,
    );
    metric(
        "sluice_locked_keys",
        "gauge",
        "Keys with an active lockout now.",
        st.locked_keys,
    );
    metric(
        "sluice_installing_keys",
        "gauge",
        "Slots being claimed for a new key now.",
        st.installing,
    );
    metric(
        "sluice_evictions_total",
        "counter",
        "Slots taken from a key whose state still mattered.",
        st.evictions,
    );
    metric(
        "sluice_reclaimed_total",
        "counter",
        "Slots taken from a key whose state had expired.",
        st.reclaimed,
    );
    metric(
        "sluice_full_total",
        "counter",
        "Requests for which no slot could be had.",
        st.full,
    );
    let rules = rule_texts(l);
    let per_rule: [(&str, &str, RuleCounter); 5] = [
        (
            "sluice_rule_passed_total",
            "Requests the rule admitted.",
            |r| r.passed,
        ),
        (
            "sluice_rule_limited_total",
            "Requests the rule refused.",
            |r| r.limited,
        ),
        (
            "sluice_rule_dry_run_limited_total",
            "Requests the dry-run rule would have refused.",
            |r| r.dry_run_limited,
        ),
        (
            "sluice_rule_locked_total",
            "Requests refused because the key was locked out.",
            |r| r.locked,
        ),
        ("sluice_rule_lockouts_total", "Lockouts started.", |r| {
            r.lockouts
        }),
    ];
    for (name, help, get) in per_rule {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        for ((r, text), rule) in st.rules.iter().zip(&rules).zip(&l.policy().rules) {
            s.push_str(&format!(
                "{name}{{table={table},rule={},category={}}} {}\n",
                label(text),
                label(&rule.name),
                get(r)
            ));
        }
    }
    s
}

/// `migrate`: build TO from FROM for the policy in `policy_file` (FROM's own without one).
pub fn migrate(
    from: &Path,
    to: &Path,
    policy_file: Option<&Path>,
    out: &mut dyn Write,
) -> Result<u8, Failure> {
    let text = match policy_file {
        Some(file) => Some(std::fs::read_to_string(file).map_err(|e| {
            Failure(
                format!(
                    "cannot read the policy file {}: {e}; nothing was created",
                    file.display()
                ),
                EXIT_USAGE,
            )
        })?),
        None => None,
    };
    let report =
        Limiter::migrate(from, to, text.as_deref()).map_err(|e| match (&e, policy_file) {
            (Error::Policy(_), Some(file)) => Failure(
                format!(
                    "{}: {e}; nothing was created, and {} was not changed",
                    file.display(),
                    from.display()
                ),
                EXIT_USAGE,
            ),
            _ => Failure(e.to_string(), EXIT_TABLE),
        })?;
    let w = |e: io::Error| Failure(e.to_string(), EXIT_TABLE);
    let mut s = format!(
        "migrated {} (format {}, capacity {}) to {} (capacity {}){}\n",
        from.display(),
        report.from_format,
        report.from_capacity,
        report.to.display(),
        report.to_capacity,
        if report.in_place { ", in place" } else { "" }
    );
    s.push_str(&format!(
        "carried      {} keys, {} of them locked out (every lock with its end and level)\n",
        report.keys, report.locked_keys
    ));
    s.push_str(&format!(
        "left behind  {} expired, {} for want of a free slot\n",
        report.expired, report.dropped
    ));
    if report.locks_of_removed_lockouts > 0 {
        s.push_str(&format!(
            "unlocked     {} keys whose category has no lockout in the new policy\n",
            report.locks_of_removed_lockouts
        ));
    }
    let width = report
        .rules
        .iter()
        .map(|r| r.rule.len())
        .max()
        .unwrap_or(4)
        .max(4);
    s.push_str(&format!(
        "\n{:<width$}  {:<9}  keys carrying entries\n",
        "rule", "log"
    ));
    for r in &report.rules {
        let kind = if r.unchanged {
            "kept"
        } else if r.keys_with_entries > 0 {
            "carried"
        } else {
            "empty"
        };
        s.push_str(&format!(
            "{:<width$}  {kind:<9}  {}\n",
            r.rule, r.keys_with_entries
        ));
    }
    s.push_str(&format!(
        "\n{} is superseded: processes attached to it should reopen {}\n",
        from.display(),
        report.to.display()
    ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    const POLICY: &str =
        "global 100/1m\napi 2/1m\nmedia 5/1m dry-run\nauth lockout 2/15m for 15m\ncapacity 1024\n";

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-ops-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn run(f: impl FnOnce(&mut dyn Write) -> Result<u8, Failure>) -> Result<String, (String, u8)> {
        let mut out = Vec::new();
        match f(&mut out) {
            Ok(_) => Ok(String::from_utf8(out).unwrap()),
            Err(Failure(m, code)) => Err((m, code)),
        }
    }

    /// The number after `"key":` in a flat JSON object.
    fn json_number(obj: &str, key: &str) -> u64 {
        let at = obj
            .find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("{key} in {obj}"));
        let rest = &obj[at + key.len() + 3..];
        rest[..rest.find([',', '}']).unwrap()].parse().unwrap()
    }

    /// A sample line of the text exposition format: name, labels, value.
    fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, u64) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').unwrap()),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, v) = rest.split_once("=\"").unwrap();
            let mut value = String::new();
            let mut chars = v.char_indices();
            let end = loop {
                match chars.next().unwrap() {
                    (_, '\\') => match chars.next().unwrap().1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            map.insert(k.to_string(), value);
            rest = v[end + 1..].strip_prefix(',').unwrap_or(&v[end + 1..]);
        }
        (name.to_string(), map, value.parse().unwrap())
    }

    #[test]
    fn prometheus_output_parses_and_equals_the_json() {
        let dir = scratch("prom");
        let path = dir.join("t \"quoted\".sluice");
        let l = Limiter::open_file(POLICY, &path).unwrap();
        let (api, media, auth) = (
            l.category("api").unwrap(),
            l.category("media").unwrap(),
            l.category("auth").unwrap(),
        );
        // `stat` judges "locked" by the clock: the lockout is set now.
        let t = l.now_ms();
        for i in 0..5 {
            l.check_at("a", api, t + i).unwrap();
            l.check_at("b", media, t + i).unwrap();
            l.check_at("b", media, t + i).unwrap();
        }
        for i in 0..3 {
            l.failure_at("c", auth, t + i).unwrap();
        }
        l.check_at("c", auth, t + 5).unwrap();
        let json = run(|o| stat(&path, StatFormat::Json, o)).unwrap();
        let prom = run(|o| stat(&path, StatFormat::Prometheus, o)).unwrap();

        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in prom.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    types.insert(name.to_string(), kind.to_string()).is_none(),
                    "{name} twice"
                );
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                assert!(
                    rest.split_once(' ').is_some_and(|(_, h)| !h.is_empty()),
                    "{line}"
                );
            } else {
                samples.push(parse_sample(line));
            }
        }
        for (name, labels, _) in &samples {
            let kind = &types[name];
            assert_eq!(
                name.ends_with("_total"),
                kind == "counter",
                "{name} is a {kind}"
            );
            assert_eq!(labels["table"], path.to_string_lossy(), "{name}");
        }
        let table = |name: &str| {
            let hits: Vec<u64> = samples
                .iter()
                .filter(|s| s.0 == name)
                .map(|s| s.2)
                .collect();
            assert_eq!(hits.len(), 1, "{name}");
            hits[0]
        };
        for (metric, key) in [
            ("sluice_capacity_keys", "capacity"),
            ("sluice_live_keys", "live_keys"),
            ("sluice_locked_keys", "locked_keys"),
            ("sluice_installing_keys", "installing"),
            ("sluice_evictions_total", "evictions"),
            ("sluice_reclaimed_total", "reclaimed"),
            ("sluice_full_total", "full"),
            ("sluice_bytes_per_key", "bytes_per_key"),
            ("sluice_table_bytes", "table_bytes"),
            ("sluice_format_version", "format_version"),
        ] {
            assert_eq!(table(metric), json_number(&json, key), "{metric}");
        }
        assert_eq!(table("sluice_superseded"), 0);
        assert_eq!(table("sluice_locked_keys"), 1);
        // Per rule: one series per rule and counter, labelled as the JSON names the rule.
        let rules: Vec<&str> = json.split("{\"rule\":").skip(1).collect();
        assert_eq!(rules.len(), 4);
        for obj in rules {
            let text = obj[1..obj[1..].find('"').unwrap() + 1].to_string();
            for key in ["passed", "limited", "dry_run_limited", "locked", "lockouts"] {
                let name = format!("sluice_rule_{key}_total");
                let hit: Vec<&(String, BTreeMap<String, String>, u64)> = samples
                    .iter()
                    .filter(|s| s.0 == name && s.1["rule"] == text)
                    .collect();
                assert_eq!(hit.len(), 1, "{name} {text}");
                assert_eq!(hit[0].2, json_number(obj, key), "{name} {text}");
                assert_eq!(text.split(' ').next(), Some(hit[0].1["category"].as_str()));
            }
        }
        let limited = samples
            .iter()
            .find(|s| s.0 == "sluice_rule_limited_total" && s.1["rule"] == "api 2/1m")
            .unwrap();
        assert_eq!(limited.2, 3);
    }

    #[test]
    fn stat_shows_the_format_bytes_per_key_and_a_successor() {
        let dir = scratch("stat");
        let (from, to) = (dir.join("old.sluice"), dir.join("new.sluice"));
        let l = Limiter::open_file(POLICY, &from).unwrap();
        let text = run(|o| stat(&from, StatFormat::Text, o)).unwrap();
        assert!(text.contains("format       1\n"), "{text}");
        assert!(
            text.contains(&format!("bytes/key    {}\n", l.bytes_per_key())),
            "{text}"
        );
        assert!(!text.contains("superseded"), "{text}");
        let out = run(|o| migrate(&from, &to, None, o)).unwrap();
        assert!(out.contains("carried      0 keys"), "{out}");
        let text = run(|o| stat(&from, StatFormat::Text, o)).unwrap();
        let to_abs = std::path::absolute(&to).unwrap();
        assert!(
            text.contains(&format!("superseded   by {}", to_abs.display())),
            "{text}"
        );
        let json = run(|o| stat(&from, StatFormat::Json, o)).unwrap();
        assert!(
            json.contains(&format!(
                "\"superseded_by\":{}",
                js(&to_abs.to_string_lossy())
            )),
            "{json}"
        );
        let prom = run(|o| stat(&from, StatFormat::Prometheus, o)).unwrap();
        assert!(
            prom.lines()
                .any(|l| l.starts_with("sluice_superseded{") && l.ends_with(" 1")),
            "{prom}"
        );
    }

    #[test]
    fn migrate_prints_what_it_carried_and_names_a_bad_policy_file() {
        let dir = scratch("migrate");
        let (from, to) = (dir.join("old.sluice"), dir.join("new.sluice"));
        let l = Limiter::open_file(POLICY, &from).unwrap();
        let auth = l.category("auth").unwrap();
        let now = l.now_ms();
        for i in 0..2 {
            l.failure_at("mallory", auth, now + i).unwrap();
        }
        l.check_at("alice", l.category("api").unwrap(), now)
            .unwrap();
        let bad = dir.join("bad.policy");
        std::fs::write(&bad, "global 100/1m\napi 2/1 minute\n").unwrap();
        let (m, code) = run(|o| migrate(&from, &to, Some(&bad), o)).unwrap_err();
        assert_eq!(code, EXIT_USAGE);
        assert!(
            m.contains(&bad.display().to_string()) && m.contains("line 2"),
            "{m}"
        );
        let (m, code) =
            run(|o| migrate(&from, &to, Some(&dir.join("none.policy")), o)).unwrap_err();
        assert_eq!(code, EXIT_USAGE);
        assert!(m.contains("none.policy"), "{m}");
        assert!(!to.exists());

        let good = dir.join("new.policy");
        std::fs::write(
            &good,
            "global 100/1m\napi 3/1m\nnew 1/1s\nauth lockout 2/15m for 15m\ncapacity 1024\n",
        )
        .unwrap();
        let out = run(|o| migrate(&from, &to, Some(&good), o)).unwrap();
        assert!(
            out.contains("carried      2 keys, 1 of them locked out"),
            "{out}"
        );
        assert!(out.contains("global 100/1m"), "{out}");
        let line = |rule: &str| {
            out.lines()
                .find(|l| l.starts_with(rule))
                .unwrap()
                .to_string()
        };
        assert!(line("global 100/1m").contains("kept"), "{out}");
        assert!(line("api 3/1m").contains("carried"), "{out}");
        assert!(line("new 1/1s").contains("empty"), "{out}");
        let (m, code) = run(|o| migrate(&from, &to, None, o)).unwrap_err();
        assert_eq!(code, EXIT_TABLE);
        assert!(m.contains("superseded"), "{m}");
    }
}
