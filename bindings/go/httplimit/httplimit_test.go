package httplimit

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sluice "sluice.dev/go"
)

// clock is a manual clock for the middleware.
type clock struct{ ms atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ms.Store(1_700_000_000_000)
	return c
}

func (c *clock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *clock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

func limiter(t *testing.T, policy string) *sluice.Limiter {
	t.Helper()
	l, err := sluice.Open(policy, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

func request(h http.Handler, remote string, xff ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "http://example.test/", nil)
	r.RemoteAddr = remote
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestLimitsAndHeaders(t *testing.T) {
	l := limiter(t, "global 100/1m\napi 2/1m")
	c := newClock()
	m, err := New(l, "api", Clock(c.now))
	if err != nil {
		t.Fatal(err)
	}
	h := m.Handler(ok)
	w := request(h, "198.51.100.7:4000")
	if w.Code != 200 || w.Body.String() != "ok" {
		t.Fatalf("first: %d %q", w.Code, w.Body)
	}
	if got := w.Header().Get("X-RateLimit-Limit"); got != "2" {
		t.Fatalf("X-RateLimit-Limit %q", got)
	}
	if got := w.Header().Get("X-RateLimit-Remaining"); got != "1" {
		t.Fatalf("X-RateLimit-Remaining %q", got)
	}
	if got := w.Header().Get("X-RateLimit-Reset"); got != "1700000060" {
		t.Fatalf("X-RateLimit-Reset %q", got)
	}
	if w.Header().Get("Retry-After") != "" {
		t.Fatal("Retry-After on an admitted response")
	}
	c.advance(10 * time.Second)
	request(h, "198.51.100.7:4001")
	c.advance(5 * time.Second)
	w = request(h, "198.51.100.7:4002")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "45" || w.Header().Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("third: %d %v", w.Code, w.Header())
	}
	// Another client is not limited by the first one.
	if w = request(h, "198.51.100.8:4000"); w.Code != 200 {
		t.Fatalf("another client: %d", w.Code)
	}
	c.advance(45 * time.Second)
	if w = request(h, "198.51.100.7:4003"); w.Code != 200 {
		t.Fatalf("a minute after the first: %d", w.Code)
	}
}

func TestIETFAndHooks(t *testing.T) {
	l := limiter(t, "api 1/1m")
	c := newClock()
	var refused sluice.Decision
	m, err := New(l, "api", Clock(c.now), Headers(sluice.IETF, false),
		OnLimited(func(w http.ResponseWriter, r *http.Request, d sluice.Decision) {
			refused = d
			w.WriteHeader(503)
			io.WriteString(w, "slow down")
		}))
	if err != nil {
		t.Fatal(err)
	}
	h := m.Handler(ok)
	w := request(h, "192.0.2.1:1")
	if w.Code != 200 || w.Header().Get("RateLimit") != "" {
		t.Fatalf("admitted: %d %v (headers on refusals only)", w.Code, w.Header())
	}
	w = request(h, "192.0.2.1:1")
	if w.Code != 503 || w.Body.String() != "slow down" || refused.Status != sluice.Limited {
		t.Fatalf("hook: %d %q %+v", w.Code, w.Body, refused)
	}
	if got := w.Header().Get("RateLimit-Policy"); got != `"api";q=1;w=60` {
		t.Fatalf("RateLimit-Policy %q", got)
	}
	if got := w.Header().Get("RateLimit"); got != `"api";r=0;t=60` {
		t.Fatalf("RateLimit %q", got)
	}
	if w.Header().Get("Retry-After") != "60" {
		t.Fatalf("Retry-After %q", w.Header().Get("Retry-After"))
	}

	m, _ = New(l, "api", Clock(c.now), NoHeaders())
	w = request(m.Handler(ok), "192.0.2.1:1")
	if w.Code != 429 || w.Header().Get("Retry-After") != "60" || w.Header().Get("RateLimit") != "" || w.Header().Get("X-RateLimit-Limit") != "" {
		t.Fatalf("no headers: %d %v", w.Code, w.Header())
	}
}

func TestErrors(t *testing.T) {
	l := limiter(t, "api 1/1m")
	if _, err := New(l, "nope"); !errors.Is(err, sluice.ErrUnknownCategory) {
		t.Fatalf("unknown category: %v", err)
	}
	if _, err := New(l, "api", TrustProxies("10.0.0.0/33", "proxy.example")); err == nil ||
		!strings.Contains(err.Error(), "10.0.0.0/33") || !strings.Contains(err.Error(), "proxy.example") {
		t.Fatalf("bad prefixes: %v", err)
	}
	if _, err := New(l, "api", IPv6Prefix(0)); err == nil {
		t.Fatal("IPv6Prefix(0) accepted")
	}
	if _, err := New(l, "api", Headers(sluice.HeaderStyle(7), true)); err == nil {
		t.Fatal("style 7 accepted")
	}
	if _, err := Func(l, "nope"); err == nil {
		t.Fatal("Func with an unknown category")
	}

	// The default error answer is 500 and the handler is not run; a hook may serve anyway.
	m, _ := New(l, "api")
	if w := request(m.Handler(ok), "@"); w.Code != 500 {
		t.Fatalf("no client address: %d", w.Code)
	}
	var seen error
	m, _ = New(l, "api", OnError(func(w http.ResponseWriter, r *http.Request, err error) bool {
		seen = err
		return true
	}))
	if w := request(m.Handler(ok), "@"); w.Code != 200 || !errors.Is(seen, ErrNoClientAddress) {
		t.Fatalf("fail open: %d %v", w.Code, seen)
	}
	m, _ = New(l, "api", Key(func(*http.Request) (string, error) { return "", nil }), OnError(func(w http.ResponseWriter, r *http.Request, err error) bool {
		seen = err
		w.WriteHeader(400)
		return false
	}))
	if w := request(m.Handler(ok), "192.0.2.1:1"); w.Code != 400 || !errors.Is(seen, sluice.ErrEmptyKey) {
		t.Fatalf("empty key: %d %v", w.Code, seen)
	}
	l.Close()
	if w := request(m.Handler(ok), "192.0.2.1:1"); w.Code != 400 || !errors.Is(seen, sluice.ErrClosed) {
		t.Fatalf("closed limiter: %d %v", w.Code, seen)
	}
}

// keyOf runs a request through the middleware and returns the key it was checked under.
func keyOf(t *testing.T, m *Middleware, remote string, xff ...string) string {
	t.Helper()
	var key string
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		if key, err = m.KeyOf(r); err != nil {
			t.Fatal(err)
		}
	}))
	if w := request(h, remote, xff...); w.Code != 200 {
		t.Fatalf("%s %v: %d", remote, xff, w.Code)
	}
	return key
}

func TestForwardedFor(t *testing.T) {
	l := limiter(t, "api 1000/1m")
	plain, _ := New(l, "api")
	proxied, err := New(l, "api", TrustProxies("10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.10"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		m      *Middleware
		remote string
		xff    []string
		want   string
	}{
		{"no proxy trusted: the header is ignored", plain, "203.0.113.5:1", []string{"198.51.100.1"}, "203.0.113.5"},
		{"an untrusted peer's header is ignored", proxied, "203.0.113.5:1", []string{"198.51.100.1"}, "203.0.113.5"},
		{"one trusted hop", proxied, "10.1.2.3:1", []string{"198.51.100.1"}, "198.51.100.1"},
		{"a forged leftmost entry is not believed", proxied, "10.1.2.3:1", []string{"1.1.1.1, 198.51.100.1"}, "198.51.100.1"},
		{"a forged trusted-looking entry left of the real client", proxied, "10.1.2.3:1", []string{"10.9.9.9, 198.51.100.1"}, "198.51.100.1"},
		{"two trusted hops", proxied, "10.1.2.3:1", []string{"1.1.1.1, 198.51.100.1, 10.0.0.7"}, "198.51.100.1"},
		{"several header lines are one list, in order", proxied, "10.1.2.3:1", []string{"1.1.1.1", "198.51.100.1", "10.0.0.7, 192.0.2.10"}, "198.51.100.1"},
		{"a forged line before the proxy's", proxied, "10.1.2.3:1", []string{"10.0.0.1", "198.51.100.2"}, "198.51.100.2"},
		{"entries with ports and brackets", proxied, "10.1.2.3:1", []string{"198.51.100.1:5555, [2001:db8:ffff::1]:443"}, "198.51.100.1"},
		{"garbage to the left of a trusted hop: that hop", proxied, "10.1.2.3:1", []string{"unknown, 10.0.0.7"}, "10.0.0.7"},
		{"garbage right at the peer: the peer", proxied, "10.1.2.3:1", []string{"198.51.100.1, not-an-ip"}, "10.1.2.3"},
		{"every hop trusted: the leftmost", proxied, "10.1.2.3:1", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"a trusted peer without the header", proxied, "10.1.2.3:1", nil, "10.1.2.3"},
		{"empty entries are skipped", proxied, "10.1.2.3:1", []string{"198.51.100.1,, ", ""}, "198.51.100.1"},
		{"an IPv6 trusted proxy", proxied, "[2001:db8:ffff::9]:443", []string{"198.51.100.3"}, "198.51.100.3"},
		{"IPv4-mapped peer", proxied, "[::ffff:10.1.2.3]:1", []string{"198.51.100.4"}, "198.51.100.4"},
		{"an IPv6 client grouped by /64", proxied, "10.1.2.3:1", []string{"2001:db8:1:2:3:4:5:6"}, "2001:db8:1:2::/64"},
		{"an IPv6 peer grouped by /64", plain, "[2001:db8:1:2::77]:1", nil, "2001:db8:1:2::/64"},
		{"a zone is dropped", plain, "[fe80::1%eth0]:1", nil, "fe80::/64"},
	}
	for _, c := range cases {
		if got := keyOf(t, c.m, c.remote, c.xff...); got != c.want {
			t.Errorf("%s: key %q, want %q", c.name, got, c.want)
		}
	}
	exact, _ := New(l, "api", IPv6Prefix(128))
	if got := keyOf(t, exact, "[2001:db8:1:2::77]:1"); got != "2001:db8:1:2::77" {
		t.Errorf("IPv6Prefix(128): %q", got)
	}
	wide, _ := New(l, "api", IPv6Prefix(48))
	if got := keyOf(t, wide, "[2001:db8:1:2::77]:1"); got != "2001:db8:1::/48" {
		t.Errorf("IPv6Prefix(48): %q", got)
	}
	if got := keyOf(t, plain, "192.0.2.1"); got != "192.0.2.1" {
		t.Errorf("RemoteAddr without a port: %q", got)
	}
}

// Addresses of one /64 share one allowance; forged headers from an untrusted peer do not spread
// a client over many keys.
func TestIPv6GroupingLimits(t *testing.T) {
	l := limiter(t, "api 2/1m")
	c := newClock()
	m, _ := New(l, "api", Clock(c.now))
	h := m.Handler(ok)
	codes := []int{
		request(h, "[2001:db8:aa:bb::1]:1").Code,
		request(h, "[2001:db8:aa:bb::2]:1").Code,
		request(h, "[2001:db8:aa:bb:ffff::3]:1").Code,
		request(h, "[2001:db8:aa:bc::1]:1").Code,
		request(h, "203.0.113.1:1", "1.2.3.4").Code,
		request(h, "203.0.113.1:1", "5.6.7.8").Code,
		request(h, "203.0.113.1:1", "9.9.9.9").Code,
	}
	want := []int{200, 200, 429, 200, 200, 200, 429}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("codes %v, want %v", codes, want)
		}
	}
}

// A login handler records failures for the request's key; the lockout then refuses the key's
// requests until it ends, and a success forgets the failures.
func TestLoginFailures(t *testing.T) {
	l := limiter(t, "auth 100/1m\nauth lockout 3/15m for 15m")
	c := newClock()
	auth, err := New(l, "auth", Clock(c.now), TrustProxies("10.0.0.0/8"))
	if err != nil {
		t.Fatal(err)
	}
	login := auth.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("password") == "right" {
			if err := auth.Success(r); err != nil {
				t.Error(err)
			}
			io.WriteString(w, "welcome")
			return
		}
		d, err := auth.Failure(r)
		if err != nil {
			t.Error(err)
			return
		}
		if !d.Allowed {
			auth.Refuse(w, r, d)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	try := func(password string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "http://example.test/login?password="+password, nil)
		r.RemoteAddr = "10.0.0.2:3000"
		r.Header.Set("X-Forwarded-For", "198.51.100.9")
		w := httptest.NewRecorder()
		login.ServeHTTP(w, r)
		return w
	}
	if w := try("wrong"); w.Code != 401 {
		t.Fatalf("first failure: %d", w.Code)
	}
	if w := try("wrong"); w.Code != 401 {
		t.Fatalf("second failure: %d", w.Code)
	}
	if w := try("right"); w.Code != 200 {
		t.Fatalf("success: %d", w.Code)
	}
	// The success forgot both failures: three more are needed.
	try("wrong")
	try("wrong")
	w := try("wrong")
	if w.Code != 429 || w.Header().Get("Retry-After") != "900" {
		t.Fatalf("third failure: %d %v", w.Code, w.Header())
	}
	// Locked: even the right password is refused by the middleware, before the handler.
	c.advance(time.Minute)
	if w := try("right"); w.Code != 429 || w.Header().Get("Retry-After") != "840" {
		t.Fatalf("while locked: %d %v", w.Code, w.Header())
	}
	// The lock is the client's (198.51.100.9), not the proxy's.
	if w := request(auth.Handler(ok), "10.0.0.2:3000", "198.51.100.10"); w.Code != 200 {
		t.Fatalf("another client behind the same proxy: %d", w.Code)
	}
	c.advance(14 * time.Minute)
	if w := try("right"); w.Code != 200 {
		t.Fatalf("after the lock: %d", w.Code)
	}

	// Outside the middleware there is no key.
	r := httptest.NewRequest("GET", "/", nil)
	if _, err := auth.Failure(r); !errors.Is(err, ErrNotLimited) {
		t.Fatalf("failure outside: %v", err)
	}
	if err := auth.Success(r); !errors.Is(err, ErrNotLimited) {
		t.Fatalf("success outside: %v", err)
	}
	if _, err := auth.DecisionOf(r); !errors.Is(err, ErrNotLimited) {
		t.Fatalf("decision outside: %v", err)
	}
	// A category without a lockout.
	api, _ := New(limiter(t, "api 5/1m"), "api")
	var ferr error
	request(api.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ferr = api.Failure(r)
	})), "192.0.2.1:1")
	if !errors.Is(ferr, sluice.ErrNoLockout) {
		t.Fatalf("failure without a lockout: %v", ferr)
	}
}

// Through a real server on loopback, without an injected clock.
func TestServer(t *testing.T) {
	l := limiter(t, "global 2/1h")
	mw, err := Func(l, "global")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mw(ok))
	defer srv.Close()
	var codes []int
	for i := 0; i < 3; i++ {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("codes %v", codes)
	}
}
