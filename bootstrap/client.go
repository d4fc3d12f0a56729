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
	// DialContext opens the TCP connection; nil = net.Dialer.
	DialContext       DialFunc
	Timeout           time.Duration // TCP connect plus SSH handshake; 0 = DefaultDialTimeout
	KeepaliveInterval time.Duration // 0 = DefaultKeepaliveInterval
}

// Client is one SSH connection to a machine. Its Run is safe for concurrent use.
type Client struct {
	conn *ssh.Client
	user string
	// Learned is the host key line trusted on first use during this connection ("" when the key
	// was pinned or learned before).
	Learned string
	stop    chan struct{}
	once    sync.Once
}

// Dial connects to t, verifies its host key and authenticates with the identity.
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
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := t.Addr()
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
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
	// Stop the handshake when ctx ends.
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
		var mismatch *HostKeyMismatchError
		if errors.As(err, &mismatch) || errors.Is(err, ErrNoHostKey) {
			return nil, unwrapHandshake(err)
		}
		return nil, fmt.Errorf("SSH handshake with %s@%s: %w", t.User, addr, err)
	}
	_ = conn.SetDeadline(time.Time{})
	c := &Client{conn: ssh.NewClient(sconn, chans, reqs), user: t.User, Learned: learned, stop: make(chan struct{})}
	interval := d.KeepaliveInterval
	if interval == 0 {
		interval = DefaultKeepaliveInterval
	}
	go c.keepalive(interval)
	return c, nil
}

// unwrapHandshake returns the host-key error itself: x/crypto wraps it in "ssh: handshake failed".
func unwrapHandshake(err error) error {
	var mismatch *HostKeyMismatchError
	if errors.As(err, &mismatch) {
		return mismatch
	}
	if errors.Is(err, ErrNoHostKey) {
		msg := strings.TrimPrefix(err.Error(), "ssh: handshake failed: ")
		return fmt.Errorf("%s%w", strings.TrimSuffix(msg, ErrNoHostKey.Error()), ErrNoHostKey)
	}
	return err
}

// keepalive pings the server and closes the connection when it stops answering, so that a dead
// machine fails the running command instead of hanging it.
func (c *Client) keepalive(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			res := make(chan error, 1)
			go func() {
				_, _, err := c.conn.SendRequest("keepalive@openssh.com", true, nil)
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

// Close ends the connection.
func (c *Client) Close() error {
	c.once.Do(func() { close(c.stop) })
	return c.conn.Close()
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
