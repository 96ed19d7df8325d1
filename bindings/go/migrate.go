package sluice

/*
#include <stdlib.h>
#include "sluice.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"unsafe"
)

// Migration is what Migrate carried into the new table (struct sluice_migration).
type Migration struct {
	Keys                   uint64 // keys carried into the new table
	LockedKeys             uint64 // of those, keys with an active lockout
	Expired                uint64 // keys left behind: nothing in their state mattered any more
	Dropped                uint64 // unlocked keys left behind for want of a free slot
	LocksOfRemovedLockouts uint64 // active locks of categories the new policy has no lockout for
	FromCapacity           uint64
	ToCapacity             uint64
	FromFormat             uint64 // the source table's format version
	InPlace                bool   // the new table replaced the source at the same path
}

// Migrate builds a table file at to for policy (empty: the source's own policy) from the table
// file at from, carrying every key's state over: every active lockout with its end and level,
// the logs of unchanged rules, of changed rules what is still exact (sluice_migrate; the
// command line's `sluice migrate FROM TO --policy FILE`). The new table appears complete;
// then from is marked superseded, which Limiter.Superseded reports to processes still
// attached to it. to equal to from migrates in place. An error (ErrMigration, ErrPolicy,
// ErrNoTable, ErrNotATable, ...) says what and where, and nothing was created or changed.
// An operator's step, not for the request path.
func Migrate(from, to, policy string) (Migration, error) {
	for _, s := range [...]struct{ what, v string }{{"source path", from}, {"new path", to}, {"policy", policy}} {
		if strings.IndexByte(s.v, 0) >= 0 {
			return Migration{}, errorWith(C.SLUICE_ERR_ARGUMENT, fmt.Sprintf("the %s contains a NUL byte", s.what))
		}
	}
	cfrom, cto := C.CString(from), C.CString(to)
	defer C.free(unsafe.Pointer(cfrom))
	defer C.free(unsafe.Pointer(cto))
	var cpolicy *C.char
	if policy != "" {
		cpolicy = C.CString(policy)
		defer C.free(unsafe.Pointer(cpolicy))
	}
	const errCap = 4096
	mem := C.malloc(C.size_t(unsafe.Sizeof(C.sluice_migration{})) + errCap)
	if mem == nil {
		return Migration{}, errorWith(C.SLUICE_ERR_IO, "out of memory")
	}
	defer C.free(mem)
	r := (*C.sluice_migration)(mem)
	*r = C.sluice_migration{}
	r.size = C.size_t(unsafe.Sizeof(*r))
	errBuf := (*C.char)(unsafe.Add(mem, unsafe.Sizeof(*r)))
	*errBuf = 0
	if rc := C.sluice_migrate(cfrom, cto, cpolicy, r, errBuf, errCap); rc != C.SLUICE_OK {
		return Migration{}, errorWith(rc, C.GoString(errBuf))
	}
	return Migration{
		Keys:                   uint64(r.keys),
		LockedKeys:             uint64(r.locked_keys),
		Expired:                uint64(r.expired),
		Dropped:                uint64(r.dropped),
		LocksOfRemovedLockouts: uint64(r.locks_of_removed_lockouts),
		FromCapacity:           uint64(r.from_capacity),
		ToCapacity:             uint64(r.to_capacity),
		FromFormat:             uint64(r.from_format),
		InPlace:                r.in_place != 0,
	}, nil
}

// Superseded returns the path of the table that replaced this limiter's table (a migration
// carried its keys there, or renamed a new table over its path), or "" while the table is
// current or lives in private memory (sluice_superseded). A process sharing a table file
// with others polls it now and then (on a timer, not per request) and, once it is not "",
// opens that path and closes this limiter.
func (l *Limiter) Superseded() (string, error) {
	h, i, err := l.enter()
	if err != nil {
		return "", err
	}
	defer l.leave(i)
	defer runtime.KeepAlive(l)
	n := C.sluice_superseded(h, nil, 0)
	for n > 0 {
		buf := C.malloc(C.size_t(n) + 1)
		if buf == nil {
			return "", errorWith(C.SLUICE_ERR_IO, "out of memory")
		}
		m := C.sluice_superseded(h, (*C.char)(buf), C.size_t(n)+1)
		if m > 0 && m <= n {
			path := C.GoStringN((*C.char)(buf), m)
			C.free(buf)
			return path, nil
		}
		C.free(buf)
		n = m // the path grew between the calls: try again with its new length
	}
	if n < 0 {
		return "", errorOf(n)
	}
	return "", nil
}
