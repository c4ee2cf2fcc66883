package l4ports

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-inlets/caddy-inlets/internal/registry"
	"github.com/caddy-inlets/caddy-inlets/metrics"
	"github.com/caddy-inlets/caddy-inlets/tunnel"
)

// UDP defaults and bounds. Each visitor address of a UDP port is a flow,
// carried on one stream to one client; the client keeps one upstream
// socket per flow, so the upstream's answers reach that visitor alone.
const (
	// DefaultUDPIdleTimeout ends a flow that has carried no datagram in
	// either direction for this long: caddy-l4's default. A DNS query's
	// flow is gone half a minute after its answer; WireGuard's peers keep
	// theirs with PersistentKeepalive = 25.
	DefaultUDPIdleTimeout = 30 * time.Second

	// DefaultUDPMaxFlows bounds the flows of one UDP port. A datagram
	// from a new visitor address while the port has that many is dropped
	// (and counted, reason "flow_limit"): the flows already open are
	// kept, and room comes back as they go idle.
	DefaultUDPMaxFlows = 1024

	// DefaultUDPMaxFlowsPerSource bounds the flows of one UDP port from
	// one source: an IPv4 address, or an IPv6 /64 (what one host, or
	// one home, usually gets). A source that sends from many ports, as
	// a spoofer does, then takes an eighth of a port's flows at most,
	// not all of them; a NAT carrying many visitors' DNS queries (a flow
	// each for 30 s) still has room for a few a second.
	DefaultUDPMaxFlowsPerSource = 128

	// DefaultMaxDatagramSize is the largest datagram forwarded from a
	// visitor: a jumbo frame's payload, above DNS over UDP with EDNS
	// (4096), WireGuard (1420) or QUIC (1500). A larger one is dropped
	// and counted (reason "too_large"), never truncated.
	DefaultMaxDatagramSize = 9216

	// MaxDatagramSize bounds max_datagram_size: the largest UDP payload
	// over IPv4.
	MaxDatagramSize = 65507

	// flowQueueBytes bounds what one flow holds of its visitor's
	// datagrams while its client takes them (and while its stream
	// opens); a datagram past it is dropped (reason "queue_full"). With
	// udp_max_flows, it bounds the memory visitors of a port can hold:
	// 1024 × 64 KiB = 64 MiB by default.
	flowQueueBytes = 64 << 10
	flowQueueLen   = 256
)

// udpForwarding is what forwarding a flow needs of the config, copied by
// value: flows outlive the config whose listener saw their first datagram.
type udpForwarding struct {
	reg *registry.Registry
	// proxyProtocol is "v2" when the config asks for PROXY headers (v1
	// is text for TCP alone): each datagram then carries one.
	proxyProtocol string
	idleTimeout   time.Duration
	maxFlows      int
	maxPerSource  int
	maxDatagram   int
	leastConn     bool
}

// udpPort is the state of one public UDP port that outlives configs: its
// flows, and the sockets of the configs listening on it. A reload binds
// the port again (SO_REUSEPORT) before the old config lets it go; the
// kernel then hands a visitor's datagrams to either socket, and both find
// the visitor's flow here.
type udpPort struct {
	port     int
	balancer registry.Balancer

	mu    sync.Mutex
	conns []net.PacketConn // newest last; answers go out through the newest
	flows map[netip.AddrPort]*udpFlow
	// sources counts the flows of each source (registry.VisitorSource).
	sources map[netip.Prefix]int
}

// udpPorts holds the udpPort of every UDP port some config listens on.
var udpPorts = struct {
	sync.Mutex
	m map[int]*udpPort
}{m: map[int]*udpPort{}}

// attach records that pc listens on port and returns the port's state.
func attachUDP(port int, pc net.PacketConn, leastConn bool) *udpPort {
	udpPorts.Lock()
	defer udpPorts.Unlock()
	p := udpPorts.m[port]
	if p == nil {
		p = &udpPort{port: port, flows: map[netip.AddrPort]*udpFlow{}, sources: map[netip.Prefix]int{}, balancer: registry.Balancer{LeastConn: leastConn}}
		udpPorts.m[port] = p
	}
	p.mu.Lock()
	p.conns = append(p.conns, pc)
	p.mu.Unlock()
	return p
}

// detach records that pc no longer listens on the port. The last socket
// to go ends the port's flows: nothing could answer their visitors.
func (p *udpPort) detach(pc net.PacketConn) {
	udpPorts.Lock()
	p.mu.Lock()
	for i, c := range p.conns {
		if c == pc {
			p.conns = append(p.conns[:i:i], p.conns[i+1:]...)
			break
		}
	}
	var ending []*udpFlow
	if len(p.conns) == 0 {
		delete(udpPorts.m, p.port)
		for _, f := range p.flows {
			ending = append(ending, f)
		}
	}
	p.mu.Unlock()
	udpPorts.Unlock()
	for _, f := range ending {
		f.close()
	}
}

// udpListener is one config's socket on a UDP port. Its read loop hands
// each datagram to the flow of its visitor, starting one for a new
// visitor.
type udpListener struct {
	port   int
	pc     net.PacketConn
	state  *udpPort
	fwd    udpForwarding
	logger *zap.Logger

	closeOnce    sync.Once
	done, exited chan struct{}
}

// listenUDP binds a UDP port on the bind address and starts its read
// loop; as for TCP, a port no config holds yet is first probed without
// SO_REUSEPORT, so a tunnel never shares a port with another program or
// with Caddy's own HTTP/3.
func (a *Plane) listenUDP(port int) (*udpListener, error) {
	host := strings.TrimSuffix(strings.TrimPrefix(a.Bind, "["), "]")
	if heldUDP.count(port) == 0 {
		probe, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, udpListenError(port, a.Bind, err)
		}
		probe.Close()
	}
	na := caddy.NetworkAddress{Network: "udp", Host: host, StartPort: uint(port), EndPort: uint(port)}
	ln, err := na.Listen(a.ctx, 0, net.ListenConfig{})
	if err != nil {
		return nil, udpListenError(port, a.Bind, err)
	}
	pc, ok := ln.(net.PacketConn)
	if !ok {
		ln.(interface{ Close() error }).Close()
		return nil, fmt.Errorf("UDP port %d: Caddy returned a %T, not a packet socket", port, ln)
	}
	heldUDP.add(port, 1)
	l := &udpListener{
		port:   port,
		pc:     pc,
		state:  attachUDP(port, pc, a.fwd.leastConn),
		fwd:    a.udp,
		logger: a.logger.With(zap.String("udp_port", strconv.Itoa(port))),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	go l.readLoop()
	l.logger.Info("listening", zap.String("address", "udp/"+pc.LocalAddr().String()))
	return l, nil
}

func udpListenError(port int, bind string, err error) error {
	e := listenError(port, bind, err)
	return errors.New("UDP " + e.Error())
}

// heldUDP counts, per UDP port, the sockets of every config's data plane.
var heldUDP = portCounts{m: map[int]int{}}

// readLoop reads datagrams until close.
func (l *udpListener) readLoop() {
	defer close(l.exited)
	// One byte more than the limit tells a datagram over it from one at it.
	buf := make([]byte, l.fwd.maxDatagram+1)
	var delay time.Duration
	for {
		n, addr, err := l.pc.ReadFrom(buf)
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.logger.Warn("reading a datagram", zap.Error(err), zap.Duration("retry_in", delay))
			select {
			case <-l.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		if n > l.fwd.maxDatagram {
			metrics.UDPDatagramDropped(l.port, metrics.DropTooLarge)
			if c := l.logger.Check(zap.DebugLevel, "udp: dropped a datagram over max_datagram_size"); c != nil {
				c.Write(zap.Int("limit", l.fwd.maxDatagram), zap.String("remote_addr", addr.String()))
			}
			continue
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		l.state.deliver(l, ua, buf[:n])
	}
}

// close stops reading and waits for the read loop to return. The port's
// flows go on while another config listens on it.
func (l *udpListener) close() {
	l.closeOnce.Do(func() {
		close(l.done)
		l.pc.Close()
		heldUDP.add(l.port, -1)
		l.state.detach(l.pc)
		l.logger.Info("stopped listening")
	})
	<-l.exited
}

// deliver hands a visitor's datagram to its flow, starting the flow if
// the visitor is new and the port has room for it.
func (p *udpPort) deliver(l *udpListener, from *net.UDPAddr, data []byte) {
	key := from.AddrPort()
	key = netip.AddrPortFrom(key.Addr().WithZone("").Unmap(), key.Port())
	// The tunnel that owns the port holds its visitors to its policy: a
	// new flow to all of it (outside mu: a rate's table may take a
	// while), and every datagram of a flow to its address lists, so that
	// a reload that denies an address ends that address's flows.
	owner := l.fwd.reg.Tenancy().PortOwner(registry.Port{UDP: true, Num: p.port})
	policy := l.fwd.reg.VisitorPolicy(owner)
	p.mu.Lock()
	f := p.flows[key]
	if f != nil && policy != nil && !policy.AllowsAddress(key.Addr()) {
		p.mu.Unlock()
		metrics.VisitorRefused(owner, "udp", registry.RefusedAddress)
		f.close()
		return
	}
	if f == nil && policy != nil {
		p.mu.Unlock()
		if reason, _ := l.fwd.reg.RefuseVisitor(owner, policy, registry.VisitConnection, "udp", key.Addr()); reason != "" {
			if c := l.logger.Check(zap.DebugLevel, "udp: dropped a new visitor's datagram: refused by its tunnel's visitors policy"); c != nil {
				c.Write(zap.String("remote_addr", from.String()), zap.String("reason", reason))
			}
			return
		}
		p.mu.Lock()
		f = p.flows[key] // another datagram of the visitor's may have started it meanwhile
	}
	if f == nil {
		if len(p.flows) >= l.fwd.maxFlows {
			p.mu.Unlock()
			metrics.UDPDatagramDropped(p.port, metrics.DropFlowLimit)
			if c := l.logger.Check(zap.DebugLevel, "udp: dropped a new visitor's datagram: the port has udp_max_flows flows"); c != nil {
				c.Write(zap.Int("limit", l.fwd.maxFlows), zap.String("remote_addr", from.String()))
			}
			return
		}
		src := registry.VisitorSource(key.Addr())
		if p.sources[src] >= l.fwd.maxPerSource {
			p.mu.Unlock()
			metrics.UDPDatagramDropped(p.port, metrics.DropSourceLimit)
			if c := l.logger.Check(zap.DebugLevel, "udp: dropped a new visitor's datagram: its source has udp_max_flows_per_source flows on the port"); c != nil {
				c.Write(zap.Int("limit", l.fwd.maxPerSource), zap.String("remote_addr", from.String()), zap.String("source", src.String()))
			}
			return
		}
		p.sources[src]++
		f = &udpFlow{
			port:    p,
			key:     key,
			visitor: from,
			queue:   make(chan []byte, flowQueueLen),
			done:    make(chan struct{}),
		}
		f.touch()
		p.flows[key] = f
		go f.run(l.fwd, tunnel.StreamHeader{
			Kind:          tunnel.KindUDP,
			Port:          p.port,
			RemoteAddr:    key.String(),
			LocalAddr:     l.pc.LocalAddr().String(),
			ProxyProtocol: l.fwd.proxyProtocol,
		})
	}
	p.mu.Unlock()
	f.enqueue(data)
}

// writeTo sends an upstream's answer to a visitor through the newest
// socket on the port.
func (p *udpPort) writeTo(data []byte, to *net.UDPAddr) error {
	p.mu.Lock()
	if len(p.conns) == 0 {
		p.mu.Unlock()
		return net.ErrClosed
	}
	pc := p.conns[len(p.conns)-1]
	p.mu.Unlock()
	_, err := pc.WriteTo(data, to)
	return err
}

func (p *udpPort) remove(f *udpFlow) {
	p.mu.Lock()
	if p.flows[f.key] == f {
		delete(p.flows, f.key)
		src := registry.VisitorSource(f.key.Addr())
		if p.sources[src]--; p.sources[src] <= 0 {
			delete(p.sources, src)
		}
	}
	p.mu.Unlock()
}

// udpFlow is one visitor address of a UDP port, carried on one stream.
type udpFlow struct {
	port    *udpPort
	key     netip.AddrPort
	visitor *net.UDPAddr

	// queue holds the visitor's datagrams on their way to the stream;
	// queued is their bytes, at most flowQueueBytes.
	queue  chan []byte
	queued atomic.Int64
	// active is when a datagram last went either way (Unix nanoseconds).
	active atomic.Int64

	closeOnce sync.Once
	done      chan struct{}
	mu        sync.Mutex
	stream    net.Conn
}

func (f *udpFlow) touch() { f.active.Store(time.Now().UnixNano()) }

// enqueue copies a datagram into the flow's queue, or drops it when the
// queue is full.
func (f *udpFlow) enqueue(data []byte) {
	n := int64(len(data))
	if q := f.queued.Add(n); q > flowQueueBytes && q != n {
		f.queued.Add(-n)
		metrics.UDPDatagramDropped(f.port.port, metrics.DropQueueFull)
		return
	}
	select {
	case f.queue <- append([]byte(nil), data...):
		f.touch()
	default:
		f.queued.Add(-n)
		metrics.UDPDatagramDropped(f.port.port, metrics.DropQueueFull)
	}
}

// close ends the flow: its stream is reset, and the visitor's next
// datagram starts a new flow.
func (f *udpFlow) close() {
	f.closeOnce.Do(func() {
		f.port.remove(f)
		close(f.done)
		f.mu.Lock()
		if f.stream != nil {
			f.stream.Close()
		}
		f.mu.Unlock()
	})
}

// run opens the flow's stream through a client serving the port, then
// writes the visitor's datagrams to it until the flow is idle for the
// idle timeout, its stream ends, or its port closes.
func (f *udpFlow) run(fwd udpForwarding, header tunnel.StreamHeader) {
	defer f.close()
	logger := fwd.reg.Logger()
	port := f.port.port
	stream, err := registry.Dial(context.Background(), header, f.port.balancer.Order(registry.Port{UDP: true, Num: port}, fwd.reg.PortSessions(registry.Port{UDP: true, Num: port})))
	if err != nil {
		if c := logger.Check(zap.WarnLevel, "udp: no tunnel client could take a flow"); c != nil {
			c.Write(zap.Int("udp_port", port), zap.String("remote_addr", header.RemoteAddr), zap.Error(err))
		}
		f.drain(metrics.DropNoClient)
		return
	}
	f.mu.Lock()
	select {
	case <-f.done:
		f.mu.Unlock()
		stream.Close()
		return
	default:
		f.stream = stream
	}
	f.mu.Unlock()

	defer metrics.UDPFlowOpened(port).Closed()
	if c := logger.Check(zap.DebugLevel, "udp: flow opened"); c != nil {
		c.Write(zap.Int("udp_port", port), zap.String("remote_addr", header.RemoteAddr))
	}
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		f.answer(stream)
	}()
	defer func() { <-answered }()
	defer f.close()

	idle := time.NewTimer(fwd.idleTimeout)
	defer idle.Stop()
	var batch []byte
	for {
		select {
		case b := <-f.queue:
			// The datagrams queued meanwhile go in the same write: one
			// stream frame for a burst, not one each.
			batch = appendDatagram(batch[:0], b)
			f.queued.Add(-int64(len(b)))
		drain:
			for len(batch) < flowQueueBytes {
				select {
				case b := <-f.queue:
					batch = appendDatagram(batch, b)
					f.queued.Add(-int64(len(b)))
				default:
					break drain
				}
			}
			if _, err := stream.Write(batch); err != nil {
				return
			}
		case <-idle.C:
			since := time.Since(time.Unix(0, f.active.Load()))
			if since >= fwd.idleTimeout {
				if c := logger.Check(zap.DebugLevel, "udp: flow idle, closed"); c != nil {
					c.Write(zap.Int("udp_port", port), zap.String("remote_addr", header.RemoteAddr))
				}
				return
			}
			idle.Reset(fwd.idleTimeout - since)
		case <-f.done:
			return
		}
	}
}

// answer relays the upstream's datagrams from the stream to the visitor
// until the stream ends.
//
// A flow waiting for an answer holds no buffer: one comes from a pool once
// a datagram's length has arrived, and goes back once it is sent on, so
// that idle flows cost their goroutines and not 64 KiB each.
func (f *udpFlow) answer(stream net.Conn) {
	defer f.close()
	var size [2]byte
	for {
		if _, err := io.ReadFull(stream, size[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(size[:]))
		bp := answerBuffers.Get().(*[]byte)
		_, err := io.ReadFull(stream, (*bp)[:n])
		if err == nil {
			f.touch()
			err = f.port.writeTo((*bp)[:n], f.visitor)
			if !errors.Is(err, net.ErrClosed) {
				err = nil
			}
		}
		answerBuffers.Put(bp)
		if err != nil {
			return
		}
	}
}

// answerBuffers hold one datagram of the largest size a stream frames.
var answerBuffers = sync.Pool{New: func() any {
	b := make([]byte, tunnel.MaxDatagramSize)
	return &b
}}

// appendDatagram appends a datagram framed as tunnel.WriteDatagram frames
// it; visitors' datagrams are at most max_datagram_size, well within a
// frame.
func appendDatagram(buf, p []byte) []byte {
	return append(binary.BigEndian.AppendUint16(buf, uint16(len(p))), p...)
}

// drain drops what the queue holds, counting each datagram.
func (f *udpFlow) drain(reason string) {
	for {
		select {
		case b := <-f.queue:
			f.queued.Add(-int64(len(b)))
			metrics.UDPDatagramDropped(f.port.port, reason)
		default:
			return
		}
	}
}
