package sluice

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const (
	migratePolicy = "global 100/1m\nauth 3/1m\nauth lockout 2/15m for 15m\ncapacity 1000\n"
	migrateRaised = "global 200/1m\nauth 3/1m\nauth lockout 2/15m for 15m\ncapacity 1000\n"
)

// A migration to a policy that changed another rule keeps the lockout (same retry) and the
// unchanged rule's log, and tells the handle still on the old table where the new one is.
func TestMigrateKeepsTheLockoutAndTellsTheOldHandle(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "old.sluice"), filepath.Join(dir, "new.sluice")
	old, err := Open(migratePolicy, from)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	auth, _ := old.Category("auth")
	now := time.Now().UnixMilli()
	if _, err := old.FailureAt("198.51.100.7", auth, now); err != nil {
		t.Fatal(err)
	}
	locked, err := old.FailureAt("198.51.100.7", auth, now+1)
	if err != nil || locked.Status != Locked {
		t.Fatalf("not locked: %+v %v", locked, err)
	}
	for i := int64(0); i < 2; i++ {
		if d, _ := old.CheckAt("203.0.113.9", auth, now+i); !d.Allowed {
			t.Fatalf("check %d refused", i)
		}
	}
	if p, err := old.Superseded(); p != "" || err != nil {
		t.Fatalf("Superseded before the migration: %q %v", p, err)
	}
	m, err := Migrate(from, to, migrateRaised)
	if err != nil {
		t.Fatal(err)
	}
	if m.Keys != 2 || m.LockedKeys != 1 || m.InPlace || m.FromFormat < 1 || m.ToCapacity != 1000 {
		t.Fatalf("report %+v", m)
	}
	if p, err := old.Superseded(); p != to || err != nil {
		t.Fatalf("Superseded after the migration: %q %v, want %q", p, err, to)
	}
	l, err := Open("", to)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Policy() != migrateRaised {
		t.Fatalf("policy %q", l.Policy())
	}
	again, _ := l.PeekAt("198.51.100.7", auth, now+2)
	if again.Status != Locked || again.RetryAfter != locked.RetryAfter {
		t.Fatalf("after the migration %+v, before %+v", again, locked)
	}
	if d, _ := l.CheckAt("203.0.113.9", auth, now+3); !d.Allowed {
		t.Fatal("the third request of auth 3/1m was refused")
	}
	if d, _ := l.CheckAt("203.0.113.9", auth, now+4); d.Allowed {
		t.Fatal("the fourth request of auth 3/1m passed: the unchanged rule lost its log")
	}
}

func TestMigrateErrorsCreateNothing(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, "old.sluice"), filepath.Join(dir, "new.sluice")
	l, err := Open(migratePolicy, from)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	before, _ := os.ReadFile(from)
	existing := from + ".keep"
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		from, to, policy string
		want             error
	}{
		{from, to, "global 10/", ErrPolicy},
		{filepath.Join(dir, "missing"), to, "", ErrNoTable},
		{existing, to, "", ErrNotATable},
		{from, to, "global 1/1s\x00", ErrArgument},
		{from, existing, "", ErrMigration},
	}
	for _, c := range cases {
		_, err := Migrate(c.from, c.to, c.policy)
		if !errors.Is(err, c.want) {
			t.Errorf("Migrate(%q, %q, %q) = %v, want %v", c.from, c.to, c.policy, err, c.want)
		}
	}
	if _, err := os.Stat(to); !os.IsNotExist(err) {
		t.Errorf("%s was created", to)
	}
	if after, _ := os.ReadFile(from); string(after) != string(before) {
		t.Error("the source changed")
	}
	if k, _ := os.ReadFile(existing); len(k) != 0 {
		t.Error("an existing target was overwritten")
	}
}

func TestSupersededOfPrivateAndClosed(t *testing.T) {
	l, err := Open("global 1/1s", "")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := l.Superseded(); p != "" || err != nil {
		t.Fatalf("%q %v", p, err)
	}
	l.Close()
	if _, err := l.Superseded(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
