package sluice

/*
#include "sluice.h"
*/
import "C"

import (
	"errors"
	"strconv"
	"strings"
)

// Error is an error reported by the library: one of its return codes and a message saying what
// was wrong (for Open, the library's own text: the line and column of a bad policy, the path and
// reason of a file that cannot be used). Match it with errors.Is against the sentinels below,
// which compare by Code only:
//
//	if errors.Is(err, sluice.ErrPolicy) { ... }
type Error struct {
	// Code is the library's return code (SLUICE_ERR_* in sluice.h): negative, never renumbered.
	Code int
	// Message says what was wrong.
	Message string
}

func (e *Error) Error() string { return "sluice: " + e.Message }

// Is reports whether target is an *Error with the same Code, so that errors.Is(err,
// sluice.ErrPolicy) holds for every policy error whatever its message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && t.Code == e.Code
}

// sentinel makes the sentinel of a return code, with the library's description of it.
func sentinel(code C.int) *Error {
	return &Error{Code: int(code), Message: C.GoString(C.sluice_strerror(code))}
}

// One sentinel per return code of the library (sluice.h), matched with errors.Is. Each carries
// the library's description of its code (sluice_strerror).
var (
	ErrNull            = sentinel(C.SLUICE_ERR_NULL)             // a NULL pointer reached the library
	ErrUTF8            = sentinel(C.SLUICE_ERR_UTF8)             // a string was not valid UTF-8
	ErrEmptyKey        = sentinel(C.SLUICE_ERR_EMPTY_KEY)        // the key was empty
	ErrKeyTooLong      = sentinel(C.SLUICE_ERR_KEY_TOO_LONG)     // the key was over 65535 bytes
	ErrTime            = sentinel(C.SLUICE_ERR_TIME)             // nowMs outside 0 ..= 2^42-2
	ErrArgument        = sentinel(C.SLUICE_ERR_ARGUMENT)         // an argument out of range
	ErrSize            = sentinel(C.SLUICE_ERR_SIZE)             // a struct's size field (a binding bug)
	ErrPolicy          = sentinel(C.SLUICE_ERR_POLICY)           // the policy does not parse
	ErrPolicyTooLarge  = sentinel(C.SLUICE_ERR_POLICY_TOO_LARGE) // the policy cannot be laid out
	ErrUnknownCategory = sentinel(C.SLUICE_ERR_UNKNOWN_CATEGORY) // a category the policy lacks
	ErrNoLockout       = sentinel(C.SLUICE_ERR_NO_LOCKOUT)       // Failure/Success without a lockout
	ErrIO              = sentinel(C.SLUICE_ERR_IO)               // the OS refused memory or a file
	ErrUnsupported     = sentinel(C.SLUICE_ERR_UNSUPPORTED)      // not supported by this library
	ErrNotATable       = sentinel(C.SLUICE_ERR_NOT_A_TABLE)      // the file is not a sluice table
	ErrFormatVersion   = sentinel(C.SLUICE_ERR_FORMAT_VERSION)   // a table format this library does not read
	ErrPolicyMismatch  = sentinel(C.SLUICE_ERR_POLICY_MISMATCH)  // the file was made for another policy
	ErrNoTable         = sentinel(C.SLUICE_ERR_NO_TABLE)         // no file, and no policy to create one
	ErrReadOnly        = sentinel(C.SLUICE_ERR_READ_ONLY)        // a recording call on a read-only table
	ErrMigration       = sentinel(C.SLUICE_ERR_MIGRATION)        // a migration cannot be made; nothing was created
	ErrPanic           = sentinel(C.SLUICE_ERR_PANIC)            // a bug: the library caught a panic
)

// ErrClosed is returned by every call on a Limiter after Close. It is the binding's own (the
// library never sees a closed handle), so it is not an *Error.
var ErrClosed = errors.New("sluice: the limiter is closed")

// sentinels by code, for errorOf.
var byCode = func() map[int]*Error {
	m := make(map[int]*Error)
	for _, e := range []*Error{
		ErrNull, ErrUTF8, ErrEmptyKey, ErrKeyTooLong, ErrTime, ErrArgument, ErrSize,
		ErrPolicy, ErrPolicyTooLarge, ErrUnknownCategory, ErrNoLockout, ErrIO,
		ErrUnsupported, ErrNotATable, ErrFormatVersion, ErrPolicyMismatch, ErrNoTable,
		ErrReadOnly, ErrMigration, ErrPanic,
	} {
		m[e.Code] = e
	}
	return m
}()

// errorOf is the error of a negative return code: its sentinel (no allocation on the request
// path), or for a code this binding does not know (a newer library) a new *Error.
func errorOf(rc C.int) error {
	if e, ok := byCode[int(rc)]; ok {
		return e
	}
	return &Error{Code: int(rc), Message: C.GoString(C.sluice_strerror(rc)) + " (code " + strconv.Itoa(int(rc)) + ")"}
}

// errorWith is the error of a negative return code with a message of its own.
func errorWith(rc C.int, message string) error {
	if message == "" {
		return errorOf(rc)
	}
	return &Error{Code: int(rc), Message: message}
}

// BatchError is the error of a batch with an invalid request: which one, and why. Nothing of the
// batch was recorded. errors.Is(err, sluice.ErrEmptyKey) and the like see through it.
type BatchError struct {
	Index int   // the first invalid request's index in the batch
	Err   error // why it is invalid: one of the sentinels
}

func (e *BatchError) Error() string {
	return "sluice: batch request " + strconv.Itoa(e.Index) + ": " + strings.TrimPrefix(e.Err.Error(), "sluice: ")
}

func (e *BatchError) Unwrap() error { return e.Err }
