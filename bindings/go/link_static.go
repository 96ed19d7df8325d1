//go:build !sluice_shared && !sluice_pkgconfig

package sluice

// The default build links the static library that `cargo build --release` makes in the
// repository's target/release: the resulting binary needs no libsluice at run time.

/*
#cgo LDFLAGS: ${SRCDIR}/../../target/release/libsluice.a -lm -ldl -lpthread
*/
import "C"
