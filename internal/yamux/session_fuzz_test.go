package yamux

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// frame is one yamux frame: its header and body.
func frame(typ uint8, flags uint16, id, length uint32, body []byte) []byte {
	h := encode(typ, flags, id, length)
	return append(h[:], body...)
}

// Whatever bytes a peer sends, a session neither panics nor hangs: it
// ends once the peer's connection does. A client's session (the server's
// side of a tunnel) reads what a tunnel client sends.
func FuzzSessionInput(f *testing.F) {
	f.Add(frame(typeWindowUpdate, flagSYN, 2, 0, nil))                                                         // a stream opened by the peer
	f.Add(frame(typeData, flagSYN, 2, 5, []byte("hello")))                                                     // with data
	f.Add(frame(typeData, 0, 1, 1<<20, make([]byte, 16)))                                                      // more than the window, cut short
	f.Add(frame(typePing, flagSYN, 0, 7, nil))                                                                 // a ping
	f.Add(frame(typePing, flagACK, 0, 9, nil))                                                                 // an answer to no ping
	f.Add(frame(typeWindowUpdate, flagRST, 1, 3, nil))                                                         // a reset with an error code
	f.Add(frame(typeGoAway, 0, 0, goAwayProtoErr, nil))                                                        // go away
	f.Add(append(frame(typeWindowUpdate, flagSYN, 4, 0, nil), frame(typeWindowUpdate, flagSYN, 4, 0, nil)...)) // twice the same stream
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})                                                          // another version
	f.Add([]byte{0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})                                                          // an unknown type
	f.Add(binary.BigEndian.AppendUint32(frame(typeData, 0, 3, 0, nil)[:8], 1<<31))                             // a huge length
	f.Fuzz(func(t *testing.T, input []byte) {
		ours, peer := net.Pipe()
		cfg := DefaultConfig()
		cfg.LogOutput = io.Discard
		cfg.EnableKeepAlive = false
		sess, err := Client(ours, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		go io.Copy(io.Discard, peer) // what the session answers
		go func() {
			peer.SetWriteDeadline(time.Now().Add(2 * time.Second))
			peer.Write(input)
			peer.Close()
		}()
		select {
		case <-sess.CloseChan():
		case <-time.After(5 * time.Second):
			t.Fatalf("the session outlived its peer's connection by 5s after %d bytes", len(input))
		}
	})
}
