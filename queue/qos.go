package queue

import "fmt"

// QoS is a quality-of-service class. When workers are scarce, blocks of a higher class
// start before those of a lower one. The order is GCD's.
type QoS int

// The QoS classes, lowest first.
const (
	Background QoS = iota
	Utility
	Default
	UserInitiated
	UserInteractive

	numQoS = int(UserInteractive) + 1
)

// String returns the class's name, as GCD spells it in lower case.
func (q QoS) String() string {
	switch q {
	case Background:
		return "background"
	case Utility:
		return "utility"
	case Default:
		return "default"
	case UserInitiated:
		return "user-initiated"
	case UserInteractive:
		return "user-interactive"
	}
	return fmt.Sprintf("QoS(%d)", int(q))
}

func (q QoS) valid() bool { return q >= Background && q <= UserInteractive }
