package testutil

import (
	"testing"
	"time"
)

// Wait bounds every wait for an event in the tests: far longer than anything takes, so
// that running out means a hang, not a slow machine.
const Wait = 10 * time.Second

// Recv returns the next value on ch, or fails the test loudly after Wait.
func Recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(Wait):
		t.Fatalf("timed out after %v waiting for %s", Wait, what)
		panic("unreachable")
	}
}
