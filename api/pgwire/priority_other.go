//go:build !linux

package pgwire

// atLowPriority runs run as it is: only Linux sets a thread's priority.
func atLowPriority[T any](run func() (T, error)) (T, error) { return run() }
