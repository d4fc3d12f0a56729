package gitsync

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/net/proxy"
)

// deadlineScheme names the dialer that ssh fetches go through (as go-git's "proxy") to put the
// fetch's deadline on the TCP connection. go-git's ssh transport takes no context until the SSH
// handshake is over, so without it a server that accepts the connection and never speaks would
// hold the sync loop forever; the proxy dialer is the one hook go-git offers on that connection.
// HTTP needs nothing of the kind: go-git sends every request with the fetch's context.
const deadlineScheme = "bosun-deadline"

// The registry is x/net/proxy's; the dialer keeps no state, the deadline travels in the URL.
func init() { proxy.RegisterDialerType(deadlineScheme, newDeadlineDialer) }

// deadlineProxy is the ProxyOptions of an ssh fetch that must end by deadline.
func deadlineProxy(deadline time.Time) transport.ProxyOptions {
	return transport.ProxyOptions{URL: fmt.Sprintf("%s://fetch?deadline=%d", deadlineScheme, deadline.UnixNano())}
}

// deadlineDialer dials directly and sets its deadline on the connection, which bounds the
// dial, the handshake and every read and write after it.
type deadlineDialer struct{ deadline time.Time }

var _ proxy.ContextDialer = deadlineDialer{}

func newDeadlineDialer(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
	n, err := strconv.ParseInt(u.Query().Get("deadline"), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%s dialer: bad deadline in %s: %w", deadlineScheme, u, err)
	}
	return deadlineDialer{deadline: time.Unix(0, n)}, nil
}

func (d deadlineDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d deadlineDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{Deadline: d.deadline}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(d.deadline); err != nil {
		conn.Close()
		return nil, fmt.Errorf("setting the fetch deadline on %s: %w", addr, err)
	}
	return conn, nil
}
