package sluice

/*
#include "sluice.h"

// sluice_headers of a decision given by value (for the tests that hold the Go formatter equal
// to the library's).
static int sluice_go_headers(const sluice *s, sluice_decision d, int style, char *buf,
                             size_t cap) {
	d.size = sizeof d;
	return sluice_headers(s, &d, style, buf, cap);
}
*/
import "C"

import (
	"fmt"
	"strconv"
)

// HeaderStyle chooses the response header fields of a decision. Its numbers are the library's
// (SLUICE_HEADERS_*).
type HeaderStyle int

const (
	// XRateLimit is X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset (Unix seconds),
	// and Retry-After when refused. The default.
	XRateLimit HeaderStyle = C.SLUICE_HEADERS_X_RATELIMIT
	// IETF is the IETF draft's RateLimit-Policy: "NAME";q=N;w=SECONDS and
	// RateLimit: "NAME";r=REMAINING;t=SECONDS, and Retry-After when refused.
	IETF HeaderStyle = C.SLUICE_HEADERS_IETF
)

// Header is one response header field.
type Header struct {
	Name, Value string
}

// AppendHeaders appends the response headers of d as "Name: value\r\n" lines to dst and returns
// the extended slice: byte for byte the block sluice_headers writes. d is a decision of this
// limiter (the IETF fields name its rule's category). An unknown style or status is ErrArgument
// (dst is returned unchanged). It allocates nothing when dst has room, and works after Close.
func (l *Limiter) AppendHeaders(dst []byte, d Decision, style HeaderStyle) ([]byte, error) {
	if style != XRateLimit && style != IETF {
		return dst, errorWith(C.SLUICE_ERR_ARGUMENT, fmt.Sprintf("unknown header style %d", int(style)))
	}
	if d.Status > DryRunLimited {
		return dst, errorWith(C.SLUICE_ERR_ARGUMENT, fmt.Sprintf("unknown decision status %d", uint8(d.Status)))
	}
	// A locked decision names the lockout, which is no quota: only Retry-After is sent.
	if d.Status != Locked && d.Rule >= 0 && d.Rule < len(l.rules) {
		if style == XRateLimit {
			dst = append(dst, "X-RateLimit-Limit: "...)
			dst = strconv.AppendInt(dst, int64(d.Limit), 10)
			dst = append(dst, "\r\nX-RateLimit-Remaining: "...)
			dst = strconv.AppendInt(dst, int64(d.Remaining), 10)
			dst = append(dst, "\r\nX-RateLimit-Reset: "...)
			dst = strconv.AppendInt(dst, d.Reset, 10)
			dst = append(dst, "\r\n"...)
		} else {
			name := l.rules[d.Rule]
			dst = append(dst, "RateLimit-Policy: \""...)
			dst = append(dst, name...)
			dst = append(dst, "\";q="...)
			dst = strconv.AppendInt(dst, int64(d.Limit), 10)
			dst = append(dst, ";w="...)
			dst = strconv.AppendInt(dst, ceilSecs(d.WindowMs), 10)
			dst = append(dst, "\r\nRateLimit: \""...)
			dst = append(dst, name...)
			dst = append(dst, "\";r="...)
			dst = strconv.AppendInt(dst, int64(d.Remaining), 10)
			dst = append(dst, ";t="...)
			dst = strconv.AppendInt(dst, int64(d.ResetAfter), 10)
			dst = append(dst, "\r\n"...)
		}
	}
	if !d.Allowed {
		dst = append(dst, "Retry-After: "...)
		dst = strconv.AppendInt(dst, int64(d.RetryAfter), 10)
		dst = append(dst, "\r\n"...)
	}
	return dst, nil
}

// Headers are the response headers of d as name/value pairs, in the order to send them (the
// fields of AppendHeaders).
func (l *Limiter) Headers(d Decision, style HeaderStyle) ([]Header, error) {
	var buf [192]byte
	block, err := l.AppendHeaders(buf[:0], d, style)
	if err != nil {
		return nil, err
	}
	var hs []Header
	for len(block) > 0 {
		end := indexCRLF(block)
		line := block[:end]
		block = block[end+2:]
		for i := 0; i+1 < len(line); i++ {
			if line[i] == ':' && line[i+1] == ' ' {
				hs = append(hs, Header{Name: string(line[:i]), Value: string(line[i+2:])})
				break
			}
		}
	}
	return hs, nil
}

func indexCRLF(b []byte) int {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return i
		}
	}
	return len(b) - 2
}

// ceilSecs is milliseconds in whole seconds, rounded up (0 for none).
func ceilSecs(ms int64) int64 {
	if ms <= 0 {
		return 0
	}
	s := ms / 1000
	if ms%1000 != 0 {
		s++
	}
	return s
}

// cHeaders is the library's block for d (sluice_headers), for the tests that hold AppendHeaders
// equal to it.
func (l *Limiter) cHeaders(d Decision, style HeaderStyle) (string, error) {
	h, g, err := l.enter()
	if err != nil {
		return "", err
	}
	defer l.leave(g)
	var cd C.sluice_decision
	if d.Allowed {
		cd.allowed = 1
	}
	cd.status = C.uint8_t(d.Status)
	cd.limit = C.uint32_t(d.Limit)
	cd.remaining = C.uint32_t(d.Remaining)
	cd.reset_after = C.uint32_t(d.ResetAfter)
	cd.retry_after = C.uint32_t(d.RetryAfter)
	cd.rule = C.int32_t(d.Rule)
	cd.reset = C.int64_t(d.Reset)
	cd.window_ms = C.int64_t(d.WindowMs)
	var buf [512]C.char
	n := C.sluice_go_headers(h, cd, C.int(style), &buf[0], C.size_t(len(buf)))
	if n < 0 {
		return "", errorOf(n)
	}
	if int(n) >= len(buf) {
		return "", fmt.Errorf("header block of %d bytes", int(n))
	}
	return C.GoStringN(&buf[0], n), nil
}
