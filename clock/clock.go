// Package clock provides the time source injected everywhere time matters.
//
// Production code never calls time.Now directly: it asks a Clock. The market's
// virtual clock (Virtual) lets a command move time forward so that a year of
// renewals, freezes and retries happens in seconds.
package clock

import (
	"sync"
	"time"
)

// Clock tells the current time.
type Clock interface {
	Now() time.Time
}

// Real is the wall clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// Func adapts a function to a Clock (handy in tests).
type Func func() time.Time

// Now calls f.
func (f Func) Now() time.Time { return f() }

// Virtual is a clock that only moves when told to. It is safe for concurrent use.
// Listeners registered with OnChange are called (synchronously, outside the lock)
// after every Set or Advance, so that schedulers can wake up.
type Virtual struct {
	mu        sync.Mutex
	now       time.Time
	listeners []func(time.Time)
}

// NewVirtual returns a virtual clock stopped at start.
func NewVirtual(start time.Time) *Virtual { return &Virtual{now: start} }

// Now returns the virtual time.
func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.now
}

// Set moves the clock to t. Moving backwards is allowed (tests use it) but
// schedulers only ever see time move forward in normal use.
func (v *Virtual) Set(t time.Time) {
	v.mu.Lock()
	v.now = t
	ls := append([]func(time.Time){}, v.listeners...)
	v.mu.Unlock()
	for _, l := range ls {
		l(t)
	}
}

// Advance moves the clock forward by d and returns the new time.
func (v *Virtual) Advance(d time.Duration) time.Time {
	v.mu.Lock()
	v.now = v.now.Add(d)
	t := v.now
	ls := append([]func(time.Time){}, v.listeners...)
	v.mu.Unlock()
	for _, l := range ls {
		l(t)
	}
	return t
}

// OnChange registers f to be called after every change of the clock.
func (v *Virtual) OnChange(f func(time.Time)) {
	v.mu.Lock()
	v.listeners = append(v.listeners, f)
	v.mu.Unlock()
}
