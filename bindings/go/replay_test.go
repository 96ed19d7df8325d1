package sluice

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The Rust API's replay of a script (examples/replay.rs; run_tests.sh builds it).
const replayPath = "../../target/release/examples/replay"

// The same random script of requests, with explicit times, through the Go binding and through
// the Rust API gives the same decisions, line for line.
func TestDecisionsEqualTheRustAPIs(t *testing.T) {
	if _, err := os.Stat(replayPath); err != nil {
		t.Fatalf("%s: %v (cargo build --release --example replay makes it)", replayPath, err)
	}
	policy := "global 5/200ms\nglobal 20/2s strict\napi 3/100ms\napi 8/1s dry-run\n" +
		"auth 2/150ms\nauth lockout 3/500ms for 200ms..1s\ncapacity 8\n"
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy")
	if err := os.WriteFile(policyFile, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	l := open(t, policy)
	rng := rand.New(rand.NewSource(7))
	ops := []string{"check", "check", "check", "allow", "peek", "failure", "success", "reset"}
	cats := []string{"global", "api", "auth"}
	var script, got strings.Builder
	now := int64(1_767_225_600_000)
	for i := 0; i < 3000; i++ {
		now += rng.Int63n(12)
		op := ops[rng.Intn(len(ops))]
		key := fmt.Sprintf("client-%d", rng.Intn(4))
		cat := cats[rng.Intn(len(cats))]
		if op == "failure" || op == "success" {
			cat = "auth"
		}
		fmt.Fprintf(&script, "%s %s %s %d\n", op, key, cat, now)
		c := category(t, l, cat)
		var line string
		switch op {
		case "check", "peek", "failure":
			var d Decision
			var err error
			switch op {
			case "check":
				d, err = l.CheckAt(key, c, now)
			case "peek":
				d, err = l.PeekAt(key, c, now)
			default:
				d, err = l.FailureAt(key, c, now)
			}
			if err != nil {
				t.Fatal(err)
			}
			allowed := 0
			if d.Allowed {
				allowed = 1
			}
			line = fmt.Sprintf("%d %s %d %d %d %d %d %d %d", allowed, d.Status, d.Limit, d.Remaining,
				d.Reset, d.ResetAfter, d.RetryAfter, d.Rule, d.WindowMs)
		case "allow":
			ok, err := l.AllowAt(key, c, now)
			if err != nil {
				t.Fatal(err)
			}
			line = "0"
			if ok {
				line = "1"
			}
		case "success":
			if err := l.SuccessAt(key, c, now); err != nil {
				t.Fatal(err)
			}
			line = "ok"
		case "reset":
			if err := l.ResetAt(key, c, now); err != nil {
				t.Fatal(err)
			}
			line = "ok"
		}
		got.WriteString(line + "\n")
	}
	cmd := exec.Command(replayPath, policyFile)
	cmd.Stdin = strings.NewReader(script.String())
	want, err := cmd.Output()
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	g, w := strings.Split(got.String(), "\n"), strings.Split(string(want), "\n")
	if len(g) != len(w) {
		t.Fatalf("%d lines from Go, %d from the Rust API", len(g), len(w))
	}
	s := strings.Split(script.String(), "\n")
	for i := range g {
		if g[i] != w[i] {
			t.Fatalf("line %d, %q: Go %q, Rust %q", i+1, s[i], g[i], w[i])
		}
	}
	// The script must reach every outcome, or it proves little.
	for _, s := range []string{" passed ", " locked ", " limited ", " dry-run-limited "} {
		if n := bytes.Count(want, []byte(s)); n < 10 {
			t.Fatalf("the script gave %q only %d times", s, n)
		}
	}
}
