package sluice

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// The benchmarks: Check and Allow through cgo beside a cgo call of a C function that does
// nothing (the floor), the same checks looped in C (the library alone), and an exact sliding
// log in Go under a sync.Mutex (the peer a Go server would write itself). One hot key, one rule
// N/W with one request per simulated millisecond, so every check is admitted and the window
// stays full: the steady state of a busy client.
//
//	go test -run '^$' -bench . -benchmem

const benchPolicy = "global 1000/1s"

func BenchmarkCgoNoop(b *testing.B) {
	key := "198.51.100.7"
	for i := 0; i < b.N; i++ {
		cNoop(key, Global)
	}
}

func BenchmarkCheckInC(b *testing.B) {
	l := open(b, benchPolicy)
	b.ResetTimer()
	if _, err := l.cCheckLoop("198.51.100.7", Global, b.N, t0); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkCheckAt(b *testing.B) {
	l := open(b, benchPolicy)
	key := "198.51.100.7"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := l.CheckAt(key, Global, t0+int64(i)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAllowAt(b *testing.B) {
	l := open(b, benchPolicy)
	key := "198.51.100.7"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := l.AllowAt(key, Global, t0+int64(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// Check with the library's clock (the wall clock: most checks land in one millisecond and are
// refused once the window is full, which costs about what an admission does).
func BenchmarkCheck(b *testing.B) {
	l := open(b, benchPolicy)
	key := "198.51.100.7"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := l.Check(key, Global); err != nil {
			b.Fatal(err)
		}
	}
}

// The default policy's write category: three rules (global 300/1m, write 30/1m, write 500/1h),
// one request per 7.2 s so that every check is admitted.
func BenchmarkCheckAtMultiRule(b *testing.B) {
	l := open(b, DefaultPolicy)
	write := category(b, l, "write")
	key := "198.51.100.7"
	for i := 0; i < b.N; i++ {
		if _, err := l.CheckAt(key, write, t0+int64(i)*7200); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendHeaders(b *testing.B) {
	l := open(b, benchPolicy)
	d, _ := l.CheckAt("k", Global, t0)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = l.AppendHeaders(buf[:0], d, XRateLimit)
	}
}

// Per request, 64 distinct keys a batch.
func BenchmarkCheckBatch64(b *testing.B) {
	l := open(b, benchPolicy)
	var batch Batch
	for k := 0; k < 64; k++ {
		batch.Add("198.51.100."+strconv.Itoa(k), Global)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 64 {
		if _, err := l.CheckBatchAt(&batch, t0+int64(i/64)); err != nil {
			b.Fatal(err)
		}
	}
}

// Goroutines on distinct keys.
func BenchmarkCheckAtParallel(b *testing.B) {
	l := open(b, benchPolicy)
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		key := "198.51.100." + strconv.Itoa(int(next.Add(1)))
		i := int64(0)
		for pb.Next() {
			if _, err := l.CheckAt(key, Global, t0+i); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// mutexLog is an exact sliding-window log in plain Go: one ring of the last N admitted
// timestamps per key, in a map under one mutex. It admits exactly what one rule of sluice does.
type mutexLog struct {
	mu     sync.Mutex
	n      int
	window int64
	keys   map[string]*ring
}

type ring struct {
	ts   []int64
	next int
	full bool
}

func (m *mutexLog) allow(key string, now int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.keys[key]
	if r == nil {
		r = &ring{ts: make([]int64, m.n)}
		m.keys[key] = r
	}
	if r.full && r.ts[r.next] > now-m.window {
		return false
	}
	r.ts[r.next] = now
	r.next++
	if r.next == m.n {
		r.next, r.full = 0, true
	}
	return true
}

func BenchmarkMutexLog(b *testing.B) {
	m := &mutexLog{n: 1000, window: 1000, keys: map[string]*ring{}}
	key := "198.51.100.7"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m.allow(key, t0+int64(i))
	}
}

func BenchmarkMutexLogParallel(b *testing.B) {
	m := &mutexLog{n: 1000, window: 1000, keys: map[string]*ring{}}
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		key := "198.51.100." + strconv.Itoa(int(next.Add(1)))
		i := int64(0)
		for pb.Next() {
			m.allow(key, t0+i)
			i++
		}
	})
}

// The mutex log admits exactly what sluice does (so the benchmarks compare like with like).
func TestMutexLogIsTheSameRule(t *testing.T) {
	l := open(t, "global 3/10s")
	m := &mutexLog{n: 3, window: 10_000, keys: map[string]*ring{}}
	for _, at := range []int64{0, 1000, 2000, 9999, 10_000, 10_001, 11_000, 25_000, 25_001, 25_002, 25_003} {
		want, err := l.AllowAt("k", Global, t0+at)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.allow("k", t0+at); got != want {
			t.Fatalf("at +%d ms: mutex log %v, sluice %v", at, got, want)
		}
	}
}
