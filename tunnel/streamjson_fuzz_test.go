package tunnel

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzStreamJSON checks streamjson.go against encoding/json, which it
// stands in for: any bytes decode to the same StreamHeader and
// StreamReply (over fields set before, which a frame that lacks them
// keeps) with the same success, and any header or reply encodes to the
// same bytes.
func FuzzStreamJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, a, b, c string, port int) {
		prior := StreamHeader{Kind: "k", Host: "h", Port: 7, RemoteAddr: "r", LocalAddr: "l", ProxyProtocol: "p"}
		want, got := prior, prior
		werr := json.Unmarshal(data, &want)
		gerr := decodeStreamHeader(data, &got)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("StreamHeader %q: encoding/json says %v, decodeStreamHeader %v", data, werr, gerr)
		}
		if werr == nil && want != got {
			t.Fatalf("StreamHeader %q: encoding/json decodes %+v, decodeStreamHeader %+v", data, want, got)
		}
		wr, gr := StreamReply{Error: "e", Reason: "r"}, StreamReply{Error: "e", Reason: "r"}
		werr = json.Unmarshal(data, &wr)
		gerr = decodeStreamReply(data, &gr)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("StreamReply %q: encoding/json says %v, decodeStreamReply %v", data, werr, gerr)
		}
		if werr == nil && wr != gr {
			t.Fatalf("StreamReply %q: encoding/json decodes %+v, decodeStreamReply %+v", data, wr, gr)
		}

		for _, h := range []StreamHeader{
			{Kind: a, Host: b, Port: port, RemoteAddr: c, LocalAddr: a, ProxyProtocol: b},
			{Kind: a, Port: port},
			{Kind: b, Host: a},
			{Kind: c, RemoteAddr: a, LocalAddr: b},
		} {
			wantJSON, err := json.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			if got := appendStreamHeader(nil, &h); !bytes.Equal(got, wantJSON) {
				t.Fatalf("%+v: encoding/json writes %s, appendStreamHeader %s", h, wantJSON, got)
			}
			var back StreamHeader
			if err := decodeStreamHeader(wantJSON, &back); err != nil || back != roundTrip(t, wantJSON) {
				t.Fatalf("%s decodes to %+v, %v", wantJSON, back, err)
			}
		}
		for _, r := range []StreamReply{{Error: a, Reason: b}, {Reason: c}, {Error: c}, {}} {
			wantJSON, _ := json.Marshal(r)
			if got := appendStreamReply(nil, &r); !bytes.Equal(got, wantJSON) {
				t.Fatalf("%+v: encoding/json writes %s, appendStreamReply %s", r, wantJSON, got)
			}
		}
	})
}

// roundTrip is what encoding/json decodes a header it wrote to: strings
// with invalid UTF-8 come back changed.
func roundTrip(t *testing.T, data []byte) StreamHeader {
	var h StreamHeader
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	return h
}
