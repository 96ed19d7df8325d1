package sluice

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The sluice command of the repository's build (run_tests.sh builds it).
const cliPath = "../../target/release/sluice"

type cliDecision struct {
	Allowed    bool   `json:"allowed"`
	Status     string `json:"status"`
	Limit      int    `json:"limit"`
	Remaining  int    `json:"remaining"`
	RetryAfter int    `json:"retry_after"`
	Rule       string `json:"rule"`
}

// cli runs the sluice command and returns its output and exit status.
func cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	if _, err := os.Stat(cliPath); err != nil {
		t.Fatalf("%s: %v (cargo build --release makes it)", cliPath, err)
	}
	out, err := exec.Command(cliPath, args...).Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sluice %v: %v", args, err)
	}
	return string(out), code
}

func cliCheck(t *testing.T, args ...string) (cliDecision, int) {
	t.Helper()
	out, code := cli(t, append(args, "--json")...)
	var d cliDecision
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("sluice %v: %q: %v", args, out, err)
	}
	return d, code
}

// A Go limiter and the sluice command on one table file see each other's requests and
// lockouts.
func TestSharedWithTheCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sluice")
	l, err := Open("global 5/1h\nauth 100/1h\nauth lockout 3/1h for 1h", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	auth := category(t, l, "auth")

	// Requests: three from Go, two from the command, then both are refused.
	for i := 0; i < 3; i++ {
		if ok, err := l.Allow("k", Global); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	d, code := cliCheck(t, "check", path, "k", "global")
	if code != 0 || !d.Allowed || d.Remaining != 1 || d.Limit != 5 {
		t.Fatalf("the command's check after three from Go: %+v, exit %d", d, code)
	}
	if d, code = cliCheck(t, "check", path, "k", "global"); code != 0 || d.Remaining != 0 {
		t.Fatalf("fifth: %+v, exit %d", d, code)
	}
	if g, err := l.Check("k", Global); err != nil || g.Allowed || g.Status != Limited {
		t.Fatalf("Go after two from the command: %+v %v", g, err)
	}
	if d, code = cliCheck(t, "check", path, "k", "global"); code != 1 || d.Allowed || d.Status != "limited" {
		t.Fatalf("the command, refused: %+v, exit %d", d, code)
	}

	// A lockout made by Go is seen by the command, and lifted by it.
	for i := 0; i < 3; i++ {
		if _, err := l.Failure("u", auth); err != nil {
			t.Fatal(err)
		}
	}
	if d, code = cliCheck(t, "peek", path, "u", "auth"); code != 1 || d.Status != "locked" || d.RetryAfter < 3599 {
		t.Fatalf("the command's peek of a key Go locked: %+v, exit %d", d, code)
	}
	if out, code := cli(t, "unlock", path, "u", "auth"); code != 0 || !strings.Contains(out, "unlocked") {
		t.Fatalf("unlock: %q, exit %d", out, code)
	}
	if g, err := l.Check("u", auth); err != nil || !g.Allowed {
		t.Fatalf("Go after the command's unlock: %+v %v", g, err)
	}

	// The command's statistics count Go's requests and lockout.
	out, code := cli(t, "stat", path, "--json")
	var st struct {
		LiveKeys int `json:"live_keys"`
		Rules    []struct {
			Category string `json:"category"`
			Passed   int    `json:"passed"`
			Limited  int    `json:"limited"`
			Lockouts int    `json:"lockouts"`
		} `json:"rules"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("stat: %q %v", out, err)
	}
	if st.LiveKeys != 2 || len(st.Rules) != 3 || st.Rules[0].Passed != 6 || st.Rules[0].Limited != 2 || st.Rules[2].Lockouts != 1 {
		t.Fatalf("stat: %+v", st)
	}
	gs, err := l.Stats()
	if err != nil || gs.Rules[0].Passed != 6 || gs.Rules[0].Limited != 2 || gs.Rules[2].Lockouts != 1 {
		t.Fatalf("Go's stats: %+v %v", gs, err)
	}
}

// Processes on one file: Go test processes hammering one key admit exactly N between them.
func TestSharedBetweenProcesses(t *testing.T) {
	if os.Getenv("SLUICE_GO_CHILD") != "" {
		return // the child's part is TestSharedChild
	}
	path := filepath.Join(t.TempDir(), "api.sluice")
	policy := "global 2000/1h"
	l, err := Open(policy, path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const children = 3
	counts := make([]int, children)
	var wg sync.WaitGroup
	errs := make(chan error, children)
	for c := 0; c < children; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestSharedChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "SLUICE_GO_CHILD="+path)
			out, err := cmd.Output()
			if err != nil {
				errs <- fmt.Errorf("child %d: %v: %s", c, err, out)
				return
			}
			for _, line := range strings.Split(string(out), "\n") {
				if n, ok := strings.CutPrefix(line, "admitted "); ok {
					counts[c], _ = strconv.Atoi(n)
				}
			}
		}(c)
	}
	// Every child opens the table and says so, then all start at once; the parent hammers too.
	dir := filepath.Dir(path)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		ready, _ := filepath.Glob(filepath.Join(dir, "ready-*"))
		if len(ready) == children {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d children ready", len(ready), children)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "start"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mine := 0
	for i := 0; i < 5000; i++ {
		if ok, err := l.AllowAt("hot", Global, t0+int64(i)); err != nil {
			t.Fatal(err)
		} else if ok {
			mine++
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := mine
	for _, n := range counts {
		total += n
	}
	t.Logf("admitted: parent %d, children %v", mine, counts)
	if total != 2000 {
		t.Fatalf("%d admitted by the parent and %v by the children: %d, want exactly 2000", mine, counts, total)
	}
}

// TestSharedChild is the child of TestSharedBetweenProcesses (and passes alone, doing nothing).
func TestSharedChild(t *testing.T) {
	path := os.Getenv("SLUICE_GO_CHILD")
	if path == "" {
		return
	}
	l, err := Open("", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := filepath.Dir(path)
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("ready-%d", os.Getpid())), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Microsecond) {
		if _, err := os.Stat(filepath.Join(dir, "start")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never started")
		}
	}
	n := 0
	for i := 0; i < 5000; i++ {
		ok, err := l.AllowAt("hot", Global, t0+int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			n++
		}
	}
	fmt.Printf("admitted %d\n", n)
}

// python runs a Python script with the repository's package and library (run_tests.sh builds
// the library) and returns its standard output.
func python(t *testing.T, script string, args ...string) string {
	t.Helper()
	lib, err := filepath.Abs("../../target/release/libsluice.so")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lib); err != nil {
		t.Fatalf("%s: %v (cargo build --release makes it)", lib, err)
	}
	pkg, err := filepath.Abs("../python")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("python3", append([]string{"-c", script}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+pkg, "SLUICE_LIBRARY="+lib)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("python: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("python: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// A Go limiter and a Python process on one table file see each other's requests and
// lockouts.
func TestSharedWithPython(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.sluice")
	l, err := Open("global 5/1h\nauth 100/1h\nauth lockout 3/1h for 1h", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	auth := category(t, l, "auth")
	for i := 0; i < 2; i++ {
		if ok, err := l.Allow("k", Global); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	// Python, attached by path alone: two more requests, then three failures of "u".
	out := python(t, `
import sys, sluice
with sluice.Limiter(None, sys.argv[1]) as l:
    a = l.check("k")
    b = l.check("k")
    for _ in range(3):
        f = l.failure("u", "auth")
    print(a.remaining, b.remaining, f.status)
`, path)
	if out != "2 1 locked" {
		t.Fatalf("Python after two checks from Go: %q, want \"2 1 locked\"", out)
	}
	if d, err := l.Check("k", Global); err != nil || !d.Allowed || d.Remaining != 0 {
		t.Fatalf("Go's fifth check: %+v %v", d, err)
	}
	if d, err := l.Check("u", auth); err != nil || d.Status != Locked || d.RetryAfter < 3599 {
		t.Fatalf("Go's check of the key Python locked: %+v %v", d, err)
	}
	// And the other way: Python sees the window Go filled.
	if out := python(t, `
import sys, sluice
with sluice.Limiter(None, sys.argv[1]) as l:
    d = l.check("k")
    print(d.allowed, d.status)
`, path); out != "False limited" {
		t.Fatalf("Python after Go's last request: %q", out)
	}
}
