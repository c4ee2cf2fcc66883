// Package freeport picks ports for tests and benchmarks to listen on: one
// picker for the test harness (internal/testenv) and the benchmark
// harness (bench/), so that neither hands out a port twice.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Floor is the lowest port Pick gives: above the ports that services on
// a developer's machine usually take.
const Floor = 20000

var given = struct {
	sync.Mutex
	m map[int]bool
}{m: map[int]bool{}}

// Pick returns a port that was free for TCP and UDP on 127.0.0.1 a
// moment ago and that this process has not been given before. It picks
// below the kernel's ephemeral range (net.ipv4.ip_local_port_range), as
// scripts/lib.sh does: a port from that range can be taken meanwhile as
// the local end of any outgoing connection on the machine (a keep-alive
// HTTP connection of another test, say), and the kernel hands a port
// just let go to the next ":0" listener, which is how two sites of one
// benchmark config once got the same port.
func Pick() (int, error) {
	low := ephemeralLow()
	given.Lock()
	defer given.Unlock()
	for range 1000 {
		port := Floor + rand.IntN(low-Floor)
		if given.m[port] {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		// Free for UDP too, so that any port it gives may be a UDP one.
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		pc.Close()
		given.m[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no port free for TCP and UDP on 127.0.0.1 in %d-%d", Floor, low-1)
}

// ephemeralLow is the first port of the kernel's ephemeral range, or 32768
// (Linux's default) when it cannot be read or leaves too little below it.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if low, err := strconv.Atoi(f[0]); err == nil && low > Floor+1000 {
				return low
			}
		}
	}
	return 32768
}
