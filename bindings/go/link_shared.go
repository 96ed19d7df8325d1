//go:build sluice_shared && !sluice_pkgconfig

package sluice

// With `-tags sluice_shared` the binding links target/release/libsluice.so instead, and
// records that directory as the run-time search path. For a libsluice installed elsewhere, set
// CGO_LDFLAGS (e.g. "-L/usr/local/lib -lsluice") and CGO_CFLAGS to its include directory.

/*
#cgo LDFLAGS: -L${SRCDIR}/../../target/release -Wl,-rpath,${SRCDIR}/../../target/release -lsluice
*/
import "C"
