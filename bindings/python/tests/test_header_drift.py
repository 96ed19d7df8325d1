"""Drift between ``include/sluice.h`` and ``sluice/_ffi.py``.

Parses the header (comments stripped; ``#define``s, ``typedef struct``s and function
prototypes) and fails if a function lacks or mismatches its ctypes ``argtypes``/``restype``,
if a struct's fields (names, order, C types) differ from the ctypes Structure, or if a
``#define`` differs from the Python constant of the same name (or either side has one the
other lacks). C types map to ctypes as documented in ``_ffi`` (``C_TO_CTYPES`` below); a C
type with no mapping is itself a failure, so a new kind of type cannot slip through.

The header is ``$SLUICE_HEADER`` if set, else the repository's ``include/sluice.h``; the tests
are skipped only when that file is absent (the package installed without the repository).
The ``test_drift_is_detected_*`` tests edit copies of the header (and of the declarations)
to prove each kind of drift is caught.
"""

import ctypes
import os
import re
import subprocess
import sys
from ctypes import POINTER
from pathlib import Path

import pytest

import sluice
from sluice import _ffi
from support import HEADER, T0

HEADER_PATH = Path(os.environ.get("SLUICE_HEADER") or HEADER)

needs_header = pytest.mark.skipif(
    not HEADER_PATH.is_file(),
    reason="no C header at {} (the package is installed without the sluice repository; "
    "set SLUICE_HEADER to check another copy)".format(HEADER_PATH),
)

#: C scalar types -> ctypes.
C_SCALARS = {
    "int": ctypes.c_int,
    "int8_t": ctypes.c_int8,
    "int16_t": ctypes.c_int16,
    "int32_t": ctypes.c_int32,
    "int64_t": ctypes.c_int64,
    "uint8_t": ctypes.c_uint8,
    "uint16_t": ctypes.c_uint16,
    "uint32_t": ctypes.c_uint32,
    "uint64_t": ctypes.c_uint64,
    "size_t": ctypes.c_size_t,
    "char": ctypes.c_char,
}

#: Pointer types with a mapping of their own (the others are POINTER(...) of the pointee).
C_SPECIAL_POINTERS = {
    "const char *": ctypes.c_char_p,  # NUL-terminated string in, or a static string out
    "const void *": ctypes.c_char_p,  # a key's bytes, passed as a bytes object
}

#: Constants of the header that are spelled with a C macro.
C_MACROS = {
    "INT64_MIN": -(2**63),
    "INT64_MAX": 2**63 - 1,
    "INT32_MIN": -(2**31),
    "INT32_MAX": 2**31 - 1,
    "UINT32_MAX": 2**32 - 1,
    "UINT64_MAX": 2**64 - 1,
}


# ---- parsing the header -----------------------------------------------------------------------


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def normalize_type(t):
    t = re.sub(r"\s*\*\s*", " * ", t)
    t = " ".join(t.split())
    return t.replace("* *", "**")


def split_declaration(decl):
    """``"const struct sluice *s"`` -> (``"const struct sluice *"``, ``"s"``)."""
    decl = " ".join(decl.split())
    m = re.match(r"^(.*?)\s*\b([A-Za-z_]\w*)\s*(\[\s*\d+\s*\])?$", decl)
    if not m or not m.group(1):
        raise ValueError("cannot parse declaration {!r}".format(decl))
    ctype = normalize_type(m.group(1))
    if m.group(3):
        ctype += " " + m.group(3).replace(" ", "")
    return ctype, m.group(2)


def evaluate_define(value):
    value = value.strip()
    m = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', value)
    if m:
        return m.group(1)
    inner = value
    while inner.startswith("(") and inner.endswith(")"):
        inner = inner[1:-1].strip()
    if inner in C_MACROS:
        return C_MACROS[inner]
    m = re.fullmatch(r"(-?)\s*(0[xX][0-9a-fA-F]+|\d+)[uUlL]*", inner)
    if m:
        return int(m.group(1) + m.group(2), 0)
    raise ValueError("cannot evaluate #define value {!r}".format(value))


def parse_header(text):
    """-> dict(defines={name: value-or-ValueError}, structs={name: [(field, ctype)] or None
    (opaque)}, functions={name: (return ctype, [param ctypes])}, problems=[...])."""
    problems = []
    code = strip_comments(text)
    defines = {}
    for m in re.finditer(r"^[ \t]*#[ \t]*define[ \t]+(\w+)(?:[ \t]+(.*?))?[ \t]*$", code, re.M):
        name, value = m.group(1), m.group(2)
        if value is None:  # the include guard
            continue
        try:
            defines[name] = evaluate_define(value)
        except ValueError as e:
            problems.append("header: #define {}: {}".format(name, e))
    code = re.sub(r"^[ \t]*#[^\n]*$", "", code, flags=re.M)
    code = re.sub(r'extern\s+"C"\s*\{', "", code)
    structs = {}

    def struct_body(m):
        fields = []
        for decl in m.group(2).split(";"):
            if decl.strip():
                try:
                    fields.append(tuple(reversed(split_declaration(decl))))
                except ValueError as e:
                    problems.append("header: struct {}: {}".format(m.group(1), e))
        if m.group(3) != m.group(1):
            problems.append(
                "header: typedef struct {} {{...}} {}: names differ".format(m.group(1), m.group(3))
            )
        structs[m.group(1)] = fields
        return ""

    code = re.sub(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*(\w+)\s*;", struct_body, code, flags=re.S)

    def opaque(m):
        structs[m.group(1)] = None
        return ""

    code = re.sub(r"typedef\s+struct\s+(\w+)\s+(\w+)\s*;", opaque, code)
    functions = {}
    for statement in code.split(";"):
        statement = " ".join(statement.replace("}", " ").split())
        if not statement:
            continue
        m = re.fullmatch(r"(.*?)\b([A-Za-z_]\w*)\s*\((.*)\)", statement)
        if not m:
            problems.append("header: cannot parse declaration {!r}".format(statement))
            continue
        ret = normalize_type(m.group(1))
        params = m.group(3).strip()
        types = []
        if params and params != "void":
            for p in params.split(","):
                try:
                    types.append(split_declaration(p)[0])
                except ValueError as e:
                    problems.append("header: {}: {}".format(m.group(2), e))
        functions[m.group(2)] = (ret, types)
    return dict(defines=defines, structs=structs, functions=functions, problems=problems)


# ---- C types -> ctypes ------------------------------------------------------------------------


def to_ctypes(ctype, structs):
    """The ctypes type for a C type of the header (see ``_ffi``), or raise KeyError."""
    if ctype == "void":
        return None
    if ctype in C_SPECIAL_POINTERS:
        return C_SPECIAL_POINTERS[ctype]
    m = re.fullmatch(r"(.*) \[(\d+)\]", ctype)
    if m:
        return to_ctypes(m.group(1), structs) * int(m.group(2))
    if ctype.endswith("*"):
        pointee = normalize_type(ctype[:-1]).strip()
        if pointee.startswith("const "):
            pointee = pointee[len("const ") :]
        return POINTER(to_ctypes(pointee, structs))
    m = re.fullmatch(r"struct (\w+)", ctype)
    if m:
        return structs[m.group(1)]
    if ctype in C_SCALARS:
        return C_SCALARS[ctype]
    raise KeyError(ctype)


def _scalar_names():
    # On a given platform some ctypes names are one type (c_int64 is c_long on LP64, and
    # c_size_t is c_uint64): name them by every C type they stand for. Such aliases have the
    # same size and signedness, so conflating them hides no ABI difference.
    names = {}
    for ctype, t in C_SCALARS.items():
        names.setdefault(t, []).append("c_" + (ctype if ctype == "size_t" else ctype[:-2] if ctype.endswith("_t") else ctype))
    return {t: "|".join(n) for t, n in names.items()}


_SCALAR_NAMES = _scalar_names()


def type_name(t):
    if isinstance(t, type) and t in _SCALAR_NAMES:
        return _SCALAR_NAMES[t]
    if t is None:
        return "None"
    if isinstance(t, (list, tuple)):
        return "[" + ", ".join(type_name(x) for x in t) + "]"
    if hasattr(t, "_type_") and issubclass(t, ctypes._Pointer):
        return "POINTER({})".format(type_name(t._type_))
    return getattr(t, "__name__", repr(t))


def declared_functions(ffi):
    """name -> (restype, argtypes) as set on the loaded library's function objects, for
    every function of ``ffi.FUNCTIONS`` (a function missing from it is reported separately,
    because ctypes' default restype c_int would look like a declaration)."""
    out = {}
    for name in ffi.FUNCTIONS:
        try:
            f = getattr(ffi.lib, name)
        except AttributeError:
            out[name] = "missing from the library"
            continue
        out[name] = (f.restype, f.argtypes)
    return out


def declared_constants(ffi):
    return {k: v for k, v in vars(ffi).items() if k.startswith("SLUICE_") and k.isupper()}


def drift(header, structs, functions, constants):
    """Every difference between a parsed header and the Python declarations."""
    problems = list(header["problems"])

    # structs
    for name, fields in header["structs"].items():
        cls = structs.get(name)
        if cls is None:
            problems.append("struct {}: no ctypes Structure in _ffi.STRUCTS".format(name))
            continue
        if fields is None:
            if list(getattr(cls, "_fields_", [])):
                problems.append("struct {}: opaque in the header but has fields".format(name))
            continue
        want = []
        for field, ctype in fields:
            try:
                want.append((field, to_ctypes(ctype, structs)))
            except KeyError:
                problems.append(
                    "struct {} field {}: no ctypes mapping for C type {!r}".format(name, field, ctype)
                )
                want.append((field, ctype))
        got = [(f[0], f[1]) for f in cls._fields_]
        if got != want:
            problems.append(
                "struct {}: fields differ: header {} != ctypes {}".format(
                    name,
                    [(f, type_name(t) if not isinstance(t, str) else t) for f, t in want],
                    [(f, type_name(t)) for f, t in got],
                )
            )
    for name in structs:
        if name not in header["structs"]:
            problems.append("struct {}: in _ffi.STRUCTS but not in the header".format(name))

    # functions
    for name, (ret, params) in header["functions"].items():
        if name not in functions:
            problems.append("{}: in the header but has no argtypes/restype in _ffi".format(name))
            continue
        declared = functions[name]
        if isinstance(declared, str):
            problems.append("{}: {}".format(name, declared))
            continue
        restype, argtypes = declared
        try:
            want_ret = to_ctypes(ret, structs)
            want_args = [to_ctypes(p, structs) for p in params]
        except KeyError as e:
            problems.append("{}: no ctypes mapping for C type {!r}".format(name, e.args[0]))
            continue
        if argtypes is None:
            problems.append("{}: argtypes not set".format(name))
        elif list(argtypes) != want_args:
            problems.append(
                "{}: argtypes {} != header {} ({})".format(
                    name, type_name(list(argtypes)), type_name(want_args), ", ".join(params)
                )
            )
        if restype is not want_ret:
            problems.append(
                "{}: restype {} != header {} ({})".format(
                    name, type_name(restype), type_name(want_ret), ret
                )
            )
    for name in functions:
        if name not in header["functions"]:
            problems.append("{}: declared in _ffi but not in the header".format(name))

    # constants
    for name, value in header["defines"].items():
        if name not in constants:
            problems.append("#define {}: no Python constant _ffi.{}".format(name, name))
        elif constants[name] != value or type(constants[name]) is not type(value):
            problems.append(
                "#define {} {!r} != _ffi.{} = {!r}".format(name, value, name, constants[name])
            )
    for name in constants:
        if name not in header["defines"]:
            problems.append("_ffi.{}: not a #define of the header".format(name))
    return problems


def ffi_drift(header_text):
    return drift(
        parse_header(header_text),
        dict(_ffi.STRUCTS),
        declared_functions(_ffi),
        declared_constants(_ffi),
    )


# ---- the tests --------------------------------------------------------------------------------


@needs_header
def test_header_matches_ffi():
    text = HEADER_PATH.read_text(encoding="utf-8")
    header = parse_header(text)
    # The parser saw what is there (a parser that finds nothing would find no drift).
    assert len(header["functions"]) >= 14, sorted(header["functions"])
    assert {
        "sluice",
        "sluice_decision",
        "sluice_request",
        "sluice_packed_request",
        "sluice_open_options",
        "sluice_table_stats",
        "sluice_rule_counts",
    } <= set(header["structs"])
    assert header["defines"]["SLUICE_NOW"] == -(2**63)
    problems = ffi_drift(text)
    assert not problems, "include/sluice.h and sluice/_ffi.py differ:\n  " + "\n  ".join(problems)


def _header_text():
    if not HEADER_PATH.is_file():
        pytest.skip("no C header at {}".format(HEADER_PATH))
    return HEADER_PATH.read_text(encoding="utf-8")


HEADER_EDITS = {
    "parameter type": (
        "int sluice_check(const struct sluice *s,\n                 int category,",
        "int sluice_check(const struct sluice *s,\n                 int64_t category,",
        "sluice_check: argtypes",
    ),
    "pointer constness that changes the mapping": (
        "                 const void *key,\n                 size_t key_len,\n                 int64_t now_ms,\n                 struct sluice_decision *out);\n\n// `sluice_check` without",
        "                 void *key,\n                 size_t key_len,\n                 int64_t now_ms,\n                 struct sluice_decision *out);\n\n// `sluice_check` without",
        "sluice_check: argtypes",
    ),
    "a parameter more": (
        "int sluice_stats(const struct sluice *s, int64_t now_ms, struct sluice_table_stats *out);",
        "int sluice_stats(const struct sluice *s, struct sluice_table_stats *out, int64_t now_ms);",
        "sluice_stats: argtypes",
    ),
    "return type": (
        "const char *sluice_version(void);",
        "int sluice_version(void);",
        "sluice_version: restype",
    ),
    "a new function": (
        "const char *sluice_version(void);",
        "const char *sluice_version(void);\nint sluice_flush(struct sluice *s);",
        "sluice_flush: in the header but has no argtypes/restype",
    ),
    "a struct field type": (
        "  int32_t rule;",
        "  int64_t rule;",
        "struct sluice_decision: fields differ",
    ),
    "struct fields reordered": (
        "  int32_t rule;\n  // Unix seconds (rounded up) when `remaining` next grows; the lock's end when locked.\n  int64_t reset;",
        "  int64_t reset;\n  int32_t rule;",
        "struct sluice_decision: fields differ",
    ),
    "a struct's size field dropped": (
        "typedef struct sluice_table_stats {\n  // Set by the caller to `sizeof(struct sluice_table_stats)`; on return, the bytes written.\n  size_t size;",
        "typedef struct sluice_table_stats {",
        "struct sluice_table_stats: fields differ",
    ),
    "a field of the packed request": (
        "  uint32_t key_len;\n  // A category id from `sluice_category`.\n  int32_t category;\n} sluice_packed_request;",
        "  uint32_t key_len;\n  uint32_t category;\n} sluice_packed_request;",
        "struct sluice_packed_request: fields differ",
    ),
    "an option added": (
        "  uint32_t mode;\n} sluice_open_options;",
        "  uint32_t mode;\n  uint64_t lease_ms;\n} sluice_open_options;",
        "struct sluice_open_options: fields differ",
    ),
    "a parameter of the packed batch": (
        "int sluice_check_packed(const struct sluice *s,\n                        const void *keys,\n                        size_t keys_len,",
        "int sluice_check_packed(const struct sluice *s,\n                        const void *keys,\n                        uint32_t keys_len,",
        "sluice_check_packed: argtypes",
    ),
    "a flag's value": (
        "#define SLUICE_OPEN_READ_ONLY 2",
        "#define SLUICE_OPEN_READ_ONLY 4",
        "#define SLUICE_OPEN_READ_ONLY 4 != _ffi.SLUICE_OPEN_READ_ONLY = 2",
    ),
    "a struct field more": (
        "  uint64_t lockouts;\n",
        "  uint64_t lockouts;\n  uint64_t unlocks;\n",
        "struct sluice_rule_counts: fields differ",
    ),
    "a field renamed": (
        "  size_t key_len;",
        "  size_t len;",
        "struct sluice_request: fields differ",
    ),
    "a new struct": (
        "typedef struct sluice_table_stats {",
        "typedef struct sluice_lease { uint64_t until; } sluice_lease;\n\ntypedef struct sluice_table_stats {",
        "struct sluice_lease: no ctypes Structure",
    ),
    "a constant's value": (
        "#define SLUICE_ERR_NO_LOCKOUT -21",
        "#define SLUICE_ERR_NO_LOCKOUT -22",
        "#define SLUICE_ERR_NO_LOCKOUT -22 != _ffi.SLUICE_ERR_NO_LOCKOUT = -21",
    ),
    "SLUICE_NOW": (
        "#define SLUICE_NOW INT64_MIN",
        "#define SLUICE_NOW INT64_MAX",
        "#define SLUICE_NOW",
    ),
    "the version": (
        '#define SLUICE_VERSION "0.2.0"',
        '#define SLUICE_VERSION "0.3.0"',
        "#define SLUICE_VERSION '0.3.0'",
    ),
    "a new constant": (
        "#define SLUICE_HEADERS_IETF 1",
        "#define SLUICE_HEADERS_IETF 1\n#define SLUICE_HEADERS_DRAFT_08 2",
        "#define SLUICE_HEADERS_DRAFT_08: no Python constant",
    ),
    "a constant removed": (
        "#define SLUICE_ERR_PANIC -99",
        "",
        "_ffi.SLUICE_ERR_PANIC: not a #define",
    ),
    "a function removed": (
        "const char *sluice_strerror(int code);",
        "",
        "sluice_strerror: declared in _ffi but not in the header",
    ),
    "a C type with no mapping": (
        "int sluice_rule_stats(const struct sluice *s, int32_t rule,",
        "int sluice_rule_stats(const struct sluice *s, unsigned long rule,",
        "no ctypes mapping for C type 'unsigned long'",
    ),
}


@pytest.mark.parametrize("kind", sorted(HEADER_EDITS))
def test_drift_is_detected_in_an_edited_header(kind):
    text = _header_text()
    old, new, expected = HEADER_EDITS[kind]
    assert old in text, "the edit no longer applies to the header: update this test"
    problems = ffi_drift(text.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_drift_is_detected_in_edited_declarations():
    header = parse_header(_header_text())
    base = dict(
        structs=dict(_ffi.STRUCTS),
        functions=declared_functions(_ffi),
        constants=declared_constants(_ffi),
    )
    assert not drift(header, **base)

    def with_changes(**changes):
        args = {k: dict(v) for k, v in base.items()}
        for part, (name, value) in changes.items():
            if value is None:
                del args[part][name]
            else:
                args[part][name] = value
        return drift(header, **args)

    restype, argtypes = base["functions"]["sluice_check"]
    assert any("argtypes not set" in p for p in with_changes(functions=("sluice_check", (restype, None))))
    swapped = list(argtypes)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    assert any("sluice_check: argtypes" in p for p in with_changes(functions=("sluice_check", (restype, swapped))))
    assert any(
        "sluice_close: restype" in p
        for p in with_changes(functions=("sluice_close", (ctypes.c_int, base["functions"]["sluice_close"][1])))
    )
    assert any("no argtypes/restype" in p for p in with_changes(functions=("sluice_peek", None)))
    assert any("SLUICE_OK" in p for p in with_changes(constants=("SLUICE_OK", 1)))
    assert any("SLUICE_VERSION_MAJOR" in p for p in with_changes(constants=("SLUICE_VERSION_MAJOR", "0")))

    class Wrong(ctypes.Structure):
        _fields_ = [(n, t) for n, t in _ffi.sluice_table_stats._fields_ if n != "full"]

    assert any("struct sluice_table_stats: fields differ" in p for p in with_changes(structs=("sluice_table_stats", Wrong)))

    class NotOpaque(ctypes.Structure):
        _fields_ = [("x", ctypes.c_int)]

    assert any("opaque" in p for p in with_changes(structs=("sluice", NotOpaque)))


@needs_header
def test_an_edited_header_copy_fails_this_file(tmp_path):
    """End to end: this very test file, pointed at an edited copy of the header through
    SLUICE_HEADER, fails."""
    copy = tmp_path / "sluice.h"
    copy.write_text(
        HEADER_PATH.read_text(encoding="utf-8").replace("  int32_t rule;", "  int64_t rule;"),
        encoding="utf-8",
    )
    env = dict(os.environ, SLUICE_HEADER=str(copy))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "{}::test_header_matches_ffi".format(Path(__file__).resolve()),
        ],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "struct sluice_decision: fields differ" in r.stdout


def test_struct_sizes_are_the_loaded_librarys():
    """The ctypes structs have the loaded library's sizes, not just the header's field names:
    a struct the library writes comes back with ``size`` = the bytes the library wrote, which
    is all of ours only if the layouts agree; options of our size are accepted (the library's
    first version is no larger), and a set byte just past ours is refused as an option the
    library does not know (its struct is no larger)."""
    with sluice.Limiter("global 1/1m\nauth lockout 1/1m for 1m") as l:
        for cls, call in [
            (_ffi.sluice_decision, lambda out: _ffi.lib.sluice_peek(l._handle, 0, b"k", 1, T0, out)),
            (_ffi.sluice_table_stats, lambda out: _ffi.lib.sluice_stats(l._handle, T0, out)),
            (_ffi.sluice_rule_counts, lambda out: _ffi.lib.sluice_rule_stats(l._handle, 0, out)),
        ]:
            out = cls()
            out.size = ctypes.sizeof(cls) + 64  # room to spare: the library says what it wrote
            assert call(ctypes.byref(out)) == _ffi.SLUICE_OK, cls.__name__
            assert out.size == ctypes.sizeof(cls), cls.__name__

    class Wider(ctypes.Structure):
        _fields_ = [("options", _ffi.sluice_open_options), ("future", ctypes.c_uint64)]

    handle = ctypes.POINTER(_ffi.sluice)()
    wider = Wider()
    wider.options.size = ctypes.sizeof(Wider)
    wider.future = 1
    options = ctypes.cast(ctypes.byref(wider), ctypes.POINTER(_ffi.sluice_open_options))
    code = _ffi.lib.sluice_open_with(b"global 1/1m", None, options, ctypes.byref(handle), None, 0)
    assert code == _ffi.SLUICE_ERR_UNSUPPORTED
    wider.future = 0
    code = _ffi.lib.sluice_open_with(b"global 1/1m", None, options, ctypes.byref(handle), None, 0)
    assert code == _ffi.SLUICE_OK
    _ffi.lib.sluice_close(handle)
