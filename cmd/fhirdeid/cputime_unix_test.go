//go:build unix

package main

import "syscall"

// cpuTime returns the CPU time (user and system) used by the process so
// far, in nanoseconds, or -1 if it is unknown.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
