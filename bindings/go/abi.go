package sluice

/*
#include "sluice.h"
*/
import "C"

import (
	"reflect"
	"unsafe"
)

// The header's structs as cgo lays them out (from the C compiler's own view of them), and
// their sizes as the C compiler gives them: for the test that holds the binding to sluice.h.
var (
	cStructs = map[string]reflect.Type{
		"sluice_open_options":   reflect.TypeOf(C.sluice_open_options{}),
		"sluice_decision":       reflect.TypeOf(C.sluice_decision{}),
		"sluice_request":        reflect.TypeOf(C.sluice_request{}),
		"sluice_packed_request": reflect.TypeOf(C.sluice_packed_request{}),
		"sluice_table_stats":    reflect.TypeOf(C.sluice_table_stats{}),
		"sluice_rule_counts":    reflect.TypeOf(C.sluice_rule_counts{}),
		"sluice_category_info":  reflect.TypeOf(C.sluice_category_info{}),
		"sluice_rule_info":      reflect.TypeOf(C.sluice_rule_info{}),
		"sluice_migration":      reflect.TypeOf(C.sluice_migration{}),
	}
	cSizeof = map[string]uintptr{
		"sluice_open_options":   C.sizeof_sluice_open_options,
		"sluice_decision":       C.sizeof_sluice_decision,
		"sluice_request":        C.sizeof_sluice_request,
		"sluice_packed_request": C.sizeof_sluice_packed_request,
		"sluice_table_stats":    C.sizeof_sluice_table_stats,
		"sluice_rule_counts":    C.sizeof_sluice_rule_counts,
		"sluice_category_info":  C.sizeof_sluice_category_info,
		"sluice_rule_info":      C.sizeof_sluice_rule_info,
		"sluice_migration":      C.sizeof_sluice_migration,
	}
)

// The SLUICE_RULE_* values the binding reads sluice_rule_info with (describe), as cgo sees them.
var cRuleConstants = map[string]int64{
	"SLUICE_RULE_WINDOW":  C.SLUICE_RULE_WINDOW,
	"SLUICE_RULE_LOCKOUT": C.SLUICE_RULE_LOCKOUT,
	"SLUICE_RULE_STRICT":  C.SLUICE_RULE_STRICT,
	"SLUICE_RULE_DRY_RUN": C.SLUICE_RULE_DRY_RUN,
}

// decisionAt is decisionOf of a sluice_decision at p (the drift test fills one field by field).
func decisionAt(p unsafe.Pointer) Decision { return decisionOf((*C.sluice_decision)(p)) }
