// Package bogus is for tests of what an unauthenticated body costs: the
// audit's cheap-to-send body and the bytes handling one allocates.
package bogus

import "runtime"

// Body is the auditor's body, {"a":[0,0,0,…]}, of n bytes (n-1 if n is even).
func Body(n int) []byte {
	b := make([]byte, 0, n)
	b = append(b, `{"a":[0`...)
	for len(b)+2 < n-1 {
		b = append(b, ",0"...)
	}
	return append(b, "]}"...)
}

// Allocated returns the bytes f allocates. It counts every goroutine's
// allocations: run it where nothing else runs (no parallel tests).
func Allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}
