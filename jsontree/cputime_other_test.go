//go:build !unix

package jsontree

// cpuTime returns -1: CPU time is not measured on this system.
func cpuTime() int64 { return -1 }
