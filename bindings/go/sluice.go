// Package sluice is the Go binding of sluice, an embedded, lock-free, exact sliding-window rate
// limiter with brute-force lockouts. It calls the C library (libsluice, built by `cargo build
// --release` in the repository) through cgo: every host of sluice runs the same engine, so a Go
// server, an nginx module, a Python worker and the `sluice` command can share one table file and
// see each other's requests and lockouts.
//
//	l, err := sluice.Open(sluice.DefaultPolicy, "") // "": a table in private memory
//	if err != nil { ... }
//	defer l.Close()
//	auth, err := l.Category("auth") // resolve once
//	d, err := l.Check("198.51.100.7", auth)
//	if err == nil && !d.Allowed {
//		// 429, with l.AppendHeaders(nil, d, sluice.XRateLimit)
//	}
//
// A Limiter is safe for any number of goroutines, Close included. The decisions, the policy
// language and the sharing of table files are described in the repository's README.md and
// docs/semantics.md; this package adds nothing to them.
package sluice

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#include <stdlib.h>
#include "sluice.h"

// A decision returned by value: a Go variable whose address went to C would escape to the
// heap, one allocation per check.
typedef struct {
	int rc;
	sluice_decision d;
} sluice_go_result;

enum { SLUICE_GO_CHECK = 0, SLUICE_GO_PEEK = 1, SLUICE_GO_FAILURE = 2 };

static sluice_go_result sluice_go_decide(int op, const sluice *s, int category, const void *key,
                                         size_t key_len, int64_t now_ms) {
	sluice_go_result r;
	r.d.size = sizeof r.d;
	switch (op) {
	case SLUICE_GO_CHECK:
		r.rc = sluice_check(s, category, key, key_len, now_ms, &r.d);
		break;
	case SLUICE_GO_PEEK:
		r.rc = sluice_peek(s, category, key, key_len, now_ms, &r.d);
		break;
	default:
		r.rc = sluice_failure(s, category, key, key_len, now_ms, &r.d);
		break;
	}
	return r;
}

// n checks of one key from C, times advancing by 1 ms: the library's own cost of a check,
// without cgo, for the benchmarks. Returns how many were admitted, or a negative code.
static int64_t sluice_go_check_loop(const sluice *s, int category, const void *key,
                                    size_t key_len, int64_t n, int64_t t0) {
	sluice_decision d;
	d.size = sizeof d;
	int64_t admitted = 0;
	for (int64_t i = 0; i < n; i++) {
		int rc = sluice_check(s, category, key, key_len, t0 + i, &d);
		if (rc != SLUICE_OK)
			return rc;
		admitted += d.allowed;
	}
	return admitted;
}

// A C function that does nothing: the floor of a cgo call, for the benchmarks.
static int sluice_go_noop(const sluice *s, int category, const void *key, size_t key_len,
                          int64_t now_ms) {
	(void)s; (void)category; (void)key; (void)key_len; (void)now_ms;
	return 0;
}
*/
import "C"

import (
	"fmt"
	"io/fs"
	"math"
	"runtime"
	"strings"
	"sync/atomic"
	"unsafe"
)

// HeaderVersion is the version of sluice.h this binding was written against; Version gives the
// linked library's.
const HeaderVersion = "0.2.0"

// Version is the linked library's version (sluice_version), e.g. "0.2.0".
func Version() string { return C.GoString(C.sluice_version()) }

// DefaultPolicy is the policy that ships with sluice (policies/default.policy in the repository).
var DefaultPolicy = C.GoString(C.sluice_default_policy())

// MaxKeyLen is the longest key, in bytes. Keys are 1 to MaxKeyLen bytes, any bytes.
const MaxKeyLen = 65535

// Category is a category id, from Limiter.Category. Resolve each name once and keep the id.
type Category int32

// Global is the `global` category: a request that has no category of its own.
const Global Category = 0

// Status says why a decision allows or refuses. Its numbers are the library's (SLUICE_STATUS_*)
// and are never renumbered.
type Status uint8

const (
	Passed        Status = C.SLUICE_STATUS_PASSED          // every rule admitted the request
	Limited       Status = C.SLUICE_STATUS_LIMITED         // an enforced window rule refused it
	Locked        Status = C.SLUICE_STATUS_LOCKED          // the key is locked out of the category
	Full          Status = C.SLUICE_STATUS_FULL            // no slot for a new key: the policy's when-full decided
	DryRunLimited Status = C.SLUICE_STATUS_DRY_RUN_LIMITED // admitted; a dry-run rule would have refused
)

// String gives the status as the other hosts write it: "passed", "limited", "locked", "full",
// "dry-run-limited".
func (s Status) String() string {
	switch s {
	case Passed:
		return "passed"
	case Limited:
		return "limited"
	case Locked:
		return "locked"
	case Full:
		return "full"
	case DryRunLimited:
		return "dry-run-limited"
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// Decision is the answer to a request, reported for its deciding rule (docs/semantics.md, "The
// decision").
type Decision struct {
	Allowed    bool   // may the request go ahead (false: answer 429)
	Status     Status // Passed, Limited, Locked, Full or DryRunLimited
	Limit      int    // N of the deciding rule (F of a lockout); 0 when no rule decided
	Remaining  int    // requests the deciding rule would still admit, this one logged; 0 when refused
	Reset      int64  // Unix seconds (rounded up) when Remaining next grows; the lock's end when locked
	ResetAfter int    // seconds until Reset, rounded up (the IETF header's t)
	RetryAfter int    // whole seconds (at least 1) until the request would be admitted; 0 when allowed
	Rule       int    // the deciding rule's index in policy order; -1 when no rule decided
	WindowMs   int64  // the deciding rule's window in milliseconds; 0 when no rule decided
}

func decisionOf(d *C.sluice_decision) Decision {
	return Decision{
		Allowed:    d.allowed != 0,
		Status:     Status(d.status),
		Limit:      int(d.limit),
		Remaining:  int(d.remaining),
		Reset:      int64(d.reset),
		ResetAfter: int(d.reset_after),
		RetryAfter: int(d.retry_after),
		Rule:       int(d.rule),
		WindowMs:   int64(d.window_ms),
	}
}

// Options are the options of OpenWith. The zero value is Open's behaviour.
type Options struct {
	// ReadOnly attaches to an existing table file for reading only (a path is needed): Peek,
	// Stats and Policy work; recording calls return ErrReadOnly. A missing file is an error.
	ReadOnly bool
	// Mode is the permission bits (within 0666) a new table file is created with; 0 is 0600.
	// 0660 lets a group share the file. The umask does not apply; an existing file keeps its
	// own mode.
	Mode fs.FileMode
	// HugePages asks the kernel to back the table with transparent huge pages.
	HugePages bool
}

// Limiter is one table and its policy: a handle on the library's limiter. It is safe for
// concurrent use by any number of goroutines. Close frees it; a Limiter that is no longer
// reachable is freed by the garbage collector too, but a table file's mapping is better
// released by Close.
type Limiter struct {
	h      *C.sluice
	guard  guard // Close against the calls in flight
	policy string
	rules  []string // the category of each rule and lockout, in policy order (for the headers)
	cats   []string // category names by id: global first, then in order of first appearance
	// ruleInfo is every rule and lockout, in policy order.
	ruleInfo []Rule
}

// Open opens a limiter. path "" makes a table in this process's private memory (policy must be
// given); otherwise path is a table file that every process opening the same path shares (e.g.
// "/dev/shm/api.sluice"): a missing file is created for policy (mode 0600), an existing one is
// attached and must have been made for the same policy (else ErrPolicyMismatch). policy "" with
// a path attaches to the file with the file's own policy.
//
// Errors carry the library's message: for ErrPolicy the line, the column and what was expected.
func Open(policy, path string) (*Limiter, error) {
	return OpenWith(policy, path, Options{})
}

// OpenWith opens a limiter as Open does, with options (sluice_open_with). Bad options are
// ErrArgument with a message, and nothing is opened or created.
func OpenWith(policy, path string, o Options) (*Limiter, error) {
	if strings.IndexByte(policy, 0) >= 0 {
		return nil, errorWith(C.SLUICE_ERR_ARGUMENT, "the policy contains a NUL byte")
	}
	if strings.IndexByte(path, 0) >= 0 {
		return nil, errorWith(C.SLUICE_ERR_ARGUMENT, fmt.Sprintf("the path %q contains a NUL byte", path))
	}
	var cpolicy, cpath *C.char
	if policy != "" {
		cpolicy = C.CString(policy)
		defer C.free(unsafe.Pointer(cpolicy))
	}
	if path != "" {
		cpath = C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
	}
	// C memory for the outputs: a Go pointer to memory holding a C pointer would do too, but the
	// handle's address then escapes anyway; Open is not the request path.
	const errCap = 4096 // a policy mismatch names every rule that differs
	mem := C.malloc(C.size_t(unsafe.Sizeof(C.sluice_open_options{})) + C.size_t(unsafe.Sizeof((*C.sluice)(nil))) + errCap)
	if mem == nil {
		return nil, errorWith(C.SLUICE_ERR_IO, "out of memory")
	}
	defer C.free(mem)
	opts := (*C.sluice_open_options)(mem)
	*opts = C.sluice_open_options{}
	opts.size = C.size_t(unsafe.Sizeof(*opts))
	opts.flags = C.uint32_t(openFlags(o))
	opts.mode = C.uint32_t(o.Mode)
	out := (**C.sluice)(unsafe.Add(mem, unsafe.Sizeof(*opts)))
	*out = nil
	errBuf := (*C.char)(unsafe.Add(mem, unsafe.Sizeof(*opts)+unsafe.Sizeof(*out)))
	*errBuf = 0
	rc := C.sluice_open_with(cpolicy, cpath, opts, out, errBuf, errCap)
	if rc != C.SLUICE_OK {
		return nil, errorWith(rc, C.GoString(errBuf))
	}
	l := &Limiter{h: *out}
	l.policy = C.GoString(C.sluice_policy(l.h))
	info, cats, err := describe(l.h)
	if err != nil {
		C.sluice_close(l.h)
		return nil, err
	}
	l.ruleInfo, l.cats = info, cats
	l.rules = make([]string, len(info))
	for i, r := range info {
		l.rules[i] = r.Category
	}
	runtime.SetFinalizer(l, (*Limiter).Close)
	return l, nil
}

// openFlags are the SLUICE_OPEN_* bits of o.
func openFlags(o Options) uint32 {
	var f uint32
	if o.HugePages {
		f |= C.SLUICE_OPEN_HUGE_PAGES
	}
	if o.ReadOnly {
		f |= C.SLUICE_OPEN_READ_ONLY
	}
	return f
}

// describe reads the policy's categories (by id) and rules (in policy order) from the library
// (sluice_describe_category, sluice_describe_rule), so the binding never parses policy text.
func describe(h *C.sluice) (rules []Rule, cats []string, err error) {
	var t C.sluice_table_stats
	t.size = C.size_t(unsafe.Sizeof(t))
	if rc := C.sluice_stats(h, C.int64_t(0), &t); rc != C.SLUICE_OK {
		return nil, nil, errorOf(rc)
	}
	cats = make([]string, int(t.categories))
	for i := range cats {
		var c C.sluice_category_info
		c.size = C.size_t(unsafe.Sizeof(c))
		if rc := C.sluice_describe_category(h, C.int(i), &c); rc != C.SLUICE_OK {
			return nil, nil, errorOf(rc)
		}
		cats[i] = C.GoString(c.name)
	}
	rules = make([]Rule, int(t.rules))
	for i := range rules {
		var r C.sluice_rule_info
		r.size = C.size_t(unsafe.Sizeof(r))
		if rc := C.sluice_describe_rule(h, C.int32_t(i), &r); rc != C.SLUICE_OK {
			return nil, nil, errorOf(rc)
		}
		rules[i] = Rule{
			Category: C.GoString(r.category_name),
			Lockout:  r.kind == C.SLUICE_RULE_LOCKOUT,
			Limit:    uint32(r.limit),
			WindowMs: int64(r.window_ms),
			Strict:   r.flags&C.SLUICE_RULE_STRICT != 0,
			DryRun:   r.flags&C.SLUICE_RULE_DRY_RUN != 0,
			BanMs:    int64(r.ban_ms),
			MaxBanMs: int64(r.max_ban_ms),
			Line:     int(r.line),
		}
	}
	return rules, cats, nil
}

// Rule is one rule or lockout of the policy, in policy order (the index a Decision's Rule
// names), as the library parsed it.
type Rule struct {
	Category string // the rule's category ("global": every request)
	Lockout  bool   // a lockout (Limit failures in WindowMs lock for BanMs..MaxBanMs), else a window rule
	Limit    uint32 // a window rule's N, a lockout's F
	WindowMs int64  // the window, in milliseconds
	Strict   bool   // a strict window rule (refused requests are logged too)
	DryRun   bool   // a dry-run window rule (never refuses)
	BanMs    int64  // a lockout's first ban (0 for a window rule)
	MaxBanMs int64  // a lockout's longest ban (BanMs without escalation)
	Line     int    // the directive's 1-based line in the policy text
}

// Rules are the policy's rules and lockouts in policy order. They stay readable after Close.
func (l *Limiter) Rules() []Rule { return append([]Rule(nil), l.ruleInfo...) }

// HasLockout says whether cat has a lockout (then Failure and Success may be called for it).
func (l *Limiter) HasLockout(cat Category) bool {
	name := ""
	if int(cat) >= 0 && int(cat) < len(l.cats) {
		name = l.cats[cat]
	}
	for _, r := range l.ruleInfo {
		if r.Lockout && r.Category == name {
			return true
		}
	}
	return false
}

// enter starts a call: the handle and the guard's shard to leave by, or ErrClosed. Every enter
// that returns a handle is matched by one leave after the C call.
func (l *Limiter) enter() (*C.sluice, int, error) {
	if l == nil {
		return nil, 0, ErrClosed
	}
	i := shardOf()
	l.guard.calls[i].n.Add(1)
	if l.guard.closed.Load() {
		l.leave(i)
		return nil, 0, ErrClosed
	}
	return l.h, i, nil
}

// leave ends a call; the last call out of a closed limiter frees it.
func (l *Limiter) leave(i int) {
	l.guard.calls[i].n.Add(-1)
	if l.guard.closed.Load() {
		l.free()
	}
}

// free gives the handle to sluice_close once, when the limiter is closed and no call is in it.
func (l *Limiter) free() {
	for i := range l.guard.calls {
		if l.guard.calls[i].n.Load() != 0 {
			return // that call's leave frees it
		}
	}
	if l.guard.freed.CompareAndSwap(false, true) {
		C.sluice_close(l.h)
		handlesFreed.Add(1)
	}
}

// handlesFreed counts the handles given to sluice_close (the finalizer's test reads it).
var handlesFreed atomic.Int64

// Close frees the limiter (a table file stays; remove it when no process needs it). It is
// idempotent and safe while other goroutines are in calls: calls that start after it return
// ErrClosed, and calls already in the library finish normally, the last of them freeing the
// handle. It always returns nil.
func (l *Limiter) Close() error {
	if l == nil || l.guard.closed.Swap(true) {
		return nil
	}
	l.free()
	runtime.SetFinalizer(l, nil)
	return nil
}

// zeroByte stands in for the data of an empty key: a nil pointer would be ErrNull, not
// ErrEmptyKey.
var zeroByte byte

// keyPtr is the key's bytes, without a copy: the library only reads them during the call.
func keyPtr(key string) unsafe.Pointer {
	if len(key) == 0 {
		return unsafe.Pointer(&zeroByte)
	}
	return unsafe.Pointer(unsafe.StringData(key))
}

// now is SLUICE_NOW: the library's clock.
const now = math.MinInt64

const (
	opCheck   = C.SLUICE_GO_CHECK
	opPeek    = C.SLUICE_GO_PEEK
	opFailure = C.SLUICE_GO_FAILURE
)

func (l *Limiter) decide(op C.int, key string, cat Category, nowMs int64) (Decision, error) {
	h, g, err := l.enter()
	if err != nil {
		return Decision{}, err
	}
	r := C.sluice_go_decide(op, h, C.int(cat), keyPtr(key), C.size_t(len(key)), C.int64_t(nowMs))
	l.leave(g)
	runtime.KeepAlive(key)
	if r.rc != C.SLUICE_OK {
		return Decision{}, errorOf(r.rc)
	}
	return decisionOf(&r.d), nil
}

// Check decides whether the request of key in category cat may go ahead now (the library's
// clock: the system's wall clock) and records it if admitted. The key is any bytes, 1 to
// MaxKeyLen of them.
func (l *Limiter) Check(key string, cat Category) (Decision, error) {
	return l.decide(opCheck, key, cat, now)
}

// CheckAt is Check at nowMs, Unix milliseconds (0 ..= 2^42-2, else ErrTime).
func (l *Limiter) CheckAt(key string, cat Category, nowMs int64) (Decision, error) {
	if nowMs == now {
		return Decision{}, ErrTime
	}
	return l.decide(opCheck, key, cat, nowMs)
}

// Peek is the decision Check would give now, recording nothing. It works on a read-only table.
func (l *Limiter) Peek(key string, cat Category) (Decision, error) {
	return l.decide(opPeek, key, cat, now)
}

// PeekAt is Peek at nowMs, Unix milliseconds.
func (l *Limiter) PeekAt(key string, cat Category, nowMs int64) (Decision, error) {
	if nowMs == now {
		return Decision{}, ErrTime
	}
	return l.decide(opPeek, key, cat, nowMs)
}

// Failure records a failed attempt (a wrong password) of key in cat, which must have a lockout
// (else ErrNoLockout). The decision is the key's state after it: Locked with RetryAfter the rest
// of the lock, or Passed with Remaining the failures left before a lockout.
func (l *Limiter) Failure(key string, cat Category) (Decision, error) {
	return l.decide(opFailure, key, cat, now)
}

// FailureAt is Failure at nowMs, Unix milliseconds.
func (l *Limiter) FailureAt(key string, cat Category, nowMs int64) (Decision, error) {
	if nowMs == now {
		return Decision{}, ErrTime
	}
	return l.decide(opFailure, key, cat, nowMs)
}

// Allow is Check answering only whether the request may go ahead: the same decision, recorded
// and counted the same way, without the work of the report. For hosts that send no headers.
func (l *Limiter) Allow(key string, cat Category) (bool, error) {
	return l.allow(key, cat, now)
}

// AllowAt is Allow at nowMs, Unix milliseconds.
func (l *Limiter) AllowAt(key string, cat Category, nowMs int64) (bool, error) {
	if nowMs == now {
		return false, ErrTime
	}
	return l.allow(key, cat, nowMs)
}

func (l *Limiter) allow(key string, cat Category, nowMs int64) (bool, error) {
	h, g, err := l.enter()
	if err != nil {
		return false, err
	}
	rc := C.sluice_allow(h, C.int(cat), keyPtr(key), C.size_t(len(key)), C.int64_t(nowMs))
	l.leave(g)
	runtime.KeepAlive(key)
	if rc < 0 {
		return false, errorOf(rc)
	}
	return rc == 1, nil
}

const (
	opSuccess = 0
	opReset   = 1
)

func (l *Limiter) record(op int, key string, cat Category, nowMs int64) error {
	h, g, err := l.enter()
	if err != nil {
		return err
	}
	var rc C.int
	if op == opSuccess {
		rc = C.sluice_success(h, C.int(cat), keyPtr(key), C.size_t(len(key)), C.int64_t(nowMs))
	} else {
		rc = C.sluice_reset(h, C.int(cat), keyPtr(key), C.size_t(len(key)), C.int64_t(nowMs))
	}
	l.leave(g)
	runtime.KeepAlive(key)
	if rc != C.SLUICE_OK {
		return errorOf(rc)
	}
	return nil
}

// Success records a successful attempt of key in cat (which must have a lockout): the key's
// failure log is cleared; its lockout level is kept.
func (l *Limiter) Success(key string, cat Category) error {
	return l.record(opSuccess, key, cat, now)
}

// SuccessAt is Success at nowMs, Unix milliseconds.
func (l *Limiter) SuccessAt(key string, cat Category, nowMs int64) error {
	if nowMs == now {
		return ErrTime
	}
	return l.record(opSuccess, key, cat, nowMs)
}

// Reset clears everything Check(key, cat) consults: the logs of cat's rules and of the global
// rules, and cat's lockout with its level (the support desk's "unlock").
func (l *Limiter) Reset(key string, cat Category) error {
	return l.record(opReset, key, cat, now)
}

// ResetAt is Reset at nowMs, Unix milliseconds.
func (l *Limiter) ResetAt(key string, cat Category, nowMs int64) error {
	if nowMs == now {
		return ErrTime
	}
	return l.record(opReset, key, cat, nowMs)
}

// Category resolves a category name of the policy ("global" is always Global). A name the
// policy does not define is ErrUnknownCategory, with the names it does define.
func (l *Limiter) Category(name string) (Category, error) {
	h, g, err := l.enter()
	if err != nil {
		return 0, err
	}
	defer l.leave(g)
	if strings.IndexByte(name, 0) >= 0 {
		return 0, errorWith(C.SLUICE_ERR_UNKNOWN_CATEGORY, fmt.Sprintf("unknown category %q", name))
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	id := C.sluice_category(h, cname)
	if id < 0 {
		if id == C.SLUICE_ERR_UNKNOWN_CATEGORY {
			return 0, errorWith(id, fmt.Sprintf("unknown category %q: the policy has %s", name, strings.Join(l.cats, ", ")))
		}
		return 0, errorOf(id)
	}
	return Category(id), nil
}

// Categories are the policy's category names, in id order (Category(i) is Categories()[i]).
func (l *Limiter) Categories() []string { return append([]string(nil), l.cats...) }

// Policy is the limiter's policy text (for a table file attached without a policy: the file's
// own). It stays readable after Close.
func (l *Limiter) Policy() string { return l.policy }

// Stats are table-wide counts, from Limiter.Stats.
type Stats struct {
	Capacity    uint64 // most live keys the table holds
	LiveKeys    uint64 // keys that hold a slot now
	LockedKeys  uint64 // keys with an active lockout now
	Installing  uint64 // slots being claimed right now (a killed process's claim stays until taken over)
	Evictions   uint64 // slots taken from a key whose state still mattered
	Reclaimed   uint64 // slots taken from a key whose state had expired
	Full        uint64 // requests for which no slot could be had
	BytesPerKey uint64 // bytes of table memory per key
	Categories  int    // categories in the policy (ids 0 .. Categories-1)
	Rules       []RuleCounts
}

// RuleCounts are the counts of one rule or lockout, in policy order in Stats.Rules.
type RuleCounts struct {
	Name          string // the rule's category
	Passed        uint64 // requests this rule admitted (and the request was admitted)
	Limited       uint64 // requests this rule refused
	DryRunLimited uint64 // requests this dry-run rule would have refused
	Locked        uint64 // lockout: checks refused because the key was locked
	Lockouts      uint64 // lockout: lockouts started
}

// Stats are the table's counts now (locked keys judged by the library's clock). It scans the
// table: for operators, not for the request path. It works on a read-only table.
func (l *Limiter) Stats() (Stats, error) { return l.stats(now) }

// StatsAt is Stats judging "locked" at nowMs, Unix milliseconds.
func (l *Limiter) StatsAt(nowMs int64) (Stats, error) {
	if nowMs == now {
		return Stats{}, ErrTime
	}
	return l.stats(nowMs)
}

func (l *Limiter) stats(nowMs int64) (Stats, error) {
	h, g, err := l.enter()
	if err != nil {
		return Stats{}, err
	}
	defer l.leave(g)
	var t C.sluice_table_stats
	t.size = C.size_t(unsafe.Sizeof(t))
	if rc := C.sluice_stats(h, C.int64_t(nowMs), &t); rc != C.SLUICE_OK {
		return Stats{}, errorOf(rc)
	}
	s := Stats{
		Capacity:    uint64(t.capacity),
		LiveKeys:    uint64(t.live_keys),
		LockedKeys:  uint64(t.locked_keys),
		Installing:  uint64(t.installing),
		Evictions:   uint64(t.evictions),
		Reclaimed:   uint64(t.reclaimed),
		Full:        uint64(t.full),
		BytesPerKey: uint64(t.bytes_per_key),
		Categories:  int(t.categories),
		Rules:       make([]RuleCounts, int(t.rules)),
	}
	for i := range s.Rules {
		var c C.sluice_rule_counts
		c.size = C.size_t(unsafe.Sizeof(c))
		if rc := C.sluice_rule_stats(h, C.int32_t(i), &c); rc != C.SLUICE_OK {
			return Stats{}, errorOf(rc)
		}
		s.Rules[i] = RuleCounts{
			Passed:        uint64(c.passed),
			Limited:       uint64(c.limited),
			DryRunLimited: uint64(c.dry_run_limited),
			Locked:        uint64(c.locked),
			Lockouts:      uint64(c.lockouts),
		}
		if i < len(l.rules) {
			s.Rules[i].Name = l.rules[i]
		}
	}
	return s, nil
}

// cNoop is a cgo call of a C function that does nothing, with Check's arguments: the floor
// the benchmarks compare Check with.
func cNoop(key string, cat Category) int {
	return int(C.sluice_go_noop(nil, C.int(cat), keyPtr(key), C.size_t(len(key)), C.int64_t(now)))
}

// cCheckLoop runs n checks of key from C at t0, t0+1, ... ms (the benchmarks' measure of the
// library without cgo); it returns how many were admitted.
func (l *Limiter) cCheckLoop(key string, cat Category, n int, t0 int64) (int64, error) {
	h, g, err := l.enter()
	if err != nil {
		return 0, err
	}
	r := C.sluice_go_check_loop(h, C.int(cat), keyPtr(key), C.size_t(len(key)), C.int64_t(n), C.int64_t(t0))
	l.leave(g)
	runtime.KeepAlive(key)
	if r < 0 {
		return 0, errorOf(C.int(r))
	}
	return int64(r), nil
}
