//! The engine's Rust API: [`Limiter`], [`Category`], [`Decision`], [`Status`].

use crate::error::{Error, MAX_KEY_LEN};
use crate::hash::{hash_key, random_secret};
use std::path::{Path, PathBuf};

use crate::engine::log::{Log, Observed, Summary};
use crate::policy::{Policy, WhenFull};
use crate::sync::{AtomicU64, Ordering};
use crate::table::layout::{
    layout_for, policy_fingerprint, stat, LockoutLayout, WindowLayout, MAX_RULES_PER_CATEGORY,
};
use crate::table::{lock_level, lock_pack, lock_until, Found, KeyHash, Table};
use crate::time::{ceil_secs, ceil_secs_bounded, Clock, SystemClock, MAX_TIME_MS};

/// A category of requests, resolved once from its name with [`Limiter::category`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Category(pub(crate) usize);

impl Category {
    /// `global`: requests with no category of their own. Always id 0.
    pub const GLOBAL: Category = Category(0);

    /// The category's id (its index in [`Policy::categories`]).
    pub fn id(self) -> usize {
        self.0
    }
}

/// What happened to a request. The numbers are part of the C ABI and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    /// Admitted by every rule.
    Passed = 0,
    /// Refused by a rule.
    Limited = 1,
    /// Refused: the key is locked out of the category.
    Locked = 2,
    /// No slot could be had for a new key (every candidate holds an active lockout);
    /// `when-full` decided whether it was admitted.
    Full = 3,
    /// Admitted, but a `dry-run` rule would have refused it.
    DryRunLimited = 4,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Limited => "limited",
            Status::Locked => "locked",
            Status::Full => "full",
            Status::DryRunLimited => "dry-run-limited",
        }
    }
}

/// The answer to a request, reported for its deciding rule (SPEC §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub status: Status,
    /// N of the deciding rule (F for a lockout); 0 when no rule applies.
    pub limit: u32,
    /// Requests the deciding rule would still admit now, after recording this one; 0 when
    /// refused. For `failure`: failures left before a lockout.
    pub remaining: u32,
    /// Unix seconds (rounded up) when `remaining` next grows: the oldest logged timestamp in
    /// the window plus the window; the end of the lock when locked.
    pub reset: i64,
    /// Whole seconds from now until `reset` (rounded up): the IETF `t` parameter.
    pub reset_after: u32,
    /// Whole seconds (rounded up, at least 1) until this request would be admitted; 0 when
    /// allowed.
    pub retry_after: u32,
    /// Index of the deciding rule in [`Policy::rules`] (policy order), if any.
    pub rule: Option<usize>,
    /// The deciding rule's window (the lockout's failure window when locked).
    pub window_ms: i64,
}

impl Default for Decision {
    /// An admitted request with no rule: the value of a decision not yet made.
    fn default() -> Decision {
        Decision {
            allowed: true,
            status: Status::Passed,
            limit: 0,
            remaining: 0,
            reset: 0,
            reset_after: 0,
            retry_after: 0,
            rule: None,
            window_ms: 0,
        }
    }
}

/// Table-wide and per-rule counts (SPEC §4).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Most live keys the table holds.
    pub capacity: u64,
    /// Keys that hold a slot now.
    pub live_keys: u64,
    /// Keys with an active lockout now.
    pub locked_keys: u64,
    /// Slots being claimed for a new key right now. A claim left by a killed process stays
    /// here until an install that needs its position takes it over (2 s after it was made).
    pub installing: u64,
    /// Slots taken from a key whose state still mattered (least recently active).
    pub evictions: u64,
    /// Slots taken from a key whose state had expired.
    pub reclaimed: u64,
    /// Requests for which no slot could be had.
    pub full: u64,
    /// Bytes of table memory per key (its slot and index word).
    pub bytes_per_key: u64,
    /// One entry per rule, in policy order.
    pub rules: Vec<RuleStats>,
}

/// What [`Limiter::unlock_at`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unlock {
    /// The key was locked until `until_ms`; it no longer is.
    Unlocked { until_ms: i64 },
    /// The key holds a slot but was not locked (its failures were forgotten all the same).
    NotLocked,
    /// The table holds nothing for the key (never seen, or evicted): nothing changed.
    UnknownKey,
}

/// Counts of one rule (or lockout).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Requests this rule admitted (and the request was admitted).
    pub passed: u64,
    /// Requests this rule refused. A check refused because it lost races with other threads
    /// or processes too many times in a row (or met its own key being installed elsewhere)
    /// counts here too, under the category's first rule, which its decision names.
    pub limited: u64,
    /// Requests this dry-run rule would have refused.
    pub dry_run_limited: u64,
    /// Lockout: requests refused because the key was locked.
    pub locked: u64,
    /// Lockout: lockouts started.
    pub lockouts: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Check,
    Peek,
}

/// `decide::<REPORT>` builds the whole decision; `decide::<NO_REPORT>` (for
/// [`Limiter::allow`]) decides, records and counts the same, and fills in only `allowed` and
/// `status`: the report's counting is skipped.
const REPORT: bool = true;
const NO_REPORT: bool = false;

/// The decision of [`Limiter::allow`], which reports nothing else.
fn verdict(allowed: bool) -> Decision {
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

/// How many times a check re-reads its rules after losing a race on one of them before it
/// refuses (which is always safe). Each lost race means another request was logged.
const MAX_ATTEMPTS: usize = 64;

/// Builds a [`Limiter`]: its policy, where its table lives, its clock and its secret.
///
/// ```no_run
/// use sluice::{Limiter, LimiterBuilder, DEFAULT_POLICY};
/// // Every worker process runs this line; the first creates the file, the others attach.
/// let shared = Limiter::builder(DEFAULT_POLICY).path("/dev/shm/api.sluice").open()?;
/// // An operator's tool attaches with the policy stored in the file.
/// let same = LimiterBuilder::new().path("/dev/shm/api.sluice").open()?;
/// # Ok::<(), sluice::Error>(())
/// ```
pub struct LimiterBuilder {
    policy: Option<String>,
    path: Option<PathBuf>,
    clock: Box<dyn Clock>,
    secret: Option<[u64; 2]>,
    huge_pages: bool,
    file: crate::table::FileOptions,
}

impl Default for LimiterBuilder {
    fn default() -> LimiterBuilder {
        LimiterBuilder::new()
    }
}

impl LimiterBuilder {
    /// No policy, private memory, the system clock, a random secret.
    pub fn new() -> LimiterBuilder {
        LimiterBuilder {
            policy: None,
            path: None,
            clock: Box::new(SystemClock),
            secret: None,
            huge_pages: false,
            file: crate::table::FileOptions::default(),
        }
    }

    /// The policy (the language of SPEC §2). Required for a private table and for creating a
    /// file; when attaching to an existing file, it must be the file's policy (compared rule by
    /// rule, so comments and spelling do not matter), or the open fails and the file is left
    /// as it is. Without it, a file is attached with the policy stored in it.
    pub fn policy(mut self, policy: &str) -> Self {
        self.policy = Some(policy.to_owned());
        self
    }

    /// Keep the table in the file at `path`, mapped shared: every process that opens the path
    /// shares its limits and lockouts, and they survive restarts. A missing file is created
    /// (mode 0600, sparse, sized from the policy's capacity); an existing one is checked and
    /// attached. `/dev/shm/NAME` keeps it in memory until reboot; a path on a disk file system
    /// keeps it across reboots.
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        self.path = Some(path.as_ref().to_owned());
        self
    }

    /// The clock used when no explicit `now` is given (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// A fixed hash secret instead of a random one: only for reproducible tests, since a
    /// known secret lets an attacker aim keys at one neighbourhood. A file that already exists
    /// keeps its own secret.
    pub fn secret(mut self, secret: [u64; 2]) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Back the table with transparent huge pages (`madvise(MADV_HUGEPAGE)`; default off).
    ///
    /// Checks of many distinct keys spread over a large table miss the TLB on nearly every
    /// lookup; with 2 MiB pages they mostly do not (BENCHMARKS.md measures it). The price:
    /// resident memory grows in 2 MiB steps as keys arrive, up to the whole table, instead
    /// of 4 KiB at a time. Advice only, as the kernel takes it: a kernel without transparent
    /// huge pages ignores it, and for a table file the kernel's shmem setting
    /// (`/sys/kernel/mm/transparent_hugepage/shmem_enabled`, or tmpfs `huge=`) decides.
    pub fn huge_pages(mut self, on: bool) -> Self {
        self.huge_pages = on;
        self
    }

    /// The permission bits a table file is created with (default `0o600`: the creating user
    /// only). `0o660` lets a group share it, e.g. nginx workers running as `www-data` and an
    /// application running as another user of the same group (give the file that group: a
    /// setgid directory, or `chgrp`; ARCHITECTURE.md §7). The mode is set with `fchmod`, so
    /// the process umask does not apply; an existing file keeps its own mode. Only the bits
    /// of `0o666` may be given: any other bit makes `open` fail with [`Error::File`], whose
    /// source is of kind `InvalidInput` and names the bits, before anything is created.
    pub fn mode(mut self, mode: u32) -> Self {
        self.file.mode = mode;
        self
    }

    /// Attach to an existing table file for reading only (default off): the file is opened
    /// `O_RDONLY` and mapped `PROT_READ`, so a user who may only read it can still inspect it,
    /// and the reader sees what the writers record as they record it. `peek`, `stats` and
    /// the policy work; every call that would record something returns [`Error::ReadOnly`].
    /// A missing file is [`Error::NoTable`], never created; a policy, if given, is still
    /// checked against the file's. `sluice stat` and `sluice peek` attach this way.
    pub fn read_only(mut self, on: bool) -> Self {
        self.file.read_only = on;
        self
    }

    pub fn open(self) -> Result<Limiter, Error> {
        let huge_pages = self.huge_pages;
        let limiter = self.open_table()?;
        if huge_pages {
            // Advice: declined by a kernel without THP, which is not an error here.
            let _ = limiter.table.advise_huge_pages();
        }
        Ok(limiter)
    }

    fn open_table(self) -> Result<Limiter, Error> {
        let now = self.clock.now_ms();
        let secret = self.secret.unwrap_or_else(random_secret);
        #[cfg(not(loom))]
        if let Some(path) = &self.path {
            let opened =
                crate::table::file::open(path, self.policy.as_deref(), secret, now, &self.file)?;
            return Ok(Limiter {
                table: opened.table,
                read_only: self.file.read_only,
                policy: opened.policy,
                policy_text: opened.text,
                clock: self.clock,
                path: Some(path.clone()),
            });
        }
        let text = self.policy.as_deref().ok_or(Error::NoPolicy)?;
        let policy = Policy::parse(text)?;
        let layout = layout_for(&policy, text.len())?;
        let table = Table::new_private(layout, secret, text, policy_fingerprint(&policy), now)?;
        Ok(Limiter {
            table,
            read_only: false,
            policy,
            policy_text: text.to_owned(),
            clock: self.clock,
            path: None,
        })
    }
}

/// An exact, lock-free rate limiter over one table. `Send + Sync`: share it between threads
/// by reference or `Arc`.
///
/// ```
/// use sluice::{Limiter, Status};
///
/// let limiter = Limiter::open("global 2/1s\nauth 1/1m\nauth lockout 3/15m for 15m..24h")?;
/// let auth = limiter.category("auth")?;
/// let t = 1_700_000_000_000; // Unix milliseconds
///
/// assert!(limiter.check_at("198.51.100.7", auth, t)?.allowed);
/// let d = limiter.check_at("198.51.100.7", auth, t + 10)?;
/// assert_eq!(d.status, Status::Limited);
/// assert_eq!(d.retry_after, 60); // the auth rule frees up a minute after the first request
/// # Ok::<(), sluice::Error>(())
/// ```
pub struct Limiter {
    table: Table,
    /// Attached with [`LimiterBuilder::read_only`]: the table is mapped read-only, and every
    /// call that would record something returns [`Error::ReadOnly`] before touching it.
    read_only: bool,
    policy: Policy,
    policy_text: String,
    clock: Box<dyn Clock>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A window rule as one decision sees it: its log in the key's slot, its layout, and what
/// the last read of the log found.
#[derive(Clone, Copy)]
struct Rule<'a> {
    log: Log<'a>,
    wl: &'a WindowLayout,
    obs: Observed,
}

#[inline(always)]
fn key_bytes(key: &[u8]) -> Result<&[u8], Error> {
    match key.len() {
        0 => Err(Error::EmptyKey),
        n if n > MAX_KEY_LEN => Err(Error::KeyTooLong(n)),
        _ => Ok(key),
    }
}

#[inline(always)]
fn check_time(now: i64) -> Result<i64, Error> {
    if (0..=MAX_TIME_MS).contains(&now) {
        Ok(now)
    } else {
        Err(Error::TimeOutOfRange(now))
    }
}

impl Limiter {
    /// A limiter for `policy` (the language of SPEC §2) in private memory, with the system
    /// clock and a random hash secret.
    pub fn open(policy: &str) -> Result<Limiter, Error> {
        Limiter::builder(policy).open()
    }

    /// Loom models: every reservation counts as abandoned as soon as it is made, so that
    /// takeovers race with owners that are still running.
    #[cfg(loom)]
    pub(crate) fn abandon_claims_at_once(mut self) -> Limiter {
        self.table.claims.abandon_after_s = 0;
        self
    }

    /// Loom models: does `key` hold a slot?
    #[cfg(loom)]
    pub(crate) fn holds_slot(&self, key: &str) -> bool {
        let kh = self
            .table
            .split_hash(hash_key(self.table.secret, key.as_bytes()));
        matches!(self.table.find(&kh), Found::Slot(_))
    }

    /// Loom models: the home position of `key`.
    #[cfg(loom)]
    pub(crate) fn home_of(&self, key: &str) -> usize {
        self.table
            .split_hash(hash_key(self.table.secret, key.as_bytes()))
            .home
    }

    /// A builder for `policy`; add [`LimiterBuilder::path`] to share the table through a file.
    pub fn builder(policy: &str) -> LimiterBuilder {
        LimiterBuilder::new().policy(policy)
    }

    /// The limiter whose table is the file at `path`, created for `policy` if it does not
    /// exist yet (see [`LimiterBuilder::path`]).
    pub fn open_file(policy: &str, path: impl AsRef<Path>) -> Result<Limiter, Error> {
        Limiter::builder(policy).path(path).open()
    }

    /// Attach to the existing table file at `path`, with the policy stored in it.
    pub fn attach(path: impl AsRef<Path>) -> Result<Limiter, Error> {
        LimiterBuilder::new().path(path).open()
    }

    /// The table file, if the table lives in one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The policy's text, as given when the table was made (for a table attached from a
    /// file: as stored in the file).
    pub fn policy_text(&self) -> &str {
        &self.policy_text
    }

    /// The limiter's clock, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Resolve a category name (do it once, not per request).
    pub fn category(&self, name: &str) -> Result<Category, Error> {
        self.policy
            .categories
            .iter()
            .position(|c| c == name)
            .map(Category)
            .ok_or_else(|| Error::UnknownCategory {
                name: name.to_owned(),
                known: self.policy.categories.clone(),
            })
    }

    /// Name of a category.
    pub fn category_name(&self, category: Category) -> Option<&str> {
        self.policy.categories.get(category.0).map(String::as_str)
    }

    /// Bytes of table memory each key takes: 8 per logged request of every rule and lockout,
    /// plus its slot header and index word.
    pub fn bytes_per_key(&self) -> usize {
        self.table.layout.bytes_per_key()
    }

    /// Bytes of the whole table (address space; resident memory grows with live keys).
    pub fn table_bytes(&self) -> usize {
        self.table.layout.total_words * 8
    }

    /// Validate the arguments and hash the key. Inlined into `check_at` and `allow_at`,
    /// where returning the `Result` through memory cost ~20 instructions a check; the other
    /// operations call [`Limiter::resolve_outlined`].
    #[inline(always)]
    fn resolve(&self, key: &[u8], category: Category, now: i64) -> Result<KeyHash, Error> {
        let key = key_bytes(key)?;
        if category.0 >= self.policy.categories.len() {
            return Err(Error::InvalidCategory(category.0));
        }
        check_time(now)?;
        Ok(self.table.split_hash(hash_key(self.table.secret, key)))
    }

    /// `Err(ReadOnly)` on a table attached read-only: called by every operation that records.
    #[inline(always)]
    fn writable(&self) -> Result<(), Error> {
        if self.read_only {
            return Err(self.read_only_error());
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn read_only_error(&self) -> Error {
        Error::ReadOnly {
            path: self.path.clone().unwrap_or_default(),
        }
    }

    #[inline(never)]
    fn resolve_outlined(&self, key: &[u8], category: Category, now: i64) -> Result<KeyHash, Error> {
        self.resolve(key, category, now)
    }

    /// May this request of `key` in `category` go ahead now? Records it if so.
    pub fn check(&self, key: impl AsRef<[u8]>, category: Category) -> Result<Decision, Error> {
        self.check_at(key, category, self.clock.now_ms())
    }

    /// [`Limiter::check`] at an explicit time (Unix milliseconds).
    pub fn check_at(
        &self,
        key: impl AsRef<[u8]>,
        category: Category,
        now_ms: i64,
    ) -> Result<Decision, Error> {
        self.writable()?;
        let kh = self.resolve(key.as_ref(), category, now_ms)?;
        Ok(self.decide::<REPORT>(&kh, category.0, now_ms, Op::Check))
    }

    /// [`Limiter::check`] answering only whether the request may go ahead: the same
    /// decision, recorded and counted the same way, without the report (`remaining`,
    /// `reset`, `retry_after`), whose counting is most of a check's work after the hash.
    /// For hosts that send no rate-limit headers; what `governor`'s `check_key` and
    /// `limits`' `hit` answer.
    ///
    /// ```
    /// use sluice::{Category, Limiter};
    /// let l = Limiter::open("global 2/1m")?;
    /// let answers: Vec<bool> = (0..3).map(|_| l.allow_at("10.0.0.1", Category::GLOBAL, 1_000)).collect::<Result<_, _>>()?;
    /// assert_eq!(answers, [true, true, false]);
    /// # Ok::<(), sluice::Error>(())
    /// ```
    pub fn allow(&self, key: impl AsRef<[u8]>, category: Category) -> Result<bool, Error> {
        self.allow_at(key, category, self.clock.now_ms())
    }

    /// [`Limiter::allow`] at an explicit time (Unix milliseconds).
    pub fn allow_at(
        &self,
        key: impl AsRef<[u8]>,
        category: Category,
        now_ms: i64,
    ) -> Result<bool, Error> {
        self.writable()?;
        let kh = self.resolve(key.as_ref(), category, now_ms)?;
        Ok(self
            .decide::<NO_REPORT>(&kh, category.0, now_ms, Op::Check)
            .allowed)
    }

    /// Check many requests at one instant, writing `out[i]` for `requests[i]`. Every request
    /// is validated first: on an error nothing is recorded and `out` is untouched. An invalid
    /// request is reported as [`Error::InBatch`] with its index.
    ///
    /// ```
    /// use sluice::{Category, Decision, Limiter};
    /// let l = Limiter::open("global 1/1m")?;
    /// let mut out = [Decision::default(); 3];
    /// l.check_batch_at(&[(b"a", Category::GLOBAL), (b"b", Category::GLOBAL), (b"a", Category::GLOBAL)], 1_000, &mut out)?;
    /// assert_eq!(out.map(|d| d.allowed), [true, true, false]);
    /// # Ok::<(), sluice::Error>(())
    /// ```
    pub fn check_batch_at<K: AsRef<[u8]>>(
        &self,
        requests: &[(K, Category)],
        now_ms: i64,
        out: &mut [Decision],
    ) -> Result<(), Error> {
        self.writable()?;
        assert_eq!(requests.len(), out.len(), "one decision per request");
        check_time(now_ms)?;
        for (index, (key, category)) in requests.iter().enumerate() {
            self.validate(key.as_ref(), *category)
                .map_err(|e| Error::InBatch {
                    index,
                    error: Box::new(e),
                })?;
        }
        // Being handed many keys at once lets their cache misses overlap: per chunk, hash
        // every key and prefetch its index neighbourhood; then look each up (those lines are
        // arriving) and prefetch its slot's first two lines; then, for larger slots, read each
        // log counter and prefetch the ring entry the check will compare with; then decide
        // each request in order, exactly as `check_at` would one by one. The passes before
        // the last only read and hint: whatever they saw, `decide` makes the decisions afresh.
        const CHUNK: usize = 16;
        let mut hashes = [KeyHash {
            fp: 0,
            home: 0,
            stripe: 0,
        }; CHUNK];
        let mut positions = [None; CHUNK];
        for (reqs, outs) in requests.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            let hashes = &mut hashes[..reqs.len()];
            let positions = &mut positions[..reqs.len()];
            for ((key, _), kh) in reqs.iter().zip(hashes.iter_mut()) {
                *kh = self
                    .table
                    .split_hash(hash_key(self.table.secret, key.as_ref()));
                self.table.prefetch_index(kh);
            }
            for (kh, pos) in hashes.iter().zip(positions.iter_mut()) {
                *pos = self.table.peek_position(kh);
                if let Some(p) = *pos {
                    self.table.prefetch_slot(p);
                }
            }
            for ((_, category), pos) in reqs.iter().zip(positions.iter()) {
                if let Some(p) = *pos {
                    self.prefetch_logs(p, *category);
                }
            }
            for (((_, category), kh), d) in reqs.iter().zip(hashes.iter()).zip(outs.iter_mut()) {
                *d = self.decide::<REPORT>(kh, category.0, now_ms, Op::Check);
            }
        }
        Ok(())
    }

    /// The checks of [`Limiter::resolve`] without the hash: key length and category.
    pub(crate) fn validate(&self, key: &[u8], category: Category) -> Result<(), Error> {
        key_bytes(key)?;
        if category.0 >= self.policy.categories.len() {
            return Err(Error::InvalidCategory(category.0));
        }
        Ok(())
    }

    /// Prefetch, in slot `pos`, the ring entry each window rule of `category` will compare
    /// with next (when the slot is larger than the two lines [`Table::prefetch_slot`]
    /// covers).
    fn prefetch_logs(&self, pos: usize, category: Category) {
        let layout = &self.table.layout;
        if layout.slot_words <= 16 {
            return;
        }
        let slot = self.table.slot(pos);
        for &w in &layout.categories[category.0].windows {
            self.table.window_log(slot, w).prefetch_next();
        }
    }

    /// The decision a check would give now, recording nothing.
    pub fn peek(&self, key: impl AsRef<[u8]>, category: Category) -> Result<Decision, Error> {
        self.peek_at(key, category, self.clock.now_ms())
    }

    pub fn peek_at(
        &self,
        key: impl AsRef<[u8]>,
        category: Category,
        now_ms: i64,
    ) -> Result<Decision, Error> {
        let kh = self.resolve_outlined(key.as_ref(), category, now_ms)?;
        Ok(self.decide::<REPORT>(&kh, category.0, now_ms, Op::Peek))
    }

    /// Record a failed attempt (a wrong password) of `key` in `category`, which must have a
    /// lockout. Returns the key's state after recording: `Locked` with the rest of the lock,
    /// or `Passed` with `remaining` = failures left before a lockout.
    pub fn failure(&self, key: impl AsRef<[u8]>, category: Category) -> Result<Decision, Error> {
        self.failure_at(key, category, self.clock.now_ms())
    }

    pub fn failure_at(
        &self,
        key: impl AsRef<[u8]>,
        category: Category,
        now_ms: i64,
    ) -> Result<Decision, Error> {
        self.writable()?;
        let kh = self.resolve_outlined(key.as_ref(), category, now_ms)?;
        let li = self.lockout_of(category)?;
        Ok(self.record_failure(&kh, li, now_ms))
    }

    /// A successful attempt: clears the key's failure log in `category` (the lockout level is
    /// kept, so a further lockout still escalates).
    pub fn success(&self, key: impl AsRef<[u8]>, category: Category) -> Result<(), Error> {
        self.success_at(key, category, self.clock.now_ms())
    }

    pub fn success_at(
        &self,
        key: impl AsRef<[u8]>,
        category: Category,
        now_ms: i64,
    ) -> Result<(), Error> {
        self.writable()?;
        let kh = self.resolve_outlined(key.as_ref(), category, now_ms)?;
        let li = self.lockout_of(category)?;
        if let Found::Slot(pos) = self.table.find(&kh) {
            let slot = self.table.slot(pos);
            self.table.failure_log(slot, li).clear();
        }
        Ok(())
    }

    /// Clear everything `check(key, category)` consults: the logs of the category's rules
    /// and of the `global` rules, and the category's lockout (failures, lock and level).
    /// The support desk's "unlock" button.
    pub fn reset(&self, key: impl AsRef<[u8]>, category: Category) -> Result<(), Error> {
        self.reset_at(key, category, self.clock.now_ms())
    }

    pub fn reset_at(
        &self,
        key: impl AsRef<[u8]>,
        category: Category,
        now_ms: i64,
    ) -> Result<(), Error> {
        self.writable()?;
        let kh = self.resolve_outlined(key.as_ref(), category, now_ms)?;
        if let Found::Slot(pos) = self.table.find(&kh) {
            let slot = self.table.slot(pos);
            let cl = &self.table.layout.categories[category.0];
            for &w in &cl.windows {
                self.table.window_log(slot, w).clear();
            }
            if let Some(li) = cl.lockout {
                self.table.failure_log(slot, li).clear();
                slot[self.table.layout.lockouts[li].lock].swap(0, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    /// Lift the lockout of `key` in `category` (an operator's pardon): its lock, its level and
    /// its failures are forgotten; its rate-limit logs are kept. Says what was there.
    pub fn unlock_at(
        &self,
        key: impl AsRef<[u8]>,
        category: Category,
        now_ms: i64,
    ) -> Result<Unlock, Error> {
        self.writable()?;
        let kh = self.resolve_outlined(key.as_ref(), category, now_ms)?;
        let li = self.lockout_of(category)?;
        let Found::Slot(pos) = self.table.find(&kh) else {
            return Ok(Unlock::UnknownKey);
        };
        let slot = self.table.slot(pos);
        let lock = &slot[self.table.layout.lockouts[li].lock];
        let was = lock.swap(0, Ordering::AcqRel);
        self.table.failure_log(slot, li).clear();
        Ok(match lock_until(was).filter(|&u| u > now_ms) {
            Some(until) => Unlock::Unlocked { until_ms: until },
            None => Unlock::NotLocked,
        })
    }

    /// Counts for the table and every rule.
    pub fn stats(&self) -> Stats {
        self.stats_at(self.clock.now_ms())
    }

    /// [`Limiter::stats`], judging "locked" at `now_ms`.
    pub fn stats_at(&self, now_ms: i64) -> Stats {
        let t = &self.table;
        let (live_keys, locked_keys, installing) = t.census(now_ms);
        Stats {
            capacity: t.layout.capacity as u64,
            live_keys,
            locked_keys,
            installing,
            evictions: t.sum_table(stat::EVICTIONS),
            reclaimed: t.sum_table(stat::RECLAIMED),
            full: t.sum_table(stat::FULL),
            bytes_per_key: t.layout.bytes_per_key() as u64,
            rules: (0..self.policy.rules.len())
                .filter_map(|r| self.rule_stats(r))
                .collect(),
        }
    }

    /// Counts of rule `rule` (policy order), if there is such a rule.
    pub fn rule_stats(&self, rule: usize) -> Option<RuleStats> {
        let t = &self.table;
        (rule < self.policy.rules.len()).then(|| RuleStats {
            passed: t.sum_rule(rule, stat::PASSED),
            limited: t.sum_rule(rule, stat::LIMITED),
            dry_run_limited: t.sum_rule(rule, stat::DRY_RUN_LIMITED),
            locked: t.sum_rule(rule, stat::LOCKED),
            lockouts: t.sum_rule(rule, stat::LOCKOUTS),
        })
    }

    fn lockout_of(&self, category: Category) -> Result<usize, Error> {
        self.table.layout.categories[category.0]
            .lockout
            .ok_or_else(|| Error::NoLockout {
                category: self.policy.categories[category.0].clone(),
            })
    }

    // ---- decisions -------------------------------------------------------------------

    fn decide<const R: bool>(&self, kh: &KeyHash, cat: usize, now: i64, op: Op) -> Decision {
        let found = match op {
            Op::Check => self.table.find_or_insert(kh, now),
            Op::Peek => self.table.find(kh),
        };
        let pos = match found {
            Found::Slot(pos) => pos,
            Found::Absent | Found::Busy if op == Op::Peek => return self.decide_empty(cat, now),
            Found::Absent | Found::Busy => return self.contended(kh.stripe, cat, now, op),
            Found::Full => {
                self.table.count_table(kh.stripe, stat::FULL);
                return self.full(now);
            }
        };
        let slot = self.table.slot(pos);
        if op == Op::Check {
            let last = &slot[0];
            let stamp = now as u64 + 1;
            if last.load(Ordering::Relaxed) != stamp {
                last.store(stamp, Ordering::Relaxed);
            }
        }
        let cl = &self.table.layout.categories[cat];
        if let Some(li) = cl.lockout {
            let lo = &self.table.layout.lockouts[li];
            let w = slot[lo.lock].load(Ordering::Acquire);
            if let Some(until) = lock_until(w).filter(|&u| u > now) {
                if op == Op::Check {
                    self.table.count_rule(kh.stripe, lo.rule, stat::LOCKED);
                }
                return locked(lo, until, now);
            }
        }
        let windows = &cl.windows;
        // The per-rule state lives on the stack, sized to the category: a one-rule category
        // does not build, zero and walk fifteen unused entries on every check.
        match windows.len() {
            0 => no_rule(now),
            1 if op == Op::Check => self.check_one_rule::<R>(kh, slot, cat, now),
            1 => self.decide_windows::<1, R>(kh, slot, cat, now, op),
            2..=4 => self.decide_windows::<4, R>(kh, slot, cat, now, op),
            _ => self.decide_windows::<MAX_RULES_PER_CATEGORY, R>(kh, slot, cat, now, op),
        }
    }

    /// A check in a category with one window rule: the common case (one limit per client),
    /// kept short. An admitted request is claimed and reported from its own ticket; a read
    /// that refuses (or a dry-run rule that would) goes to the general path, which reads
    /// again and decides from that read.
    #[inline]
    fn check_one_rule<const R: bool>(
        &self,
        kh: &KeyHash,
        slot: &[AtomicU64],
        cat: usize,
        now: i64,
    ) -> Decision {
        let layout = &self.table.layout;
        let w = layout.categories[cat].windows[0];
        let wl = &layout.windows[w];
        let log = self.table.window_log(slot, w);
        for _ in 0..MAX_ATTEMPTS {
            let Ok(obs) = log.observe(now) else {
                return self.contended(kh.stripe, cat, now, Op::Check);
            };
            if !obs.admit {
                if wl.strict || wl.dry_run {
                    return self.decide_windows::<1, R>(kh, slot, cat, now, Op::Check);
                }
                self.table.count_rule(kh.stripe, wl.rule, stat::LIMITED);
                if !R {
                    return verdict(false);
                }
                let s = Summary::of_refusal(wl.limit, obs.nth_ts);
                return refusal(wl.limit, wl.window_ms, wl.rule, &s, now);
            }
            if log.claim(&obs, now).is_ok() {
                self.table.count_rule(kh.stripe, wl.rule, stat::PASSED);
                if !R {
                    return verdict(true);
                }
                let s = log.claimed_summary(&obs, now);
                return admission(
                    wl.limit,
                    wl.window_ms,
                    wl.rule,
                    s.in_window,
                    s.oldest_in_window,
                    now,
                );
            }
        }
        self.contended(kh.stripe, cat, now, Op::Check)
    }

    /// The window rules of category `cat` (at most `K`, at least one) decide a request on
    /// the key of `slot`: read every rule; if an enforced one refuses, refuse; otherwise
    /// claim every admitting rule in policy order, and on a lost race give back what was
    /// claimed and decide again from fresh reads.
    #[inline(never)]
    fn decide_windows<const K: usize, const R: bool>(
        &self,
        kh: &KeyHash,
        slot: &[AtomicU64],
        cat: usize,
        now: i64,
        op: Op,
    ) -> Decision {
        let layout = &self.table.layout;
        let windows = &layout.categories[cat].windows;
        let rule = |w: usize| Rule {
            log: self.table.window_log(slot, w),
            wl: &layout.windows[w],
            obs: Observed::UNREAD,
        };
        let mut rules = [rule(windows[0]); K];
        for i in 1..windows.len() {
            rules[i] = rule(windows[i]);
        }
        let rules = &mut rules[..windows.len()];
        'attempt: for _ in 0..MAX_ATTEMPTS {
            let mut refused = false;
            for r in rules.iter_mut() {
                let Ok(obs) = r.log.observe(now) else {
                    return self.contended(kh.stripe, cat, now, op);
                };
                r.obs = obs;
                refused |= !obs.admit && !r.wl.dry_run;
            }
            if refused {
                if op == Op::Check {
                    for r in rules.iter().filter(|r| !r.obs.admit) {
                        if r.wl.strict {
                            let _ = r.log.push(now);
                        }
                        if !r.wl.dry_run {
                            self.table.count_rule(kh.stripe, r.wl.rule, stat::LIMITED);
                        }
                    }
                }
                if !R {
                    return verdict(false);
                }
                return refused_report(rules, now, op);
            }
            if op == Op::Peek {
                return admitted_report(rules, now, false);
            }
            for i in 0..rules.len() {
                let r = &rules[i];
                // A dry-run rule that would refuse is not logged, as if it were enforced.
                if r.obs.admit && r.log.claim(&r.obs, now).is_err() {
                    for r2 in rules[..i].iter().filter(|r2| r2.obs.admit) {
                        r2.log.give_back(&r2.obs, now);
                    }
                    continue 'attempt;
                }
            }
            for r in rules.iter() {
                if r.obs.admit {
                    self.table.count_rule(kh.stripe, r.wl.rule, stat::PASSED);
                } else {
                    if r.wl.strict {
                        let _ = r.log.push(now);
                    }
                    self.table
                        .count_rule(kh.stripe, r.wl.rule, stat::DRY_RUN_LIMITED);
                }
            }
            if !R {
                return verdict(true);
            }
            return admitted_report(rules, now, true);
        }
        self.contended(kh.stripe, cat, now, op)
    }

    /// Peek of a key that holds no slot: every log is empty.
    #[inline(never)]
    fn decide_empty(&self, cat: usize, now: i64) -> Decision {
        let layout = &self.table.layout;
        let mut best: Option<Decision> = None;
        for &w in &layout.categories[cat].windows {
            let wl = &layout.windows[w];
            let d = admission(wl.limit, wl.window_ms, wl.rule, 1, Some(now), now);
            if best.is_none_or(|b| d.remaining < b.remaining) {
                best = Some(d);
            }
        }
        best.unwrap_or_else(|| no_rule(now))
    }

    /// A request that lost too many races (or raced the installation of its own key):
    /// refused, which can only make the limiter stricter. A check's refusal is reported as
    /// the category's first rule's and counted in that rule's `limited`, so the counts hold
    /// every refusal a caller sees; a peek counts nothing.
    #[inline(never)]
    fn contended(&self, stripe: usize, cat: usize, now: i64, op: Op) -> Decision {
        let layout = &self.table.layout;
        let first = layout.categories[cat]
            .windows
            .first()
            .map(|&w| &layout.windows[w]);
        if let (Some(w), Op::Check) = (first, op) {
            self.table.count_rule(stripe, w.rule, stat::LIMITED);
        }
        Decision {
            allowed: false,
            status: Status::Limited,
            limit: first.map_or(0, |w| w.limit),
            remaining: 0,
            reset: ceil_secs(now + 1000),
            reset_after: 1,
            retry_after: 1,
            rule: first.map(|w| w.rule),
            window_ms: first.map_or(0, |w| w.window_ms),
        }
    }

    #[inline(never)]
    fn full(&self, now: i64) -> Decision {
        let allowed = self.policy.when_full == WhenFull::Allow;
        Decision {
            allowed,
            status: Status::Full,
            limit: 0,
            remaining: 0,
            reset: ceil_secs(now),
            reset_after: 0,
            retry_after: if allowed { 0 } else { 1 },
            rule: None,
            window_ms: 0,
        }
    }

    // ---- lockouts ----------------------------------------------------------------------

    fn record_failure(&self, kh: &KeyHash, li: usize, now: i64) -> Decision {
        let lo = &self.table.layout.lockouts[li];
        // A lock decided on a slot that was taken over before the lock was fenced in: it is
        // installed on the key's new slot without counting failures again.
        let mut pending: Option<u64> = None;
        for _ in 0..MAX_ATTEMPTS {
            let pos = match self.table.find_or_insert(kh, now) {
                Found::Slot(pos) => pos,
                Found::Full => {
                    self.table.count_table(kh.stripe, stat::FULL);
                    return self.full(now);
                }
                // Racing the installation of this very key: the failure is not recorded.
                Found::Absent | Found::Busy => return failures_left(lo, &Summary::default(), now),
            };
            let slot = self.table.slot(pos);
            slot[0].store(now as u64 + 1, Ordering::Relaxed);
            let lock = &slot[lo.lock];
            let w = lock.load(Ordering::Acquire);
            if let Some(until) = lock_until(w).filter(|&u| u > now) {
                return locked(lo, until, now); // failures while locked are not counted
            }
            let log = self.table.failure_log(slot, li);
            if pending.is_none() {
                // Counted back from the ticket this failure took: of failures racing into the
                // log, the one with the highest ticket counts them all and locks.
                let s = match log.push(now) {
                    Ok(obs) => log.claimed_summary(&obs, now),
                    Err(_) => log.summarize(now),
                };
                if s.in_window < lo.failures {
                    // A lock set by a racing failure meanwhile still answers this one.
                    let w2 = lock.load(Ordering::Acquire);
                    if let Some(until) = lock_until(w2).filter(|&u| u > now) {
                        return locked(lo, until, now);
                    }
                    return failures_left(lo, &s, now);
                }
            }
            let new = pending.unwrap_or_else(|| next_lock(lo, w, now));
            if let Err(cur) = lock.compare_exchange(w, new, Ordering::AcqRel, Ordering::Acquire) {
                if let Some(until) = lock_until(cur).filter(|&u| u > now) {
                    return locked(lo, until, now); // a racing failure locked the key first
                }
                pending = Some(new);
                continue;
            }
            // Fence the lock in: an evictor that read the index word before this bump cannot
            // complete its CAS, and one that reads it after sees the lock.
            if self.table.bump_lockgen(pos, kh.fp).is_err() {
                // The slot was taken over: take our lock back from its new owner (if it landed
                // after the slot was cleared) and install it on the key's new slot.
                let _ = lock.compare_exchange(new, 0, Ordering::AcqRel, Ordering::Relaxed);
                pending = Some(new);
                continue;
            }
            log.clear();
            self.table.count_rule(kh.stripe, lo.rule, stat::LOCKOUTS);
            return locked(lo, lock_until(new).expect("locked"), now);
        }
        failures_left(lo, &Summary::default(), now)
    }
}

/// Refused: report the refusing enforced rule with the largest `retry_after`.
fn refused_report(rules: &[Rule<'_>], now: i64, op: Op) -> Decision {
    let mut best: Option<Decision> = None;
    for r in rules.iter().filter(|r| !r.obs.admit && !r.wl.dry_run) {
        // After a strict rule logged this refusal, what frees it is the new N-th entry.
        let s = if op == Op::Check && r.wl.strict {
            r.log.summarize(now)
        } else {
            Summary::of_refusal(r.wl.limit, r.obs.nth_ts)
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
fn admitted_report(rules: &[Rule<'_>], now: i64, logged: bool) -> Decision {
    if let Some(r) = rules.iter().find(|r| !r.obs.admit) {
        let s = r.log.summarize(now);
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

/// The lock word after a lockout at `now` following lock word `w`.
fn next_lock(lo: &LockoutLayout, w: u64, now: i64) -> u64 {
    let forget_after = lo.max_ban_ms.unwrap_or(lo.ban_ms);
    let level = match lock_until(w) {
        Some(u) if now < u.saturating_add(forget_after) => lock_level(w),
        _ => 0,
    };
    let ban = match lo.max_ban_ms {
        None => lo.ban_ms,
        Some(max) => {
            let doubled = if level >= 40 {
                max
            } else {
                lo.ban_ms.saturating_mul(1i64 << level)
            };
            doubled.min(max)
        }
    };
    lock_pack((now + ban).min(MAX_TIME_MS), level + 1)
}

fn locked(lo: &LockoutLayout, until: i64, now: i64) -> Decision {
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

fn failures_left(lo: &LockoutLayout, s: &Summary, now: i64) -> Decision {
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
fn admission(
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
        // Both spans are a timestamp of the table plus at most a window (SPEC bounds both).
        reset: ceil_secs_bounded(reset_ms),
        reset_after: ceil_secs_bounded(reset_ms - now) as u32,
        retry_after: 0,
        rule: Some(rule),
        window_ms,
    }
}

/// A refusing rule's report.
fn refusal(limit: u32, window_ms: i64, rule: usize, s: &Summary, now: i64) -> Decision {
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
fn no_rule(now: i64) -> Decision {
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

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Limiter>();
}

#[allow(dead_code)]
fn _log_is_used(_: Log<'_>) {}

/// `check_batch_at` decides exactly as `check_at` one by one in order (its prefetch passes
/// only read), and refuses a batch holding an invalid request without recording anything.
#[cfg(all(test, not(loom)))]
mod batch_tests {
    use super::*;
    use proptest::prelude::*;

    const T: i64 = 1_767_225_600_000;
    const POLICY: &str = "global 3/50ms\nglobal 5/200ms strict\napi 2/30ms\napi 4/100ms dry-run\n\
                          auth 1/40ms\nauth lockout 2/100ms for 60ms..500ms\ncapacity 5";

    /// A request: key index (0 = empty key, 7 = too long), category id (3 = unknown).
    fn request() -> impl Strategy<Value = (usize, usize)> {
        (
            prop_oneof![20 => 1usize..7, 1 => Just(0usize), 1 => Just(7usize)],
            prop_oneof![20 => 0usize..3, 1 => Just(3usize)],
        )
    }

    fn key(i: usize) -> Vec<u8> {
        match i {
            0 => Vec::new(),
            7 => vec![b'k'; MAX_KEY_LEN + 1],
            i => format!("client-{i}").into_bytes(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn batch_equals_sequential(
            steps in prop::collection::vec(
                (prop::collection::vec(request(), 0..40), 0i64..60, any::<bool>(), 0u8..20),
                1..12,
            )
        ) {
            let batch = Limiter::builder(POLICY).secret([7, 9]).open().unwrap();
            let serial = Limiter::builder(POLICY).secret([7, 9]).open().unwrap();
            let auth = serial.category("auth").unwrap();
            let mut t = T;
            for (reqs, dt, fail, bad_time) in steps {
                t += dt;
                // Failures between batches, so that lockouts take part.
                if fail {
                    let a = batch.failure_at("client-1", auth, t).unwrap();
                    let b = serial.failure_at("client-1", auth, t).unwrap();
                    prop_assert_eq!(a, b);
                }
                let now = if bad_time == 0 { -1 } else { t };
                let keys: Vec<(Vec<u8>, Category)> =
                    reqs.iter().map(|&(k, c)| (key(k), Category(c))).collect();
                let mut out = vec![Decision::default(); keys.len()];
                let sentinel = Decision { limit: 12345, ..Decision::default() };
                out.fill(sentinel);
                let got = batch.check_batch_at(&keys, now, &mut out);
                // The first error in the order `check_at` would meet it, else the decisions.
                let first_err = check_time(now).err().or_else(|| {
                    keys.iter().enumerate().find_map(|(index, (k, c))| {
                        serial.resolve(k, *c, now).err().map(|e| Error::InBatch {
                            index,
                            error: Box::new(e),
                        })
                    })
                });
                match first_err {
                    Some(e) => {
                        prop_assert_eq!(got.unwrap_err().to_string(), e.to_string());
                        prop_assert!(out.iter().all(|d| *d == sentinel), "out written on error");
                    }
                    None => {
                        prop_assert!(got.is_ok());
                        for ((k, c), d) in keys.iter().zip(&out) {
                            prop_assert_eq!(*d, serial.check_at(k, *c, now).unwrap());
                        }
                    }
                }
            }
            // Nothing recorded differently: the same counts and the same next decisions.
            prop_assert_eq!(batch.stats_at(t), serial.stats_at(t));
            for i in 1..7 {
                for c in 0..3 {
                    prop_assert_eq!(
                        batch.peek_at(key(i), Category(c), t).unwrap(),
                        serial.peek_at(key(i), Category(c), t).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn refusals_of_a_lost_race_are_counted_as_limited() {
        // Another process is installing "k" right now: every check of "k" is refused (it
        // cannot wait), as the category's first rule, and counted there; a peek counts nothing.
        let l = Limiter::builder("global 5/1m\nwrite 2/1m\ncapacity 64")
            .secret([1, 1])
            .open()
            .unwrap();
        let kh = l.table.split_hash(hash_key(l.table.secret, b"k"));
        l.table.reserve_now(&kh);
        let write = l.category("write").unwrap();
        let d = l.check_at("k", write, T).unwrap();
        assert_eq!(
            (d.allowed, d.status, d.rule),
            (false, Status::Limited, Some(0))
        );
        assert!(!l.allow_at("k", Category::GLOBAL, T).unwrap());
        assert!(l.peek_at("k", write, T).unwrap().allowed);
        assert!(l.check_at("other", write, T).unwrap().allowed);
        let rules = l.stats().rules;
        assert_eq!((rules[0].passed, rules[0].limited), (1, 2));
        assert_eq!((rules[1].passed, rules[1].limited), (1, 0));
    }

    #[test]
    fn huge_pages_are_asked_for_only_when_chosen() {
        use crate::table::region::tests::vm_flags;
        let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists();
        for on in [false, true] {
            let l = Limiter::builder("global 10/1s\ncapacity 100000")
                .huge_pages(on)
                .open()
                .unwrap();
            let flags = vm_flags(l.table.region().address_range().start);
            assert_eq!(
                flags.contains(" hg"),
                on && thp,
                "huge_pages({on}): {flags}"
            );
            assert!(l.check_at("k", Category::GLOBAL, 1_000).unwrap().allowed);
        }
    }

    #[test]
    fn batch_longer_than_a_chunk_with_repeated_keys() {
        let batch = Limiter::builder("global 2/1s\ncapacity 64")
            .secret([1, 1])
            .open()
            .unwrap();
        let serial = Limiter::builder("global 2/1s\ncapacity 64")
            .secret([1, 1])
            .open()
            .unwrap();
        let keys: Vec<(String, Category)> = (0..100)
            .map(|i| (format!("k{}", i % 37), Category::GLOBAL))
            .collect();
        let mut out = vec![Decision::default(); keys.len()];
        batch.check_batch_at(&keys, T, &mut out).unwrap();
        for ((k, c), d) in keys.iter().zip(&out) {
            assert_eq!(*d, serial.check_at(k, *c, T).unwrap());
        }
        assert_eq!(out.iter().filter(|d| d.allowed).count(), 37 * 2);
    }
}
