package queue

import (
	"errors"
	"fmt"
)

var (
	// ErrTargetCycle is returned by SetTarget when the new target runs on the queue itself.
	ErrTargetCycle = errors.New("queue: target cycle")
	// ErrActive is returned by SetTarget on a queue that is not Inactive.
	ErrActive = errors.New("queue: target can be changed only while the queue is inactive")
)

// SetTarget makes q run its blocks on t from now on (nil: Global of the QoS given WithQoS, or
// Global(Default) for a queue made without it). As in GCD it may be called only on a queue
// created Inactive and not yet activated (ErrActive otherwise), so that no block is running
// on the old target meanwhile. A target whose chain leads back to q is refused with
// ErrTargetCycle. A queue made without WithQoS takes t's QoS, as it took its first target's;
// it keeps its observer and panic handler.
func (q *Queue) SetTarget(t *Queue) error {
	if q.kind == rootKind {
		return fmt.Errorf("queue: SetTarget on %q: a Global queue has no target", q.label)
	}
	if t == nil {
		qos := Default
		if q.qosSet {
			qos = q.QoS()
		}
		t = Global(qos)
	}
	for x := t; x != nil; x = x.target.Load() {
		if x == q {
			return fmt.Errorf("%w: %q would run on itself through %q", ErrTargetCycle, q.label, t.label)
		}
		if x.kind == rootKind {
			break
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.inactive || q.active != 0 || q.busyLocked() {
		return fmt.Errorf("queue: SetTarget on %q: %w", q.label, ErrActive)
	}
	q.target.Store(t)
	if !q.qosSet {
		q.qos.Store(int32(t.QoS()))
	}
	return nil
}
