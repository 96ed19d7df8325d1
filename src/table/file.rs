//! Tables in files: created once, attached by every other process, and never
//! changed unless they check out.
//!
//! **Creating** is race-free without locks: a new table is built complete in a private
//! temporary file beside the path (`.NAME.PID.RANDOM.creating`, given its mode with `fchmod`
//! so the umask does not apply, sized with `ftruncate`, so it is sparse, the header written
//! with the magic last, then `msync` + `fsync`ed) and then hard-linked to the path, and the
//! directory `fsync`ed. `link(2)` never replaces an existing name, so of many processes
//! creating one path at the same moment exactly one succeeds; the others remove their
//! temporary file and attach to the winner's table. No process can ever see a half-made table
//! at the path, nor find one after a power loss, so a file there that does not check out is
//! somebody else's file, never ours to re-initialise. A creator also removes the temporary
//! files that dead creators of the same path left behind.
//!
//! **Attaching** reads the header with `pread` and checks the magic, the format version, that
//! the stored policy parses and matches the fingerprint, that the layout it implies matches the
//! header and the file's size, and (when a policy is given) that it is the same policy. Only
//! then is the file mapped `MAP_SHARED`; on any failure nothing was written. A read-only
//! attach opens the file `O_RDONLY` and maps it `PROT_READ`, so it needs only read permission.
//!
//! Plain `libc` (`mmap`, `msync`, `kill`) and `std::fs` (`open`, `fchmod`, `ftruncate`,
//! `pread`, `fsync`, `link`) are used rather than a crate: the whole protocol is these calls,
//! and owning them keeps the mapping's flags and the error messages ours.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::layout::{header, layout_for, policy_fingerprint};
use super::region::Region;
use super::Table;
use crate::error::Error;
use crate::policy::Policy;

const HEADER_BYTES: u64 = (header::WORDS * 8) as u64;
/// A stored policy longer than this is a corrupt header, not a policy.
const MAX_STORED_POLICY: u64 = 1 << 20;

/// A table opened from a file.
pub(crate) struct Opened {
    pub table: Table,
    pub policy: Policy,
    /// The policy text as stored in the file.
    pub text: String,
    /// The open file (kept to read what a migration appends: the path of its successor).
    pub file: File,
}

fn file_error(path: &Path, action: &'static str, source: io::Error) -> Error {
    Error::File {
        path: path.to_owned(),
        action,
        source,
    }
}

fn not_a_table(path: &Path, why: String) -> Error {
    Error::NotATable {
        path: path.to_owned(),
        why,
    }
}

/// Open the table at `path`: attach to it if it exists (checking it against `policy_text`
/// when one is given), else create it for `policy_text` with `options.mode`. With
/// `options.read_only` the file is opened and mapped for reading only, and never created.
pub(crate) fn open(
    path: &Path,
    policy_text: Option<&str>,
    secret: [u64; 2],
    now_ms: i64,
    options: &super::FileOptions,
) -> Result<Opened, Error> {
    check_mode(path, options.mode)?;
    // A bad policy is reported as such, whatever the file holds.
    let given = match policy_text {
        Some(text) => Some((text, Policy::parse(text)?)),
        None => None,
    };
    let given_policy = given.as_ref().map(|g| &g.1);
    if options.read_only {
        return match OpenOptions::new().read(true).open(path) {
            Ok(file) => attach(path, file, given_policy, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::NoTable {
                path: path.to_owned(),
            }),
            Err(e) => Err(file_error(path, "open", e)),
        };
    }
    // Each lap either attaches, creates, or sees the file vanish (removed meanwhile).
    for _ in 0..4 {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => return attach(path, file, given_policy, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some((text, policy)) = &given else {
                    return Err(Error::NoTable {
                        path: path.to_owned(),
                    });
                };
                if let Some(opened) = create(path, text, policy, secret, now_ms, options.mode)? {
                    return Ok(opened);
                }
            }
            Err(e) => return Err(file_error(path, "open", e)),
        }
    }
    Err(file_error(
        path,
        "open",
        io::Error::other("the file keeps disappearing between create and open"),
    ))
}

/// Only read and write bits: a table file is never executable, setuid, setgid or sticky.
const ALLOWED_MODE: u32 = 0o666;

fn check_mode(path: &Path, mode: u32) -> Result<(), Error> {
    let bad = mode & !ALLOWED_MODE;
    if bad == 0 {
        return Ok(());
    }
    Err(file_error(
        path,
        "create",
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "mode {mode:#o} has the bits {bad:#o} outside {ALLOWED_MODE:#o} \
                 (a table file takes read and write permission bits only, e.g. 0o600 or 0o660)"
            ),
        ),
    ))
}

/// Removes the temporary file unless it was linked into place.
struct Temporary(PathBuf);

impl Drop for Temporary {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A dead creator's temporary file is removed only once it is this old: a live creator holds
/// its own for the milliseconds one creation takes, so an age guard this long only matters
/// when "dead" was judged wrongly (a creator on another machine, or in another PID namespace,
/// sharing the directory).
const STALE_AFTER: Duration = Duration::from_secs(60);

/// The creator's PID in the name of a temporary file of the table `name`
/// (`.NAME.PID.RANDOM.creating`), if `file` is one.
fn temporary_creator(file: &OsStr, name: &OsStr) -> Option<libc::pid_t> {
    let rest = file
        .as_bytes()
        .strip_prefix(b".")?
        .strip_prefix(name.as_bytes())?
        .strip_prefix(b".")?
        .strip_suffix(b".creating")?;
    let dot = rest.iter().position(|&b| b == b'.')?;
    let (pid, random) = (&rest[..dot], &rest[dot + 1..]);
    if pid.is_empty() || !pid.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if random.is_empty() || !random.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let pid: libc::pid_t = std::str::from_utf8(pid).ok()?.parse().ok()?;
    (pid > 0).then_some(pid)
}

/// No process `pid` exists (here: in this PID namespace).
fn process_is_gone(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 sends nothing; it only asks whether `pid` exists (`pid` > 0, so it
    // names one process, never a group).
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Remove the temporary files of creators of `name` in `dir` that died while creating (a
/// killed process cannot remove its own). Best effort: whatever cannot be read or removed is
/// left. A file is removed only when its PID names no process (`kill(pid, 0)` fails with
/// `ESRCH`; `EPERM` means it lives, as another user) and it is older than [`STALE_AFTER`]. A
/// reused PID makes a dead creator look alive, which only leaves its file for later.
fn remove_stale_temporaries(dir: &Path, name: &OsStr) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = temporary_creator(&entry.file_name(), name) else {
            continue;
        };
        if !process_is_gone(pid) {
            continue;
        }
        // `DirEntry::metadata` does not follow a symbolic link.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= STALE_AFTER);
        if meta.is_file() && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `fsync` a directory, so that a name just linked in it survives a power loss. A file
/// system that cannot sync directories (`EINVAL`) keeps names by other means.
fn sync_directory(dir: &Path) -> io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        r => r,
    }
}

/// Write the mapped table back to its file (`msync`) and make it durable (`fsync`).
fn sync_table(table: &Table, file: &File) -> io::Result<()> {
    let words = table.words();
    // SAFETY: on exactly the mapping behind `words`, which `table` keeps mapped; msync changes
    // no contents.
    let r = unsafe {
        libc::msync(
            words.as_ptr() as *mut libc::c_void,
            (words.len() * 8).max(8),
            libc::MS_SYNC,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    file.sync_all()
}

/// Create the table at `path` with permission bits `mode`; `None` when another process
/// created it first.
fn create(
    path: &Path,
    text: &str,
    policy: &Policy,
    secret: [u64; 2],
    now_ms: i64,
    mode: u32,
) -> Result<Option<Opened>, Error> {
    build(path, text, policy, secret, now_ms, mode)?.publish(path, false)
}

/// A complete table in a temporary file beside the path it is meant for, not visible at
/// that path yet: what [`create`] makes first, and what a migration fills before publishing.
pub(crate) struct Unpublished {
    tmp: Temporary,
    file: File,
    dir: PathBuf,
    pub table: Table,
    pub policy: Policy,
    pub text: String,
}

/// Build the table for `policy` in a temporary file beside `path` (mode `mode`, sparse, the
/// header written with the magic last).
pub(crate) fn build(
    path: &Path,
    text: &str,
    policy: &Policy,
    secret: [u64; 2],
    now_ms: i64,
    mode: u32,
) -> Result<Unpublished, Error> {
    check_mode(path, mode)?;
    let layout = layout_for(policy, text.len())?;
    let name = path.file_name().ok_or_else(|| {
        file_error(
            path,
            "create",
            io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    remove_stale_temporaries(dir, name);
    let mut unique = OsString::from(".");
    unique.push(name);
    unique.push(format!(
        ".{}.{:x}.creating",
        std::process::id(),
        crate::hash::random_secret()[0]
    ));
    let tmp_path = dir.join(unique);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(|e| file_error(path, "create", e))?;
    let tmp = Temporary(tmp_path);
    // fchmod sets exactly `mode`: the umask applies to open's mode, not to this.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| file_error(path, "create", e))?;
    file.set_len(layout.total_words as u64 * 8)
        .map_err(|e| file_error(path, "size", e))?;
    let region = Region::shared(file.as_fd(), layout.total_words, true)
        .map_err(|e| file_error(path, "map", e))?;
    let fingerprint = policy_fingerprint(policy);
    let table = Table::initialised(region, layout, secret, text, fingerprint, now_ms);
    Ok(Unpublished {
        tmp,
        file,
        dir: dir.to_owned(),
        table,
        policy: policy.clone(),
        text: text.to_owned(),
    })
}

impl Unpublished {
    /// Make the table durable, then visible at `path`: linked (`None` if a file is already
    /// there, which is left as it is) or, with `replace`, renamed over whatever is there.
    pub(crate) fn publish(self, path: &Path, replace: bool) -> Result<Option<Opened>, Error> {
        // Durable before it is visible: after a power loss the path holds the whole table or
        // nothing, never a file of zeros or a torn header.
        sync_table(&self.table, &self.file).map_err(|e| file_error(path, "sync", e))?;
        let linked = if replace {
            std::fs::rename(&self.tmp.0, path)
        } else {
            std::fs::hard_link(&self.tmp.0, path)
        };
        match linked {
            Ok(()) => {
                // The new name itself, so that it survives a power loss too.
                sync_directory(&self.dir)
                    .map_err(|e| file_error(path, "sync the directory of", e))?;
                Ok(Some(Opened {
                    table: self.table,
                    policy: self.policy,
                    text: self.text,
                    file: self.file,
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !replace => Ok(None),
            Err(e) => Err(file_error(path, "create", e)),
        }
    }
}

/// Check the file and map it (`PROT_READ` only unless `writable`).
fn attach(
    path: &Path,
    file: File,
    given: Option<&Policy>,
    writable: bool,
) -> Result<Opened, Error> {
    let meta = file.metadata().map_err(|e| file_error(path, "stat", e))?;
    if !meta.is_file() {
        return Err(not_a_table(path, "it is not a regular file".into()));
    }
    let size = meta.len();
    if size < HEADER_BYTES {
        return Err(not_a_table(
            path,
            format!("it is {size} bytes long, shorter than a table's {HEADER_BYTES}-byte header"),
        ));
    }
    let mut raw = [0u8; HEADER_BYTES as usize];
    file.read_exact_at(&mut raw, 0)
        .map_err(|e| file_error(path, "read", e))?;
    // Words are stored in the machine's byte order (they are atomics in memory).
    let word = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let magic = word(header::MAGIC);
    if magic != header::MAGIC_VALUE {
        let why = if raw.iter().all(|&b| b == 0) {
            "its header is all zeros (a sluice table starts with the magic \"SLUICE\")".to_string()
        } else if magic.swap_bytes() == header::MAGIC_VALUE {
            "it was made on a machine of the other byte order".to_string()
        } else {
            format!(
                "bad magic number {magic:#018x} where a sluice table has {:#018x} (\"SLUICE\")",
                header::MAGIC_VALUE
            )
        };
        return Err(not_a_table(path, why));
    }
    let version = word(header::VERSION);
    if version != header::FORMAT_VERSION {
        return Err(Error::FormatVersion {
            path: path.to_owned(),
            found: version,
            supported: header::FORMAT_VERSION,
        });
    }
    if word(header::STATE) != header::STATE_READY {
        return Err(not_a_table(
            path,
            format!(
                "its state word is {} where a finished table has {}",
                word(header::STATE),
                header::STATE_READY
            ),
        ));
    }
    let policy_len = word(header::POLICY_LEN);
    if policy_len > MAX_STORED_POLICY || policy_len > size - HEADER_BYTES {
        return Err(not_a_table(
            path,
            format!("its header gives the stored policy {policy_len} bytes, in a file of {size}"),
        ));
    }
    let mut text = vec![0u8; policy_len as usize];
    file.read_exact_at(&mut text, HEADER_BYTES)
        .map_err(|e| file_error(path, "read", e))?;
    let text = String::from_utf8(text)
        .map_err(|e| not_a_table(path, format!("its stored policy is not UTF-8 ({e})")))?;
    let stored = Policy::parse(&text)
        .map_err(|e| not_a_table(path, format!("its stored policy does not parse ({e})")))?;
    if policy_fingerprint(&stored) != word(header::POLICY_FINGERPRINT) {
        return Err(not_a_table(
            path,
            "its stored policy does not match the policy fingerprint in its header".into(),
        ));
    }
    let layout = layout_for(&stored, text.len())
        .map_err(|e| not_a_table(path, format!("its stored policy cannot be laid out ({e})")))?;
    let expect = [
        ("capacity", header::CAPACITY, layout.capacity),
        ("slot words", header::SLOT_WORDS, layout.slot_words),
        ("stats offset", header::STATS_OFFSET, layout.stats_offset),
        ("index offset", header::INDEX_OFFSET, layout.index_offset),
        ("slots offset", header::SLOTS_OFFSET, layout.slots_offset),
        ("total words", header::TOTAL_WORDS, layout.total_words),
    ];
    for (name, at, want) in expect {
        if word(at) != want as u64 {
            return Err(not_a_table(
                path,
                format!(
                    "its header's {name} is {} where its stored policy lays out {want}",
                    word(at)
                ),
            ));
        }
    }
    let want_bytes = layout.total_words as u64 * 8;
    // A migrated table has the path of its successor appended (`successor`).
    let appended = word(header::SUPERSEDED);
    if appended != 0 {
        if appended > MAX_SUCCESSOR_PATH || size != want_bytes + appended {
            return Err(not_a_table(
                path,
                format!("its header gives the path of its successor {appended} bytes, in a file of {size} where its table takes {want_bytes}"),
            ));
        }
        if writable {
            let by = read_successor(&file, want_bytes, appended)
                .map_err(|e| file_error(path, "read", e))?;
            return Err(not_a_table(
                path,
                format!(
                    "it was superseded by {} (`sluice migrate` carried its keys there): open that table instead",
                    by.display()
                ),
            ));
        }
    } else if size != want_bytes {
        return Err(not_a_table(
            path,
            format!(
                "it is {size} bytes long where its header describes {want_bytes} bytes (truncated or extended)"
            ),
        ));
    }
    if let Some(given) = given {
        if policy_fingerprint(given) != policy_fingerprint(&stored) {
            return Err(Error::PolicyMismatch {
                path: path.to_owned(),
                difference: policy_difference(&stored, given),
            });
        }
    }
    let region = Region::shared(file.as_fd(), layout.total_words, writable)
        .map_err(|e| file_error(path, "map", e))?;
    let secret = [word(header::SECRET0), word(header::SECRET1)];
    Ok(Opened {
        table: Table::attached(region, layout, secret),
        policy: stored,
        text,
        file,
    })
}

/// The longest successor path a migration appends to a table it superseded.
pub(crate) const MAX_SUCCESSOR_PATH: u64 = 4096;

fn read_successor(file: &File, at: u64, len: u64) -> io::Result<PathBuf> {
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, at)?;
    Ok(PathBuf::from(OsStr::from_bytes(&bytes)))
}

/// The path of the table that superseded `table` (a migration's target), if one did: the
/// header word [`header::SUPERSEDED`] gives the length of the path, appended to the file
/// after the table.
pub(crate) fn successor(table: &Table, file: &File) -> Option<PathBuf> {
    use crate::sync::Ordering;
    let len = table.words()[header::SUPERSEDED].load(Ordering::Acquire);
    if len == 0 || len > MAX_SUCCESSOR_PATH {
        return None;
    }
    read_successor(file, table.layout.total_words as u64 * 8, len).ok()
}

/// Mark `table` (in `file`, at `path`) superseded by the table at `by`: append the path,
/// make it durable, then set the header word, last, so that a process that sees the word
/// finds the whole path.
pub(crate) fn mark_superseded(
    path: &Path,
    table: &Table,
    file: &File,
    by: &Path,
) -> Result<(), Error> {
    use crate::sync::Ordering;
    let bytes = by.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.len() as u64 > MAX_SUCCESSOR_PATH {
        return Err(file_error(
            path,
            "mark as superseded",
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the new table's path is {} bytes (1 to {MAX_SUCCESSOR_PATH})",
                    bytes.len()
                ),
            ),
        ));
    }
    let at = table.layout.total_words as u64 * 8;
    let appended = file
        .set_len(at + bytes.len() as u64)
        .and_then(|()| file.write_all_at(bytes, at))
        .and_then(|()| file.sync_data());
    appended.map_err(|e| file_error(path, "mark as superseded", e))?;
    table.words()[header::SUPERSEDED].store(bytes.len() as u64, Ordering::Release);
    sync_table(table, file).map_err(|e| file_error(path, "sync", e))
}

/// What differs between the file's policy and the given one, rule by rule, in the canonical
/// form (so comments, spacing and unit spellings never count as a difference).
pub(crate) fn policy_difference(file: &Policy, given: &Policy) -> String {
    let (a, b) = (file.canonical(), given.canonical());
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let only_file: Vec<&str> = a.iter().copied().filter(|l| !b.contains(l)).collect();
    let only_given: Vec<&str> = b.iter().copied().filter(|l| !a.contains(l)).collect();
    let quote = |ls: &[&str]| {
        ls.iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (only_file.as_slice(), only_given.as_slice()) {
        ([], []) => "the same rules in another order (the order fixes category ids and the layout)"
            .to_string(),
        ([f], [g]) => format!(
            "the file's policy has {} where the given one has {}",
            quote(&[f]),
            quote(&[g])
        ),
        (f, []) => format!("the file's policy also has {}", quote(f)),
        ([], g) => format!("the given policy also has {}", quote(g)),
        (f, g) => format!(
            "the file's policy has {} where the given one has {}",
            quote(f),
            quote(g)
        ),
    }
}
