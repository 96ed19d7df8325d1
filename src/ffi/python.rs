//! For the Python package (`bindings/python`) only: native CPython methods for its
//! `Limiter.check`, `.peek`, `.failure` and `.allow`.
//!
//! The package loads this library with ctypes (no compiler at install, and the library links
//! no libpython). A ctypes call costs several hundred nanoseconds of argument conversion, more
//! than the engine's own work, so at import the package asks for the CPython C-API functions
//! and objects this file names (`sluice_python_needs`), passes their addresses in one array
//! (`sluice_python_methods`), and gets back method descriptors that CPython calls directly
//! (METH_FASTCALL | METH_KEYWORDS), with the GIL held, straight into the engine.
//!
//! Only functions of CPython's stable ABI are used, and of its structs only `PyMethodDef` and
//! the first two fields of `PyObject` (its reference count and type) are mirrored; the type
//! field's place is checked against the objects passed in before anything is built.
//!
//! A method reads its arguments in the common case only (a `str` or `bytes` key, a `str`
//! category the policy names or none, `now_ms` None or a non-negative `int`, passed by
//! position or by the names `key`, `category`, `now_ms`); for anything else it calls the
//! package's own Python method with the same arguments, which has every check and message.
//! An error code from the library goes to the package's error function, which raises the
//! exception the ctypes path raises for it. No panic leaves a method: one becomes that error
//! function's exception for SLUICE_ERR_PANIC.
//!
//! The handle's lifetime: a method reads the handle from the limiter's attribute (an `int`,
//! which `close()` sets to 0 before it frees the table) and makes the engine call with the
//! GIL held from that read to the call's return, running no Python code in between (the read
//! is a plain instance attribute lookup; everything that could run Python code — converting
//! the arguments, the fallback, building the result, raising — happens before the read or
//! after the engine call). `close()` is Python code, so it runs either before the read (the
//! method sees 0 and takes the Python path, which raises `ClosedError`) or after the engine
//! call returned: the table is never freed under a call. A free-threaded build has no such
//! guarantee, and the package never installs these methods there.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicPtr, Ordering};

use super::{
    sluice, sluice_allow, sluice_check, sluice_decision, sluice_failure, sluice_peek,
    SLUICE_ERR_ARGUMENT, SLUICE_ERR_NULL, SLUICE_ERR_PANIC, SLUICE_NOW, SLUICE_OK,
};

type Obj = *mut PyObject;

/// The head of every CPython object (`PyObject` without the free-threaded or trace-refs
/// fields: the package does not use these methods on such builds).
#[repr(C)]
struct PyObject {
    ob_refcnt: isize,
    ob_type: Obj,
}

/// CPython's `PyMethodDef` (stable ABI).
#[repr(C)]
struct PyMethodDef {
    ml_name: *const c_char,
    ml_meth: *const c_void,
    ml_flags: c_int,
    ml_doc: *const c_char,
}

const METH_KEYWORDS: c_int = 0x0002;
const METH_FASTCALL: c_int = 0x0080;

macro_rules! needs {
    (api { $($f:ident: fn($($arg:ty),*) -> $ret:ty;)* } objects { $($o:ident,)* }) => {
        /// The C-API functions, in the order `sluice_python_needs` names them.
        #[repr(C)]
        #[allow(non_snake_case)]
        struct Api {
            $($f: unsafe extern "C" fn($($arg),*) -> $ret,)*
        }
        /// The objects, in the order `sluice_python_needs` names them (after the functions).
        #[repr(C)]
        struct Objects {
            $($o: Obj,)*
        }
        const API_NAMES: &[&str] = &[$(stringify!($f)),*];
        const OBJECT_NAMES: &[&str] = &[$(stringify!($o)),*];
        /// Space-separated: the functions, then the objects.
        const NEEDS: &str = concat!($(stringify!($f), " ",)* $(stringify!($o), " ",)* "\0");
    };
}

needs! {
    api {
        PyDescr_NewMethod: fn(Obj, *mut PyMethodDef) -> Obj;
        PyUnicode_AsUTF8AndSize: fn(Obj, *mut isize) -> *const c_char;
        PyBytes_AsStringAndSize: fn(Obj, *mut *mut c_char, *mut isize) -> c_int;
        PyLong_AsLongLongAndOverflow: fn(Obj, *mut c_int) -> i64;
        PyLong_AsVoidPtr: fn(Obj) -> *mut c_void;
        PyLong_FromLongLong: fn(i64) -> Obj;
        PyType_GenericAlloc: fn(Obj, isize) -> Obj;
        PyTuple_New: fn(isize) -> Obj;
        PyTuple_Size: fn(Obj) -> isize;
        PyTuple_GetItem: fn(Obj, isize) -> Obj;
        PyTuple_SetItem: fn(Obj, isize, Obj) -> c_int;
        PyDict_New: fn() -> Obj;
        PyDict_SetItem: fn(Obj, Obj, Obj) -> c_int;
        PyObject_Call: fn(Obj, Obj, Obj) -> Obj;
        PyObject_GetAttr: fn(Obj, Obj) -> Obj;
        PyErr_Clear: fn() -> ();
        Py_IncRef: fn(Obj) -> ();
        Py_DecRef: fn(Obj) -> ();
    }
    objects {
        // The class the methods are for, and the class of their decisions (a tuple subclass
        // whose 10 items are the fields in the package's order, then the limiter).
        limiter_type,
        decision_type,
        // `Decision.status` by status code: a tuple of 256 str.
        statuses,
        py_true,
        py_false,
        py_none,
        str_type,
        bytes_type,
        int_type,
        // The limiter attribute holding the handle's address (0 once closed), and where a
        // limiter keeps it: an int, the byte offset of that `__slots__` slot in every limiter
        // (the package checks it on a limiter), or 0 to look the attribute up by name.
        handle_attribute,
        handle_offset,
        kw_key,
        kw_category,
        kw_now_ms,
        // The package's Python methods, called with the same arguments for anything but the
        // common case.
        python_check,
        python_peek,
        python_failure,
        python_allow,
        // error(limiter, code, op, key, category or None, now_ms or None): raises.
        error,
        // Each method's docstring (str; a text signature line first).
        doc_check,
        doc_peek,
        doc_failure,
        doc_allow,
    }
}

/// What a call of the methods needs, made once by `sluice_python_methods` and kept (with a
/// reference to each object) for the process's life.
struct State {
    api: Api,
    o: Objects,
    /// The `int` last made for a decision's `limit`, `reset` and `window_ms` (the values that
    /// are too large for CPython's small-int cache and repeat from one call to the next): the
    /// value and a reference of the state's own, or NULL. Read and written with the GIL held
    /// only, by the methods.
    ints: [Cell<(i64, Obj)>; 3],
    /// `handle_offset`'s value.
    offset: usize,
}

static STATE: AtomicPtr<State> = AtomicPtr::new(null_mut());

#[derive(Clone, Copy)]
enum Op {
    Check = 0,
    Peek = 1,
    Failure = 2,
    Allow = 3,
}

const OPS: [(Op, &str); 4] = [
    (Op::Check, "check"),
    (Op::Peek, "peek"),
    (Op::Failure, "failure"),
    (Op::Allow, "allow"),
];

/// The names of what `sluice_python_methods` needs, space-separated: first the CPython C-API
/// functions (their addresses, e.g. from `ctypes.pythonapi`), then the package's objects. For
/// the Python package only.
#[no_mangle]
pub extern "C" fn sluice_python_needs() -> *const c_char {
    NEEDS.as_ptr() as *const c_char
}

/// For the Python package only: build its native methods. `values`: `n` addresses, one for
/// each name of `sluice_python_needs` in that order. Writes `out_len` (4) new references to
/// `out`: method descriptors of `limiter_type` for check, peek, failure and allow. Must be
/// called with the GIL held (ctypes' PyDLL). Returns SLUICE_OK, SLUICE_ERR_NULL (a NULL
/// value), SLUICE_ERR_ARGUMENT (`n` or `out_len` not what this library needs, or objects
/// whose layout is not the one expected: nothing built) or SLUICE_ERR_PANIC. The last
/// successful call's objects serve every method made so far.
///
/// # Safety
/// `values` points to `n` addresses as described, `out` to `out_len` writable pointers; the
/// calling thread holds the GIL of the interpreter the functions belong to.
#[no_mangle]
pub unsafe extern "C" fn sluice_python_methods(
    values: *mut *mut c_void,
    n: usize,
    out: *mut *mut c_void,
    out_len: usize,
) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        if values.is_null() || out.is_null() {
            return SLUICE_ERR_NULL;
        }
        if n != API_NAMES.len() + OBJECT_NAMES.len() || out_len != OPS.len() {
            return SLUICE_ERR_ARGUMENT;
        }
        // SAFETY: `n` readable addresses by contract.
        let vals = unsafe { std::slice::from_raw_parts(values, n) };
        if vals.iter().any(|v| v.is_null()) {
            return SLUICE_ERR_NULL;
        }
        // SAFETY: Api and Objects are repr(C) structs of pointer-sized fields, as many as
        // the names, which is `n` (checked); each value is non-NULL, and by contract the
        // function named.
        let state = unsafe {
            State {
                api: std::ptr::read(vals.as_ptr() as *const Api),
                o: std::ptr::read(vals.as_ptr().add(API_NAMES.len()) as *const Objects),
                ints: Default::default(),
                offset: 0,
            }
        };
        let mut state = state;
        // SAFETY: the objects are live (the caller holds them) and the GIL is held.
        unsafe {
            if !layout_is_expected(&state) {
                return SLUICE_ERR_ARGUMENT;
            }
            let mut overflow: c_int = 0;
            let offset =
                (state.api.PyLong_AsLongLongAndOverflow)(state.o.handle_offset, &mut overflow);
            let word = std::mem::size_of::<Obj>() as i64;
            let head = std::mem::size_of::<PyObject>() as i64;
            if overflow != 0 || !(offset == 0 || (offset >= head && offset % word == 0)) {
                (state.api.PyErr_Clear)();
                return SLUICE_ERR_ARGUMENT;
            }
            state.offset = offset as usize;
            let st: &'static State = Box::leak(Box::new(state));
            let all = std::slice::from_raw_parts(
                &st.o as *const Objects as *const Obj,
                OBJECT_NAMES.len(),
            );
            for &o in all {
                (st.api.Py_IncRef)(o);
            }
            let meths: [(
                unsafe extern "C" fn(Obj, *const Obj, isize, Obj) -> Obj,
                Obj,
            ); 4] = [
                (check_method, st.o.doc_check),
                (peek_method, st.o.doc_peek),
                (failure_method, st.o.doc_failure),
                (allow_method, st.o.doc_allow),
            ];
            let mut made: [Obj; 4] = [null_mut(); 4];
            for (i, ((_, name), (f, doc))) in OPS.iter().zip(meths).enumerate() {
                let Some(doc) = utf8(st, doc).and_then(|d| CString::new(d).ok()) else {
                    (st.api.PyErr_Clear)();
                    return release(st, &made, SLUICE_ERR_ARGUMENT);
                };
                let def = Box::leak(Box::new(PyMethodDef {
                    ml_name: CString::new(*name).expect("no NUL").into_raw(),
                    ml_meth: f as *const c_void,
                    ml_flags: METH_FASTCALL | METH_KEYWORDS,
                    ml_doc: doc.into_raw(),
                }));
                let d = (st.api.PyDescr_NewMethod)(st.o.limiter_type, def);
                if d.is_null() {
                    (st.api.PyErr_Clear)();
                    return release(st, &made, SLUICE_ERR_ARGUMENT);
                }
                made[i] = d;
            }
            STATE.store(st as *const State as *mut State, Ordering::Release);
            for (i, d) in made.into_iter().enumerate() {
                *out.add(i) = d as *mut c_void;
            }
        }
        SLUICE_OK
    }))
    .unwrap_or(SLUICE_ERR_PANIC)
}

/// Drop the descriptors made so far (on a failure of `sluice_python_methods`).
///
/// # Safety
/// GIL held; `made` holds NULL or new references.
unsafe fn release(st: &State, made: &[Obj], code: c_int) -> c_int {
    for &d in made.iter().filter(|d| !d.is_null()) {
        // SAFETY: a new reference of ours.
        unsafe { (st.api.Py_DecRef)(d) };
    }
    code
}

/// Is `ob_type` where this file reads it? The type of each object whose type is known.
///
/// # Safety
/// The objects are live; GIL held.
unsafe fn layout_is_expected(st: &State) -> bool {
    let o = &st.o;
    // SAFETY: live objects.
    unsafe {
        let strs = [
            o.handle_attribute,
            o.kw_key,
            o.kw_category,
            o.kw_now_ms,
            o.doc_check,
            o.doc_peek,
            o.doc_failure,
            o.doc_allow,
        ];
        if strs.iter().any(|&s| type_of(s) != o.str_type) {
            return false;
        }
        if type_of(o.py_true) != type_of(o.py_false) || type_of(o.py_none) == o.int_type {
            return false;
        }
        if (st.api.PyTuple_Size)(o.statuses) != 256 {
            (st.api.PyErr_Clear)();
            return false;
        }
        (0..256).all(|i| {
            let s = (st.api.PyTuple_GetItem)(o.statuses, i);
            !s.is_null() && type_of(s) == o.str_type
        })
    }
}

/// # Safety
/// `o` is a live object.
#[inline(always)]
unsafe fn type_of(o: Obj) -> Obj {
    // SAFETY: every object starts with PyObject.
    unsafe { (*o).ob_type }
}

/// The UTF-8 bytes of a `str`, or None (an exception set: the caller clears it).
///
/// # Safety
/// `s` is a live `str`; GIL held.
#[inline(always)]
unsafe fn utf8<'a>(st: &State, s: Obj) -> Option<&'a [u8]> {
    let mut n: isize = 0;
    // SAFETY: a str; the buffer lives as long as the str, which outlives the use.
    unsafe {
        let p = (st.api.PyUnicode_AsUTF8AndSize)(s, &mut n);
        if p.is_null() {
            return None;
        }
        Some(std::slice::from_raw_parts(p as *const u8, n as usize))
    }
}

unsafe extern "C" fn check_method(slf: Obj, args: *const Obj, nargs: isize, kw: Obj) -> Obj {
    // SAFETY: called by CPython with the GIL, as METH_FASTCALL | METH_KEYWORDS.
    unsafe { method(Op::Check, slf, args, nargs, kw) }
}

unsafe extern "C" fn peek_method(slf: Obj, args: *const Obj, nargs: isize, kw: Obj) -> Obj {
    // SAFETY: as check_method.
    unsafe { method(Op::Peek, slf, args, nargs, kw) }
}

unsafe extern "C" fn failure_method(slf: Obj, args: *const Obj, nargs: isize, kw: Obj) -> Obj {
    // SAFETY: as check_method.
    unsafe { method(Op::Failure, slf, args, nargs, kw) }
}

unsafe extern "C" fn allow_method(slf: Obj, args: *const Obj, nargs: isize, kw: Obj) -> Obj {
    // SAFETY: as check_method.
    unsafe { method(Op::Allow, slf, args, nargs, kw) }
}

/// One call: the common case here, anything else through the package's Python method.
///
/// # Safety
/// GIL held; `args` holds `nargs` positional arguments and then one per name of `kw` (NULL
/// or a tuple of str); `slf` is a limiter.
#[inline(always)]
unsafe fn method(op: Op, slf: Obj, args: *const Obj, nargs: isize, kw: Obj) -> Obj {
    // SAFETY: made before any method can be called (the methods come from it), never freed.
    let st = unsafe { &*STATE.load(Ordering::Acquire) };
    // SAFETY: caller contract.
    match catch_unwind(AssertUnwindSafe(|| unsafe {
        call(st, op, slf, args, nargs, kw)
    })) {
        Ok(r) => r,
        Err(_) => {
            // A bug here, not a Python error: the package's exception for a panic.
            let key = if nargs >= 1 {
                // SAFETY: nargs >= 1.
                unsafe { *args }
            } else {
                st.o.py_none
            };
            // SAFETY: GIL held.
            unsafe { raise(st, op, slf, SLUICE_ERR_PANIC, key, null_mut(), null_mut()) }
        }
    }
}

/// # Safety
/// As `method`.
#[inline(always)]
unsafe fn call(st: &State, op: Op, slf: Obj, args: *const Obj, nargs: isize, kw: Obj) -> Obj {
    let api = &st.api;
    let o = &st.o;
    // SAFETY: caller contract (GIL held, valid argument vector); see each step.
    unsafe {
        // Arguments: key, category, now_ms, by position or by name.
        let mut a: [Obj; 3] = [null_mut(); 3];
        if !(1..=3).contains(&nargs) {
            return python(st, op, slf, args, nargs, kw);
        }
        for (i, slot) in a.iter_mut().enumerate().take(nargs as usize) {
            *slot = *args.add(i);
        }
        if !kw.is_null() {
            let names = (api.PyTuple_Size)(kw);
            for j in 0..names {
                let name = (api.PyTuple_GetItem)(kw, j);
                let i = if name == o.kw_key {
                    0
                } else if name == o.kw_category {
                    1
                } else if name == o.kw_now_ms {
                    2
                } else {
                    // Another name, or one not interned: the Python method sorts it out.
                    return python(st, op, slf, args, nargs, kw);
                };
                if !a[i].is_null() {
                    return python(st, op, slf, args, nargs, kw);
                }
                a[i] = *args.add((nargs + j) as usize);
            }
        }
        let [key, category, now] = a;
        if key.is_null() {
            return python(st, op, slf, args, nargs, kw);
        }
        // The key's bytes: a str's UTF-8 (kept by the str), a bytes object's own.
        let key_type = type_of(key);
        let key_bytes: &[u8] = if key_type == o.str_type {
            match utf8(st, key) {
                Some(b) => b,
                None => {
                    (api.PyErr_Clear)(); // not encodable: the Python method raises
                    return python(st, op, slf, args, nargs, kw);
                }
            }
        } else if key_type == o.bytes_type {
            let mut p: *mut c_char = null_mut();
            let mut n: isize = 0;
            if (api.PyBytes_AsStringAndSize)(key, &mut p, &mut n) != 0 {
                (api.PyErr_Clear)();
                return python(st, op, slf, args, nargs, kw);
            }
            std::slice::from_raw_parts(p as *const u8, n as usize)
        } else {
            return python(st, op, slf, args, nargs, kw);
        };
        let category_name: Option<&[u8]> = if category.is_null() {
            None
        } else if type_of(category) == o.str_type {
            match utf8(st, category) {
                Some(b) => Some(b),
                None => {
                    (api.PyErr_Clear)();
                    return python(st, op, slf, args, nargs, kw);
                }
            }
        } else {
            return python(st, op, slf, args, nargs, kw);
        };
        let now_ms = if now.is_null() || now == o.py_none {
            SLUICE_NOW
        } else if type_of(now) == o.int_type {
            let mut overflow: c_int = 0;
            let t = (api.PyLong_AsLongLongAndOverflow)(now, &mut overflow);
            if overflow != 0 || t < 0 {
                return python(st, op, slf, args, nargs, kw);
            }
            t
        } else {
            return python(st, op, slf, args, nargs, kw);
        };
        // The handle: from here to the engine call's return no Python code runs (see the
        // module's doc).
        let handle = if st.offset != 0 {
            // The slot: `slf` is a limiter (CPython checks a method descriptor's `self`), so it
            // has the slot at this offset; NULL while unset.
            let h = *((slf as *mut u8).add(st.offset) as *mut Obj);
            if h.is_null() {
                return python(st, op, slf, args, nargs, kw);
            }
            (api.PyLong_AsVoidPtr)(h) as *const sluice
        } else {
            let h = (api.PyObject_GetAttr)(slf, o.handle_attribute);
            if h.is_null() {
                (api.PyErr_Clear)();
                return python(st, op, slf, args, nargs, kw);
            }
            let p = (api.PyLong_AsVoidPtr)(h) as *const sluice;
            (api.Py_DecRef)(h);
            p
        };
        if handle.is_null() {
            (api.PyErr_Clear)(); // closed (0), or not an int: the Python method raises
            return python(st, op, slf, args, nargs, kw);
        }
        let cat: c_int = match category_name {
            None => 0,
            Some(name) => {
                let categories = &(*handle).limiter.policy().categories;
                match categories.iter().position(|c| c.as_bytes() == name) {
                    Some(i) => i as c_int,
                    // Unknown (or spelled with a NUL): the Python method raises.
                    None => return python(st, op, slf, args, nargs, kw),
                }
            }
        };
        let kp = key_bytes.as_ptr() as *const c_void;
        let kl = key_bytes.len();
        if let Op::Allow = op {
            let code = sluice_allow(handle, cat, kp, kl, now_ms);
            // The engine call is over: Python code may run again from here.
            return match code {
                1 => new_ref(st, o.py_true),
                0 => new_ref(st, o.py_false),
                _ => raise(st, op, slf, code, key, category, now),
            };
        }
        let mut d = sluice_decision {
            size: std::mem::size_of::<sluice_decision>(),
            allowed: 0,
            status: 0,
            limit: 0,
            remaining: 0,
            reset_after: 0,
            retry_after: 0,
            rule: 0,
            reset: 0,
            window_ms: 0,
        };
        let code = match op {
            Op::Check => sluice_check(handle, cat, kp, kl, now_ms, &mut d),
            Op::Peek => sluice_peek(handle, cat, kp, kl, now_ms, &mut d),
            _ => sluice_failure(handle, cat, kp, kl, now_ms, &mut d),
        };
        if code != SLUICE_OK {
            return raise(st, op, slf, code, key, category, now);
        }
        decision(st, slf, &d)
    }
}

/// # Safety
/// GIL held; `o` live.
#[inline(always)]
unsafe fn new_ref(st: &State, o: Obj) -> Obj {
    // SAFETY: caller contract.
    unsafe { (st.api.Py_IncRef)(o) };
    o
}

/// A new reference to an `int` of value `v`: the one `st.ints[slot]` holds if it has that
/// value, else a new one, which the slot then holds instead (an int is immutable, so any
/// number of decisions may share one).
///
/// # Safety
/// GIL held.
#[inline(always)]
unsafe fn int(st: &State, slot: usize, v: i64) -> Obj {
    let cell = &st.ints[slot];
    let (value, obj) = cell.get();
    // SAFETY: GIL held; `obj` is NULL or the state's own reference.
    unsafe {
        if value == v && !obj.is_null() {
            return new_ref(st, obj);
        }
        let made = (st.api.PyLong_FromLongLong)(v);
        if !made.is_null() {
            if !obj.is_null() {
                (st.api.Py_DecRef)(obj);
            }
            cell.set((v, new_ref(st, made)));
        }
        made
    }
}

/// A Decision: a tuple of the fields in the package's order (allowed, status, limit,
/// remaining, reset, reset_after, retry_after, window_ms, rule) and the limiter, converted as
/// the package's ctypes path converts the C struct.
///
/// # Safety
/// GIL held; `slf` live.
unsafe fn decision(st: &State, slf: Obj, d: &sluice_decision) -> Obj {
    let api = &st.api;
    let o = &st.o;
    // SAFETY: GIL held; the tuple is new (refcount 1), so PyTuple_SetItem may fill it, and it
    // steals each item's reference.
    unsafe {
        let t = (api.PyType_GenericAlloc)(o.decision_type, 10);
        if t.is_null() {
            return null_mut();
        }
        let status = (api.PyTuple_GetItem)(o.statuses, d.status as isize);
        let items: [Obj; 10] = [
            new_ref(
                st,
                if d.allowed != 0 {
                    o.py_true
                } else {
                    o.py_false
                },
            ),
            new_ref(st, status),
            int(st, 0, d.limit.into()),
            (api.PyLong_FromLongLong)(d.remaining.into()),
            int(st, 1, d.reset),
            (api.PyLong_FromLongLong)(d.reset_after.into()),
            (api.PyLong_FromLongLong)(d.retry_after.into()),
            int(st, 2, d.window_ms),
            if d.rule < 0 {
                new_ref(st, o.py_none)
            } else {
                (api.PyLong_FromLongLong)(d.rule.into())
            },
            new_ref(st, slf),
        ];
        let mut failed = false;
        for (i, item) in items.into_iter().enumerate() {
            if item.is_null() {
                failed = true; // MemoryError set; the slot stays NULL
            } else if (api.PyTuple_SetItem)(t, i as isize, item) != 0 {
                failed = true;
            }
        }
        if failed {
            (api.Py_DecRef)(t);
            return null_mut();
        }
        t
    }
}

/// The package's Python method for `op`, called with this call's arguments (`slf` first).
///
/// # Safety
/// As `method`.
unsafe fn python(st: &State, op: Op, slf: Obj, args: *const Obj, nargs: isize, kw: Obj) -> Obj {
    let api = &st.api;
    let o = &st.o;
    let f = match op {
        Op::Check => o.python_check,
        Op::Peek => o.python_peek,
        Op::Failure => o.python_failure,
        Op::Allow => o.python_allow,
    };
    // SAFETY: caller contract; PyTuple_SetItem steals the references taken for it, and
    // PyDict_SetItem takes its own.
    unsafe {
        let positional = (api.PyTuple_New)(nargs + 1);
        if positional.is_null() {
            return null_mut();
        }
        (api.PyTuple_SetItem)(positional, 0, new_ref(st, slf));
        for i in 0..nargs {
            (api.PyTuple_SetItem)(positional, i + 1, new_ref(st, *args.add(i as usize)));
        }
        let mut named = null_mut();
        if !kw.is_null() {
            named = (api.PyDict_New)();
            if named.is_null() {
                (api.Py_DecRef)(positional);
                return null_mut();
            }
            for j in 0..(api.PyTuple_Size)(kw) {
                let name = (api.PyTuple_GetItem)(kw, j);
                if (api.PyDict_SetItem)(named, name, *args.add((nargs + j) as usize)) != 0 {
                    (api.Py_DecRef)(positional);
                    (api.Py_DecRef)(named);
                    return null_mut();
                }
            }
        }
        let r = (api.PyObject_Call)(f, positional, named);
        (api.Py_DecRef)(positional);
        if !named.is_null() {
            (api.Py_DecRef)(named);
        }
        r
    }
}

/// Raise the package's exception for `code` (its error function raises; were it to return
/// a value, that would be the call's result).
///
/// # Safety
/// GIL held; `slf` and `key` live, `category` and `now` NULL or live.
unsafe fn raise(
    st: &State,
    op: Op,
    slf: Obj,
    code: c_int,
    key: Obj,
    category: Obj,
    now: Obj,
) -> Obj {
    let api = &st.api;
    let o = &st.o;
    // SAFETY: caller contract; each item's reference is stolen by the tuple.
    unsafe {
        let t = (api.PyTuple_New)(6);
        if t.is_null() {
            return null_mut();
        }
        let or_none = |x: Obj| if x.is_null() { o.py_none } else { x };
        let items = [
            new_ref(st, slf),
            (api.PyLong_FromLongLong)(code.into()),
            (api.PyLong_FromLongLong)(op as i64),
            new_ref(st, key),
            new_ref(st, or_none(category)),
            new_ref(st, or_none(now)),
        ];
        let mut failed = false;
        for (i, item) in items.into_iter().enumerate() {
            if item.is_null() || (api.PyTuple_SetItem)(t, i as isize, item) != 0 {
                failed = true;
            }
        }
        if failed {
            (api.Py_DecRef)(t);
            return null_mut();
        }
        let r = (api.PyObject_Call)(o.error, t, null_mut());
        (api.Py_DecRef)(t);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn needs_names_every_field_once() {
        let names = CStr::from_bytes_with_nul(NEEDS.as_bytes()).expect("one NUL, at the end");
        let names: Vec<&str> = names.to_str().expect("ASCII").split_whitespace().collect();
        assert_eq!(names.len(), API_NAMES.len() + OBJECT_NAMES.len());
        assert_eq!(&names[..API_NAMES.len()], API_NAMES);
        assert_eq!(&names[API_NAMES.len()..], OBJECT_NAMES);
        assert_eq!(
            std::mem::size_of::<Api>(),
            API_NAMES.len() * std::mem::size_of::<*mut c_void>()
        );
        assert_eq!(
            std::mem::size_of::<Objects>(),
            OBJECT_NAMES.len() * std::mem::size_of::<*mut c_void>()
        );
    }

    #[test]
    fn methods_refuse_wrong_counts_and_nulls() {
        let mut out = [null_mut(); 4];
        let n = API_NAMES.len() + OBJECT_NAMES.len();
        let mut values = vec![null_mut(); n];
        // SAFETY: valid buffers; nothing is called before the checks fail.
        unsafe {
            assert_eq!(
                sluice_python_methods(values.as_mut_ptr(), n - 1, out.as_mut_ptr(), 4),
                SLUICE_ERR_ARGUMENT
            );
            assert_eq!(
                sluice_python_methods(values.as_mut_ptr(), n, out.as_mut_ptr(), 3),
                SLUICE_ERR_ARGUMENT
            );
            assert_eq!(
                sluice_python_methods(values.as_mut_ptr(), n, out.as_mut_ptr(), 4),
                SLUICE_ERR_NULL
            );
            assert_eq!(
                sluice_python_methods(null_mut(), n, out.as_mut_ptr(), 4),
                SLUICE_ERR_NULL
            );
        }
        assert!(out.iter().all(|p| p.is_null()));
    }
}
