package tunnel

import (
	"encoding/json"
	"strconv"
)

// Every new stream carries a StreamHeader one way and a StreamReply the
// other, as JSON (doc.go, "Data streams"). encoding/json spends more on
// those few bytes than the rest of a stream's opening: reflection, and a
// new stream's goroutine growing its stack to hold the decoder (a CPU
// profile of a client serving TCP visitors that each make one small
// request put 12% of its time there). The functions here encode and
// decode the plain form those frames take in practice, and leave every
// other form to encoding/json, so that what they accept and produce is
// exactly what encoding/json would: FuzzStreamJSON checks both ways.

// appendStreamHeader appends h as encoding/json's Marshal would.
func appendStreamHeader(b []byte, h *StreamHeader) []byte {
	if !plainJSON(h.Kind) || !plainJSON(h.Host) || !plainJSON(h.RemoteAddr) ||
		!plainJSON(h.LocalAddr) || !plainJSON(h.ProxyProtocol) {
		body, _ := json.Marshal(h) // a struct of strings and an int cannot fail
		return append(b, body...)
	}
	b = append(b, `{"kind":"`...)
	b = append(b, h.Kind...)
	b = append(b, '"')
	b = appendField(b, "host", h.Host)
	if h.Port != 0 {
		b = append(b, `,"port":`...)
		b = strconv.AppendInt(b, int64(h.Port), 10)
	}
	b = appendField(b, "remoteAddr", h.RemoteAddr)
	b = appendField(b, "localAddr", h.LocalAddr)
	b = appendField(b, "proxyProtocol", h.ProxyProtocol)
	return append(b, '}')
}

// appendField appends ,"name":"value" for a plain, non-empty value (the
// fields are omitempty).
func appendField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":"`...)
	b = append(b, value...)
	return append(b, '"')
}

// plainJSON reports whether encoding/json writes s as itself between
// quotes: printable ASCII without the characters it escapes (", \, and
// <, >, & for HTML).
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// decodeStreamHeader decodes body into h: the plain form here, anything
// else with encoding/json. As with encoding/json, fields absent from body
// keep what h held, and h is undefined after an error.
func decodeStreamHeader(body []byte, h *StreamHeader) error {
	ok := scanObject(body, func(key string, s string, n int, isNum bool) bool {
		switch {
		case key == "port" && isNum:
			h.Port = n
		case isNum:
			return false
		case key == "kind":
			h.Kind = s
		case key == "host":
			h.Host = s
		case key == "remoteAddr":
			h.RemoteAddr = s
		case key == "localAddr":
			h.LocalAddr = s
		case key == "proxyProtocol":
			h.ProxyProtocol = s
		default:
			return false
		}
		return true
	})
	// A member declined part way has been written only where
	// encoding/json, which takes every member in order, writes again.
	if !ok {
		return json.Unmarshal(body, h)
	}
	return nil
}

// decodeStreamReply decodes body into r, as decodeStreamHeader does.
func decodeStreamReply(body []byte, r *StreamReply) error {
	ok := scanObject(body, func(key string, s string, _ int, isNum bool) bool {
		switch {
		case isNum:
			return false
		case key == "error":
			r.Error = s
		case key == "reason":
			r.Reason = s
		default:
			return false
		}
		return true
	})
	if !ok {
		return json.Unmarshal(body, r)
	}
	return nil
}

// appendStreamReply appends r as encoding/json's Marshal would.
func appendStreamReply(b []byte, r *StreamReply) []byte {
	if !plainJSON(r.Error) || !plainJSON(r.Reason) {
		body, _ := json.Marshal(r)
		return append(b, body...)
	}
	b = append(b, '{')
	mark := len(b)
	b = appendField(b, "error", r.Error)
	b = appendField(b, "reason", r.Reason)
	if len(b) > mark {
		b = append(b[:mark], b[mark+1:]...) // the first field's comma
	}
	return append(b, '}')
}

// scanObject reads body as a JSON object in the plain form: no
// whitespace, keys and string values plain (plainJSON), numbers of one to
// nine digits without a leading zero. It calls field for each member, and
// reports false, having stopped, when body is not in that form or field
// declines a member.
func scanObject(body []byte, field func(key, s string, n int, isNum bool) bool) bool {
	if len(body) < 2 || body[0] != '{' || body[len(body)-1] != '}' {
		return false
	}
	i, end := 1, len(body)-1
	if i == end {
		return true
	}
	for {
		key, next, ok := plainString(body, i, end)
		if !ok || next >= end || body[next] != ':' {
			return false
		}
		i = next + 1
		if i >= end {
			return false
		}
		if body[i] == '"' {
			s, next, ok := plainString(body, i, end)
			if !ok || !field(key, s, 0, false) {
				return false
			}
			i = next
		} else {
			j := i
			for j < end && body[j] >= '0' && body[j] <= '9' {
				j++
			}
			if j == i || j-i > 9 || (body[i] == '0' && j-i > 1) {
				return false
			}
			n, _ := strconv.Atoi(string(body[i:j]))
			if !field(key, "", n, true) {
				return false
			}
			i = j
		}
		switch {
		case i == end:
			return true
		case body[i] != ',':
			return false
		}
		i++
	}
}

// plainString reads the plain JSON string that starts at body[i], before
// end: its content and the index after its closing quote.
func plainString(body []byte, i, end int) (string, int, bool) {
	if i >= end || body[i] != '"' {
		return "", 0, false
	}
	for j := i + 1; j < end; j++ {
		switch c := body[j]; {
		case c == '"':
			return string(body[i+1 : j]), j + 1, true
		case c < 0x20, c >= 0x7f, c == '\\':
			return "", 0, false
		}
	}
	return "", 0, false
}
