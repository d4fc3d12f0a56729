package bootstrap

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults of the SSH client.
const (
	DefaultDialTimeout       = 10 * time.Second
	DefaultKeepaliveInterval = 15 * time.Second
	DefaultPort              = 22
)

// Target says how to reach one machine.
type Target struct {
	Address string
	Port    int
	// User is root or a user with passwordless sudo (every command then runs under `sudo -n`).
	User    string
	HostKey HostKeyPolicy
	// ProxyJump, when set, is the jump host (bastion) the connection goes through, as OpenSSH's
	// ProxyJump: Dial logs in to it with the same identity and its own host-key policy, opens a
	// TCP channel from it to Addr, and runs the SSH handshake with the machine inside that
	// channel, so the machine's host key is verified end to end. One hop: the jump host's own
	// ProxyJump is ignored. Its User defaults to the machine's.
	ProxyJump *Target
}

// Addr is host:port.
func (t Target) Addr() string {
	port := t.Port
	if port == 0 {
		port = DefaultPort
	}
	return net.JoinHostPort(t.Address, strconv.Itoa(port))
}

// DialFunc opens a TCP connection (net.Dialer.DialContext by default; tests dial into a network
// namespace).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Dialer opens SSH connections with the operator's identity.
type Dialer struct {
	Signer ssh.Signer
	// DialContext opens the TCP connection (to the jump host, when the target has one); nil =
	// net.Dialer.
	DialContext DialFunc
	// Timeout bounds the TCP connect plus the SSH handshake, for each hop; 0 = DefaultDialTimeout.
	Timeout           time.Duration
	KeepaliveInterval time.Duration // 0 = DefaultKeepaliveInterval
}

// Client is one SSH connection to a machine. Its Run is safe for concurrent use.
type Client struct {
	conn *ssh.Client
	// jump is the connection to the jump host that conn runs through (nil without one); it is
	// closed with conn.
	jump *ssh.Client
	user string
	// Learned is the host key line trusted on first use during this connection ("" when the key
	// was pinned or learned before); JumpLearned is the same for the jump host.
	Learned, JumpLearned string
	stop                 chan struct{}
	once                 sync.Once
}

// Dial connects to t (through its jump host, if it has one), verifies the host keys and
// authenticates with the identity. An error names the hop that failed: "jump host ADDR: ..." for
// the jump host, the machine's address otherwise.
func (d *Dialer) Dial(ctx context.Context, t Target) (*Client, error) {
	if t.User == "" {
		t.User = "root"
	}
	timeout := d.Timeout
	if timeout == 0 {
		timeout = DefaultDialTimeout
	}
	dial := d.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	}
	c := &Client{user: t.User, stop: make(chan struct{})}
	via := ""
	if t.ProxyJump != nil {
		j := *t.ProxyJump
		j.ProxyJump = nil
		if j.User == "" {
			j.User = t.User
		}
		j.HostKey.Jump = true
		jump, learned, err := d.connect(ctx, dial, j, timeout)
		if err != nil {
			if isHostKeyError(err) {
				return nil, err // it names the jump host already
			}
			return nil, fmt.Errorf("jump host %s: %w", j.Addr(), err)
		}
		c.jump, c.JumpLearned = jump, learned
		dial = jump.DialContext
		via = " through jump host " + j.Addr()
	}
	conn, learned, err := d.connect(ctx, dial, t, timeout)
	if err != nil {
		if c.jump != nil {
			c.jump.Close()
		}
		var nerr net.Error
		switch {
		case isHostKeyError(err):
			return nil, err
		case via != "":
			return nil, fmt.Errorf("connecting to %s%s: %w", t.Addr(), via, err)
		case errors.As(err, &nerr) && nerr.Timeout():
			return nil, fmt.Errorf("connecting to %s: %w (if the operator cannot reach the machine directly, "+
				"set spec.proxyJump to a jump host that can)", t.Addr(), err)
		default:
			return nil, fmt.Errorf("connecting to %s: %w", t.Addr(), err)
		}
	}
	c.conn, c.Learned = conn, learned
	interval := d.KeepaliveInterval
	if interval == 0 {
		interval = DefaultKeepaliveInterval
	}
	go c.keepalive(c.conn, interval)
	if c.jump != nil {
		go c.keepalive(c.jump, interval)
	}
	return c, nil
}

// connect opens a connection to t with dial and runs the SSH handshake over it, within timeout.
// It returns the host key trusted on first use, if any.
func (d *Dialer) connect(ctx context.Context, dial DialFunc, t Target, timeout time.Duration) (*ssh.Client, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := t.Addr()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, "", err
	}
	// A channel through a jump host has no deadlines; closing it when ctx ends stops the
	// handshake all the same.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var learned string
	cfg := &ssh.ClientConfig{
		User:            t.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(d.Signer)},
		HostKeyCallback: t.HostKey.Callback(func(k string) { learned = k }),
		Timeout:         timeout,
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			conn.Close()
		case <-done:
		}
	}()
	sconn, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	close(done)
	if err != nil {
		conn.Close()
		if isHostKeyError(err) {
			return nil, "", unwrapHandshake(err)
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, "", fmt.Errorf("SSH handshake as %s: %w", t.User, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(sconn, chans, reqs), learned, nil
}

// isHostKeyError says whether err is a refused host key: permanent until the spec changes.
func isHostKeyError(err error) bool {
	var mismatch *HostKeyMismatchError
	return errors.As(err, &mismatch) || errors.Is(err, ErrNoHostKey)
}

// unwrapHandshake returns the host-key error without x/crypto's "ssh: handshake failed: " prefix.
func unwrapHandshake(err error) error {
	if inner := errors.Unwrap(err); inner != nil && strings.HasPrefix(err.Error(), "ssh: handshake failed: ") {
		return inner
	}
	return err
}

// keepalive pings the server of conn (the machine, or its jump host) and closes the client when
// it stops answering, so that a dead machine fails the running command instead of hanging it.
func (c *Client) keepalive(conn *ssh.Client, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			res := make(chan error, 1)
			go func() {
				_, _, err := conn.SendRequest("keepalive@openssh.com", true, nil)
				res <- err
			}()
			select {
			case err := <-res:
				if err != nil {
					c.Close()
					return
				}
			case <-time.After(3 * interval):
				c.Close()
				return
			case <-c.stop:
				return
			}
		}
	}
}

// Close ends the connection (and the jump host's).
func (c *Client) Close() error {
	c.once.Do(func() { close(c.stop) })
	err := c.conn.Close()
	if c.jump != nil {
		c.jump.Close()
	}
	return err
}

// User is the login user.
func (c *Client) User() string { return c.user }

// Run runs a shell command (as root: through `sudo -n` for other users) with stdin, and returns
// its combined output. A non-zero exit is an error that carries the output.
func (c *Client) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error) {
	sess, err := c.conn.NewSession()
	if err != nil {
		return nil, fmt.Errorf("opening SSH session: %w", err)
	}
	defer sess.Close()
	// x/crypto copies stdout and stderr in two goroutines: one shared bytes.Buffer would be
	// written concurrently and lose output, so the buffer takes a lock.
	out := &lockedBuffer{}
	sess.Stdout = out
	sess.Stderr = out
	if stdin != nil {
		sess.Stdin = stdin
	}
	// The script travels base64-encoded on one line: login shells differ in how they treat a
	// multi-line -c argument (some run nothing), and sudo adds another layer of quoting.
	full := `sh -c "$(echo ` + base64.StdEncoding.EncodeToString([]byte(cmd)) + ` | base64 -d)"`
	if c.user != "root" {
		full = "sudo -n " + full
	}
	if err := sess.Start(full); err != nil {
		return nil, fmt.Errorf("starting command: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGKILL)
		sess.Close()
		return out.Bytes(), ctx.Err()
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		err = fmt.Errorf("the SSH connection was lost before the command finished (sshd stopped, or the machine went away): %w", err)
	}
	if err != nil {
		return out.Bytes(), &CommandError{Err: err, Output: out.Bytes()}
	}
	return out.Bytes(), nil
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Bytes returns a copy of what was written so far.
func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// CommandError is a remote command that failed.
type CommandError struct {
	Err    error
	Output []byte
}

func (e *CommandError) Error() string {
	out := strings.TrimSpace(string(e.Output))
	if len(out) > 500 {
		out = "..." + out[len(out)-500:]
	}
	if out == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("%v: %s", e.Err, out)
}

func (e *CommandError) Unwrap() error { return e.Err }

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
