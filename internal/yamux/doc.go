// Package yamux is github.com/libp2p/go-yamux/v5 at v5.1.0, a yamux
// implementation (the protocol of spec.md, which hashicorp/yamux speaks
// too), with five changes and three additions of caddy-inlets', marked
// "caddy-inlets". The additions: Stream.Buffered, what has arrived and
// not been read, which the budget reads to cut only streams that hold
// data; Session.Retire, a normal Go Away that goes on accepting the
// streams in flight, for a client that reloads; Session.OnRemoteGoAway,
// which tells the server that its peer retired. The changes:
//
//   - stream.go: a window update that grows a stream's window carries the
//     credit the reader freed as well as the growth. Upstream's sends only
//     the growth, so every growth leaves the receiver counting credit the
//     sender never got, and a stream whose window has grown a few times
//     stalls for good (TestGrowthKeepsBothSidesCreditInStep reproduces
//     it).
//   - session.go: a normal Go Away from the peer means it takes no more
//     streams of this side's, as hashicorp/yamux reads it; the session
//     goes on. Upstream ends the session, which would cut a caddy-inlets
//     client from a version 2 server, which sends one after the hello
//     (TestNormalGoAwayKeepsTheSession).
//   - stream.go: when the session ends, what had arrived on a stream is
//     still read before the stream's error, as with hashicorp/yamux: a
//     server's last message (a shutdown, a rejection) is not lost to the
//     connection's close right behind it. Upstream drops it
//     (TestDataThatArrivedIsReadAfterTheSessionEnds).
//   - session.go: a session that closes first writes the frames it had
//     queued, within a second, in order: a Write returns once its frame
//     is queued, so a last message written just before Close would
//     otherwise never leave (TestAFrameQueuedBeforeCloseIsSent).
//   - session.go: the round trip is measured from a timer, not from a
//     goroutine per session parked on a ticker, so an idle session
//     costs its two loops' goroutines alone (a server holds thousands).
//
// The files are upstream's otherwise, under their licenses: MPL-2.0
// (LICENSE) and, for deadline.go, the Go authors' BSD license
// (LICENSE-BSD). Keep the difference to upstream to these changes, so
// that a release of go-yamux with them can replace this package.
package yamux
