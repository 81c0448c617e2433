package dispatch

import (
	"context"
	"fmt"
	"sync"
)

// A Semaphore is a counting semaphore whose waiters take a context and are woken in the order
// they came (dispatch_semaphore_t).
type Semaphore struct {
	mu      sync.Mutex
	value   int
	waiters []*semWaiter
}

type semWaiter struct {
	ch      chan struct{}
	granted bool
}

// NewSemaphore returns a semaphore holding n units (n >= 0). With n = 0 it signals between
// goroutines; with n > 0 it bounds how many hold a unit at once.
func NewSemaphore(n int) *Semaphore {
	if n < 0 {
		panic(fmt.Sprintf("dispatch: NewSemaphore(%d): the count must not be negative", n))
	}
	return &Semaphore{value: n}
}

// Wait takes a unit, waiting for one if there is none, until ctx ends (then it returns ctx's
// error and takes nothing).
func (s *Semaphore) Wait(ctx context.Context) error {
	s.mu.Lock()
	if s.value > 0 {
		s.value--
		s.mu.Unlock()
		return nil
	}
	w := &semWaiter{ch: make(chan struct{})}
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()
	select {
	case <-w.ch:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.granted {
		return nil // a Signal picked us as ctx ended: we hold the unit
	}
	for i, x := range s.waiters {
		if x == w {
			s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
			break
		}
	}
	return ctx.Err()
}

// Signal returns a unit: it wakes the longest waiting Wait and reports true, or, with nobody
// waiting, keeps the unit for the next Wait and reports false.
func (s *Semaphore) Signal() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiters) == 0 {
		s.value++
		return false
	}
	w := s.waiters[0]
	s.waiters[0] = nil
	s.waiters = s.waiters[1:]
	w.granted = true
	close(w.ch)
	return true
}
