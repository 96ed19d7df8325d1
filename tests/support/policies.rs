#![allow(dead_code)]
//! Random policies for the property tests: a few global, `api` and `auth` window rules (some
//! strict or dry-run), an `auth` lockout, a small capacity and either `when-full`.

use proptest::prelude::*;

fn window_rule(name: &'static str) -> impl Strategy<Value = String> {
    (
        1u32..5,
        prop::sample::select(vec![20i64, 50, 100, 300]),
        0u8..6,
    )
        .prop_map(move |(n, w, flags)| {
            let flag = match flags {
                0 => " strict",
                1 => " dry-run",
                _ => "",
            };
            format!("{name} {n}/{w}ms{flag}")
        })
}

pub fn policy_text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(window_rule("global"), 0..3),
        prop::collection::vec(window_rule("api"), 0..3),
        prop::collection::vec(window_rule("auth"), 0..2),
        (
            1u32..4,
            prop::sample::select(vec![50i64, 200]),
            10i64..80,
            prop::option::of(80i64..400),
        ),
        1u64..6,
        any::<bool>(),
    )
        .prop_map(|(g, a, au, (f, d, ban, max), cap, allow)| {
            let mut lines: Vec<String> = g.into_iter().chain(a).chain(au).collect();
            lines.dedup();
            lines.sort(); // keep duplicates adjacent for dedup, then order
            lines.dedup_by(|x, y| {
                x.split_whitespace()
                    .take(2)
                    .eq(y.split_whitespace().take(2))
            });
            let max = max.map(|m| format!("..{m}ms")).unwrap_or_default();
            lines.push(format!("auth lockout {f}/{d}ms for {ban}ms{max}"));
            lines.push(format!("capacity {cap}"));
            lines.push(format!(
                "when-full {}",
                if allow { "allow" } else { "deny" }
            ));
            lines.join("\n")
        })
}
