package sluice

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is a whole second, so that the rounding of Reset is easy to follow.
const t0 = int64(1_700_000_000_000)

func open(t testing.TB, policy string) *Limiter {
	t.Helper()
	l, err := Open(policy, "")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func category(t testing.TB, l *Limiter, name string) Category {
	t.Helper()
	c, err := l.Category(name)
	if err != nil {
		t.Fatalf("Category(%q): %v", name, err)
	}
	return c
}

// step is one call of a script and the decision it must give (only the fields set in want are
// compared when their flag in the step says so).
type step struct {
	op   string // "check", "peek", "failure", "success", "reset", "allow"
	at   int64  // ms after t0
	want Decision
}

func run(t *testing.T, l *Limiter, key string, cat Category, script []step) {
	t.Helper()
	for i, s := range script {
		now := t0 + s.at
		var got Decision
		var err error
		switch s.op {
		case "check":
			got, err = l.CheckAt(key, cat, now)
		case "peek":
			got, err = l.PeekAt(key, cat, now)
		case "failure":
			got, err = l.FailureAt(key, cat, now)
		case "allow":
			var ok bool
			ok, err = l.AllowAt(key, cat, now)
			if err == nil && ok != s.want.Allowed {
				t.Fatalf("step %d (allow at +%d ms): got %v, want %v", i, s.at, ok, s.want.Allowed)
			}
			continue
		case "success":
			err = l.SuccessAt(key, cat, now)
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			continue
		case "reset":
			err = l.ResetAt(key, cat, now)
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			continue
		default:
			t.Fatalf("step %d: unknown op %q", i, s.op)
		}
		if err != nil {
			t.Fatalf("step %d (%s at +%d ms): %v", i, s.op, s.at, err)
		}
		if got != s.want {
			t.Fatalf("step %d (%s at +%d ms):\n got  %+v\n want %+v", i, s.op, s.at, got, s.want)
		}
	}
}

// The examples of docs/semantics.md, every field of every decision.
func TestOneRuleSlidingWindow(t *testing.T) {
	l := open(t, "global 3/10s")
	w := int64(10_000)
	s := t0 / 1000
	run(t, l, "k", Global, []step{
		{"check", 0, Decision{Allowed: true, Status: Passed, Limit: 3, Remaining: 2, Reset: s + 10, ResetAfter: 10, Rule: 0, WindowMs: w}},
		{"check", 1000, Decision{Allowed: true, Status: Passed, Limit: 3, Remaining: 1, Reset: s + 10, ResetAfter: 9, Rule: 0, WindowMs: w}},
		{"check", 2000, Decision{Allowed: true, Status: Passed, Limit: 3, Remaining: 0, Reset: s + 10, ResetAfter: 8, Rule: 0, WindowMs: w}},
		// The request at 0 s is still in the window at 9.999 s.
		{"peek", 9999, Decision{Allowed: false, Status: Limited, Limit: 3, Remaining: 0, Reset: s + 10, ResetAfter: 1, RetryAfter: 1, Rule: 0, WindowMs: w}},
		{"check", 9999, Decision{Allowed: false, Status: Limited, Limit: 3, Remaining: 0, Reset: s + 10, ResetAfter: 1, RetryAfter: 1, Rule: 0, WindowMs: w}},
		// ... and has just left it at 10 s.
		{"check", 10_000, Decision{Allowed: true, Status: Passed, Limit: 3, Remaining: 0, Reset: s + 11, ResetAfter: 1, Rule: 0, WindowMs: w}},
		{"allow", 10_001, Decision{Allowed: false}},
		{"allow", 11_000, Decision{Allowed: true}},
	})
}

func TestSeveralRules(t *testing.T) {
	l := open(t, "global 5/1m\nwrite 2/1m\nwrite 3/1h")
	write := category(t, l, "write")
	steps := []struct {
		at               int64
		allowed          bool
		limit, rem, rule int
		retry            int
	}{
		{0, true, 2, 1, 1, 0},
		{1, true, 2, 0, 1, 0},
		{2, false, 2, 0, 1, 60}, // nothing logged: global still has 3 left
		{60_001, true, 3, 0, 2, 0},
		{120_002, false, 3, 0, 2, 3480},
	}
	for i, s := range steps {
		d, err := l.CheckAt("k", write, t0+s.at)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != s.allowed || d.Limit != s.limit || d.Remaining != s.rem || d.Rule != s.rule || d.RetryAfter != s.retry {
			t.Fatalf("step %d at +%d ms: got %+v, want allowed %v limit %d remaining %d rule %d retry_after %d",
				i, s.at, d, s.allowed, s.limit, s.rem, s.rule, s.retry)
		}
		if i == 2 {
			// The refused request was logged nowhere: global holds 2 of 5, so a check there
			// would leave 2.
			if g, err := l.PeekAt("k", Global, t0+s.at); err != nil || g.Remaining != 2 || g.Limit != 5 {
				t.Fatalf("global after the refusal: %+v %v", g, err)
			}
		}
	}
}

func TestResetRoundsUp(t *testing.T) {
	l := open(t, "global 1/1500ms")
	d, err := l.CheckAt("k", Global, t0+1)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allowed || d.Reset != t0/1000+2 || d.ResetAfter != 2 {
		t.Fatalf("got %+v, want reset t0+2 s, reset_after 2", d)
	}
	d, err = l.CheckAt("k", Global, t0+1400)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed || d.Status != Limited || d.RetryAfter != 1 {
		t.Fatalf("got %+v, want limited, retry_after 1", d)
	}
}

func TestLockoutEscalation(t *testing.T) {
	l := open(t, "auth 100/1m\nauth lockout 3/15m for 1m..4m")
	auth := category(t, l, "auth")
	at := int64(0)
	// 1, 2, 4, 4 minutes.
	for i, ban := range []int{60, 120, 240, 240} {
		for f := 0; f < 2; f++ {
			d, err := l.FailureAt("k", auth, t0+at)
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != Passed || d.Remaining != 2-f || d.Limit != 3 || d.Rule != 1 {
				t.Fatalf("lockout %d, failure %d: %+v", i, f, d)
			}
			at++
		}
		d, err := l.FailureAt("k", auth, t0+at)
		if err != nil {
			t.Fatal(err)
		}
		if d.Status != Locked || d.Allowed || d.RetryAfter != ban {
			t.Fatalf("lockout %d: %+v, want locked for %d s", i, d, ban)
		}
		// Failures while locked are not counted and do not extend the lock.
		d, err = l.FailureAt("k", auth, t0+at+1000)
		if err != nil || d.Status != Locked || d.RetryAfter != ban-1 {
			t.Fatalf("failure while locked: %+v %v", d, err)
		}
		// A check while locked refuses and charges nothing.
		d, err = l.CheckAt("k", auth, t0+at+1000)
		if err != nil || d.Status != Locked || d.RetryAfter != ban-1 {
			t.Fatalf("check while locked: %+v %v", d, err)
		}
		// Other categories are not locked.
		if ok, err := l.AllowAt("k", Global, t0+at+1000); err != nil || !ok {
			t.Fatalf("global while locked out of auth: %v %v", ok, err)
		}
		at += int64(ban) * 1000
	}
	// After 4 quiet minutes past the end of a lock, the next lockout is 1 minute again.
	at += 4 * 60_000
	for f := 0; f < 3; f++ {
		d, err := l.FailureAt("k", auth, t0+at)
		if err != nil {
			t.Fatal(err)
		}
		if f == 2 && (d.Status != Locked || d.RetryAfter != 60) {
			t.Fatalf("after the level was forgotten: %+v", d)
		}
		at++
	}
	// Reset lifts the lock; success clears failures.
	if err := l.ResetAt("k", auth, t0+at); err != nil {
		t.Fatal(err)
	}
	run(t, l, "k", auth, []step{
		{"failure", at, Decision{Allowed: true, Status: Passed, Limit: 3, Remaining: 2, Reset: (t0+at)/1000 + 900 + 1, ResetAfter: 900, Rule: 1, WindowMs: 900_000}},
		{"success", at + 1, Decision{}},
		{"failure", at + 2, Decision{Allowed: true, Status: Passed, Limit: 3, Remaining: 2, Reset: (t0+at)/1000 + 900 + 1, ResetAfter: 900, Rule: 1, WindowMs: 900_000}},
	})
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{Passed: "passed", Limited: "limited", Locked: "locked", Full: "full", DryRunLimited: "dry-run-limited", 9: "Status(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", uint8(s), s.String(), want)
		}
	}
}

func TestDryRunAndFull(t *testing.T) {
	l := open(t, "global 1/1m dry-run\ncapacity 1")
	d, err := l.CheckAt("a", Global, t0)
	if err != nil || d.Status != Passed {
		t.Fatalf("%+v %v", d, err)
	}
	d, err = l.CheckAt("a", Global, t0+1)
	if err != nil || d.Status != DryRunLimited || !d.Allowed {
		t.Fatalf("dry run: %+v %v", d, err)
	}
	l2 := open(t, "global 1/1m\nauth lockout 1/1m for 1h\ncapacity 1")
	auth := category(t, l2, "auth")
	if _, err := l2.FailureAt("a", auth, t0); err != nil {
		t.Fatal(err)
	}
	// The one slot holds an active lockout, which is never evicted: a new key finds no slot.
	d, err = l2.CheckAt("b", Global, t0+1)
	if err != nil || d.Status != Full || d.Allowed {
		t.Fatalf("full: %+v %v", d, err)
	}
	st, err := l2.StatsAt(t0 + 2)
	if err != nil {
		t.Fatal(err)
	}
	if st.Capacity != 1 || st.LiveKeys != 1 || st.LockedKeys != 1 || st.Full != 1 || st.Categories != 2 || len(st.Rules) != 2 {
		t.Fatalf("stats: %+v", st)
	}
	if st.Rules[1].Name != "auth" || st.Rules[1].Lockouts != 1 || st.Rules[0].Name != "global" {
		t.Fatalf("rule stats: %+v", st.Rules)
	}
}

// Goroutines hammering one key: never more than N admitted. With one rule exactly N; with several,
// a check that loses a race is refused where a serial order would have admitted it, and may use
// up some of the allowance (docs/semantics.md, concurrency: stricter, never looser), so only
// "at most N" holds, also counting serial checks afterwards.
func TestConcurrentExactlyN(t *testing.T) {
	l := open(t, "global 100/1h\nwrite 250/1h")
	write := category(t, l, "write")
	for _, cat := range []Category{Global, write} {
		var admitted atomic.Int64
		var wg sync.WaitGroup
		key := "hot-" + l.cats[cat]
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 200; i++ {
					var ok bool
					var err error
					if (g+i)%2 == 0 {
						ok, err = l.AllowAt(key, cat, t0+int64(i))
					} else {
						var d Decision
						d, err = l.CheckAt(key, cat, t0+int64(i))
						ok = d.Allowed
					}
					if err != nil {
						t.Error(err)
						return
					}
					if ok {
						admitted.Add(1)
					}
				}
			}(g)
		}
		wg.Wait()
		got := admitted.Load()
		if cat == Global && got != 100 {
			t.Fatalf("one rule: %d admitted, want exactly 100", got)
		}
		if got > 100 {
			t.Fatalf("two rules: %d admitted, want at most 100", got)
		}
		for i := 0; i < 200; i++ {
			ok, err := l.AllowAt(key, cat, t0+1000)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			got++
		}
		if got > 100 || (cat == Global && got != 100) {
			t.Fatalf("category %d: %d admitted in the window, want at most 100", cat, got)
		}
	}
}

// Close racing calls: every call returns a decision or ErrClosed, never crashes, and every call
// after Close returned is ErrClosed.
func TestCloseRacingCalls(t *testing.T) {
	for round := 0; round < 20; round++ {
		l, err := Open("global 1000/1m\nauth lockout 5/1m for 1m", "")
		if err != nil {
			t.Fatal(err)
		}
		auth, _ := l.Category("auth")
		var wg sync.WaitGroup
		var ok, closed atomic.Int64
		start := make(chan struct{})
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				<-start
				for i := 0; i < 300; i++ {
					var err error
					switch (g + i) % 5 {
					case 0:
						_, err = l.Check("k", Global)
					case 1:
						_, err = l.PeekAt("k", auth, t0)
					case 2:
						_, err = l.Failure("k", auth)
					case 3:
						_, err = l.Stats()
					default:
						var b Batch
						b.Add("k", Global)
						b.Add("j", auth)
						_, err = l.CheckBatch(&b)
					}
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ErrClosed):
						closed.Add(1)
					default:
						t.Errorf("unexpected error: %v", err)
						return
					}
				}
			}(g)
		}
		close(start)
		for i := 0; i < 3; i++ { // Close is idempotent, also when called concurrently
			wg.Add(1)
			go func() { defer wg.Done(); l.Close() }()
		}
		wg.Wait()
		if ok.Load()+closed.Load() != 6*300 {
			t.Fatalf("round %d: %d ok + %d closed", round, ok.Load(), closed.Load())
		}
		if _, err := l.Check("k", Global); !errors.Is(err, ErrClosed) {
			t.Fatalf("after Close: %v", err)
		}
		if !l.guard.freed.Load() {
			t.Fatalf("round %d: every call returned and the handle was not freed", round)
		}
		for i := range l.guard.calls {
			if n := l.guard.calls[i].n.Load(); n != 0 {
				t.Fatalf("round %d: %d calls left in shard %d", round, n, i)
			}
		}
	}
}

// A limiter dropped without Close is freed by its finalizer.
func TestFinalizerFrees(t *testing.T) {
	before := handlesFreed.Load()
	func() {
		l, err := Open("global 1/1m", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.CheckAt("k", Global, t0); err != nil {
			t.Fatal(err)
		}
	}()
	for i := 0; i < 100 && handlesFreed.Load() == before; i++ {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if handlesFreed.Load() == before {
		t.Fatal("an unreachable limiter was not freed")
	}
	// Close frees at once (with no call in flight).
	l, _ := Open("global 1/1m", "")
	n := handlesFreed.Load()
	l.Close()
	if handlesFreed.Load() < n+1 || !l.guard.freed.Load() {
		t.Fatal("Close did not free the handle")
	}
}

func TestErrors(t *testing.T) {
	_, err := Open("global 10/1 minute", "")
	if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), "line 1, column 11") ||
		!strings.Contains(err.Error(), `expected a duration such as 1m or 30s, found "1 minute"`) {
		t.Fatalf("bad policy: %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != -10 {
		t.Fatalf("bad policy: not an *Error of code -10: %#v", err)
	}
	if errors.Is(err, ErrIO) {
		t.Fatal("a policy error matches ErrIO")
	}
	if _, err := Open("global 1/1m\nglobal 2/1m\nglobal 3/1m\nglobal 4/1m\nglobal 5/1m\nglobal 6/1m\nglobal 7/1m\nglobal 8/1m\nglobal 9/1m\nglobal 10/1m\nglobal 11/1m\nglobal 12/1m\nglobal 13/1m\nglobal 14/1m\nglobal 15/1m\nglobal 16/1m\nglobal 17/1m", ""); !errors.Is(err, ErrPolicyTooLarge) {
		t.Fatalf("17 rules: %v", err)
	}
	if _, err := Open("global 1/1m\x00", ""); !errors.Is(err, ErrArgument) {
		t.Fatalf("NUL in the policy: %v", err)
	}
	if _, err := Open("", ""); err == nil {
		t.Fatal("no policy and no path opened")
	}

	l := open(t, DefaultPolicy)
	_, err = l.Category("nope")
	if !errors.Is(err, ErrUnknownCategory) || !strings.Contains(err.Error(), `"nope"`) ||
		!strings.Contains(err.Error(), "global, media, analytics, write, auth") {
		t.Fatalf("unknown category: %v", err)
	}
	if _, err := l.CheckAt("k", Category(99), t0); !errors.Is(err, ErrUnknownCategory) {
		t.Fatalf("category 99: %v", err)
	}
	if _, err := l.CheckAt("", Global, t0); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("empty key: %v", err)
	}
	long := strings.Repeat("x", MaxKeyLen)
	if _, err := l.CheckAt(long, Global, t0); err != nil {
		t.Fatalf("key of MaxKeyLen bytes: %v", err)
	}
	if _, err := l.CheckAt(long+"x", Global, t0); !errors.Is(err, ErrKeyTooLong) {
		t.Fatalf("key too long: %v", err)
	}
	if _, err := l.AllowAt("", Global, t0); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("allow, empty key: %v", err)
	}
	if err := l.SuccessAt("", Global, t0); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("success, empty key: %v", err)
	}
	if _, err := l.FailureAt("k", Global, t0); !errors.Is(err, ErrNoLockout) {
		t.Fatalf("failure without a lockout: %v", err)
	}
	for _, bad := range []int64{-1, 1 << 42, -1 << 63} {
		if _, err := l.CheckAt("k", Global, bad); !errors.Is(err, ErrTime) {
			t.Fatalf("time %d: %v", bad, err)
		}
	}
	// Keys are bytes: NUL and invalid UTF-8 are keys like any other.
	if _, err := l.CheckAt("a\x00\xff", Global, t0); err != nil {
		t.Fatalf("binary key: %v", err)
	}
	if e := ErrPolicy.Error(); !strings.HasPrefix(e, "sluice: ") || len(e) < 12 {
		t.Fatalf("sentinel message: %q", e)
	}

	l.Close()
	l.Close()
	if _, err := l.Check("k", Global); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
	if _, err := l.Category("auth"); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed, category: %v", err)
	}
	if ok, err := l.Allow("k", Global); ok || !errors.Is(err, ErrClosed) {
		t.Fatalf("closed, allow: %v", err)
	}
	var nilLimiter *Limiter
	if _, err := nilLimiter.Check("k", Global); !errors.Is(err, ErrClosed) {
		t.Fatalf("nil limiter: %v", err)
	}
}

func TestFilesAndOptions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.sluice")
	policy := "global 3/1h\nauth lockout 2/1h for 1h"

	if _, err := Open("", path); !errors.Is(err, ErrNoTable) {
		t.Fatalf("no table: %v", err)
	}
	if _, err := OpenWith("", path, Options{ReadOnly: true}); err == nil {
		t.Fatal("read-only open of a missing file succeeded")
	}
	if _, err := OpenWith(policy, "", Options{ReadOnly: true}); !errors.Is(err, ErrArgument) {
		t.Fatalf("read-only without a path: %v", err)
	}
	if _, err := OpenWith(policy, path, Options{Mode: 0o777}); !errors.Is(err, ErrArgument) || !strings.Contains(err.Error(), "mode") {
		t.Fatalf("mode 0777: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a refused open created the file: %v", err)
	}

	w, err := OpenWith(policy, path, Options{Mode: 0o640})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode: %v %v", fi.Mode(), err)
	}
	// Attached by path alone: the file's own policy, the same table.
	a, err := Open("", path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !strings.Contains(a.Policy(), "auth lockout 2/1h for 1h") {
		t.Fatalf("attached policy: %q", a.Policy())
	}
	for i := 0; i < 3; i++ {
		if ok, err := w.AllowAt("k", Global, t0+int64(i)); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	if d, err := a.CheckAt("k", Global, t0+3); err != nil || d.Allowed {
		t.Fatalf("the second handle does not see the first one's requests: %+v %v", d, err)
	}
	r, err := OpenWith("", path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if d, err := r.PeekAt("k", Global, t0+4); err != nil || d.Allowed {
		t.Fatalf("read-only peek: %+v %v", d, err)
	}
	if _, err := r.CheckAt("k", Global, t0+4); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("read-only check: %v", err)
	}
	if st, err := r.StatsAt(t0 + 4); err != nil || st.LiveKeys != 1 || st.Rules[0].Passed != 3 {
		t.Fatalf("read-only stats: %+v %v", st, err)
	}

	if _, err := Open("global 4/1h", path); !errors.Is(err, ErrPolicyMismatch) || !strings.Contains(err.Error(), path) {
		t.Fatalf("mismatch: %v", err)
	}
	junk := filepath.Join(dir, "junk")
	if err := os.WriteFile(junk, []byte(strings.Repeat("not a table\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("", junk); !errors.Is(err, ErrNotATable) {
		t.Fatalf("junk: %v", err)
	}
	if _, err := Open(policy, filepath.Join(dir, "missing", "t")); !errors.Is(err, ErrIO) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing directory: %v", err)
	}
	if h, err := OpenWith(policy, "", Options{HugePages: true}); err != nil {
		t.Fatalf("huge pages: %v", err)
	} else {
		h.Close()
	}
}

func TestBatch(t *testing.T) {
	l := open(t, "global 2/1m\nwrite 1/1m")
	write := category(t, l, "write")
	one := open(t, "global 2/1m\nwrite 1/1m")
	var b Batch
	keys := []string{"a", "b", "a", "a", "b", "c"}
	cats := []Category{Global, write, write, Global, Global, write}
	for i := range keys {
		b.Add(keys[i], cats[i])
	}
	ds, err := l.CheckBatchAt(&b, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != len(keys) {
		t.Fatalf("%d decisions for %d requests", len(ds), len(keys))
	}
	for i := range keys {
		want, err := one.CheckAt(keys[i], cats[i], t0)
		if err != nil {
			t.Fatal(err)
		}
		if ds[i] != want {
			t.Fatalf("request %d: batch %+v, one by one %+v", i, ds[i], want)
		}
	}
	// An invalid request: its index, and nothing of the batch recorded.
	b.Reset()
	b.Add("z", Global)
	b.Add("", Global)
	_, err = l.CheckBatchAt(&b, t0)
	var be *BatchError
	if !errors.As(err, &be) || be.Index != 1 || !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("empty key in a batch: %v", err)
	}
	if d, _ := l.PeekAt("z", Global, t0); d.Remaining != 1 {
		t.Fatalf("a refused batch recorded something: %+v", d)
	}
	b.Reset()
	b.Add("z", Category(7))
	if _, err := l.CheckBatchAt(&b, t0); !errors.As(err, &be) || be.Index != 0 || !errors.Is(err, ErrUnknownCategory) {
		t.Fatalf("unknown category in a batch: %v", err)
	}
	b.Reset()
	b.Add("z", Global)
	if _, err := l.CheckBatchAt(&b, -5); !errors.Is(err, ErrTime) || errors.As(err, &be) {
		t.Fatalf("bad time: %v", err)
	}
	b.Reset()
	if ds, err := l.CheckBatch(&b); err != nil || len(ds) != 0 {
		t.Fatalf("empty batch: %v %v", ds, err)
	}
}

// Check and Allow allocate nothing.
func TestNoAllocations(t *testing.T) {
	l := open(t, DefaultPolicy)
	write := category(t, l, "write")
	key := "198.51.100.7"
	var sink Decision
	if n := testing.AllocsPerRun(200, func() { sink, _ = l.CheckAt(key, write, t0) }); n != 0 {
		t.Fatalf("CheckAt: %v allocations per call", n)
	}
	if n := testing.AllocsPerRun(200, func() { sink, _ = l.Check(key, Global) }); n != 0 {
		t.Fatalf("Check: %v allocations per call", n)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = l.Allow(key, write) }); n != 0 {
		t.Fatalf("Allow: %v allocations per call", n)
	}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(200, func() { buf, _ = l.AppendHeaders(buf[:0], sink, IETF) }); n != 0 {
		t.Fatalf("AppendHeaders: %v allocations per call", n)
	}
	var b Batch
	for i := 0; i < 16; i++ {
		b.Add(key, write)
	}
	l.CheckBatchAt(&b, t0)
	if n := testing.AllocsPerRun(100, func() { _, _ = l.CheckBatchAt(&b, t0) }); n != 0 {
		t.Fatalf("CheckBatchAt, reused batch: %v allocations per call", n)
	}
}

func TestVersionAndPolicy(t *testing.T) {
	if Version() != HeaderVersion {
		t.Fatalf("library %s, header %s", Version(), HeaderVersion)
	}
	if b, err := os.ReadFile("../../policies/default.policy"); err != nil || string(b) != DefaultPolicy {
		t.Fatalf("DefaultPolicy is not policies/default.policy: %v\n%q", err, DefaultPolicy)
	}
	// A category without a rule: admitted, and no rule decided.
	none := open(t, "auth lockout 3/1m for 1m")
	if d, err := none.CheckAt("k", Global, t0); err != nil || d != (Decision{Allowed: true, Status: Passed, Rule: -1, Reset: t0 / 1000}) {
		t.Fatalf("no rule: %+v %v", d, err)
	}
	if hs, err := none.Headers(Decision{Allowed: true, Status: Passed, Rule: -1}, XRateLimit); err != nil || len(hs) != 0 {
		t.Fatalf("headers of no rule: %v %v", hs, err)
	}
	l := open(t, DefaultPolicy)
	if l.Policy() != DefaultPolicy {
		t.Fatalf("Policy() = %q", l.Policy())
	}
	if got := strings.Join(l.Categories(), " "); got != "global media analytics write auth" {
		t.Fatalf("categories %q", got)
	}
	for i, name := range l.Categories() {
		if c := category(t, l, name); int(c) != i {
			t.Fatalf("%s: id %d, want %d", name, c, i)
		}
	}
}

func TestRulesDescribeThePolicy(t *testing.T) {
	l, err := Open("global 300/1m\nauth 10/1m strict\nauth lockout 5/15m for 15m..24h\nmedia 60/1m dry-run\n", "")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := []Rule{
		{Category: "global", Limit: 300, WindowMs: 60_000, Line: 1},
		{Category: "auth", Limit: 10, WindowMs: 60_000, Strict: true, Line: 2},
		{Category: "auth", Lockout: true, Limit: 5, WindowMs: 900_000, BanMs: 900_000, MaxBanMs: 86_400_000, Line: 3},
		{Category: "media", Limit: 60, WindowMs: 60_000, DryRun: true, Line: 4},
	}
	got := l.Rules()
	if len(got) != len(want) {
		t.Fatalf("Rules() = %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("rule %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if c := l.Categories(); strings.Join(c, ",") != "global,auth,media" {
		t.Errorf("Categories() = %v", c)
	}
	auth, _ := l.Category("auth")
	media, _ := l.Category("media")
	if !l.HasLockout(auth) || l.HasLockout(media) || l.HasLockout(Global) || l.HasLockout(Category(99)) {
		t.Error("HasLockout does not follow the policy's lockouts")
	}
}
