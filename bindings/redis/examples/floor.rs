//! A measuring stick for the benchmarks, not part of the module: the least a keyed module
//! command costs on this Redis, so that `SLUICE.CHECK`'s cost can be split into what any
//! module command pays and what sluice adds.
//!
//! - `FLOOR.OK key` replies `OK` and does nothing else (declared like `SLUICE.CHECK`: a write
//!   with its key at position 1).
//! - `FLOOR.KEY key` also opens the key for writing, reads its type and closes it.
//! - `FLOOR.CHECK key category` makes the module API calls every `SLUICE.CHECK` makes, the
//!   cheapest way this module knows, and no decision: it opens the key and reads its type,
//!   replicates `FLOOR.CHECK key category AT ms` (one string made per millisecond, the rest
//!   existing strings) and replies an array of the same eight fields as a check that passed.
//!   It stores nothing and sets no expiry.
//!
//! Built by `bash bindings/redis/build.sh floor`; loaded beside the module by `callgrind.sh`
//! and `bench.sh`.

use std::os::raw::c_int;

use redis_module::{raw, redis_module, Context, RedisString, Status};

type Ctx = *mut raw::RedisModuleCtx;
type Str = *mut raw::RedisModuleString;

unsafe fn reply_ok(ctx: Ctx) -> c_int {
    raw::RedisModule_ReplyWithSimpleString.unwrap()(ctx, c"OK".as_ptr());
    raw::REDISMODULE_OK as c_int
}

unsafe extern "C" fn floor_ok(ctx: Ctx, _argv: *mut Str, argc: c_int) -> c_int {
    if argc != 2 {
        return raw::RedisModule_WrongArity.unwrap()(ctx);
    }
    reply_ok(ctx)
}

unsafe extern "C" fn floor_key(ctx: Ctx, argv: *mut Str, argc: c_int) -> c_int {
    if argc != 2 {
        return raw::RedisModule_WrongArity.unwrap()(ctx);
    }
    let mode = (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int;
    let key = raw::RedisModule_OpenKey.unwrap()(ctx, *argv.add(1), mode).cast();
    let t = raw::RedisModule_KeyType.unwrap()(key);
    raw::RedisModule_CloseKey.unwrap()(key);
    if t != raw::REDISMODULE_KEYTYPE_EMPTY as c_int && t != raw::REDISMODULE_KEYTYPE_MODULE as c_int
    {
        raw::RedisModule_ReplyWithError.unwrap()(ctx, c"WRONGTYPE".as_ptr());
        return raw::REDISMODULE_OK as c_int;
    }
    reply_ok(ctx)
}

thread_local! {
    static LAST_AT: std::cell::Cell<(i64, Str)> =
        const { std::cell::Cell::new((-1, std::ptr::null_mut())) };
    static AT_WORD: std::cell::Cell<Str> = const { std::cell::Cell::new(std::ptr::null_mut()) };
}

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

unsafe fn at_word() -> Str {
    AT_WORD.with(|w| {
        if w.get().is_null() {
            w.set(raw::RedisModule_CreateString.unwrap()(
                std::ptr::null_mut(),
                c"AT".as_ptr(),
                2,
            ));
        }
        w.get()
    })
}

unsafe extern "C" fn floor_check(ctx: Ctx, argv: *mut Str, argc: c_int) -> c_int {
    if argc < 3 {
        return raw::RedisModule_WrongArity.unwrap()(ctx);
    }
    let mode = (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int;
    let key = raw::RedisModule_OpenKey.unwrap()(ctx, *argv.add(1), mode).cast();
    let t = raw::RedisModule_KeyType.unwrap()(key);
    raw::RedisModule_CloseKey.unwrap()(key);
    if t != raw::REDISMODULE_KEYTYPE_EMPTY as c_int && t != raw::REDISMODULE_KEYTYPE_MODULE as c_int
    {
        raw::RedisModule_ReplyWithError.unwrap()(ctx, c"WRONGTYPE".as_ptr());
        return raw::REDISMODULE_OK as c_int;
    }
    let now = raw::RedisModule_Milliseconds.unwrap()();
    raw::RedisModule_Replicate.unwrap()(
        ctx,
        c"FLOOR.CHECK".as_ptr(),
        c"ssss".as_ptr(),
        *argv.add(1),
        *argv.add(2),
        at_word(),
        at_string(now),
    );
    let int = raw::RedisModule_ReplyWithLongLong.unwrap();
    raw::RedisModule_ReplyWithArray.unwrap()(ctx, 8);
    int(ctx, 1);
    raw::RedisModule_ReplyWithStringBuffer.unwrap()(ctx, c"passed".as_ptr(), 6);
    int(ctx, 300);
    int(ctx, 299);
    int(ctx, now / 1000 + 60);
    int(ctx, 0);
    int(ctx, 0);
    int(ctx, 60_000);
    raw::REDISMODULE_OK as c_int
}

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    type Handler = unsafe extern "C" fn(Ctx, *mut Str, c_int) -> c_int;
    let commands: [(&std::ffi::CStr, Handler); 3] = [
        (c"floor.ok", floor_ok),
        (c"floor.key", floor_key),
        (c"floor.check", floor_check),
    ];
    for (name, handler) in commands {
        let status = unsafe {
            raw::RedisModule_CreateCommand.unwrap()(
                ctx.get_raw(),
                name.as_ptr(),
                Some(handler),
                c"write deny-oom fast".as_ptr(),
                1,
                1,
                1,
            )
        };
        if status != raw::REDISMODULE_OK as c_int {
            return Status::Err;
        }
    }
    Status::Ok
}

redis_module! {
    name: "floor",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [],
    init: init,
}
