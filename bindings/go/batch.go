package sluice

/*
#include "sluice.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Batch is a list of requests checked in one call (sluice_check_packed): the keys are copied
// back to back into one buffer, so the batch holds no pointer the library would see. Reuse a
// Batch (Reset, then Add again) to check without allocating. A Batch is not safe for concurrent
// use; one Limiter can check many Batches at once.
type Batch struct {
	keys      []byte
	reqs      []C.sluice_packed_request
	out       []C.sluice_decision
	decisions []Decision
	bad       C.size_t // the library's index of an invalid request
}

// Add appends a request of key in cat.
func (b *Batch) Add(key string, cat Category) {
	b.reqs = append(b.reqs, C.sluice_packed_request{
		size:       C.size_t(unsafe.Sizeof(C.sluice_packed_request{})),
		key_offset: C.uint64_t(len(b.keys)),
		key_len:    C.uint32_t(min(len(key), math32)),
		category:   C.int32_t(cat),
	})
	b.keys = append(b.keys, key...)
}

// math32 caps a key length at what the request's field holds; the library refuses anything
// past MaxKeyLen anyway.
const math32 = 1<<32 - 1

// Len is the number of requests added since the last Reset.
func (b *Batch) Len() int { return len(b.reqs) }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.keys = b.keys[:0]
	b.reqs = b.reqs[:0]
	b.decisions = b.decisions[:0]
}

// CheckBatch checks every request of b now, in order, as if each were a Check, and returns their
// decisions (b's own slice: valid until b is next used). Every request is validated first: an
// invalid one (empty or too long key, unknown category) is a *BatchError naming it, and nothing
// of the batch is recorded.
func (l *Limiter) CheckBatch(b *Batch) ([]Decision, error) { return l.checkBatch(b, now) }

// CheckBatchAt is CheckBatch at nowMs, Unix milliseconds.
func (l *Limiter) CheckBatchAt(b *Batch, nowMs int64) ([]Decision, error) {
	if nowMs == now {
		return nil, ErrTime
	}
	return l.checkBatch(b, nowMs)
}

func (l *Limiter) checkBatch(b *Batch, nowMs int64) ([]Decision, error) {
	n := len(b.reqs)
	if cap(b.out) < n {
		b.out = make([]C.sluice_decision, n)
	}
	b.out = b.out[:n]
	b.decisions = b.decisions[:0]
	if n == 0 {
		_, g, err := l.enter()
		if err != nil {
			return nil, err
		}
		l.leave(g)
		return b.decisions, nil
	}
	b.out[0].size = C.size_t(unsafe.Sizeof(C.sluice_decision{}))
	keys := unsafe.Pointer(&zeroByte)
	if len(b.keys) > 0 {
		keys = unsafe.Pointer(&b.keys[0])
	}
	h, g, err := l.enter()
	if err != nil {
		return nil, err
	}
	b.bad = ^C.size_t(0) // written only for an invalid request
	rc := C.sluice_check_packed(h, keys, C.size_t(len(b.keys)), &b.reqs[0], C.size_t(n),
		C.int64_t(nowMs), &b.out[0], &b.bad)
	l.leave(g)
	runtime.KeepAlive(b)
	if rc != C.SLUICE_OK {
		err := errorOf(rc)
		if b.bad < C.size_t(n) {
			return nil, &BatchError{Index: int(b.bad), Err: err}
		}
		return nil, err
	}
	for i := range b.out {
		b.decisions = append(b.decisions, decisionOf(&b.out[i]))
	}
	return b.decisions, nil
}
