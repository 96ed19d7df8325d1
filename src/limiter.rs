//! The engine's Rust API: [`Limiter`], [`Category`], [`Decision`], [`Status`].

use crate::error::{Error, MAX_KEY_LEN};
use crate::hash::random_secret;
use std::path::{Path, PathBuf};

use crate::engine::report::Op;
use crate::engine::{Answer, Moved, MAX_ATTEMPTS};
use crate::engine::{Category, Decision, Status, Unlock};
use crate::policy::{Policy, WhenFull};
use crate::table::layout::{layout_for, policy_fingerprint, stat};
#[cfg(not(loom))]
use crate::table::migrate::MigrationReport;
use crate::table::{Found, KeyHash, Table};
use crate::time::{ceil_secs, Clock, SystemClock, MAX_TIME_MS};

/// Table-wide and per-rule counts.
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

    /// The policy (the policy language of docs/semantics.md). Required for a private table and for creating a
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
    /// of 4 KiB at a time. Advice only, as the kernel takes it: every table is shared memory
    /// (a private one too, so that processes forked after opening share it), so the kernel's
    /// shmem setting decides (`/sys/kernel/mm/transparent_hugepage/shmem_enabled`: `advise`,
    /// `within_size` or `always` honour the advice; at `never`, a common default, no huge page
    /// is used; for a file on tmpfs, its `huge=` option).
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
                file: Some(opened.file),
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
            #[cfg(not(loom))]
            file: None,
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
    /// The table file, kept open to read what a migration appends to it.
    #[cfg(not(loom))]
    file: Option<std::fs::File>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
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
    /// A limiter for `policy` (the policy language of docs/semantics.md) in private memory, with the system
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
            .split_hash(self.table.hasher.hash(key.as_bytes()));
        matches!(self.table.find(&kh), Found::Slot(_))
    }

    /// Loom models: the home position of `key`.
    #[cfg(loom)]
    pub(crate) fn home_of(&self, key: &str) -> usize {
        self.table
            .split_hash(self.table.hasher.hash(key.as_bytes()))
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
        Category::named(&self.policy, name)
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

    /// The format version of the table (1: 8-byte log entries).
    pub fn format_version(&self) -> u64 {
        self.table.words()[crate::table::layout::header::VERSION]
            .load(crate::sync::Ordering::Relaxed)
    }

    /// The path of the table that superseded this one, once a migration
    /// ([`Limiter::migrate`], `sluice migrate`) carried its keys there; `None` while it is
    /// current (and for a table in private memory). A process still attached to a
    /// superseded table keeps a working limiter, but the state it records is no longer the
    /// one every other process shares: a host polls this (a few loads and a `pread`, not for
    /// every request) and reopens the path it names.
    #[cfg(not(loom))]
    pub fn superseded(&self) -> Option<PathBuf> {
        crate::table::file::successor(&self.table, self.file.as_ref()?)
    }

    /// Migrate the table file `from` to a new table file `to` for `policy` (the policy of
    /// `from` if `None`: a copy, or a move to another path), at the system clock's time; see
    /// [`Limiter::migrate_at`].
    #[cfg(not(loom))]
    pub fn migrate(
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
        policy: Option<&str>,
    ) -> Result<MigrationReport, Error> {
        Limiter::migrate_at(from, to, policy, SystemClock.now_ms())
    }

    /// Migrate the table file `from` to a new table file `to` for `policy` (`from`'s own if
    /// `None`), judging what has expired at `now_ms`.
    ///
    /// Every live key's state is carried by the rule of docs/semantics.md, "Changing the
    /// policy" ([`crate::KeySnapshot::carry_over`]): every active lock keeps its end and
    /// level, unchanged rules keep their logs whole, changed rules what is still exact, new
    /// rules start empty. The new table keeps `from`'s hash secret and file mode. It appears at
    /// `to` complete (built in a temporary file, made durable, then linked), and then `from`
    /// is marked superseded ([`Limiter::superseded`] and `sluice stat` say so, naming `to`).
    ///
    /// `to` equal to `from` (the same file) migrates in place: the new table is renamed over
    /// the old one, so that the next open of the path gets it, and processes still attached
    /// to the old one are told through [`Limiter::superseded`]. Any other existing `to` is an
    /// error.
    ///
    /// Fails, creating nothing and leaving `from` as it was, when `to` exists (and is not
    /// `from`), `from` is not a table (or was superseded already), `policy` does not parse,
    /// the capacity changes for a source below [`REHOME_MIN_CAPACITY`] (its index keeps too
    /// few bits of each key's hash to re-home it), or a locked key finds no free slot in the
    /// new table. Unlocked keys that find none are left behind (the least recently active
    /// first) and counted in [`MigrationReport::dropped`].
    ///
    /// Writes that processes make to `from` while it is being read are carried if they land
    /// before their key is read, and lost after: migrate a table whose writers are stopped,
    /// or accept that the requests of those moments are forgotten (never a lock set before
    /// the migration started).
    ///
    /// [`REHOME_MIN_CAPACITY`]: crate::REHOME_MIN_CAPACITY
    #[cfg(not(loom))]
    pub fn migrate_at(
        from: impl AsRef<Path>,
        to: impl AsRef<Path>,
        policy: Option<&str>,
        now_ms: i64,
    ) -> Result<MigrationReport, Error> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let (from, to) = (from.as_ref(), to.as_ref());
        let now = check_time(now_ms)?;
        let fail = |why: String| Error::Migration {
            from: from.to_owned(),
            to: to.to_owned(),
            why,
        };
        // A bad policy is reported before anything is opened.
        let given = policy
            .map(|t| Policy::parse(t).map(|p| (t, p)))
            .transpose()?;
        let source = LimiterBuilder::new().path(from).open()?;
        let source_file = source.file.as_ref().expect("a table file keeps its file");
        let meta = source_file
            .metadata()
            .map_err(|e| fail(format!("cannot stat it: {e}")))?;
        let in_place = match std::fs::metadata(to) {
            Ok(m) if m.dev() == meta.dev() && m.ino() == meta.ino() => true,
            Ok(_) => {
                return Err(fail(format!(
                    "{} exists (a migration makes a new table; remove it first, or give FROM as TO to migrate in place)",
                    to.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(fail(format!("cannot stat {}: {e}", to.display()))),
        };
        let (text, policy) = match &given {
            Some((t, p)) => (*t, p.clone()),
            None => (source.policy_text.as_str(), source.policy.clone()),
        };
        let to_abs = std::path::absolute(to).map_err(|e| fail(format!("{e}")))?;
        let src = crate::table::migrate::Source {
            path: from,
            table: &source.table,
            policy: &source.policy,
        };
        let mode = meta.permissions().mode() & 0o666;
        let (_new, report) =
            crate::table::migrate::build(&src, to, in_place, text, &policy, mode, now)?;
        crate::table::file::mark_superseded(from, &source.table, source_file, &to_abs)?;
        Ok(report)
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
        Ok(self.table.split_hash(self.table.hasher.hash(key)))
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
        Ok(self.decide::<Decision>(&kh, category.0, now_ms, Op::Check))
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
        Ok(self.decide::<bool>(&kh, category.0, now_ms, Op::Check))
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
        let mut hashes = [KeyHash { fp: 0, home: 0 }; CHUNK];
        let mut positions = [None; CHUNK];
        for (reqs, outs) in requests.chunks(CHUNK).zip(out.chunks_mut(CHUNK)) {
            let hashes = &mut hashes[..reqs.len()];
            let positions = &mut positions[..reqs.len()];
            for ((key, _), kh) in reqs.iter().zip(hashes.iter_mut()) {
                *kh = self.table.split_hash(self.table.hasher.hash(key.as_ref()));
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
                *d = self.decide::<Decision>(kh, category.0, now_ms, Op::Check);
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
        if self.table.layout.slot_words <= 16 {
            return;
        }
        let engine = &self.table.engine;
        let slot = self.table.slot(pos);
        for &w in &engine.layout.categories[category.0].windows {
            engine.window_log(slot, w).prefetch_next();
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
        Ok(self.decide::<Decision>(&kh, category.0, now_ms, Op::Peek))
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
        Ok(self.record_failure(&kh, category.0, li, now_ms))
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
            // Lost: the key was evicted meanwhile, and its failures with it.
            let fence = self.table.live_fence(pos, kh.fp);
            let _ = self.table.engine.success(self.table.slot(pos), li, &fence);
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
            // Lost: the key was evicted meanwhile; the state it had is gone anyway.
            let fence = self.table.live_fence(pos, kh.fp);
            let _ = self
                .table
                .engine
                .reset(self.table.slot(pos), category.0, &fence);
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
        let fence = self.table.live_fence(pos, kh.fp);
        Ok(self
            .table
            .engine
            .unlock(self.table.slot(pos), li, now_ms, &fence)
            .unwrap_or(Unlock::UnknownKey)) // evicted meanwhile (never while locked)
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
        self.table.engine.layout.categories[category.0]
            .lockout
            .ok_or_else(|| Error::NoLockout {
                category: self.policy.categories[category.0].clone(),
            })
    }

    // ---- one pass: the table finds the slot, the engine decides, the stats are counted --

    fn decide<A: Answer>(&self, kh: &KeyHash, cat: usize, now: i64, op: Op) -> A {
        let t = &self.table;
        let found = match op {
            Op::Check => t.find_or_insert(kh, now),
            Op::Peek => t.find(kh),
        };
        match found {
            Found::Slot(pos) => {
                let (a, tally) = t.engine.decide::<A>(t.slot(pos), cat, now, op);
                t.count(cat, tally);
                a
            }
            Found::Absent | Found::Busy if op == Op::Peek => A::of(t.engine.fresh(cat, now)),
            Found::Absent | Found::Busy => {
                let (d, tally) = t.engine.contended(cat, now, op);
                t.count(cat, tally);
                A::of(d)
            }
            Found::Full => {
                t.count_table(stat::FULL);
                A::of(self.full(now))
            }
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

    fn record_failure(&self, kh: &KeyHash, cat: usize, li: usize, now: i64) -> Decision {
        let t = &self.table;
        // A lock decided on a slot taken over before it was fenced in goes to the key's new
        // slot, without counting failures again.
        let mut pending = None;
        for _ in 0..MAX_ATTEMPTS {
            let pos = match t.find_or_insert(kh, now) {
                Found::Slot(pos) => pos,
                Found::Full => {
                    t.count_table(stat::FULL);
                    return self.full(now);
                }
                // Racing the installation of this very key: the failure is not recorded.
                Found::Absent | Found::Busy => return t.engine.failure_unrecorded(li, now),
            };
            let fence = t.live_fence(pos, kh.fp);
            match t.engine.failure(t.slot(pos), li, now, &fence, pending) {
                Ok((d, tally)) => {
                    t.count(cat, tally);
                    return d;
                }
                Err(Moved(lock)) => pending = Some(lock),
            }
        }
        t.engine.failure_unrecorded(li, now)
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Limiter>();
}

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
        let kh = l.table.split_hash(l.table.hasher.hash(b"k"));
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
