package client

import (
	"bytes"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// goroutineID is the running goroutine's number, from its stack header.
func goroutineID() uint64 {
	var buf [64]byte
	b := bytes.TrimPrefix(buf[:runtime.Stack(buf[:], false)], []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

// A stream served after another has ended runs on the goroutine that
// served the first, and an idle worker ends after workerIdle.
func TestStreamsReuseAnIdleWorkerThatEndsAfterAWhile(t *testing.T) {
	before := runtime.NumGoroutine()
	ids := make(chan uint64)
	serve := func() { ids <- goroutineID() }
	goServe(serve)
	first := <-ids
	var second uint64
	// The first worker is idle once it waits on idleWorkers; until then a
	// second stream gets a goroutine of its own.
	for deadline := time.Now().Add(5 * time.Second); second != first; {
		if time.Now().After(deadline) {
			t.Fatalf("the second stream ran on goroutine %d, not on the idle worker %d", second, first)
		}
		goServe(serve)
		second = <-ids
	}
	for deadline := time.Now().Add(workerIdle + 5*time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines more than before, %s after the last stream", runtime.NumGoroutine()-before, workerIdle+5*time.Second)
		}
	}
}
