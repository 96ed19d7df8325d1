//go:build sluice_pkgconfig

package sluice

// With `-tags sluice_pkgconfig` the binding takes its compiler and linker flags from
// `pkg-config sluice`: for a libsluice installed system-wide with a sluice.pc beside it (the
// README shows one).

/*
#cgo pkg-config: sluice
*/
import "C"
