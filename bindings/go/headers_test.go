package sluice

import (
	"errors"
	"math/rand"
	"testing"
)

const headerPolicy = "global 300/1m\nmedia 60/1m\nwrite-ops 30/1500ms strict\nwrite-ops 500/1h\nauth lockout 5/15m for 15m..24h\nauth 10/1m dry-run"

// The Go formatter writes exactly the block of sluice_headers: for the decisions of real calls
// (every status) and for made-up ones over the whole range of every field, in both styles.
func TestHeadersEqualTheLibrarys(t *testing.T) {
	l := open(t, headerPolicy)
	var ds []Decision
	cats := []string{"global", "media", "write-ops", "auth"}
	for i := 0; i < 40; i++ {
		for _, name := range cats {
			c := category(t, l, name)
			d, err := l.CheckAt("k", c, t0+int64(i)*37)
			if err != nil {
				t.Fatal(err)
			}
			ds = append(ds, d)
			if name == "auth" && i%3 == 0 {
				d, err = l.FailureAt("k", c, t0+int64(i)*37)
				if err != nil {
					t.Fatal(err)
				}
				ds = append(ds, d)
			}
		}
	}
	full := open(t, "global 1/1m\nauth lockout 1/1m for 1h\ncapacity 1")
	auth := category(t, full, "auth")
	full.FailureAt("a", auth, t0)
	d, _ := full.CheckAt("b", Global, t0)
	if d.Status != Full {
		t.Fatalf("not full: %+v", d)
	}
	ds = append(ds, d)
	seen := map[Status]bool{}
	for _, d := range ds {
		seen[d.Status] = true
	}
	for _, s := range []Status{Passed, Limited, Locked, DryRunLimited} {
		if !seen[s] {
			t.Fatalf("no decision of status %v among the real ones", s)
		}
	}

	r := rand.New(rand.NewSource(1))
	pick := func(n int64) int64 {
		switch r.Intn(4) {
		case 0:
			return 0
		case 1:
			return n
		default:
			return r.Int63n(n + 1)
		}
	}
	for i := 0; i < 5000; i++ {
		ds = append(ds, Decision{
			Allowed:    r.Intn(2) == 0,
			Status:     Status(r.Intn(5)),
			Limit:      int(pick(1<<32 - 1)),
			Remaining:  int(pick(1<<32 - 1)),
			Reset:      pick(1<<62) - pick(1<<40),
			ResetAfter: int(pick(1<<32 - 1)),
			RetryAfter: int(pick(1<<32 - 1)),
			Rule:       int(pick(8)) - 1,
			WindowMs:   pick(1 << 45),
		})
	}
	for _, d := range ds {
		for _, style := range []HeaderStyle{XRateLimit, IETF} {
			want, err := l.cHeaders(d, style)
			if err != nil {
				t.Fatalf("%+v: sluice_headers: %v", d, err)
			}
			got, err := l.AppendHeaders([]byte("prefix"), d, style)
			if err != nil {
				t.Fatalf("%+v: %v", d, err)
			}
			if string(got) != "prefix"+want {
				t.Fatalf("%+v, style %d:\n go %q\n  C %q", d, style, got[6:], want)
			}
		}
	}
}

func TestHeadersPairs(t *testing.T) {
	l := open(t, headerPolicy)
	write := category(t, l, "write-ops")
	for i := 0; i < 30; i++ {
		l.CheckAt("k", write, t0)
	}
	d, _ := l.CheckAt("k", write, t0+1)
	if d.Allowed {
		t.Fatal("allowed")
	}
	hs, err := l.Headers(d, XRateLimit)
	if err != nil {
		t.Fatal(err)
	}
	want := []Header{
		{"X-RateLimit-Limit", "30"},
		{"X-RateLimit-Remaining", "0"},
		{"X-RateLimit-Reset", "1700000002"},
		{"Retry-After", "2"},
	}
	if len(hs) != len(want) {
		t.Fatalf("%v", hs)
	}
	for i := range want {
		if hs[i] != want[i] {
			t.Fatalf("header %d: %v, want %v", i, hs[i], want[i])
		}
	}
	hs, _ = l.Headers(d, IETF)
	if len(hs) != 3 || hs[0] != (Header{"RateLimit-Policy", `"write-ops";q=30;w=2`}) || hs[1].Name != "RateLimit" {
		t.Fatalf("%v", hs)
	}
	if _, err := l.Headers(d, HeaderStyle(2)); !errors.Is(err, ErrArgument) {
		t.Fatalf("style 2: %v", err)
	}
	if _, err := l.cHeaders(d, HeaderStyle(2)); !errors.Is(err, ErrArgument) {
		t.Fatalf("the library takes style 2: %v", err)
	}
	d.Status = 5
	if _, err := l.AppendHeaders(nil, d, XRateLimit); !errors.Is(err, ErrArgument) {
		t.Fatalf("status 5: %v", err)
	}
	if _, err := l.cHeaders(d, XRateLimit); !errors.Is(err, ErrArgument) {
		t.Fatalf("the library takes status 5: %v", err)
	}
}
