// Package httplimit is net/http middleware over a sluice.Limiter: every request through it is
// checked in one category under the client's key, and refused with 429 Too Many Requests, a
// Retry-After and the rate-limit headers when the limiter says so.
//
//	auth, err := httplimit.New(limiter, "auth",
//		httplimit.TrustProxies("10.0.0.0/8"), // the load balancers in front of this server
//	)
//	mux.Handle("/login", auth.Handler(login))
//	// in login, on a wrong password:
//	auth.Failure(r)
//
// The key is the client's IP address: the peer's (the host part of Request.RemoteAddr), or,
// when the peer is a trusted proxy, the address that the trusted proxies say they received the
// request from (X-Forwarded-For, walked from the right past the trusted hops; the leftmost entry,
// which the client writes, is never believed on its own). IPv6 addresses are grouped by /64 by
// default, since a single host commonly holds a whole /64.
package httplimit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	sluice "sluice.dev/go"
)

// ErrNoClientAddress is given to the error hook when a request's client address cannot be read
// (a RemoteAddr that is no IP address, such as a Unix socket's).
var ErrNoClientAddress = errors.New("httplimit: the request has no client IP address")

// ErrNotLimited is returned by Failure, Success and Key for a request that did not pass
// through this middleware.
var ErrNotLimited = errors.New("httplimit: the request did not pass through this middleware")

// Middleware checks every request in one category of a sluice.Limiter. Make it with New; it is
// safe for concurrent use.
type Middleware struct {
	limiter  *sluice.Limiter
	category sluice.Category
	name     string
	cfg      config
}

type config struct {
	trusted      []netip.Prefix
	v6bits       int
	style        sluice.HeaderStyle
	headers      bool // send the headers at all
	onAllowed    bool // send them on admitted requests too
	clock        func() time.Time
	key          func(*http.Request) (string, error)
	onLimited    func(http.ResponseWriter, *http.Request, sluice.Decision)
	onError      func(http.ResponseWriter, *http.Request, error) bool
	optionErrors []error
}

// Option configures a Middleware.
type Option func(*config)

// TrustProxies names the proxies (addresses or CIDR prefixes, e.g. "10.0.0.0/8", "::1") whose
// X-Forwarded-For is believed. Without it X-Forwarded-For is ignored and the key is the peer's
// address. Name every proxy that can reach this server directly, and only those: a client that
// can connect from a trusted address can claim any address.
func TrustProxies(prefixes ...string) Option {
	return func(c *config) {
		for _, p := range prefixes {
			if pr, err := netip.ParsePrefix(p); err == nil {
				if pr.Addr().Is4In6() && pr.Bits() >= 96 { // addresses are compared unmapped
					pr = netip.PrefixFrom(pr.Addr().Unmap(), pr.Bits()-96)
				}
				c.trusted = append(c.trusted, pr.Masked())
			} else if a, err := netip.ParseAddr(p); err == nil {
				a = a.WithZone("").Unmap()
				c.trusted = append(c.trusted, netip.PrefixFrom(a, a.BitLen()))
			} else {
				c.optionErrors = append(c.optionErrors, fmt.Errorf("TrustProxies: %q is neither an IP address nor a CIDR prefix", p))
			}
		}
	}
}

// IPv6Prefix groups IPv6 clients by their first bits bits (1 to 128): all addresses of one /64
// share one key with the default of 64; 128 keys each address alone. IPv4 addresses (and
// IPv4-mapped IPv6 ones) are always keyed alone.
func IPv6Prefix(bits int) Option {
	return func(c *config) {
		if bits < 1 || bits > 128 {
			c.optionErrors = append(c.optionErrors, fmt.Errorf("IPv6Prefix: %d is not from 1 to 128", bits))
			return
		}
		c.v6bits = bits
	}
}

// Headers chooses the style of the rate-limit headers (sluice.XRateLimit by default, or
// sluice.IETF); onAllowed says whether admitted responses carry them too (the default) or only
// refusals.
func Headers(style sluice.HeaderStyle, onAllowed bool) Option {
	return func(c *config) {
		if style != sluice.XRateLimit && style != sluice.IETF {
			c.optionErrors = append(c.optionErrors, fmt.Errorf("Headers: unknown style %d", int(style)))
		}
		c.style, c.headers, c.onAllowed = style, true, onAllowed
	}
}

// NoHeaders sends no rate-limit headers, not even on a refusal (which still has Retry-After).
func NoHeaders() Option {
	return func(c *config) { c.headers, c.onAllowed = false, false }
}

// Clock gives the time of each check (tests inject one); without it the limiter's clock is used.
func Clock(now func() time.Time) Option {
	return func(c *config) { c.clock = now }
}

// Key replaces the client-address key with one of the caller's (an account name, an API key,
// or the address joined with either, from ClientIP). An error goes to the error hook.
func Key(f func(*http.Request) (string, error)) Option {
	return func(c *config) { c.key = f }
}

// OnLimited replaces the refusal. It is called, instead of the next handler, for a request the
// limiter refused; the headers are already set on w (unless NoHeaders), Retry-After included.
// The default writes 429 Too Many Requests with a short text body.
func OnLimited(f func(w http.ResponseWriter, r *http.Request, d sluice.Decision)) Option {
	return func(c *config) { c.onLimited = f }
}

// OnError is called when the limiter could not decide (no client address, a key the limiter
// refuses, a closed limiter). It writes a response and returns false, or returns true to serve
// the request anyway (failing open). The default answers 500 and does not serve it.
func OnError(f func(w http.ResponseWriter, r *http.Request, err error) (serve bool)) Option {
	return func(c *config) { c.onError = f }
}

// New makes a middleware that checks every request in category of l.
func New(l *sluice.Limiter, category string, opts ...Option) (*Middleware, error) {
	if l == nil {
		return nil, errors.New("httplimit: a nil limiter")
	}
	cat, err := l.Category(category)
	if err != nil {
		return nil, err
	}
	m := &Middleware{limiter: l, category: cat, name: category}
	m.cfg = config{v6bits: 64, style: sluice.XRateLimit, headers: true, onAllowed: true}
	for _, o := range opts {
		o(&m.cfg)
	}
	if len(m.cfg.optionErrors) > 0 {
		return nil, errors.Join(m.cfg.optionErrors...)
	}
	if m.cfg.onLimited == nil {
		m.cfg.onLimited = func(w http.ResponseWriter, _ *http.Request, _ sluice.Decision) {
			http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
		}
	}
	if m.cfg.onError == nil {
		m.cfg.onError = func(w http.ResponseWriter, _ *http.Request, _ error) bool {
			http.Error(w, "rate limiter error", http.StatusInternalServerError)
			return false
		}
	}
	return m, nil
}

// Func is New's middleware as a function, for routers that take one; an error from New
// (an unknown category, a bad option) is returned here.
func Func(l *sluice.Limiter, category string, opts ...Option) (func(http.Handler) http.Handler, error) {
	m, err := New(l, category, opts...)
	if err != nil {
		return nil, err
	}
	return m.Handler, nil
}

// state is what a request that passed carries for the handler: its key and decision.
type state struct {
	key      string
	decision sluice.Decision
}

// Handler wraps next: each request is checked; an admitted one goes on to next (with its key in
// the context, for Failure and Success), a refused one gets the refusal.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := m.keyOf(r)
		if err != nil {
			if m.cfg.onError(w, r, err) {
				next.ServeHTTP(w, r)
			}
			return
		}
		var d sluice.Decision
		if m.cfg.clock != nil {
			d, err = m.limiter.CheckAt(key, m.category, m.cfg.clock().UnixMilli())
		} else {
			d, err = m.limiter.Check(key, m.category)
		}
		if err != nil {
			if m.cfg.onError(w, r, err) {
				next.ServeHTTP(w, r)
			}
			return
		}
		if !d.Allowed {
			m.Refuse(w, r, d)
			return
		}
		if m.cfg.onAllowed {
			m.setHeaders(w, d)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), m, &state{key: key, decision: d})))
	})
}

// Refuse writes the refusal of d: the headers (per the options) and Retry-After, then the
// OnLimited hook or 429. A login handler may call it after Failure locked the key.
func (m *Middleware) Refuse(w http.ResponseWriter, r *http.Request, d sluice.Decision) {
	if m.cfg.headers {
		m.setHeaders(w, d)
	} else if !d.Allowed {
		w.Header().Set("Retry-After", strconv.Itoa(d.RetryAfter))
	}
	m.cfg.onLimited(w, r, d)
}

func (m *Middleware) setHeaders(w http.ResponseWriter, d sluice.Decision) {
	hs, err := m.limiter.Headers(d, m.cfg.style)
	if err != nil {
		return // a style New checked and a decision of the library: cannot happen
	}
	h := w.Header()
	for _, f := range hs {
		h.Set(f.Name, f.Value)
	}
}

func (m *Middleware) stateOf(r *http.Request) (*state, error) {
	s, ok := r.Context().Value(m).(*state)
	if !ok {
		return nil, ErrNotLimited
	}
	return s, nil
}

// Failure records a failed attempt (a wrong password) of the request's key in the middleware's
// category, which needs a lockout in the policy (else sluice.ErrNoLockout). The decision is the
// key's state after it: Locked (then Refuse answers it) or Passed with the failures left.
func (m *Middleware) Failure(r *http.Request) (sluice.Decision, error) {
	s, err := m.stateOf(r)
	if err != nil {
		return sluice.Decision{}, err
	}
	if m.cfg.clock != nil {
		return m.limiter.FailureAt(s.key, m.category, m.cfg.clock().UnixMilli())
	}
	return m.limiter.Failure(s.key, m.category)
}

// Success records a successful attempt of the request's key: its failures are forgotten (the
// lockout level is kept).
func (m *Middleware) Success(r *http.Request) error {
	s, err := m.stateOf(r)
	if err != nil {
		return err
	}
	if m.cfg.clock != nil {
		return m.limiter.SuccessAt(s.key, m.category, m.cfg.clock().UnixMilli())
	}
	return m.limiter.Success(s.key, m.category)
}

// KeyOf is the key this middleware checked the request under.
func (m *Middleware) KeyOf(r *http.Request) (string, error) {
	s, err := m.stateOf(r)
	if err != nil {
		return "", err
	}
	return s.key, nil
}

// DecisionOf is the decision that admitted the request.
func (m *Middleware) DecisionOf(r *http.Request) (sluice.Decision, error) {
	s, err := m.stateOf(r)
	if err != nil {
		return sluice.Decision{}, err
	}
	return s.decision, nil
}

func (m *Middleware) keyOf(r *http.Request) (string, error) {
	if m.cfg.key != nil {
		return m.cfg.key(r)
	}
	a, err := m.ClientIP(r)
	if err != nil {
		return "", err
	}
	return m.keyOfAddr(a), nil
}

// keyOfAddr is an IPv4 address as text, an IPv6 one as its group's prefix ("2001:db8:1:2::/64")
// or, with IPv6Prefix(128), itself.
func (m *Middleware) keyOfAddr(a netip.Addr) string {
	if a.Is4() || m.cfg.v6bits == 128 {
		return a.String()
	}
	p, _ := a.Prefix(m.cfg.v6bits)
	return p.String()
}

// ClientIP is the request's client address: the peer's, or when the peer is a trusted proxy,
// the first address from the right of X-Forwarded-For (all its lines, in order) that is not a
// trusted proxy. If an entry cannot be read as an address, the trusted hop that reported it is
// taken as the client: nothing to the left of it can be believed.
func (m *Middleware) ClientIP(r *http.Request) (netip.Addr, error) {
	peer, ok := parseAddr(r.RemoteAddr)
	if !ok {
		return netip.Addr{}, fmt.Errorf("%w: RemoteAddr %q", ErrNoClientAddress, r.RemoteAddr)
	}
	if !m.trusted(peer) {
		return peer, nil
	}
	lines := r.Header.Values("X-Forwarded-For")
	client := peer
	for i := len(lines) - 1; i >= 0; i-- {
		entries := lines[i]
		for entries != "" {
			var entry string
			if j := strings.LastIndexByte(entries, ','); j >= 0 {
				entry, entries = entries[j+1:], entries[:j]
			} else {
				entry, entries = entries, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, ok := parseAddr(entry)
			if !ok {
				return client, nil
			}
			client = a
			if !m.trusted(a) {
				return a, nil
			}
		}
	}
	// Every hop is a trusted proxy: the request came from the leftmost of them.
	return client, nil
}

func (m *Middleware) trusted(a netip.Addr) bool {
	for _, p := range m.cfg.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseAddr reads "1.2.3.4", "1.2.3.4:80", "::1", "[::1]:80" or "[::1]", without a zone and
// with IPv4-mapped IPv6 addresses as IPv4.
func parseAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap(), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone("").Unmap(), true
	}
	return netip.Addr{}, false
}
