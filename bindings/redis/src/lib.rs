//! A Redis module running sluice's engine on Redis keys.
//!
//! Each client key is one Redis key whose value (type `sluice-rl`) holds that key's whole
//! state: a [`sluice::KeyState`] and the newest time the key has seen. Every decision is the
//! engine's (`sluice::KeyEngine`); this module parses arguments, keeps a key's time monotonic,
//! sets the key's expiry from [`sluice::KeyEngine::expires_at`], replicates each write with the
//! time it was decided at, and persists the state through RDB and AOF rewrite as plain values.

use std::cell::Cell;
use std::ffi::CString;
use std::os::raw::{c_int, c_void};
use std::sync::{Mutex, OnceLock};

use redis_module::native_types::RedisType;
use redis_module::{
    raw, redis_module, Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue,
    Status as RedisStatus,
};
use sluice::{
    policy::RuleKind, Category, Decision, KeyEngine, KeySnapshot, KeyState, LockoutSnapshot,
    Policy, Status,
};

/// The RDB encoding of a value; a newer one is refused when loading. Version 2 adds the
/// policy the file's values were written under (module aux data, before the keys); values of
/// version 1 are read as written under the policy in force.
const ENCODING_VERSION: i32 = 2;
/// The text form's version (AOF rewrite's `SLUICE.RESTORE`).
const TEXT_VERSION: &str = "v1";

struct Module {
    engine: KeyEngine,
    /// Each category's name and id, looked up from a command's raw argument.
    categories: Vec<(Box<[u8]>, Category)>,
    /// Per category id: the longest window of the rules a check of it logs in (its own and
    /// the global ones), `None` if it has none.
    longest_window: Vec<Option<i64>>,
    policy_text: String,
    policy_path: String,
    client_time: bool,
    /// `AT`, the word of every replicated write's time.
    at_word: Kept,
}

static MODULE: OnceLock<Module> = OnceLock::new();

fn module() -> &'static Module {
    MODULE.get().expect("the module is initialised at load")
}

/// One client key's value.
struct Value {
    state: KeyState,
    /// The newest time (Unix ms) a write on this key was decided at: time never goes back
    /// before it.
    last_ms: Cell<i64>,
    /// The engine's `expires_at` of the state as of the last write, when known: a passed
    /// check moves it without reading every rule's log.
    expiry: Cell<Option<i64>>,
}

impl Value {
    fn new(state: KeyState, last_ms: i64) -> Value {
        Value {
            state,
            last_ms: Cell::new(last_ms),
            expiry: Cell::new(None),
        }
    }
}

static SLUICE_TYPE: RedisType = RedisType::new(
    "sluice-rl",
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        free: Some(free),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        aux_load: Some(aux_load),
        aux_save: Some(aux_save),
        aux_save2: None,
        aux_save_triggers: raw::REDISMODULE_AUX_BEFORE_RDB as i32,
        free_effort: None,
        unlink: None,
        copy: Some(copy),
        defrag: None,
        copy2: None,
        free_effort2: None,
        mem_usage2: None,
        unlink2: None,
    },
);

// ---------------------------------------------------------------------------------------------
// The value's plain form, shared by RDB and the text of SLUICE.RESTORE.

/// The value as a flat list of integers: last_ms, windows (count, then per window its length
/// and timestamps), lockouts (count, then per lockout its failures' length and failures, the
/// lock end or -1, the level).
fn encode(v: &Value) -> Vec<i64> {
    let snap = module().engine.snapshot(&v.state);
    let mut out = vec![v.last_ms.get(), snap.windows.len() as i64];
    for w in &snap.windows {
        out.push(w.len() as i64);
        out.extend_from_slice(w);
    }
    out.push(snap.lockouts.len() as i64);
    for lo in &snap.lockouts {
        out.push(lo.failures.len() as i64);
        out.extend_from_slice(&lo.failures);
        out.push(lo.locked_until.unwrap_or(-1));
        out.push(i64::from(lo.level));
    }
    out
}

/// The policy a stored value was written under, when it is not the policy in force.
enum WrittenUnder<'a> {
    /// The policy in force (or the writer did not say).
    InForce,
    Other(&'a Policy),
    /// A policy text this module cannot parse: no state of it is trusted.
    Unreadable(&'a str),
}

/// The inverse of [`encode`], through the engine's own validation; a value written under
/// another policy is carried over to the one in force (`KeySnapshot::carry_over`: unchanged
/// rules keep their logs, locks their end and level, the rest starts empty).
fn decode(
    next: impl FnMut() -> Result<i64, String>,
    under: WrittenUnder<'_>,
) -> Result<Value, String> {
    let (last_ms, mut snap) = decode_snapshot(next)?;
    let m = module();
    match under {
        WrittenUnder::InForce => {}
        WrittenUnder::Other(from) if from == m.engine.policy() => {}
        WrittenUnder::Other(from) => {
            snap = snap
                .carry_over(from, m.engine.policy())
                .ok_or("the value does not have the shape of the policy it was written under")?;
        }
        WrittenUnder::Unreadable(why) => {
            return Err(format!(
                "the policy it was written under does not parse: {why}"
            ))
        }
    }
    let state = m
        .engine
        .restore(&snap)
        .map_err(|e| format!("a state the policy in force cannot hold: {e}"))?;
    Ok(Value::new(state, last_ms))
}

/// A value's integers as its newest time and a snapshot, not yet checked against a policy.
fn decode_snapshot(
    mut next: impl FnMut() -> Result<i64, String>,
) -> Result<(i64, KeySnapshot), String> {
    let count = |what: &str, next: &mut dyn FnMut() -> Result<i64, String>| {
        let n = next()?;
        if !(0..=1 << 20).contains(&n) {
            return Err(format!("{what} count {n} out of range"));
        }
        Ok(n as usize)
    };
    let last_ms = next()?;
    let mut snap = KeySnapshot::default();
    let windows = count("window", &mut next)?;
    for _ in 0..windows {
        let n = count("timestamp", &mut next)?;
        snap.windows
            .push((0..n).map(|_| next()).collect::<Result<_, _>>()?);
    }
    let lockouts = count("lockout", &mut next)?;
    for _ in 0..lockouts {
        let n = count("failure", &mut next)?;
        let failures = (0..n).map(|_| next()).collect::<Result<_, _>>()?;
        let until = next()?;
        let level = next()?;
        snap.lockouts.push(LockoutSnapshot {
            failures,
            locked_until: (until >= 0).then_some(until),
            level: u32::try_from(level).map_err(|_| format!("level {level} out of range"))?,
        });
    }
    Ok((last_ms, snap))
}

fn encode_text(v: &Value) -> String {
    let mut s = String::from(TEXT_VERSION);
    for n in encode(v) {
        s.push(' ');
        s.push_str(&n.to_string());
    }
    s
}

fn decode_text(text: &str, under: WrittenUnder<'_>) -> Result<Value, String> {
    let mut parts = text.split(' ');
    match parts.next() {
        Some(TEXT_VERSION) => {}
        other => {
            return Err(format!(
                "encoding {:?} is not {TEXT_VERSION} (written by a newer module?)",
                other.unwrap_or("")
            ))
        }
    }
    let v = decode(
        || {
            let p = parts.next().ok_or("the encoding ends too soon")?;
            p.parse::<i64>()
                .map_err(|_| format!("{p:?} is not an integer"))
        },
        under,
    )?;
    if parts.next().is_some() {
        return Err("the encoding has trailing values".into());
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------------
// Type callbacks.

unsafe extern "C" fn free(value: *mut c_void) {
    if !value.is_null() {
        drop(Box::from_raw(value.cast::<Value>()));
    }
}

unsafe extern "C" fn mem_usage(value: *const c_void) -> usize {
    let _ = value; // every value of a policy has the same size
    std::mem::size_of::<Value>() + module().engine.state_words() * std::mem::size_of::<u64>()
}

unsafe extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    let v = &*value.cast::<Value>();
    let words = v.state.words();
    match module().engine.state_from_words(&words) {
        Some(state) => Box::into_raw(Box::new(Value {
            state,
            last_ms: v.last_ms.clone(),
            expiry: v.expiry.clone(),
        }))
        .cast(),
        None => std::ptr::null_mut(),
    }
}

/// The digest of a value (`DEBUG DIGEST-VALUE`, `DEBUG DIGEST`): over its logical state, the
/// integers of its RDB encoding, so two nodes holding the same state agree.
unsafe extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    let v = &*value.cast::<Value>();
    let add = raw::RedisModule_DigestAddLongLong.unwrap();
    for n in encode(v) {
        add(md, n);
    }
    raw::RedisModule_DigestEndSequence.unwrap()(md);
}

unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    let v = &*value.cast::<Value>();
    let values = encode(v);
    raw::save_unsigned(rdb, values.len() as u64);
    for n in values {
        raw::save_signed(rdb, n);
    }
}

fn log_warning(msg: &str) {
    log_at(c"warning", msg);
}

fn log_notice(msg: &str) {
    log_at(c"notice", msg);
}

fn log_at(level: &std::ffi::CStr, msg: &str) {
    let fmt = CString::new("%s").unwrap();
    let msg = CString::new(msg.replace('\0', " ")).unwrap();
    unsafe {
        raw::RedisModule_Log.unwrap()(
            std::ptr::null_mut(),
            level.as_ptr(),
            fmt.as_ptr(),
            msg.as_ptr(),
        )
    };
}

unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    if encver > ENCODING_VERSION {
        log_warning(&newer_encoding(encver));
        return std::ptr::null_mut();
    }
    let Ok(len) = raw::load_unsigned(rdb) else {
        return std::ptr::null_mut();
    };
    let mut read = 0u64;
    let mut io_failed = false;
    let file_policy = FILE_POLICY.lock().unwrap_or_else(|e| e.into_inner());
    // Version 1 files carry no policy (their values are the policy in force's); a version 2
    // file's aux data, loaded before its keys, says which it was.
    let under = match (encver, &*file_policy) {
        (2.., Some(Ok(p))) => WrittenUnder::Other(p),
        (2.., Some(Err(why))) => WrittenUnder::Unreadable(why),
        _ => WrittenUnder::InForce,
    };
    let next = || {
        if read >= len {
            return Err("the value ends too soon".into());
        }
        read += 1;
        raw::load_signed(rdb).map_err(|_| {
            io_failed = true;
            "a short read".to_string()
        })
    };
    let result = decode(next, under);
    drop(file_policy);
    if io_failed {
        return std::ptr::null_mut();
    }
    // Consume what a value of another shape left, so the file stays readable.
    while read < len {
        read += 1;
        if raw::load_signed(rdb).is_err() {
            return std::ptr::null_mut();
        }
    }
    match result {
        Ok(v) if read == len => Box::into_raw(Box::new(v)).cast(),
        Ok(_) | Err(_) => {
            let why = match result {
                Err(e) => e,
                Ok(_) => "trailing values".into(),
            };
            // A key that neither fits the policy in force nor carries over to it: it loads as
            // a key never seen rather than stopping the server.
            log_warning(&format!(
                "sluice: a saved key does not fit the policy in force ({why}); it loads as a new key"
            ));
            Box::into_raw(Box::new(Value::new(module().engine.new_state(), 0))).cast()
        }
    }
}

/// The policy of the RDB file being loaded (its aux data), or why it does not parse.
static FILE_POLICY: Mutex<Option<Result<Policy, String>>> = Mutex::new(None);

/// Before the keys of every RDB file: the text of the policy its values are written under.
unsafe extern "C" fn aux_save(rdb: *mut raw::RedisModuleIO, when: c_int) {
    if when == raw::REDISMODULE_AUX_BEFORE_RDB as c_int {
        let text = &module().policy_text;
        raw::RedisModule_SaveStringBuffer.unwrap()(rdb, text.as_ptr().cast(), text.len());
    }
}

unsafe extern "C" fn aux_load(rdb: *mut raw::RedisModuleIO, encver: c_int, when: c_int) -> c_int {
    if encver > ENCODING_VERSION {
        log_warning(&newer_encoding(encver));
        return raw::REDISMODULE_ERR as c_int;
    }
    if when != raw::REDISMODULE_AUX_BEFORE_RDB as c_int {
        return raw::REDISMODULE_OK as c_int;
    }
    let mut len = 0usize;
    let p = raw::RedisModule_LoadStringBuffer.unwrap()(rdb, &mut len);
    if p.is_null() || raw::RedisModule_IsIOError.unwrap()(rdb) != 0 {
        return raw::REDISMODULE_ERR as c_int;
    }
    let text =
        String::from_utf8_lossy(std::slice::from_raw_parts(p.cast::<u8>(), len)).into_owned();
    raw::RedisModule_Free.unwrap()(p.cast());
    let parsed = Policy::parse(&text).map_err(|e| e.to_string());
    if let Err(e) = &parsed {
        log_warning(&format!(
            "sluice: the RDB file's values were written under a policy that does not parse \
             ({e}); its keys load as new keys"
        ));
    } else if parsed.as_ref().ok() != Some(module().engine.policy()) {
        log_notice(
            "sluice: the RDB file's values were written under another policy; each key keeps \
             what is still exact under the policy in force",
        );
    }
    *FILE_POLICY.lock().unwrap_or_else(|e| e.into_inner()) = Some(parsed);
    raw::REDISMODULE_OK as c_int
}

fn newer_encoding(encver: c_int) -> String {
    format!(
        "sluice: a value of encoding version {encver} in the RDB file; this module reads \
         versions up to {ENCODING_VERSION}: load it with a newer module"
    )
}

unsafe extern "C" fn aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    let v = &*value.cast::<Value>();
    let text = encode_text(v);
    // The policy the value is written under goes with it, so that a replay under a changed
    // policy carries the value over (policies are small beside a value's text).
    let policy = &module().policy_text;
    raw::RedisModule_EmitAOF.unwrap()(
        aof,
        c"SLUICE.RESTORE".as_ptr(),
        c"sbb".as_ptr(),
        key,
        text.as_ptr().cast::<std::os::raw::c_char>(),
        text.len(),
        policy.as_ptr().cast::<std::os::raw::c_char>(),
        policy.len(),
    );
    // The key's expiry is rewritten by Redis itself (PEXPIREAT after the value).
}

// ---------------------------------------------------------------------------------------------
// Raw access to the module API (the command path avoids the crate's argument and reply
// wrappers, which allocate per call).

type Ctx = *mut raw::RedisModuleCtx;
type Str = *mut raw::RedisModuleString;

/// The bytes of a Redis string, borrowed for as long as the command runs.
///
/// # Safety
/// `s` is a valid `RedisModuleString` that outlives the returned slice.
unsafe fn bytes<'a>(s: Str) -> &'a [u8] {
    let mut len = 0usize;
    let p = raw::RedisModule_StringPtrLen.unwrap()(s, &mut len);
    if p.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    }
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// An error reply's text (`ERR ...`, `WRONGTYPE ...`).
struct Refusal(String);

fn refuse(msg: impl Into<String>) -> Refusal {
    Refusal(format!("ERR {}", msg.into()))
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

unsafe fn reply_error(ctx: Ctx, r: &Refusal) {
    let msg = CString::new(r.0.replace('\0', " ")).unwrap_or_default();
    raw::RedisModule_ReplyWithError.unwrap()(ctx, msg.as_ptr());
}

unsafe fn reply_ok(ctx: Ctx) {
    raw::RedisModule_ReplyWithSimpleString.unwrap()(ctx, c"OK".as_ptr());
}

unsafe fn reply_decision(ctx: Ctx, d: &Decision) {
    let int = raw::RedisModule_ReplyWithLongLong.unwrap();
    raw::RedisModule_ReplyWithArray.unwrap()(ctx, 8);
    int(ctx, i64::from(d.allowed));
    let status = d.status.as_str();
    raw::RedisModule_ReplyWithStringBuffer.unwrap()(ctx, status.as_ptr().cast(), status.len());
    int(ctx, i64::from(d.limit));
    int(ctx, i64::from(d.remaining));
    int(ctx, d.reset);
    int(ctx, i64::from(d.retry_after));
    int(ctx, d.rule.map_or(-1, |r| r as i64));
    int(ctx, d.window_ms);
}

/// Whether the command comes from the primary or an AOF being loaded (trusted with `AT`).
unsafe fn replicated_or_loading(ctx: Ctx) -> bool {
    let flags = raw::RedisModule_GetContextFlags.unwrap()(ctx) as u32;
    flags & (raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING) != 0
}

// ---------------------------------------------------------------------------------------------
// Keys.

struct Key {
    key: *mut raw::RedisModuleKey,
}

impl Drop for Key {
    fn drop(&mut self) {
        unsafe { raw::RedisModule_CloseKey.unwrap()(self.key) };
    }
}

impl Key {
    unsafe fn open(ctx: Ctx, name: Str, write: bool) -> Key {
        let mode = if write {
            raw::REDISMODULE_READ | raw::REDISMODULE_WRITE
        } else {
            raw::REDISMODULE_READ
        };
        Key {
            key: raw::RedisModule_OpenKey.unwrap()(ctx, name, mode as c_int).cast(),
        }
    }

    /// The key's value: `Ok(None)` if the key does not exist, WRONGTYPE if it holds another
    /// type.
    fn value(&self) -> Result<Option<&Value>, Refusal> {
        unsafe {
            let t = raw::RedisModule_KeyType.unwrap()(self.key);
            if t == raw::REDISMODULE_KEYTYPE_EMPTY as c_int {
                return Ok(None);
            }
            if t != raw::REDISMODULE_KEYTYPE_MODULE as c_int
                || raw::RedisModule_ModuleTypeGetType.unwrap()(self.key)
                    != *SLUICE_TYPE.raw_type.borrow()
            {
                return Err(Refusal(WRONGTYPE.into()));
            }
            let p = raw::RedisModule_ModuleTypeGetValue.unwrap()(self.key).cast::<Value>();
            Ok(p.as_ref())
        }
    }

    fn set(&self, v: Value) -> Result<&Value, Refusal> {
        unsafe {
            let p = Box::into_raw(Box::new(v));
            if raw::RedisModule_ModuleTypeSetValue.unwrap()(
                self.key,
                *SLUICE_TYPE.raw_type.borrow(),
                p.cast(),
            ) != raw::REDISMODULE_OK as c_int
            {
                drop(Box::from_raw(p));
                return Err(refuse("could not store the key's state"));
            }
            Ok(&*p)
        }
    }

    /// Expire the key when nothing in it matters any more, or delete it now if that time is
    /// not after `now` (the time the write was decided at; `None` for a write without one,
    /// whose replicas must decide alike whatever their clocks say).
    fn settle(&self, v: &Value, now: Option<i64>) {
        self.settle_at(v, module().engine.expires_at(&v.state), now);
    }

    /// [`Key::settle`] with the state's `expires_at` known.
    fn settle_at(&self, v: &Value, expiry: Option<i64>, now: Option<i64>) {
        let before = v.expiry.replace(expiry);
        unsafe {
            match expiry {
                Some(at) if now.is_none_or(|now| at > now) => {
                    // Redis holds the expiry rounded up to its grain; it is set again only
                    // when that rounded time moves.
                    let held = held_expiry(at);
                    if before.map(held_expiry) != Some(held) {
                        raw::RedisModule_SetAbsExpire.unwrap()(self.key, held);
                    }
                }
                _ => {
                    raw::RedisModule_DeleteKey.unwrap()(self.key);
                }
            }
        }
    }
}

/// The grain of the expiry Redis holds for a key: the state's `expires_at` rounded up to a
/// whole second. A key is kept at most a second longer than its state matters (never less),
/// and a key checked many times a second has its expiry set again about once a second
/// rather than on every check.
const EXPIRY_GRAIN_MS: i64 = 1000;

/// The expiry Redis holds for a state that matters until `at` (Unix ms).
fn held_expiry(at: i64) -> i64 {
    at.saturating_add(EXPIRY_GRAIN_MS - 1)
        .div_euclid(EXPIRY_GRAIN_MS)
        * EXPIRY_GRAIN_MS
}

// ---------------------------------------------------------------------------------------------
// Commands.

/// `NAME key category [AT ms]`, parsed from the raw arguments without copying them.
struct Args {
    category: Category,
    /// `AT ms`, when given.
    at: Option<i64>,
}

/// `NAME key category [AT ms]` (`AT` only when `with_time`).
unsafe fn parse(ctx: Ctx, argv: &[Str], with_time: bool) -> Result<Args, Refusal> {
    // The usage line of an error; made only when there is one.
    let usage = || {
        let name = argv
            .first()
            .map(|&a| lossy(bytes(a)).to_uppercase())
            .unwrap_or_default();
        if with_time {
            format!("{name} key category [AT ms]")
        } else {
            format!("{name} key category")
        }
    };
    if argv.len() < 3 {
        return Err(refuse(format!("wrong number of arguments: {}", usage())));
    }
    if bytes(argv[1]).is_empty() {
        return Err(refuse(format!("the key is empty: {}", usage())));
    }
    let m = module();
    let name = bytes(argv[2]);
    let Some(&(_, category)) = m.categories.iter().find(|(n, _)| **n == *name) else {
        return Err(refuse(format!("unknown category {:?}", lossy(name))));
    };
    let mut at = None;
    let mut rest = argv[3..].iter();
    while let Some(&a) = rest.next() {
        let word = bytes(a);
        if with_time && word.eq_ignore_ascii_case(b"AT") && at.is_none() {
            let Some(&ms) = rest.next() else {
                return Err(refuse(format!("AT needs a time in Unix ms: {}", usage())));
            };
            let ms_text = bytes(ms);
            let ms = std::str::from_utf8(ms_text)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| {
                    refuse(format!(
                        "AT {:?} is not an integer (Unix ms)",
                        lossy(ms_text)
                    ))
                })?;
            if ms < 0 {
                return Err(refuse(format!("AT {ms} is before 1970 (Unix ms)")));
            }
            if !m.client_time && !replicated_or_loading(ctx) {
                return Err(refuse(
                    "AT is accepted only when the module is loaded with CLIENT-TIME yes",
                ));
            }
            at = Some(ms);
        } else {
            return Err(refuse(format!(
                "unknown argument {:?}: {}",
                lossy(word),
                usage()
            )));
        }
    }
    Ok(Args { category, at })
}

fn server_ms() -> i64 {
    unsafe { raw::RedisModule_Milliseconds.unwrap()() }
}

fn engine_err(e: sluice::Error) -> Refusal {
    refuse(e.to_string())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Check,
    Failure,
    Success,
}

impl Op {
    /// The command replicated for this write (a C string for `RedisModule_Replicate`).
    fn command(self) -> &'static std::ffi::CStr {
        match self {
            Op::Check => c"SLUICE.CHECK",
            Op::Failure => c"SLUICE.FAILURE",
            Op::Success => c"SLUICE.SUCCESS",
        }
    }
}

/// A Redis string the module keeps for its whole life and uses only on Redis's main thread
/// (where every command runs), so it may sit in the module's static state.
struct Kept(Str);

// SAFETY: a `Kept` string is made once at load, never freed, and only handed to the module API
// from commands, which Redis runs on its main thread.
unsafe impl Send for Kept {}
unsafe impl Sync for Kept {}

thread_local! {
    /// The last time replicated and its string: every write decided in the same millisecond
    /// replicates the same string (Redis counts its references), so a write makes no string of
    /// its own for its time.
    static LAST_AT: Cell<(i64, Str)> = const { Cell::new((-1, std::ptr::null_mut())) };
}

/// The string of `ms` for a replicated `AT ms`: the one of the previous write when it was
/// decided at the same time, else a new one (the previous is released; a command still
/// waiting to be propagated holds its own reference to it).
unsafe fn at_string(ms: i64) -> Str {
    LAST_AT.with(|last| {
        let (at, s) = last.get();
        if at == ms && !s.is_null() {
            return s;
        }
        if !s.is_null() {
            raw::RedisModule_FreeString.unwrap()(std::ptr::null_mut(), s);
        }
        let s = raw::RedisModule_CreateStringFromLongLong.unwrap()(std::ptr::null_mut(), ms);
        last.set((ms, s));
        s
    })
}

/// Propagate `op key category AT now` to the replicas and the AOF (and count the write for
/// RDB save points). Every argument is a string that already exists (the command's own key and
/// category, the kept `AT`, the millisecond's time), so Redis only takes references to them.
unsafe fn replicate_at(ctx: Ctx, op: Op, key: Str, category: Str, now: i64) {
    raw::RedisModule_Replicate.unwrap()(
        ctx,
        op.command().as_ptr(),
        c"ssss".as_ptr(),
        key,
        category,
        module().at_word.0,
        at_string(now),
    );
}

/// A write at a time: decide on the key's value (created if new), store or drop it, reply,
/// and replicate the command with the time it was decided at.
unsafe fn write(ctx: Ctx, argv: &[Str], op: Op) -> Result<(), Refusal> {
    let a = parse(ctx, argv, true)?;
    let m = module();
    let key = Key::open(ctx, argv[1], true);
    let existing = key.value()?;
    let requested = a.at.unwrap_or_else(server_ms);
    let now = requested.max(existing.map_or(0, |v| v.last_ms.get()));
    let fresh = existing
        .is_none()
        .then(|| Value::new(m.engine.new_state(), now));
    let Some(v) = existing.or(fresh.as_ref()) else {
        return Err(refuse("no state")); // one of the two is always there
    };
    // The engine refuses (a category without a lockout, a time out of range) before it
    // changes anything.
    let result = match op {
        Op::Check => m.engine.check(&v.state, a.category, now).map(Some),
        Op::Failure => m.engine.failure(&v.state, a.category, now).map(Some),
        Op::Success => m.engine.success(&v.state, a.category, now).map(|()| None),
    }
    .map_err(engine_err)?;
    // A check that passed logged `now` in every rule of its category (global ones included)
    // and changed nothing else: the expiry moves to the latest of the old one and `now` plus
    // the longest of those windows. Anything else reads the whole state.
    let passed = matches!(&result, Some(d) if op == Op::Check && d.status == Status::Passed);
    let expiry = match (passed, v.expiry.get()) {
        (true, Some(old)) => Some(match m.longest_window[a.category.id()] {
            Some(w) => old.max(now.saturating_add(w)),
            None => old,
        }),
        _ => m.engine.expires_at(&v.state),
    };
    let stored = match (existing, fresh) {
        (Some(v), _) => {
            v.last_ms.set(now);
            Some(v)
        }
        // A new key is stored only if the state now holds something.
        (None, Some(f)) if expiry.is_some() => Some(key.set(f)?),
        (None, _) => None,
    };
    if let Some(v) = stored {
        key.settle_at(v, expiry, Some(now));
        // Every write is propagated, a refused check too (a strict rule logs it), with the
        // time it was decided at.
        replicate_at(ctx, op, argv[1], argv[2], now);
    }
    match result {
        Some(d) => reply_decision(ctx, &d),
        None => reply_ok(ctx),
    }
    Ok(())
}

unsafe fn peek(ctx: Ctx, argv: &[Str]) -> Result<(), Refusal> {
    let a = parse(ctx, argv, true)?;
    let m = module();
    let key = Key::open(ctx, argv[1], false);
    let requested = a.at.unwrap_or_else(server_ms);
    let d = match key.value()? {
        Some(v) => m
            .engine
            .peek(&v.state, a.category, requested.max(v.last_ms.get())),
        None => m.engine.peek(&m.engine.new_state(), a.category, requested),
    }
    .map_err(engine_err)?;
    reply_decision(ctx, &d);
    Ok(())
}

unsafe fn reset(ctx: Ctx, argv: &[Str]) -> Result<(), Refusal> {
    let a = parse(ctx, argv, false)?;
    let m = module();
    let key = Key::open(ctx, argv[1], true);
    if let Some(v) = key.value()? {
        let before = v.state.words();
        m.engine.reset(&v.state, a.category).map_err(engine_err)?;
        if v.state.words() != before {
            key.settle(v, None);
            raw::RedisModule_ReplicateVerbatim.unwrap()(ctx);
        }
    }
    reply_ok(ctx);
    Ok(())
}

/// The C entry of a command: its arguments as a slice, its error as an error reply, and no
/// panic across the boundary.
unsafe fn entry(
    ctx: Ctx,
    argv: *mut Str,
    argc: c_int,
    run: unsafe fn(Ctx, &[Str]) -> Result<(), Refusal>,
) -> c_int {
    let argv: &[Str] = if argv.is_null() || argc <= 0 {
        &[]
    } else {
        std::slice::from_raw_parts(argv, argc as usize)
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(ctx, argv)));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(r)) => reply_error(ctx, &r),
        Err(_) => reply_error(ctx, &refuse("internal error in the sluice module")),
    }
    raw::REDISMODULE_OK as c_int
}

unsafe extern "C" fn cmd_check(ctx: Ctx, argv: *mut Str, argc: c_int) -> c_int {
    entry(ctx, argv, argc, |ctx, argv| write(ctx, argv, Op::Check))
}

unsafe extern "C" fn cmd_failure(ctx: Ctx, argv: *mut Str, argc: c_int) -> c_int {
    entry(ctx, argv, argc, |ctx, argv| write(ctx, argv, Op::Failure))
}

unsafe extern "C" fn cmd_success(ctx: Ctx, argv: *mut Str, argc: c_int) -> c_int {
    entry(ctx, argv, argc, |ctx, argv| write(ctx, argv, Op::Success))
}

unsafe extern "C" fn cmd_peek(ctx: Ctx, argv: *mut Str, argc: c_int) -> c_int {
    entry(ctx, argv, argc, peek)
}

unsafe extern "C" fn cmd_reset(ctx: Ctx, argv: *mut Str, argc: c_int) -> c_int {
    entry(ctx, argv, argc, reset)
}

/// The keyed commands on the raw API: (name, handler, flags).
type RawCommand = unsafe extern "C" fn(Ctx, *mut Str, c_int) -> c_int;
const RAW_COMMANDS: [(&std::ffi::CStr, RawCommand, &std::ffi::CStr); 5] = [
    (c"sluice.check", cmd_check, c"write deny-oom fast"),
    (c"sluice.peek", cmd_peek, c"readonly fast"),
    (c"sluice.failure", cmd_failure, c"write deny-oom fast"),
    (c"sluice.success", cmd_success, c"write fast"),
    (c"sluice.reset", cmd_reset, c"write fast"),
];

/// Register the keyed commands, each with its key at position 1 (first 1, last 1, step 1) so
/// that Cluster routes them and ACL key patterns apply.
fn register_raw_commands(ctx: &Context) -> Result<(), String> {
    for (name, handler, flags) in RAW_COMMANDS {
        let status = unsafe {
            raw::RedisModule_CreateCommand.unwrap()(
                ctx.get_raw(),
                name.as_ptr(),
                Some(handler),
                flags.as_ptr(),
                1,
                1,
                1,
            )
        };
        if status != raw::REDISMODULE_OK as c_int {
            return Err(format!("could not create the command {name:?}"));
        }
    }
    Ok(())
}

fn err(msg: String) -> RedisError {
    RedisError::String(format!("ERR {msg}"))
}

fn sluice_policy(_ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if args.len() != 1 {
        return Err(err("wrong number of arguments: SLUICE.POLICY".into()));
    }
    Ok(RedisValue::BulkString(module().policy_text.clone()))
}

/// `SLUICE.RESTORE key encoded`: the command an AOF rewrite emits to rebuild a key. Accepted
/// only while loading or from the primary, never from a client.
fn sluice_restore(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
    if !ctx
        .get_flags()
        .intersects(ContextFlags::REPLICATED | ContextFlags::LOADING)
    {
        return Err(err(
            "SLUICE.RESTORE is written by AOF rewrite and runs only while loading".into(),
        ));
    }
    if !(3..=4).contains(&args.len()) || args[1].as_slice().is_empty() {
        return Err(err(
            "wrong number of arguments: SLUICE.RESTORE key encoded [policy]".into(),
        ));
    }
    // The policy the value was written under (parsed once for a run of keys of one policy).
    static LAST: Mutex<Option<(String, Result<Policy, String>)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let under = match args.get(3) {
        None => WrittenUnder::InForce,
        Some(text) => {
            let text = text.to_string_lossy();
            if last.as_ref().is_none_or(|(t, _)| *t != text) {
                let parsed = Policy::parse(&text).map_err(|e| e.to_string());
                *last = Some((text, parsed));
            }
            match last.as_ref().map(|(_, p)| p) {
                Some(Ok(p)) => WrittenUnder::Other(p),
                Some(Err(why)) => WrittenUnder::Unreadable(why),
                None => WrittenUnder::InForce,
            }
        }
    };
    let v = decode_text(&args[2].to_string_lossy(), under).map_err(|e| {
        // An AOF replay ignores a command's error reply: say it in the log.
        log_warning(&format!(
            "sluice: SLUICE.RESTORE of key {:?} refused: {e}",
            args[1].to_string_lossy()
        ));
        err(format!("SLUICE.RESTORE: {e}"))
    })?;
    let key = unsafe { Key::open(ctx.get_raw(), args[1].inner, true) };
    if key.value().is_err() {
        return Err(RedisError::WrongType);
    }
    key.set(v).map_err(|r| RedisError::String(r.0))?;
    ctx.replicate_verbatim();
    Ok(RedisValue::SimpleStringStatic("OK"))
}

// ---------------------------------------------------------------------------------------------
// Loading.

fn init(ctx: &Context, args: &[RedisString]) -> RedisStatus {
    match configure(args).and_then(|m| register_raw_commands(ctx).map(|()| m)) {
        Ok(m) => {
            ctx.log_notice(&format!(
                "sluice: policy {} loaded ({} categories){}",
                m.policy_path,
                m.engine.policy().categories.len(),
                if m.client_time {
                    "; clients may give AT (CLIENT-TIME yes)"
                } else {
                    ""
                }
            ));
            let _ = MODULE.set(m);
            RedisStatus::Ok
        }
        Err(e) => {
            ctx.log_warning(&format!("sluice: not loaded: {e}"));
            RedisStatus::Err
        }
    }
}

const LOAD_USAGE: &str =
    "load with: --loadmodule MODULE POLICY /path/to/file.policy [CLIENT-TIME yes|no]";

fn configure(args: &[RedisString]) -> Result<Module, String> {
    let mut path = None;
    let mut client_time = false;
    let mut it = args.iter().map(|a| a.to_string_lossy());
    while let Some(name) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{name} needs a value; {LOAD_USAGE}"))?;
        match name.to_ascii_uppercase().as_str() {
            "POLICY" => path = Some(value),
            "CLIENT-TIME" => {
                client_time = match value.to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(format!("CLIENT-TIME {value:?} is not yes or no")),
                }
            }
            _ => return Err(format!("unknown argument {name:?}; {LOAD_USAGE}")),
        }
    }
    let path = path.ok_or_else(|| format!("no POLICY given; {LOAD_USAGE}"))?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the policy file {path}: {e}"))?;
    let engine = KeyEngine::new(&text).map_err(|e| format!("policy file {path}: {e}"))?;
    let categories = engine
        .policy()
        .categories
        .iter()
        .map(|name| {
            let c = engine.category(name).map_err(|e| e.to_string())?;
            Ok((name.as_bytes().into(), c))
        })
        .collect::<Result<_, String>>()?;
    let policy = engine.policy();
    let longest_window = policy
        .categories
        .iter()
        .map(|name| {
            policy
                .rules
                .iter()
                .filter(|r| r.name == *name || r.name == sluice::policy::GLOBAL)
                .filter_map(|r| match &r.kind {
                    RuleKind::Window(w) => Some(w.window_ms),
                    RuleKind::Lockout(_) => None,
                })
                .max()
        })
        .collect();
    Ok(Module {
        engine,
        categories,
        longest_window,
        policy_text: text,
        policy_path: path,
        client_time,
        at_word: Kept(unsafe {
            raw::RedisModule_CreateString.unwrap()(std::ptr::null_mut(), c"AT".as_ptr(), 2)
        }),
    })
}

redis_module! {
    name: "sluice",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [SLUICE_TYPE],
    init: init,
    commands: [
        // The keyed commands of the hot path are registered in `init` on the raw API.
        ["sluice.restore", sluice_restore, "write deny-oom", 1, 1, 1, ""],
        ["sluice.policy", sluice_policy, "readonly fast", 0, 0, 0, ""],
    ],
}
