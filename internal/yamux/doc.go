// Package yamux is github.com/libp2p/go-yamux/v5 at v5.1.0, a yamux
// implementation (the protocol of spec.md, which hashicorp/yamux speaks
// too), with one fix of caddy-inlets' in stream.go, marked
// "caddy-inlets:": a window update that grows a stream's window carries
// the credit the reader freed as well as the growth. Upstream's sends only
// the growth, so every growth leaves the receiver counting credit the
// sender never got, and a stream whose window has grown a few times
// stalls for good (TestGrowthKeepsBothSidesCreditInStep reproduces it).
//
// The files are upstream's otherwise, under their licenses: MPL-2.0
// (LICENSE) and, for deadline.go, the Go authors' BSD license
// (LICENSE-BSD). Keep the difference to upstream to that fix, so that a
// release of go-yamux with it can replace this package.
package yamux
