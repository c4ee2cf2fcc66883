//go:build race

package latency

// The race detector shadows every byte a system call reads or writes,
// which halves what loopback moves on two cores.
const raceEnabled = true
