package sluice

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// The drift test: sluice.h is read as text, and everything in it — every function, every
// SLUICE_* constant, every struct and field — must be mirrored by this binding (or listed below
// as deliberately left out, with the reason). A header that gains a function, a code, a status,
// a flag or a field makes this test fail until the binding follows.

const headerPath = "../../include/sluice.h"

func readHeader(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(headerPath)
	if err != nil {
		t.Fatalf("reading the header: %v", err)
	}
	return string(b)
}

// withoutComments drops `//` line comments and `/* */` blocks, keeping the lines.
func withoutComments(h string) string {
	h = regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllStringFunc(h, func(c string) string {
		return strings.Repeat("\n", strings.Count(c, "\n"))
	})
	return regexp.MustCompile(`//[^\n]*`).ReplaceAllString(h, "")
}

// Functions the binding does not call, and why.
var unboundFunctions = map[string]string{
	"sluice_open":           "Open is sluice_open_with with the default options, which is sluice_open",
	"sluice_open_flags":     "kept by the library for callers of 0.1; sluice_open_with has every option",
	"sluice_check_batch":    "its requests hold key pointers, which cgo forbids in Go memory; Batch uses sluice_check_packed",
	"sluice_python_needs":   "builds CPython methods for the Python package; nothing for Go",
	"sluice_python_methods": "builds CPython methods for the Python package; nothing for Go",
}

func TestDriftFunctions(t *testing.T) {
	h := withoutComments(readHeader(t))
	decl := regexp.MustCompile(`(?m)^[a-z][a-z0-9_ ]*[ *](sluice_[a-z0-9_]+)\(`)
	var fns []string
	for _, m := range decl.FindAllStringSubmatch(h, -1) {
		fns = append(fns, m[1])
	}
	if len(fns) < 20 {
		t.Fatalf("found only %d functions in %s: the parser no longer reads the header", len(fns), headerPath)
	}
	src := bindingSource(t)
	for _, fn := range fns {
		used := regexp.MustCompile(`\b` + fn + `\(`).MatchString(src)
		_, unbound := unboundFunctions[fn]
		switch {
		case used && unbound:
			t.Errorf("%s is called by the binding but listed as unbound", fn)
		case !used && !unbound:
			t.Errorf("sluice.h declares %s, which the binding does not call: bind it, or list it in unboundFunctions with the reason", fn)
		}
	}
	for fn := range unboundFunctions {
		if !contains(fns, fn) {
			t.Errorf("unboundFunctions lists %s, which sluice.h no longer declares", fn)
		}
	}
}

// bindingSource is the text of the binding's non-test Go files without their Go comments (the
// cgo preambles, which hold C code, are kept).
func bindingSource(t *testing.T) string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(text), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue
			}
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestDriftConstants(t *testing.T) {
	h := withoutComments(readHeader(t))
	parts := strings.Split(HeaderVersion, ".")
	version := func(i int) int64 { n, _ := strconv.ParseInt(parts[i], 10, 64); return n }
	// Each constant of the header and what mirrors it in the binding: a number, or text that
	// the header's value must be.
	mirror := map[string]any{
		"SLUICE_VERSION":       strconv.Quote(HeaderVersion),
		"SLUICE_VERSION_MAJOR": version(0),
		"SLUICE_VERSION_MINOR": version(1),
		"SLUICE_VERSION_PATCH": version(2),
		"SLUICE_OK":            int64(0),

		"SLUICE_ERR_NULL":             int64(ErrNull.Code),
		"SLUICE_ERR_UTF8":             int64(ErrUTF8.Code),
		"SLUICE_ERR_EMPTY_KEY":        int64(ErrEmptyKey.Code),
		"SLUICE_ERR_KEY_TOO_LONG":     int64(ErrKeyTooLong.Code),
		"SLUICE_ERR_TIME":             int64(ErrTime.Code),
		"SLUICE_ERR_ARGUMENT":         int64(ErrArgument.Code),
		"SLUICE_ERR_SIZE":             int64(ErrSize.Code),
		"SLUICE_ERR_POLICY":           int64(ErrPolicy.Code),
		"SLUICE_ERR_POLICY_TOO_LARGE": int64(ErrPolicyTooLarge.Code),
		"SLUICE_ERR_UNKNOWN_CATEGORY": int64(ErrUnknownCategory.Code),
		"SLUICE_ERR_NO_LOCKOUT":       int64(ErrNoLockout.Code),
		"SLUICE_ERR_IO":               int64(ErrIO.Code),
		"SLUICE_ERR_UNSUPPORTED":      int64(ErrUnsupported.Code),
		"SLUICE_ERR_NOT_A_TABLE":      int64(ErrNotATable.Code),
		"SLUICE_ERR_FORMAT_VERSION":   int64(ErrFormatVersion.Code),
		"SLUICE_ERR_POLICY_MISMATCH":  int64(ErrPolicyMismatch.Code),
		"SLUICE_ERR_NO_TABLE":         int64(ErrNoTable.Code),
		"SLUICE_ERR_READ_ONLY":        int64(ErrReadOnly.Code),
		"SLUICE_ERR_MIGRATION":        int64(ErrMigration.Code),
		"SLUICE_ERR_PANIC":            int64(ErrPanic.Code),

		"SLUICE_NOW": "INT64_MIN",

		"SLUICE_OPEN_HUGE_PAGES": int64(openFlags(Options{HugePages: true})),
		"SLUICE_OPEN_READ_ONLY":  int64(openFlags(Options{ReadOnly: true})),

		"SLUICE_STATUS_PASSED":          int64(Passed),
		"SLUICE_STATUS_LIMITED":         int64(Limited),
		"SLUICE_STATUS_LOCKED":          int64(Locked),
		"SLUICE_STATUS_FULL":            int64(Full),
		"SLUICE_STATUS_DRY_RUN_LIMITED": int64(DryRunLimited),

		"SLUICE_HEADERS_X_RATELIMIT": int64(XRateLimit),
		"SLUICE_HEADERS_IETF":        int64(IETF),

		// Read into Rule by describe.
		"SLUICE_RULE_WINDOW":  cRuleConstants["SLUICE_RULE_WINDOW"],
		"SLUICE_RULE_LOCKOUT": cRuleConstants["SLUICE_RULE_LOCKOUT"],
		"SLUICE_RULE_STRICT":  cRuleConstants["SLUICE_RULE_STRICT"],
		"SLUICE_RULE_DRY_RUN": cRuleConstants["SLUICE_RULE_DRY_RUN"],
	}
	if now != math.MinInt64 {
		t.Errorf("the binding's SLUICE_NOW is %d", int64(now))
	}
	def := regexp.MustCompile(`(?m)^#define (SLUICE_[A-Z0-9_]+)[ \t]+(\S.*?)\s*$`)
	found := map[string]bool{}
	for _, m := range def.FindAllStringSubmatch(h, -1) {
		name, value := m[1], m[2]
		found[name] = true
		want, ok := mirror[name]
		if !ok {
			t.Errorf("sluice.h defines %s %s, which the binding does not mirror", name, value)
			continue
		}
		switch w := want.(type) {
		case string:
			if value != w {
				t.Errorf("%s is %s in sluice.h, %s in the binding", name, value, w)
			}
		case int64:
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n != w {
				t.Errorf("%s is %s in sluice.h, %d in the binding", name, value, w)
			}
		}
	}
	if len(found) < 30 {
		t.Fatalf("found only %d constants: the parser no longer reads the header", len(found))
	}
	for name := range mirror {
		if !found[name] {
			t.Errorf("the binding mirrors %s, which sluice.h no longer defines", name)
		}
	}
	// Every error code has its sentinel, known to errorOf.
	for name := range found {
		if strings.HasPrefix(name, "SLUICE_ERR_") {
			code, ok := mirror[name].(int64)
			if !ok {
				continue // reported above
			}
			if e, ok := byCode[int(code)]; !ok || int64(e.Code) != code {
				t.Errorf("errorOf does not know %s (%d)", name, code)
			}
		}
	}
	if len(byCode) != countPrefix(found, "SLUICE_ERR_") {
		t.Errorf("%d sentinels for %d error codes", len(byCode), countPrefix(found, "SLUICE_ERR_"))
	}
}

func countPrefix(m map[string]bool, p string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, p) {
			n++
		}
	}
	return n
}

// Each field of each struct of the header and the Go field that mirrors it ("-": the field is
// the binding's own business, such as `size`, or the struct is not bound at all).
var structMirror = map[string]map[string]string{
	"sluice_open_options": {"size": "-", "flags": "Options.ReadOnly Options.HugePages", "mode": "Options.Mode"},
	"sluice_decision": {
		"size": "-", "allowed": "Decision.Allowed", "status": "Decision.Status", "limit": "Decision.Limit",
		"remaining": "Decision.Remaining", "reset_after": "Decision.ResetAfter",
		"retry_after": "Decision.RetryAfter", "rule": "Decision.Rule", "reset": "Decision.Reset",
		"window_ms": "Decision.WindowMs",
	},
	// sluice_check_batch is not bound (unboundFunctions).
	"sluice_request":        {"size": "-", "category": "-", "key": "-", "key_len": "-"},
	"sluice_packed_request": {"size": "-", "key_offset": "-", "key_len": "-", "category": "-"},
	"sluice_table_stats": {
		"size": "-", "capacity": "Stats.Capacity", "live_keys": "Stats.LiveKeys",
		"locked_keys": "Stats.LockedKeys", "installing": "Stats.Installing",
		"evictions": "Stats.Evictions", "reclaimed": "Stats.Reclaimed", "full": "Stats.Full",
		"bytes_per_key": "Stats.BytesPerKey", "rules": "Stats.Rules", "categories": "Stats.Categories",
	},
	"sluice_rule_counts": {
		"size": "-", "passed": "RuleCounts.Passed", "limited": "RuleCounts.Limited",
		"dry_run_limited": "RuleCounts.DryRunLimited", "locked": "RuleCounts.Locked",
		"lockouts": "RuleCounts.Lockouts",
	},
	"sluice_category_info": {"size": "-", "name": "-", "rules": "-", "lockout_rule": "-"},
	"sluice_migration": {
		"size": "-", "keys": "Migration.Keys", "locked_keys": "Migration.LockedKeys",
		"expired": "Migration.Expired", "dropped": "Migration.Dropped",
		"locks_of_removed_lockouts": "Migration.LocksOfRemovedLockouts",
		"from_capacity":             "Migration.FromCapacity", "to_capacity": "Migration.ToCapacity",
		"from_format": "Migration.FromFormat", "in_place": "Migration.InPlace",
	},
	"sluice_rule_info": {
		"size": "-", "category_name": "Rule.Category", "category": "-", "kind": "Rule.Lockout",
		"flags": "Rule.Strict Rule.DryRun", "limit": "Rule.Limit", "line": "Rule.Line",
		"window_ms": "Rule.WindowMs", "ban_ms": "Rule.BanMs", "max_ban_ms": "Rule.MaxBanMs",
	},
}

var goTypes = map[string]reflect.Type{
	"Options":    reflect.TypeOf(Options{}),
	"Decision":   reflect.TypeOf(Decision{}),
	"Stats":      reflect.TypeOf(Stats{}),
	"RuleCounts": reflect.TypeOf(RuleCounts{}),
	"Rule":       reflect.TypeOf(Rule{}),
	"Migration":  reflect.TypeOf(Migration{}),
}

// cField is a field as the header declares it.
type cField struct {
	name, ctype string
}

// The size and signedness of the header's field types.
var cTypeSize = map[string]uintptr{
	"size_t": 8, "uint8_t": 1, "uint32_t": 4, "int32_t": 4, "int64_t": 8, "uint64_t": 8,
	"int": 4, "const void *": 8, "uint16_t": 2, "const char *": 8,
}

func headerStructs(t *testing.T) map[string][]cField {
	h := withoutComments(readHeader(t))
	structs := map[string][]cField{}
	body := regexp.MustCompile(`(?s)typedef struct (sluice_[a-z0-9_]+) \{(.*?)\} (sluice_[a-z0-9_]+);`)
	field := regexp.MustCompile(`^\s*((?:const )?[a-z0-9_]+(?: \*)?)\s*\b([a-z0-9_]+);\s*$`)
	for _, m := range body.FindAllStringSubmatch(h, -1) {
		if m[1] != m[3] {
			t.Errorf("typedef struct %s is named %s", m[1], m[3])
		}
		var fs []cField
		for _, line := range strings.Split(m[2], "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			f := field.FindStringSubmatch(line)
			if f == nil {
				t.Errorf("struct %s: cannot read the field %q", m[1], strings.TrimSpace(line))
				continue
			}
			fs = append(fs, cField{f[2], strings.TrimSpace(f[1])})
		}
		structs[m[1]] = fs
	}
	if len(structs) < 6 {
		t.Fatalf("found only %d structs: the parser no longer reads the header", len(structs))
	}
	return structs
}

func TestDriftStructs(t *testing.T) {
	structs := headerStructs(t)
	for name, fields := range structs {
		mirror, ok := structMirror[name]
		if !ok {
			t.Errorf("sluice.h declares struct %s, which the binding does not mirror", name)
			continue
		}
		ct, ok := cStructs[name]
		if !ok {
			t.Errorf("struct %s has no cgo type in cStructs", name)
			continue
		}
		// The layout cgo compiled against: the header's fields in order, each of its type's
		// size, and the C compiler's sizeof.
		var cgoFields []reflect.StructField
		for i := 0; i < ct.NumField(); i++ {
			if f := ct.Field(i); f.Name != "_" {
				cgoFields = append(cgoFields, f)
			}
		}
		if len(cgoFields) != len(fields) {
			t.Errorf("struct %s: %d fields in the header, %d in cgo's type", name, len(fields), len(cgoFields))
			continue
		}
		for i, f := range fields {
			if cgoFields[i].Name != f.name {
				t.Errorf("struct %s field %d: %s in the header, %s in cgo's type", name, i, f.name, cgoFields[i].Name)
			}
			if size, ok := cTypeSize[f.ctype]; !ok || size != cgoFields[i].Type.Size() {
				t.Errorf("struct %s field %s: type %q of %d bytes in cgo", name, f.name, f.ctype, cgoFields[i].Type.Size())
			}
		}
		if len(fields) == 0 || fields[0].name != "size" {
			t.Errorf("struct %s does not begin with size", name)
		}
		if ct.Size() != cSizeof[name] {
			t.Errorf("struct %s: unsafe.Sizeof %d, C sizeof %d", name, ct.Size(), cSizeof[name])
		}
		// Every field mirrored, and every Go field that mirrors it exists.
		var names []string
		for _, f := range fields {
			names = append(names, f.name)
			goField, ok := mirror[f.name]
			if !ok {
				t.Errorf("struct %s has a field %s that the binding does not mirror", name, f.name)
				continue
			}
			if goField == "-" {
				continue
			}
			for _, g := range strings.Fields(goField) {
				tn, fn, _ := strings.Cut(g, ".")
				if _, ok := goTypes[tn].FieldByName(fn); !ok {
					t.Errorf("struct %s field %s: %s has no field %s", name, f.name, tn, fn)
				}
			}
		}
		for f := range mirror {
			if !contains(names, f) {
				t.Errorf("structMirror has %s.%s, which sluice.h no longer declares", name, f)
			}
		}
	}
	for name := range cStructs {
		if _, ok := structs[name]; !ok {
			t.Errorf("cStructs has %s, which sluice.h no longer declares", name)
		}
	}
	sorted := make([]string, 0, len(structs))
	for n := range structs {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	t.Logf("structs checked: %v", sorted)
}

// decisionOf copies every field of a sluice_decision into its Go mirror: a decision filled with
// a distinct value in each field comes out with each value where structMirror says.
func TestDriftDecisionCopiesEveryField(t *testing.T) {
	fields := headerStructs(t)["sluice_decision"]
	ct := cStructs["sluice_decision"]
	buf := make([]uint64, (ct.Size()+7)/8)
	p := unsafe.Pointer(&buf[0])
	want := map[string]int64{}
	for i, f := range fields {
		sf, _ := ct.FieldByName(f.name)
		v := int64(i + 1)
		if f.name == "allowed" {
			v = 1
		}
		if f.name == "status" {
			v = int64(DryRunLimited)
		}
		at := unsafe.Add(p, sf.Offset)
		switch sf.Type.Size() {
		case 1:
			*(*uint8)(at) = uint8(v)
		case 4:
			*(*uint32)(at) = uint32(v)
		case 8:
			*(*uint64)(at) = uint64(v)
		}
		want[f.name] = v
	}
	d := reflect.ValueOf(decisionAt(p))
	for _, f := range fields {
		g := structMirror["sluice_decision"][f.name]
		if g == "-" || g == "" { // "": not mirrored, which TestDriftStructs reports
			continue
		}
		_, fn, _ := strings.Cut(g, ".")
		v := d.FieldByName(fn)
		if !v.IsValid() {
			t.Errorf("Decision has no field %s", fn)
			continue
		}
		var got int64
		switch v.Kind() {
		case reflect.Bool:
			if v.Bool() {
				got = 1
			}
		case reflect.Uint8:
			got = int64(v.Uint())
		default:
			got = v.Int()
		}
		if got != want[f.name] {
			t.Errorf("sluice_decision.%s = %d came out as Decision.%s = %d", f.name, want[f.name], fn, got)
		}
	}
}
