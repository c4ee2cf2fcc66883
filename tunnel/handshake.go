package tunnel

import (
	"context"
	"fmt"
	"time"
)

// The two halves of the handshake (see the package documentation), side
// by side: what the server's half checks is what the client's half is
// told.

// Rejection is the server's refusal of a client, as the reject message
// carries it.
type Rejection struct {
	Code   string
	Retry  string
	Reason string
}

func (r *Rejection) Error() string { return r.Reason }

// Reject builds the rejection of a code, with the retry class the
// protocol gives that code.
func Reject(code, format string, args ...any) *Rejection {
	return &Rejection{Code: code, Retry: RetryOf(code), Reason: fmt.Sprintf(format, args...)}
}

// RetryOf is the retry class of a rejection code; RetryLater for a code
// this package does not know.
func RetryOf(code string) string {
	switch code {
	case RejectBadHello, RejectProtocol, RejectHostNotAllowed, RejectPortNotAllowed, RejectNoTCP, RejectTooLarge, RejectTokenRefused:
		return RetryNever
	case RejectShuttingDown:
		return RetryNow
	}
	return RetryLater
}

// ReadHello is the server's first half: it opens the control stream,
// reads the client's Hello, and checks its syntax and protocol version.
// It returns the control stream, still within HandshakeTimeout, for
// AcceptClient or RejectClient; on a rejection, it has sent it already.
func ReadHello(sess *Session) (*Stream, Hello, int, error) {
	var hello Hello
	ctrl, err := sess.openControl()
	if err != nil {
		return nil, hello, 0, fmt.Errorf("opening the control stream: %w", err)
	}
	ctrl.SetDeadline(time.Now().Add(HandshakeTimeout))
	if err := ReadFrame(ctrl, MaxHandshakeSize, &hello); err != nil {
		err = fmt.Errorf("reading the client's hello: %w", err)
		RejectClient(ctrl, Reject(RejectBadHello, "%s", err))
		return nil, hello, 0, err
	}
	version, err := hello.NegotiateProtocol()
	if err != nil {
		rej := Reject(RejectProtocol, "%s", err)
		RejectClient(ctrl, rej)
		return nil, hello, 0, rej
	}
	if err := hello.Validate(); err != nil {
		rej := Reject(RejectBadHello, "%s", err)
		RejectClient(ctrl, rej)
		return nil, hello, 0, rej
	}
	return ctrl, hello, version, nil
}

// RejectClient tells the client why it is refused. The session may end
// right after it: what is written goes out first, and the client reads it
// before the end.
func RejectClient(ctrl *Stream, r *Rejection) {
	_ = WriteFrame(ctrl, Message{Type: TypeReject, Code: r.Code, Retry: r.Retry, Reason: TruncateReason(r.Reason)})
}

// AcceptClient tells the client it is accepted and lifts the handshake's
// deadline from the control stream.
func AcceptClient(ctrl *Stream, serverVersion string, protocol int) error {
	if err := WriteFrame(ctrl, Message{Type: TypeAccept, Version: serverVersion, Protocol: protocol}); err != nil {
		return err
	}
	ctrl.SetDeadline(time.Time{})
	ctrl.sess.SetProtocol(protocol)
	return nil
}

// SendHello is the client's half: it accepts the control stream, sends
// hello and reads the answer. It returns the control stream, on which
// the server may send further messages, and the accept message; or a
// *Rejection.
func SendHello(ctx context.Context, sess *Session, hello Hello) (*Stream, Message, error) {
	var answer Message
	actx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	defer cancel()
	ctrl, err := sess.acceptControl(actx)
	if err != nil {
		return nil, answer, fmt.Errorf("waiting for the server's control stream: %w", err)
	}
	ctrl.SetDeadline(time.Now().Add(HandshakeTimeout))
	if err := WriteFrame(ctrl, hello); err != nil {
		return nil, answer, fmt.Errorf("sending hello: %w", err)
	}
	if err := ReadFrame(ctrl, MaxHandshakeSize, &answer); err != nil {
		return nil, answer, fmt.Errorf("reading the server's answer: %w", err)
	}
	switch answer.Type {
	case TypeAccept:
	case TypeReject:
		retry := answer.Retry
		if retry != RetryNow && retry != RetryNever {
			retry = RetryLater
		}
		return nil, answer, &Rejection{Code: answer.Code, Retry: retry, Reason: TruncateReason(answer.Reason)}
	default:
		return nil, answer, fmt.Errorf("the server answered the hello with a %q message, not accept or reject: is it a caddy-inlets server?", TruncateReason(answer.Type))
	}
	ctrl.SetDeadline(time.Time{})
	sess.SetProtocol(answer.Protocol)
	return ctrl, answer, nil
}

// Reply is the client's answer to a data stream's header: an empty code
// says the upstream is connected, and the stream goes on. Any other
// refuses the stream: the reply goes out with a FIN, and the client
// forgets the stream; the server resets it once it has read the reply (an
// RST from here could overtake the reply), and what the server sent
// meanwhile is dropped.
func Reply(st *Stream, code, reason string) error {
	st.SetWriteDeadline(time.Now().Add(ConnectionWriteTimeout))
	err := WriteFrame(st, StreamReply{Error: code, Reason: TruncateReason(reason)})
	st.SetWriteDeadline(time.Time{})
	switch {
	case err != nil:
		st.Reset()
		return err
	case code != "":
		st.CloseWrite()
		st.end()
		return &ReplyError{Code: code, Reason: reason}
	}
	st.replied.Store(true)
	return nil
}
