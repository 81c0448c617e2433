//go:build !dispatchkit_nohooks

package queue

// observing is false only in a build with the dispatchkit_nohooks tag, which compiles the
// Observer hooks out of the submit and Sync paths. That build exists to measure what the
// hooks cost a queue without an observer (BENCHMARKS.md); nobody should ship it.
const observing = true
