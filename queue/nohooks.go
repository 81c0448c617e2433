//go:build dispatchkit_nohooks

package queue

// observing is false: this build compiles the Observer hooks out (see hooks.go).
const observing = false
