//! The policy language (docs/semantics.md): parsing, validation and the shipped default policy.
//!
//! One directive per line, `#` starts a comment, blank lines are ignored:
//!
//! ```text
//! NAME N/DURATION [strict] [dry-run]        a sliding-window rule
//! NAME lockout F/DURATION for BAN[..MAX]    a brute-force lockout
//! capacity K                                the table holds at most K live keys
//! when-full deny|allow                      what a new key gets when no slot can be had
//! ```

use std::collections::HashMap;
use std::fmt;

/// The default policy that ships with sluice: per-client limits of the kind the project was made for,
/// an HTTP API with route categories. The same text is in `policies/default.policy`.
pub const DEFAULT_POLICY: &str = include_str!("../policies/default.policy");

/// Largest `N` of a rule and `F` of a lockout.
pub const MAX_LIMIT: u32 = 65_535;
/// Shortest window, ban or maximum ban: 1 ms.
pub const MIN_DURATION_MS: i64 = 1;
/// Longest window, ban or maximum ban: 30 days.
pub const MAX_DURATION_MS: i64 = 30 * 24 * 60 * 60 * 1000;
/// Largest `capacity`.
pub const MAX_CAPACITY: u64 = 1 << 28;
/// `capacity` when the policy does not say.
pub const DEFAULT_CAPACITY: u64 = 65_536;

/// The category every request belongs to; `global` rules apply to every category.
pub const GLOBAL: &str = "global";

/// What a new key gets when no slot can be had (every candidate slot holds an active lockout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse the request (the default): a full table never over-admits.
    Deny,
    /// Admit the request without recording it.
    Allow,
}

/// A sliding-window rule: at most `limit` admitted requests in any window of `window_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowRule {
    pub limit: u32,
    pub window_ms: i64,
    /// Refused requests are logged too, so a client that keeps hammering stays refused.
    pub strict: bool,
    /// Never refuses; would-be refusals are reported and counted.
    pub dry_run: bool,
}

/// A brute-force lockout: `failures` failures within `window_ms` lock the key out of the
/// category for `ban_ms`, doubling on each further lockout up to `max_ban_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockoutRule {
    pub failures: u32,
    pub window_ms: i64,
    pub ban_ms: i64,
    /// `None` without escalation (every lockout lasts `ban_ms`).
    pub max_ban_ms: Option<i64>,
}

/// What a rule directive says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Window(WindowRule),
    Lockout(LockoutRule),
}

/// One rule or lockout directive, in policy order. Its index in [`Policy::rules`] is the
/// `rule` a [`crate::Decision`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The category name (`global` for rules that apply to every request).
    pub name: String,
    pub kind: RuleKind,
    /// 1-based line of the directive in the policy text.
    pub line: usize,
}

/// A parsed, valid policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Rules and lockouts in policy order.
    pub rules: Vec<Rule>,
    /// The table holds at most this many live keys.
    pub capacity: u64,
    pub when_full: WhenFull,
    /// Category names: `global` first (id 0), then the others in order of first appearance.
    pub categories: Vec<String>,
}

/// A policy that does not parse: where and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What was expected and what was found, e.g.
    /// `expected a duration such as 1m or 30s, found "1 minute"`.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for PolicyError {}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Words with a meaning of their own in a directive. A digits-only duration followed by one of
/// these is reported alone (`found "15"`), not joined with it as in `found "1 minute"`: the
/// keyword is where the directive goes on, not a unit the author tried to spell out.
const KEYWORDS: &[&str] = &[
    "capacity",
    "when-full",
    "lockout",
    "for",
    "strict",
    "dry-run",
    "deny",
    "allow",
];

/// Found text longer than this many characters is cut short (with `…`) in error messages, so a
/// pathological token does not produce a pathological message.
const MAX_FOUND_CHARS: usize = 40;

const CATEGORY_NAME: &str = "a category name such as auth (lowercase letters, digits, - and _)";
const WINDOW_SHAPE: &str = "N/DURATION such as 10/1m";
const LOCKOUT_SHAPE: &str = "F/DURATION such as 5/15m";
const DURATION_SHAPE: &str = "a duration such as 1m or 30s";
const BAN_SHAPE: &str = "a ban duration such as 15m or 15m..24h";
const FOR_AFTER_THRESHOLD: &str = "\"for\" after the lockout threshold";
const WHEN_FULL_VALUES: &str = "\"deny\" or \"allow\"";
const END_OF_LINE: &str = "the end of the line";

/// Duration units, largest first (the order [`format_duration_ms`] tries them in).
const UNITS: &[(&str, i64)] = &[
    ("d", 24 * 60 * 60 * 1000),
    ("h", 60 * 60 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Formats a duration in milliseconds as the policy language writes it: the largest unit that
/// expresses it exactly (90000 -> `90s`, 60000 -> `1m`, 1500 -> `1500ms`, 86400000 -> `1d`).
/// Zero is `0ms`. The result parses back to the same value whenever the value is in
/// `MIN_DURATION_MS..=MAX_DURATION_MS`.
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0ms".to_string();
    }
    // The `ms` unit always divides, so the search always succeeds; the fallback keeps this
    // function panic-free without an `unwrap`.
    let (unit, factor) = UNITS
        .iter()
        .copied()
        .find(|&(_, factor)| ms % factor == 0)
        .unwrap_or(("ms", 1));
    format!("{}{}", ms / factor, unit)
}

/// One whitespace-separated token of a line.
#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    text: &'a str,
    /// 1-based column of the first character, counted in characters.
    column: usize,
}

impl<'a> Token<'a> {
    /// The part of this token starting at byte `start` (a char boundary), with its own column.
    fn tail(self, start: usize) -> Token<'a> {
        Token {
            text: &self.text[start..],
            column: self.column + self.text[..start].chars().count(),
        }
    }

    /// The part of this token before byte `end` (a char boundary).
    fn head(self, end: usize) -> Token<'a> {
        Token {
            text: &self.text[..end],
            column: self.column,
        }
    }
}

/// Splits a line (comment already removed) into tokens separated by spaces and tabs. Any other
/// character, whitespace or not, belongs to a token and is reported if it does not fit.
fn tokenize(line: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    // (byte offset, column) of the token being read, if any.
    let mut start: Option<(usize, usize)> = None;
    for (index, (byte, ch)) in line.char_indices().enumerate() {
        if ch == ' ' || ch == '\t' {
            if let Some((from, column)) = start.take() {
                tokens.push(Token {
                    text: &line[from..byte],
                    column,
                });
            }
        } else if start.is_none() {
            start = Some((byte, index + 1));
        }
    }
    if let Some((from, column)) = start {
        tokens.push(Token {
            text: &line[from..],
            column,
        });
    }
    tokens
}

/// Quotes found text for an error message: in double quotes, with `"`, `\\`, control and
/// invisible characters escaped, cut to [`MAX_FOUND_CHARS`] characters. Empty text (such as the
/// duration of `10/`) is `nothing`.
fn quote(text: &str) -> String {
    if text.is_empty() {
        return "nothing".to_string();
    }
    let mut quoted = String::from("\"");
    for c in text.chars().take(MAX_FOUND_CHARS) {
        // `char::escape_debug` handles `"`, `\\`, control and invisible characters; a single
        // quote needs no escaping inside double quotes.
        match c {
            '\'' => quoted.push(c),
            _ => quoted.extend(c.escape_debug()),
        }
    }
    if text.chars().nth(MAX_FOUND_CHARS).is_some() {
        quoted.push('…');
    }
    quoted.push('"');
    quoted
}

/// `[a-z][a-z0-9_-]*`
fn is_category_name(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

/// An unsigned decimal integer made of ASCII digits only (no sign, no `_`). `None` when the text
/// is not such an integer; `Some(None)` when it is one but does not fit in a `u64`.
fn parse_digits(text: &str) -> Option<Option<u64>> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().try_fold(0u64, |value, digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    }))
}

/// What one line says, before the checks that involve other lines.
enum Directive {
    Rule(String, RuleKind),
    Capacity(u64),
    WhenFull(WhenFull),
}

/// The tokens of one line and the position of the next one to read.
struct Line<'a> {
    number: usize,
    tokens: Vec<Token<'a>>,
    next: usize,
}

impl<'a> Line<'a> {
    fn error(&self, column: usize, message: String) -> PolicyError {
        PolicyError {
            line: self.number,
            column,
            message,
        }
    }

    /// `expected WHAT, found "TOKEN"`, pointing at the token.
    fn expected(&self, what: &str, found: Token<'_>) -> PolicyError {
        self.error(
            found.column,
            format!("expected {what}, found {}", quote(found.text)),
        )
    }

    /// Column just past the last token: where an unexpected end of line is reported.
    fn end_column(&self) -> usize {
        self.tokens
            .last()
            .map_or(1, |t| t.column + t.text.chars().count())
    }

    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.next).copied()
    }

    fn take(&mut self) -> Option<Token<'a>> {
        let token = self.peek();
        if token.is_some() {
            self.next += 1;
        }
        token
    }

    /// The next token, or `unexpected end of line: expected WHAT`.
    fn require(&mut self, what: &str) -> Result<Token<'a>, PolicyError> {
        self.take().ok_or_else(|| {
            self.error(
                self.end_column(),
                format!("unexpected end of line: expected {what}"),
            )
        })
    }

    /// Nothing may follow.
    fn finish(&mut self) -> Result<(), PolicyError> {
        match self.take() {
            None => Ok(()),
            Some(extra) => Err(self.expected(END_OF_LINE, extra)),
        }
    }

    /// `N` of a rule or `F` of a lockout: 1..=MAX_LIMIT `what`.
    fn count(&self, token: Token<'_>, what: &str) -> Result<u32, PolicyError> {
        parse_digits(token.text)
            .flatten()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                self.expected(&format!("a number of {what} from 1 to {MAX_LIMIT}"), token)
            })
    }

    /// A DURATION in milliseconds. `next` is the token after it when the duration ends its
    /// token: when the duration is digits without a unit and `next` is an ordinary word, the
    /// author most likely spelled the unit out (`1 minute`), so both words are reported.
    fn duration(&self, token: Token<'_>, next: Option<Token<'_>>) -> Result<i64, PolicyError> {
        let digits_end = token
            .text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(token.text.len());
        let (digits, unit) = token.text.split_at(digits_end);
        let factor = UNITS.iter().find(|(name, _)| *name == unit).map(|u| u.1);
        let Some(factor) = factor.filter(|_| !digits.is_empty()) else {
            let spelled_out = next.filter(|word| {
                !digits.is_empty()
                    && unit.is_empty()
                    && word.text.chars().all(char::is_alphabetic)
                    && !KEYWORDS.contains(&word.text)
            });
            let found = match spelled_out {
                Some(word) => format!("{} {}", token.text, word.text),
                None => token.text.to_string(),
            };
            return Err(self.error(
                token.column,
                format!("expected {DURATION_SHAPE}, found {}", quote(&found)),
            ));
        };
        // Huge digit strings overflow to `None` here and are reported as out of range.
        parse_digits(digits)
            .flatten()
            .and_then(|n| i64::try_from(n).ok())
            .and_then(|n| n.checked_mul(factor))
            .filter(|ms| (MIN_DURATION_MS..=MAX_DURATION_MS).contains(ms))
            .ok_or_else(|| {
                self.expected(
                    &format!(
                        "a duration from {} to {}",
                        format_duration_ms(MIN_DURATION_MS),
                        format_duration_ms(MAX_DURATION_MS)
                    ),
                    token,
                )
            })
    }

    /// `COUNT/DURATION`: the count and duration parts of the token, or an error saying `shape`
    /// (and `alternative`, if any) was expected.
    fn slash_pair(
        &self,
        token: Token<'a>,
        shape: &str,
        alternative: &str,
    ) -> Result<(Token<'a>, Token<'a>), PolicyError> {
        match token.text.find('/') {
            Some(slash) => Ok((token.head(slash), token.tail(slash + 1))),
            None => Err(self.expected(&format!("{shape}{alternative}"), token)),
        }
    }

    /// Parses the whole line (which has at least one token).
    fn directive(&mut self) -> Result<Directive, PolicyError> {
        let first = self.require(CATEGORY_NAME)?;
        match first.text {
            "capacity" => self.capacity(),
            "when-full" => self.when_full(),
            "lockout" => Err(self.error(
                first.column,
                format!("expected {CATEGORY_NAME}, found the keyword \"lockout\""),
            )),
            name if is_category_name(name) => {
                let kind = match self.peek() {
                    Some(token) if token.text == "lockout" => {
                        self.next += 1;
                        RuleKind::Lockout(self.lockout()?)
                    }
                    _ => RuleKind::Window(self.window()?),
                };
                Ok(Directive::Rule(name.to_string(), kind))
            }
            _ => Err(self.expected(CATEGORY_NAME, first)),
        }
    }

    /// `N/DURATION [strict] [dry-run]`, after the name.
    fn window(&mut self) -> Result<WindowRule, PolicyError> {
        let token = self.require(WINDOW_SHAPE)?;
        let (count, window) = self.slash_pair(token, WINDOW_SHAPE, " or \"lockout\"")?;
        let limit = self.count(count, "requests")?;
        let window_ms = self.duration(window, self.peek())?;
        let (mut strict, mut dry_run) = (false, false);
        while let Some(flag) = self.take() {
            match flag.text {
                "strict" if !strict => strict = true,
                "dry-run" if !dry_run => dry_run = true,
                _ => {
                    let expected = match (strict, dry_run) {
                        (false, false) => "\"strict\", \"dry-run\" or the end of the line",
                        (true, false) => "\"dry-run\" or the end of the line",
                        (false, true) => "\"strict\" or the end of the line",
                        (true, true) => END_OF_LINE,
                    };
                    let again = if matches!(flag.text, "strict" | "dry-run") {
                        " again"
                    } else {
                        ""
                    };
                    return Err(self.error(
                        flag.column,
                        format!("expected {expected}, found {}{again}", quote(flag.text)),
                    ));
                }
            }
        }
        Ok(WindowRule {
            limit,
            window_ms,
            strict,
            dry_run,
        })
    }

    /// `F/DURATION for BAN[..MAX]`, after `NAME lockout`.
    fn lockout(&mut self) -> Result<LockoutRule, PolicyError> {
        let token = self.require(LOCKOUT_SHAPE)?;
        let (count, window) = self.slash_pair(token, LOCKOUT_SHAPE, "")?;
        let failures = self.count(count, "failures")?;
        let window_ms = self.duration(window, self.peek())?;
        let word = self.require(FOR_AFTER_THRESHOLD)?;
        if word.text != "for" {
            return Err(self.expected(FOR_AFTER_THRESHOLD, word));
        }
        let token = self.require(BAN_SHAPE)?;
        let (ban_ms, max_ban_ms) = match token.text.find("..") {
            None => (self.duration(token, self.peek())?, None),
            Some(dots) => {
                let ban_ms = self.duration(token.head(dots), None)?;
                let max = token.tail(dots + 2);
                let max_ms = self.duration(max, self.peek())?;
                if max_ms < ban_ms {
                    return Err(self.expected(
                        &format!("a maximum ban of at least {}", format_duration_ms(ban_ms)),
                        max,
                    ));
                }
                (ban_ms, Some(max_ms))
            }
        };
        self.finish()?;
        Ok(LockoutRule {
            failures,
            window_ms,
            ban_ms,
            max_ban_ms,
        })
    }

    /// `K`, after `capacity`.
    fn capacity(&mut self) -> Result<Directive, PolicyError> {
        let what = format!("a capacity from 1 to {MAX_CAPACITY}");
        let token = self.require(&what)?;
        let capacity = parse_digits(token.text)
            .flatten()
            .filter(|k| (1..=MAX_CAPACITY).contains(k))
            .ok_or_else(|| self.expected(&what, token))?;
        self.finish()?;
        Ok(Directive::Capacity(capacity))
    }

    /// `deny|allow`, after `when-full`.
    fn when_full(&mut self) -> Result<Directive, PolicyError> {
        let token = self.require(WHEN_FULL_VALUES)?;
        let when_full = match token.text {
            "deny" => WhenFull::Deny,
            "allow" => WhenFull::Allow,
            _ => return Err(self.expected(WHEN_FULL_VALUES, token)),
        };
        self.finish()?;
        Ok(Directive::WhenFull(when_full))
    }
}

impl WhenFull {
    fn keyword(self) -> &'static str {
        match self {
            WhenFull::Deny => "deny",
            WhenFull::Allow => "allow",
        }
    }
}

impl Policy {
    /// Parses and validates a policy. On failure the error names the 1-based line and
    /// column (in characters) of the offending token and says what was expected and what was
    /// found; an unexpected end of line points just past the line's last token, and a duplicate
    /// directive points at the start of the directive. Never panics.
    ///
    /// A leading byte-order mark is ignored, and lines may end with `\n` or `\r\n`.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules: Vec<Rule> = Vec::new();
        // The value and the line that set it.
        let mut capacity: Option<(u64, usize)> = None;
        let mut when_full: Option<(WhenFull, usize)> = None;
        let mut categories = vec![GLOBAL.to_string()];
        let mut category_ids = HashMap::from([(GLOBAL.to_string(), 0)]);
        // The line of each window rule (by name, N and window) and of each lockout (by name).
        let mut windows: HashMap<(String, u32, i64), usize> = HashMap::new();
        let mut lockouts: HashMap<String, usize> = HashMap::new();

        for (index, raw) in text.split('\n').enumerate() {
            let number = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let content = raw.find('#').map_or(raw, |hash| &raw[..hash]);
            let mut line = Line {
                number,
                tokens: tokenize(content),
                next: 0,
            };
            if line.tokens.is_empty() {
                continue;
            }
            // Duplicates are reported at the start of the directive.
            let start = line.tokens[0].column;
            match line.directive()? {
                Directive::Capacity(k) => {
                    if let Some((_, first)) = capacity {
                        return Err(line.error(
                            start,
                            format!("duplicate \"capacity\": it is already set on line {first}"),
                        ));
                    }
                    capacity = Some((k, number));
                }
                Directive::WhenFull(w) => {
                    if let Some((_, first)) = when_full {
                        return Err(line.error(
                            start,
                            format!("duplicate \"when-full\": it is already set on line {first}"),
                        ));
                    }
                    when_full = Some((w, number));
                }
                Directive::Rule(name, kind) => {
                    // Maps keep a policy of many thousands of rules linear, not quadratic.
                    let (first, message) = match &kind {
                        RuleKind::Window(w) => (
                            windows.insert((name.clone(), w.limit, w.window_ms), number),
                            format!(
                                "duplicate rule \"{name} {}/{}\": the same rule is on line",
                                w.limit,
                                format_duration_ms(w.window_ms),
                            ),
                        ),
                        RuleKind::Lockout(_) => (
                            lockouts.insert(name.clone(), number),
                            format!(
                                "duplicate lockout for \"{name}\": a category has at most one, \
                                 and the first is on line"
                            ),
                        ),
                    };
                    if let Some(first) = first {
                        return Err(line.error(start, format!("{message} {first}")));
                    }
                    if !category_ids.contains_key(&name) {
                        category_ids.insert(name.clone(), categories.len());
                        categories.push(name.clone());
                    }
                    rules.push(Rule {
                        name,
                        kind,
                        line: number,
                    });
                }
            }
        }

        Ok(Policy {
            rules,
            capacity: capacity.map_or(DEFAULT_CAPACITY, |(k, _)| k),
            when_full: when_full.map_or(WhenFull::Deny, |(w, _)| w),
            categories,
        })
    }

    /// The id of a category: its index in [`Policy::categories`] (`global` is 0). `None` for a
    /// name the policy does not mention.
    pub fn category_id(&self, name: &str) -> Option<usize> {
        self.categories.iter().position(|c| c == name)
    }

    /// The policy as normalized text: one directive per line, single spaces, no comments,
    /// durations as [`format_duration_ms`] writes them, flags as `strict` then `dry-run`.
    ///
    /// Rules and lockouts come first, in [`Policy::rules`] order, followed by `capacity K` and
    /// `when-full X`, which are always written (even at their defaults). So for a policy that
    /// [`Policy::parse`] returned, parsing the canonical text gives the same policy except that
    /// the `line` of rule `i` (0-based) becomes `i + 1`; categories keep their ids.
    pub fn canonical(&self) -> String {
        let mut out = String::new();
        for rule in &self.rules {
            out.push_str(&rule.name);
            match &rule.kind {
                RuleKind::Window(w) => {
                    out.push_str(&format!(" {}/{}", w.limit, format_duration_ms(w.window_ms)));
                    if w.strict {
                        out.push_str(" strict");
                    }
                    if w.dry_run {
                        out.push_str(" dry-run");
                    }
                }
                RuleKind::Lockout(l) => {
                    out.push_str(&format!(
                        " lockout {}/{} for {}",
                        l.failures,
                        format_duration_ms(l.window_ms),
                        format_duration_ms(l.ban_ms)
                    ));
                    if let Some(max) = l.max_ban_ms {
                        out.push_str(&format!("..{}", format_duration_ms(max)));
                    }
                }
            }
            out.push('\n');
        }
        out.push_str(&format!("capacity {}\n", self.capacity));
        out.push_str(&format!("when-full {}\n", self.when_full.keyword()));
        out
    }
}

impl std::str::FromStr for Policy {
    type Err = PolicyError;

    /// Same as [`Policy::parse`].
    fn from_str(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;

    /// The error of a policy that must not parse, as (line, column, message).
    fn error(text: &str) -> (usize, usize, String) {
        match Policy::parse(text) {
            Ok(policy) => panic!("{text:?} parsed: {policy:?}"),
            Err(e) => (e.line, e.column, e.message),
        }
    }

    fn assert_error(text: &str, line: usize, column: usize, message: &str) {
        assert_eq!(
            error(text),
            (line, column, message.to_string()),
            "policy {text:?}"
        );
    }

    fn parse(text: &str) -> Policy {
        Policy::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    /// The only rule of a one-line policy.
    fn only_rule(text: &str) -> RuleKind {
        let policy = parse(text);
        assert_eq!(policy.rules.len(), 1, "{text:?}");
        policy.rules[0].kind.clone()
    }

    fn window_ms(duration: &str) -> i64 {
        match only_rule(&format!("auth 1/{duration}")) {
            RuleKind::Window(w) => w.window_ms,
            other => panic!("{other:?}"),
        }
    }

    fn window(limit: u32, window_ms: i64, strict: bool, dry_run: bool) -> RuleKind {
        RuleKind::Window(WindowRule {
            limit,
            window_ms,
            strict,
            dry_run,
        })
    }

    fn rule(name: &str, kind: RuleKind, line: usize) -> Rule {
        Rule {
            name: name.to_string(),
            kind,
            line,
        }
    }

    const DURATION_MESSAGE: &str = "expected a duration such as 1m or 30s, found";
    const RANGE_MESSAGE: &str = "expected a duration from 1ms to 30d, found";
    const NAME_MESSAGE: &str =
        "expected a category name such as auth (lowercase letters, digits, - and _), found";

    // --- the default policy --------------------------------------------------------------

    #[test]
    fn default_policy_parses_to_the_expected_rules() {
        let policy = parse(DEFAULT_POLICY);
        let expected = Policy {
            rules: vec![
                rule("global", window(300, MINUTE, false, false), 3),
                rule("media", window(60, MINUTE, false, false), 4),
                rule("analytics", window(120, MINUTE, false, false), 5),
                rule("write", window(30, MINUTE, false, false), 6),
                rule("write", window(500, HOUR, false, false), 7),
                rule("auth", window(10, MINUTE, false, false), 8),
                rule(
                    "auth",
                    RuleKind::Lockout(LockoutRule {
                        failures: 5,
                        window_ms: 15 * MINUTE,
                        ban_ms: 15 * MINUTE,
                        max_ban_ms: Some(DAY),
                    }),
                    11,
                ),
            ],
            capacity: 65_536,
            when_full: WhenFull::Deny,
            categories: ["global", "media", "analytics", "write", "auth"]
                .map(String::from)
                .to_vec(),
        };
        assert_eq!(policy, expected);
        assert_eq!(DEFAULT_POLICY.parse::<Policy>(), Ok(expected));
    }

    #[test]
    fn category_ids_follow_first_appearance_with_global_first() {
        let policy = parse(DEFAULT_POLICY);
        for (id, name) in ["global", "media", "analytics", "write", "auth"]
            .iter()
            .enumerate()
        {
            assert_eq!(policy.category_id(name), Some(id));
        }
        assert_eq!(policy.category_id("login"), None);
        assert_eq!(policy.category_id(""), None);
        assert_eq!(policy.category_id("Auth"), None);

        // `global` is present without a rule, never listed twice, and a lockout names a
        // category too.
        let policy = parse("b 1/1s\nglobal 5/1s\na lockout 3/1m for 1h\nb 2/1s\nglobal 6/1s");
        assert_eq!(policy.categories, ["global", "b", "a"]);
        assert_eq!(policy.category_id("a"), Some(2));
        assert_eq!(parse("").categories, ["global"]);
    }

    #[test]
    fn empty_and_comment_only_policies_have_the_defaults() {
        for text in ["", "\n\n", "# nothing\n   \t\n# here", "\r\n"] {
            let policy = parse(text);
            assert!(policy.rules.is_empty());
            assert_eq!(policy.capacity, DEFAULT_CAPACITY);
            assert_eq!(policy.when_full, WhenFull::Deny);
            assert_eq!(policy.categories, [GLOBAL]);
        }
    }

    // --- durations ---------------------------------------------------------------------------

    #[test]
    fn every_unit() {
        assert_eq!(window_ms("1ms"), 1);
        assert_eq!(window_ms("1500ms"), 1500);
        assert_eq!(window_ms("1s"), 1000);
        assert_eq!(window_ms("90s"), 90_000);
        assert_eq!(window_ms("1m"), MINUTE);
        assert_eq!(window_ms("15m"), 15 * MINUTE);
        assert_eq!(window_ms("1h"), HOUR);
        assert_eq!(window_ms("24h"), DAY);
        assert_eq!(window_ms("1d"), DAY);
        assert_eq!(window_ms("007s"), 7000);
    }

    #[test]
    fn format_duration_uses_the_largest_exact_unit() {
        assert_eq!(format_duration_ms(90_000), "90s");
        assert_eq!(format_duration_ms(60_000), "1m");
        assert_eq!(format_duration_ms(1_500), "1500ms");
        assert_eq!(format_duration_ms(86_400_000), "1d");
        assert_eq!(format_duration_ms(1), "1ms");
        assert_eq!(format_duration_ms(1_000), "1s");
        assert_eq!(format_duration_ms(HOUR), "1h");
        assert_eq!(format_duration_ms(90 * MINUTE), "90m");
        assert_eq!(format_duration_ms(36 * HOUR), "36h");
        assert_eq!(format_duration_ms(DAY + 1), "86400001ms");
        assert_eq!(format_duration_ms(MAX_DURATION_MS), "30d");
        assert_eq!(format_duration_ms(0), "0ms");
        assert_eq!(format_duration_ms(-90_000), "-90s");
        assert_eq!(format_duration_ms(i64::MIN), "-9223372036854775808ms");
        assert_eq!(format_duration_ms(i64::MAX), "9223372036854775807ms");
        // Every formatted in-range value parses back to itself.
        for ms in [1, 999, 1000, 59_999, MINUTE, HOUR - 1, DAY, MAX_DURATION_MS] {
            assert_eq!(window_ms(&format_duration_ms(ms)), ms);
        }
    }

    #[test]
    fn duration_bounds() {
        assert_eq!(window_ms("30d"), MAX_DURATION_MS);
        assert_eq!(window_ms("720h"), MAX_DURATION_MS);
        assert_eq!(window_ms("43200m"), MAX_DURATION_MS);
        assert_eq!(window_ms("2592000000ms"), MAX_DURATION_MS);
        assert_error("auth 1/0ms", 1, 8, &format!("{RANGE_MESSAGE} \"0ms\""));
        assert_error("auth 1/0s", 1, 8, &format!("{RANGE_MESSAGE} \"0s\""));
        assert_error("auth 1/31d", 1, 8, &format!("{RANGE_MESSAGE} \"31d\""));
        assert_error("auth 1/721h", 1, 8, &format!("{RANGE_MESSAGE} \"721h\""));
        assert_error(
            "auth 1/2592000001ms",
            1,
            8,
            &format!("{RANGE_MESSAGE} \"2592000001ms\""),
        );
        // Products that overflow an i64, and values that overflow a u64, are out of range too.
        assert_error(
            "auth 1/9223372036854775807d",
            1,
            8,
            &format!("{RANGE_MESSAGE} \"9223372036854775807d\""),
        );
        assert_error(
            "auth 1/18446744073709551616s",
            1,
            8,
            &format!("{RANGE_MESSAGE} \"18446744073709551616s\""),
        );
        // A huge digit string: no overflow, and the message shows only its first 40 characters.
        let huge = "9".repeat(10_000);
        assert_error(
            &format!("auth lockout 5/15m for 15m..{huge}h"),
            1,
            29,
            &format!("{RANGE_MESSAGE} \"{}…\"", "9".repeat(40)),
        );
    }

    #[test]
    fn malformed_durations() {
        let cases = [
            ("auth 10/1.5m", "\"1.5m\""),
            ("auth 10/1M", "\"1M\""),
            ("auth 10/1min", "\"1min\""),
            ("auth 10/m", "\"m\""),
            ("auth 10/-1m", "\"-1m\""),
            ("auth 10/+1m", "\"+1m\""),
            ("auth 10/1_000ms", "\"1_000ms\""),
            ("auth 10/1m1s", "\"1m1s\""),
            ("auth 10/60", "\"60\""),
            ("auth 10/1 m", "\"1 m\""),
            ("auth 10/1 Minute", "\"1 Minute\""),
            ("auth 10/1 minute, strict", "\"1\""),
            ("auth 10/1 strict", "\"1\""),
            ("auth 10/1 dry-run", "\"1\""),
            ("auth 10/1 5m", "\"1\""),
            ("auth 10/", "nothing"),
            ("auth 10/ 1m", "nothing"),
            ("auth 10/1m/1s", "\"1m/1s\""),
        ];
        for (text, found) in cases {
            assert_error(text, 1, 9, &format!("{DURATION_MESSAGE} {found}"));
        }
    }

    #[test]
    fn spelled_out_unit_reports_both_words() {
        // The error message docs/semantics.md shows, on line 3: `line 3, column 12: expected a duration such as 1m or 30s,
        // found "1 minute"`.
        let text = "# comment\n# comment\nglobal     300/1 minute\n";
        let e = Policy::parse(text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3, column 16: expected a duration such as 1m or 30s, found \"1 minute\""
        );
        assert_error(
            "global 300/1 minute",
            1,
            12,
            &format!("{DURATION_MESSAGE} \"1 minute\""),
        );
        assert_error(
            "auth lockout 5/15 minutes for 15m",
            1,
            16,
            &format!("{DURATION_MESSAGE} \"15 minutes\""),
        );
        // `for` is a keyword: the threshold alone is reported.
        assert_error(
            "auth lockout 5/15 for 15m",
            1,
            16,
            &format!("{DURATION_MESSAGE} \"15\""),
        );
        assert_error(
            "auth lockout 5/15m for 15 minutes",
            1,
            24,
            &format!("{DURATION_MESSAGE} \"15 minutes\""),
        );
        assert_error(
            "auth lockout 5/15m for 15m..24 hours",
            1,
            29,
            &format!("{DURATION_MESSAGE} \"24 hours\""),
        );
    }

    // --- window rules ------------------------------------------------------------------------

    #[test]
    fn flags_in_any_order() {
        assert_eq!(only_rule("a 1/1s"), window(1, 1000, false, false));
        assert_eq!(only_rule("a 1/1s strict"), window(1, 1000, true, false));
        assert_eq!(only_rule("a 1/1s dry-run"), window(1, 1000, false, true));
        assert_eq!(
            only_rule("a 1/1s strict dry-run"),
            window(1, 1000, true, true)
        );
        assert_eq!(
            only_rule("a 1/1s dry-run strict"),
            window(1, 1000, true, true)
        );
    }

    #[test]
    fn flag_errors() {
        assert_error(
            "auth 10/1m foo",
            1,
            12,
            "expected \"strict\", \"dry-run\" or the end of the line, found \"foo\"",
        );
        assert_error(
            "auth 10/1m Strict",
            1,
            12,
            "expected \"strict\", \"dry-run\" or the end of the line, found \"Strict\"",
        );
        assert_error(
            "auth 10/1m strict strict",
            1,
            19,
            "expected \"dry-run\" or the end of the line, found \"strict\" again",
        );
        assert_error(
            "auth 10/1m dry-run dry-run",
            1,
            20,
            "expected \"strict\" or the end of the line, found \"dry-run\" again",
        );
        assert_error(
            "auth 10/1m dry-run strict x",
            1,
            27,
            "expected the end of the line, found \"x\"",
        );
        assert_error(
            "auth 10/1m strict dry-run strict",
            1,
            27,
            "expected the end of the line, found \"strict\" again",
        );
    }

    #[test]
    fn request_count_bounds() {
        assert_eq!(only_rule("a 1/1s"), window(1, 1000, false, false));
        assert_eq!(only_rule("a 65535/1s"), window(65_535, 1000, false, false));
        let message = "expected a number of requests from 1 to 65535, found";
        assert_error("auth 0/1m", 1, 6, &format!("{message} \"0\""));
        assert_error("auth 65536/1m", 1, 6, &format!("{message} \"65536\""));
        assert_error("auth -1/1m", 1, 6, &format!("{message} \"-1\""));
        assert_error("auth +1/1m", 1, 6, &format!("{message} \"+1\""));
        assert_error("auth ten/1m", 1, 6, &format!("{message} \"ten\""));
        assert_error("auth /1m", 1, 6, &format!("{message} nothing"));
        assert_error(
            "auth 99999999999999999999999999/1m",
            1,
            6,
            &format!("{message} \"99999999999999999999999999\""),
        );
    }

    #[test]
    fn missing_or_malformed_window() {
        assert_error(
            "auth",
            1,
            5,
            "unexpected end of line: expected N/DURATION such as 10/1m",
        );
        assert_error(
            "  auth   # no limit",
            1,
            7,
            "unexpected end of line: expected N/DURATION such as 10/1m",
        );
        assert_error(
            "auth 10",
            1,
            6,
            "expected N/DURATION such as 10/1m or \"lockout\", found \"10\"",
        );
        assert_error(
            "auth lockot 5/15m for 15m",
            1,
            6,
            "expected N/DURATION such as 10/1m or \"lockout\", found \"lockot\"",
        );
    }

    #[test]
    fn duplicate_rules() {
        assert_error(
            "write 30/1m\nwrite 30/60s strict",
            2,
            1,
            "duplicate rule \"write 30/1m\": the same rule is on line 1",
        );
        assert_error(
            "global 5/1s\n\n  global 5/1000ms dry-run",
            3,
            3,
            "duplicate rule \"global 5/1s\": the same rule is on line 1",
        );
        // Same category with another limit or window, or the same rule in another category.
        let policy = parse("write 30/1m\nwrite 31/1m\nwrite 30/1h\nread 30/1m");
        assert_eq!(policy.rules.len(), 4);
    }

    // --- category names and keywords -------------------------------------------------------

    #[test]
    fn category_names() {
        for name in ["a", "auth", "a1", "api-v2", "user_login", "z-", "x_9-y"] {
            assert_eq!(parse(&format!("{name} 1/1s")).rules[0].name, name);
        }
        for name in [
            "Auth", "1auth", "_a", "-a", "a.b", "a/b", "aB", "café", "日本", "10/1m",
        ] {
            assert_error(
                &format!("{name} 1/1s"),
                1,
                1,
                &format!("{NAME_MESSAGE} \"{name}\""),
            );
        }
        // `global` is an ordinary name for rules and lockouts; `strict`, `for`... are names too.
        parse("global 1/1s\nglobal lockout 3/1m for 1h\nstrict 1/1s\nfor 1/1s\ndeny 1/1s");
        assert_error(
            "lockout 5/15m for 15m",
            1,
            1,
            &format!("{NAME_MESSAGE} the keyword \"lockout\""),
        );
        // `capacity` and `when-full` start their own directives.
        assert_error(
            "capacity 10/1m",
            1,
            10,
            "expected a capacity from 1 to 268435456, found \"10/1m\"",
        );
        assert_error(
            "when-full 10/1m",
            1,
            11,
            "expected \"deny\" or \"allow\", found \"10/1m\"",
        );
    }

    // --- lockouts ------------------------------------------------------------------------------

    #[test]
    fn lockouts() {
        assert_eq!(
            only_rule("auth lockout 5/15m for 15m"),
            RuleKind::Lockout(LockoutRule {
                failures: 5,
                window_ms: 15 * MINUTE,
                ban_ms: 15 * MINUTE,
                max_ban_ms: None,
            })
        );
        assert_eq!(
            only_rule("auth lockout 65535/30d for 1ms..30d"),
            RuleKind::Lockout(LockoutRule {
                failures: 65_535,
                window_ms: MAX_DURATION_MS,
                ban_ms: 1,
                max_ban_ms: Some(MAX_DURATION_MS),
            })
        );
        // MAX may equal BAN.
        assert_eq!(
            only_rule("auth lockout 1/1s for 1h..60m"),
            RuleKind::Lockout(LockoutRule {
                failures: 1,
                window_ms: 1000,
                ban_ms: HOUR,
                max_ban_ms: Some(HOUR),
            })
        );
    }

    #[test]
    fn lockout_errors() {
        assert_error(
            "auth lockout",
            1,
            13,
            "unexpected end of line: expected F/DURATION such as 5/15m",
        );
        assert_error(
            "auth lockout 5 for 15m",
            1,
            14,
            "expected F/DURATION such as 5/15m, found \"5\"",
        );
        let failures = "expected a number of failures from 1 to 65535, found";
        assert_error(
            "auth lockout 0/15m for 15m",
            1,
            14,
            &format!("{failures} \"0\""),
        );
        assert_error(
            "auth lockout 65536/15m for 15m",
            1,
            14,
            &format!("{failures} \"65536\""),
        );
        assert_error(
            "auth lockout 5/15m",
            1,
            19,
            "unexpected end of line: expected \"for\" after the lockout threshold",
        );
        assert_error(
            "auth lockout 5/15m to 15m",
            1,
            20,
            "expected \"for\" after the lockout threshold, found \"to\"",
        );
        assert_error(
            "auth lockout 5/15m for",
            1,
            23,
            "unexpected end of line: expected a ban duration such as 15m or 15m..24h",
        );
        assert_error(
            "auth lockout 5/15m for 1h..15m",
            1,
            28,
            "expected a maximum ban of at least 1h, found \"15m\"",
        );
        assert_error(
            "auth lockout 5/15m for ..24h",
            1,
            24,
            &format!("{DURATION_MESSAGE} nothing"),
        );
        assert_error(
            "auth lockout 5/15m for 15m..",
            1,
            29,
            &format!("{DURATION_MESSAGE} nothing"),
        );
        assert_error(
            "auth lockout 5/15m for 15m...24h",
            1,
            29,
            &format!("{DURATION_MESSAGE} \".24h\""),
        );
        assert_error(
            "auth lockout 5/15m for 0s..1h",
            1,
            24,
            &format!("{RANGE_MESSAGE} \"0s\""),
        );
        assert_error(
            "auth lockout 5/15m for 15m..31d",
            1,
            29,
            &format!("{RANGE_MESSAGE} \"31d\""),
        );
        assert_error(
            "auth lockout 5/15m for 15m..24h x",
            1,
            33,
            "expected the end of the line, found \"x\"",
        );
        assert_error(
            "auth lockout 5/15m for 15m strict",
            1,
            28,
            "expected the end of the line, found \"strict\"",
        );
    }

    #[test]
    fn at_most_one_lockout_per_category() {
        assert_error(
            "auth lockout 5/15m for 15m\nauth 10/1m\nauth lockout 3/1m for 1h",
            3,
            1,
            "duplicate lockout for \"auth\": a category has at most one, and the first is on line 1",
        );
        let policy = parse("auth lockout 5/15m for 15m\nlogin lockout 5/15m for 15m");
        assert_eq!(policy.rules.len(), 2);
    }

    // --- capacity and when-full ------------------------------------------------------------

    #[test]
    fn capacity() {
        assert_eq!(parse("capacity 1").capacity, 1);
        assert_eq!(parse("capacity 268435456").capacity, MAX_CAPACITY);
        let message = "expected a capacity from 1 to 268435456, found";
        assert_error("capacity 0", 1, 10, &format!("{message} \"0\""));
        assert_error(
            "capacity 268435457",
            1,
            10,
            &format!("{message} \"268435457\""),
        );
        assert_error("capacity +5", 1, 10, &format!("{message} \"+5\""));
        assert_error("capacity 64k", 1, 10, &format!("{message} \"64k\""));
        assert_error(
            "capacity 99999999999999999999999999999",
            1,
            10,
            &format!("{message} \"99999999999999999999999999999\""),
        );
        assert_error(
            "capacity",
            1,
            9,
            "unexpected end of line: expected a capacity from 1 to 268435456",
        );
        assert_error(
            "capacity 10 20",
            1,
            13,
            "expected the end of the line, found \"20\"",
        );
        assert_error(
            "capacity 10\nauth 1/1s\ncapacity 20",
            3,
            1,
            "duplicate \"capacity\": it is already set on line 1",
        );
        // Even the same value twice.
        assert_error(
            "capacity 10\n  capacity 10",
            2,
            3,
            "duplicate \"capacity\": it is already set on line 1",
        );
    }

    #[test]
    fn when_full() {
        assert_eq!(parse("when-full deny").when_full, WhenFull::Deny);
        assert_eq!(parse("when-full allow").when_full, WhenFull::Allow);
        assert_error(
            "when-full maybe",
            1,
            11,
            "expected \"deny\" or \"allow\", found \"maybe\"",
        );
        assert_error(
            "when-full Allow",
            1,
            11,
            "expected \"deny\" or \"allow\", found \"Allow\"",
        );
        assert_error(
            "when-full",
            1,
            10,
            "unexpected end of line: expected \"deny\" or \"allow\"",
        );
        assert_error(
            "when-full deny now",
            1,
            16,
            "expected the end of the line, found \"now\"",
        );
        assert_error(
            "when-full allow\nwhen-full deny",
            2,
            1,
            "duplicate \"when-full\": it is already set on line 1",
        );
    }

    // --- layout: comments, whitespace, line endings, non-ASCII ------------------------------

    #[test]
    fn comments_anywhere() {
        let policy = parse(
            "# head\nauth 10/1m # ten a minute\nauth 20/1h#tight\n   # indented\ncapacity 7# seven",
        );
        assert_eq!(
            policy.rules,
            [
                rule("auth", window(10, MINUTE, false, false), 2),
                rule("auth", window(20, HOUR, false, false), 3),
            ]
        );
        assert_eq!(policy.capacity, 7);
        // A `#` inside a token ends the token there.
        assert_error("auth 10/1#m", 1, 9, &format!("{DURATION_MESSAGE} \"1\""));
        // Non-ASCII in comments is fine.
        parse("auth 10/1m # déjà vu ☃ 日本\n# ünïcödé");
    }

    #[test]
    fn tabs_and_spaces() {
        let policy = parse("\tauth\t\t10/1m \t strict\t\ncapacity\t9 ");
        assert_eq!(
            policy.rules[0],
            rule("auth", window(10, MINUTE, true, false), 1)
        );
        assert_eq!(policy.capacity, 9);
        // A tab counts as one column.
        assert_error("auth\t10/0s", 1, 9, &format!("{RANGE_MESSAGE} \"0s\""));
    }

    #[test]
    fn crlf_line_endings() {
        let crlf = DEFAULT_POLICY.replace('\n', "\r\n");
        assert_eq!(parse(&crlf), parse(DEFAULT_POLICY));
        assert_error(
            "auth 10/1m\r\nauth 0/1m\r\n",
            2,
            6,
            "expected a number of requests from 1 to 65535, found \"0\"",
        );
        // A lone carriage return is not a line ending.
        assert_error(
            "auth 10/1m\rstrict",
            1,
            9,
            &format!("{DURATION_MESSAGE} \"1m\\rstrict\""),
        );
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        assert_eq!(
            parse(&format!("\u{feff}{DEFAULT_POLICY}")),
            parse(DEFAULT_POLICY)
        );
        assert_error(
            "\u{feff}auth 0/1m",
            1,
            6,
            "expected a number of requests from 1 to 65535, found \"0\"",
        );
    }

    #[test]
    fn non_ascii_columns_count_characters() {
        assert_error(
            "auth 10/1m ☃",
            1,
            12,
            "expected \"strict\", \"dry-run\" or the end of the line, found \"☃\"",
        );
        assert_error(
            "auth 10/1m strict dry-run ünï",
            1,
            27,
            "expected the end of the line, found \"ünï\"",
        );
        assert_error("auth 10/1é", 1, 9, &format!("{DURATION_MESSAGE} \"1é\""));
        assert_error(
            "auth 1é 1m",
            1,
            6,
            "expected N/DURATION such as 10/1m or \"lockout\", found \"1é\"",
        );
        assert_error(
            "auth 1日/1m",
            1,
            6,
            "expected a number of requests from 1 to 65535, found \"1日\"",
        );
        // A non-breaking space is not a separator, and invisible characters are escaped.
        assert_error(
            "auth\u{a0}10/1m",
            1,
            1,
            &format!("{NAME_MESSAGE} \"auth\\u{{a0}}10/1m\""),
        );
        assert_error(
            "auth 10/1m \"x\"",
            1,
            12,
            "expected \"strict\", \"dry-run\" or the end of the line, found \"\\\"x\\\"\"",
        );
    }

    #[test]
    fn errors_name_the_right_line() {
        let text = "# c\n\nglobal 1/1s\n   \nauth 10/1m\nauth 10/1m strict  oops  \n";
        let message = "expected \"dry-run\" or the end of the line, found \"oops\"";
        assert_error(text, 6, 20, message);
        let e = Policy::parse(text).unwrap_err();
        assert_eq!(e.to_string(), format!("line 6, column 20: {message}"));
    }

    // --- canonical form ------------------------------------------------------------------------

    /// Checks `parse(canonical(p)) == p` up to lines, and that canonical lines are 1..=n.
    fn assert_round_trip(text: &str) -> String {
        let policy = parse(text);
        let canonical = policy.canonical();
        let reparsed = Policy::parse(&canonical)
            .unwrap_or_else(|e| panic!("canonical {canonical:?} of {text:?}: {e}"));
        let lines: Vec<usize> = reparsed.rules.iter().map(|r| r.line).collect();
        assert_eq!(lines, (1..=policy.rules.len()).collect::<Vec<_>>());
        let mut renumbered = policy.clone();
        for (i, rule) in renumbered.rules.iter_mut().enumerate() {
            rule.line = i + 1;
        }
        assert_eq!(reparsed, renumbered, "canonical {canonical:?} of {text:?}");
        // The canonical form is a fixed point.
        assert_eq!(reparsed.canonical(), canonical);
        canonical
    }

    #[test]
    fn canonical_default_policy() {
        assert_eq!(
            assert_round_trip(DEFAULT_POLICY),
            "global 300/1m\n\
             media 60/1m\n\
             analytics 120/1m\n\
             write 30/1m\n\
             write 500/1h\n\
             auth 10/1m\n\
             auth lockout 5/15m for 15m..1d\n\
             capacity 65536\n\
             when-full deny\n"
        );
    }

    #[test]
    fn canonical_round_trips() {
        assert_eq!(
            assert_round_trip(
                "when-full allow\ncapacity 5 # small\n\n beta\t7/90000ms dry-run strict\n\
                 alpha lockout 3/1500ms for 120m\nglobal 1/24h dry-run\nbeta 7/1s"
            ),
            "beta 7/90s strict dry-run\n\
             alpha lockout 3/1500ms for 2h\n\
             global 1/1d dry-run\n\
             beta 7/1s\n\
             capacity 5\n\
             when-full allow\n"
        );
        assert_eq!(assert_round_trip(""), "capacity 65536\nwhen-full deny\n");
        assert_round_trip("a lockout 65535/30d for 1ms..2592000000ms\nb 65535/1ms strict");
        assert_round_trip("x 1/86400001ms\nglobal 2/3600000ms\ncapacity 268435456");
    }

    #[test]
    fn large_policy_parses_in_linear_time() {
        let text: String = (0..50_000)
            .map(|i| format!("c{i} {}/1s\nc{i} lockout 3/1m for 1h\n", 1 + i % 65_535))
            .collect();
        let policy = parse(&text);
        assert_eq!(policy.rules.len(), 100_000);
        assert_eq!(policy.categories.len(), 50_001);
        assert_eq!(policy.category_id("c49999"), Some(50_000));
        let duplicate = format!("{text}c123 124/1000ms strict");
        assert_error(
            &duplicate,
            100_001,
            1,
            "duplicate rule \"c123 124/1s\": the same rule is on line 247",
        );
    }

    // --- robustness ------------------------------------------------------------------------------

    /// A small deterministic generator (xorshift64*), so the smoke test needs no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    /// Checks the invariants of any parse result: errors point inside the text, successes
    /// round-trip through the canonical form.
    fn check_any(text: &str) {
        match Policy::parse(text) {
            Ok(policy) => {
                let canonical = policy.canonical();
                let reparsed = Policy::parse(&canonical)
                    .unwrap_or_else(|e| panic!("canonical {canonical:?} of {text:?}: {e}"));
                assert_eq!(reparsed.rules.len(), policy.rules.len());
                assert_eq!(reparsed.categories, policy.categories);
                assert_eq!(reparsed.canonical(), canonical);
            }
            Err(e) => {
                let text = text.strip_prefix('\u{feff}').unwrap_or(text);
                let lines: Vec<&str> = text.split('\n').collect();
                assert!(e.line >= 1 && e.line <= lines.len(), "{text:?}: {e}");
                let width = lines[e.line - 1].chars().count();
                assert!(e.column >= 1 && e.column <= width + 1, "{text:?}: {e}");
                assert!(
                    e.message.starts_with("expected")
                        || e.message.starts_with("unexpected end of line: expected")
                        || e.message.starts_with("duplicate"),
                    "{text:?}: {e}"
                );
            }
        }
    }

    #[test]
    fn smoke_no_panic_on_mutated_and_garbage_input() {
        const PIECES: &[&str] = &[
            " ",
            "\t",
            "\n",
            "\r\n",
            "\r",
            "#",
            "/",
            "..",
            "...",
            "0",
            "1",
            "9",
            "65535",
            "65536",
            "99999999999999999999999",
            "ms",
            "s",
            "m",
            "h",
            "d",
            "lockout",
            "for",
            "strict",
            "dry-run",
            "capacity",
            "when-full",
            "deny",
            "allow",
            "global",
            "auth",
            "-",
            "_",
            "é",
            "日本",
            "☃",
            "\u{feff}",
            "\u{a0}",
            "\u{301}",
            "\u{200b}",
            "\0",
            "\u{10ffff}",
            "minute",
            "A",
            "\"",
            "\\",
        ];
        let seeds = [
            DEFAULT_POLICY,
            "auth lockout 5/15m for 15m..24h\nwhen-full allow",
            "a 1/1s strict dry-run\ncapacity 10",
            "",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut parsed = 0;
        for round in 0..20_000 {
            let mut text: String = if round % 5 == 4 {
                // Pure garbage made of pieces.
                (0..rng.below(30)).map(|_| rng.pick(PIECES)).collect()
            } else {
                rng.pick(&seeds).to_string()
            };
            for _ in 0..1 + rng.below(4) {
                let chars: Vec<char> = text.chars().collect();
                let at = rng.below(chars.len() + 1);
                let byte = chars[..at].iter().map(|c| c.len_utf8()).sum::<usize>();
                match rng.below(4) {
                    0 => text.insert_str(byte, rng.pick(PIECES)),
                    1 if at < chars.len() => {
                        let end = byte + chars[at].len_utf8();
                        text.replace_range(byte..end, "");
                    }
                    2 if at < chars.len() => {
                        let end = byte + chars[at].len_utf8();
                        text.replace_range(byte..end, rng.pick(PIECES));
                    }
                    _ => text.truncate(byte),
                }
            }
            check_any(&text);
            parsed += usize::from(Policy::parse(&text).is_ok());
        }
        // The mutations must leave some policies valid, or the round trip is never exercised.
        assert!(parsed > 100, "only {parsed} mutated policies parsed");
    }

    #[test]
    fn smoke_every_prefix_and_single_character_line() {
        let text = "\u{feff}auth lockout 5/15m for 15m..24h # ☃\r\nwé 1/1s strict\ncapacity 1";
        for (i, _) in text.char_indices() {
            check_any(&text[..i]);
            check_any(&text[i..]);
        }
        for c in (0u32..0x3000)
            .chain(0x10_fff0..0x11_0000)
            .filter_map(char::from_u32)
        {
            check_any(&c.to_string());
            check_any(&format!("a 1/1{c}"));
            check_any(&format!("a lockout 1/1s for 1s.{c}"));
        }
    }
}
