package sluice

import (
	"sync/atomic"
	"unsafe"
)

// guard lets Close run while other goroutines are in calls, with no lock on the calls' path.
//
// A call adds one to a counter (enter), reads closed (refusing the call if set), calls the
// library, subtracts one (leave) and reads closed again; Close sets closed and reads every
// counter. sync/atomic is sequentially consistent, so either a call's read of closed comes
// after Close set it (the call backs out before touching the handle), or Close's read of that
// call's counter comes after the call added to it (Close sees the call, and the call, leaving,
// sees closed). The handle is freed by whoever reads closed and then finds every counter at
// zero — Close, or the last call out — exactly once (the freed flag).
//
// The counters are sharded, each on its own cache line, and a call picks its shard by the
// address of its goroutine's stack: goroutines on different cores then add to different lines
// and do not pass one line back and forth on every call.
type guard struct {
	closed atomic.Bool
	freed  atomic.Bool
	_      [cacheLine - 2]byte
	calls  [guardShards]struct {
		n atomic.Int64
		_ [cacheLine - 8]byte
	}
}

const (
	cacheLine   = 64
	guardBits   = 4
	guardShards = 1 << guardBits
)

// shardOf picks a shard from the address of the calling goroutine's stack (a multiplicative
// hash of it, so that neighbouring stacks spread over the shards). Any value is correct; one
// goroutine picks the same shard call after call.
func shardOf() int {
	var x byte
	p := uint64(uintptr(unsafe.Pointer(&x))) >> 11
	return int((p * 0x9e3779b97f4a7c15) >> (64 - guardBits))
}
