package sluice_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	sluice "sluice.dev/go"
)

// A limiter in private memory, one category, explicit times.
func Example() {
	l, err := sluice.Open("global 300/1m\nwrite 2/1m", "")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	write, _ := l.Category("write") // resolve once

	t := int64(1_700_000_000_000) // Unix milliseconds; Check uses the clock
	for i := 0; i < 3; i++ {
		d, _ := l.CheckAt("198.51.100.7", write, t+int64(i))
		fmt.Println(d.Allowed, d.Status, d.Remaining, d.RetryAfter)
	}
	// Output:
	// true passed 1 0
	// true passed 0 0
	// false limited 0 60
}

// Failures lock a key out of a category; Reset lifts the lock.
func ExampleLimiter_Failure() {
	l, _ := sluice.Open(sluice.DefaultPolicy, "")
	defer l.Close()
	auth, _ := l.Category("auth") // auth lockout 5/15m for 15m..24h
	t := int64(1_700_000_000_000)
	for i := 0; i < 5; i++ {
		d, _ := l.FailureAt("alice", auth, t)
		fmt.Println(d.Status, d.Remaining, d.RetryAfter)
	}
	d, _ := l.CheckAt("alice", auth, t+60_000)
	fmt.Println("check:", d.Allowed, d.Status, d.RetryAfter)
	l.ResetAt("alice", auth, t+60_000)
	d, _ = l.CheckAt("alice", auth, t+60_000)
	fmt.Println("after reset:", d.Allowed)
	// Output:
	// passed 4 0
	// passed 3 0
	// passed 2 0
	// passed 1 0
	// locked 0 900
	// check: false locked 840
	// after reset: true
}

// The response headers of a refusal, in both styles.
func ExampleLimiter_AppendHeaders() {
	l, _ := sluice.Open("api 1/1m", "")
	defer l.Close()
	api, _ := l.Category("api")
	t := int64(1_700_000_000_000)
	l.CheckAt("k", api, t)
	d, _ := l.CheckAt("k", api, t+30_000)
	x, _ := l.AppendHeaders(nil, d, sluice.XRateLimit)
	ietf, _ := l.AppendHeaders(nil, d, sluice.IETF)
	fmt.Printf("%q\n%q\n", x, ietf)
	// Output:
	// "X-RateLimit-Limit: 1\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: 1700000060\r\nRetry-After: 30\r\n"
	// "RateLimit-Policy: \"api\";q=1;w=60\r\nRateLimit: \"api\";r=0;t=30\r\nRetry-After: 30\r\n"
}

// Errors match their sentinel with errors.Is and carry the library's message.
func ExampleOpen_errors() {
	_, err := sluice.Open("global 10/1 minute", "")
	fmt.Println(errors.Is(err, sluice.ErrPolicy))
	fmt.Println(err)
	// Output:
	// true
	// sluice: invalid policy: line 1, column 11: expected a duration such as 1m or 30s, found "1 minute"
}

// Processes (and the other hosts: nginx, Python, the sluice command) share a table by path.
func ExampleOpen_sharedFile() {
	dir, _ := os.MkdirTemp("", "sluice-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "api.sluice") // /dev/shm/api.sluice in production

	a, _ := sluice.Open("global 2/1h", path) // creates the file
	defer a.Close()
	b, _ := sluice.Open("", path) // attaches with the file's own policy
	defer b.Close()

	t := int64(1_700_000_000_000)
	a.AllowAt("k", sluice.Global, t)
	a.AllowAt("k", sluice.Global, t)
	ok, _ := b.AllowAt("k", sluice.Global, t)
	fmt.Println(ok, b.Policy())
	// Output:
	// false global 2/1h
}

// Many keys in one call; a Batch is reused without allocating.
func ExampleLimiter_CheckBatch() {
	l, _ := sluice.Open("global 1/1m", "")
	defer l.Close()
	var b sluice.Batch
	for _, key := range []string{"a", "b", "a"} {
		b.Add(key, sluice.Global)
	}
	ds, _ := l.CheckBatchAt(&b, 1_700_000_000_000)
	for _, d := range ds {
		fmt.Print(d.Allowed, " ")
	}
	fmt.Println()
	// Output:
	// true true false
}
