package bootstrap

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ErrNoHostKey is returned for a machine without a pinned host key when trust on first use is off.
var ErrNoHostKey = errors.New("no host key pinned: set spec.hostKey to the machine's SSH host key " +
	"(the output of `ssh-keyscan -t ed25519 ADDRESS`, without the address, or its SHA256: fingerprint), " +
	"or set trustOnFirstUse: true in bosun.yaml")

// errNoJumpHostKey is ErrNoHostKey for a jump host.
var errNoJumpHostKey = &noJumpHostKeyError{}

type noJumpHostKeyError struct{}

func (*noJumpHostKeyError) Error() string {
	return "no host key pinned for the jump host: set spec.proxyJump.hostKey to its SSH host key " +
		"(the output of `ssh-keyscan -t ed25519 ADDRESS`, without the address, or its SHA256: fingerprint), " +
		"or set trustOnFirstUse: true in bosun.yaml"
}

func (*noJumpHostKeyError) Is(target error) bool { return target == ErrNoHostKey }

// HostKeyMismatchError says that a machine (or its jump host) presented a different host key than
// the one pinned or learned. The bootstrap stops; it is never retried automatically.
type HostKeyMismatchError struct {
	Addr string
	// Want is the pinned key or fingerprint, Got the presented key's fingerprint.
	Want, Got string
	// Learned is true when Want was learned on first use rather than pinned in Git.
	Learned bool
	// Jump is true when the server is the machine's jump host (spec.proxyJump).
	Jump bool
}

func (e *HostKeyMismatchError) Error() string {
	what, field, learned := "host key of "+e.Addr, "spec.hostKey", "status.learnedHostKey"
	if e.Jump {
		what, field, learned = "jump host "+e.Addr+": host key", "spec.proxyJump.hostKey", "status.learnedJumpHostKey"
	}
	source := field
	if e.Learned {
		source = "the key learned on first use (" + learned + ")"
	}
	host := "machine"
	if e.Jump {
		host = "jump host"
	}
	return fmt.Sprintf("%s changed: expected %s (%s), the server presented %s; "+
		"bootstrap stopped. If the %s was reinstalled, put its new key in %s; "+
		"otherwise someone may be intercepting the connection", what, e.Want, source, e.Got, host, field)
}

// HostKeyPolicy decides whether a presented host key is trusted: the pinned key (a public key
// line or a "SHA256:" fingerprint) wins; without one, a key learned earlier is enforced; without
// either, the key is trusted only when TrustOnFirstUse is set.
type HostKeyPolicy struct {
	Pinned          string
	Learned         string
	TrustOnFirstUse bool
	// Jump says that the policy is a jump host's: errors name it and its spec.proxyJump fields.
	Jump bool
}

// Check verifies key for addr. It returns the key line to record as learned when the key was
// trusted on first use ("" otherwise).
func (p HostKeyPolicy) Check(addr string, key ssh.PublicKey) (learned string, err error) {
	got := ssh.FingerprintSHA256(key)
	switch {
	case strings.TrimSpace(p.Pinned) != "":
		ok, err := matchHostKey(p.Pinned, key)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", &HostKeyMismatchError{Addr: addr, Want: describeKey(p.Pinned), Got: got, Jump: p.Jump}
		}
		return "", nil
	case p.Learned != "":
		ok, err := matchHostKey(p.Learned, key)
		if err != nil {
			if p.Jump {
				return "", fmt.Errorf("status.learnedJumpHostKey: %w", err)
			}
			return "", fmt.Errorf("status.learnedHostKey: %w", err)
		}
		if !ok {
			return "", &HostKeyMismatchError{Addr: addr, Want: describeKey(p.Learned), Got: got, Learned: true, Jump: p.Jump}
		}
		return "", nil
	case p.TrustOnFirstUse:
		return FormatHostKey(key), nil
	case p.Jump:
		return "", fmt.Errorf("jump host %s: %w", addr, errNoJumpHostKey)
	default:
		return "", fmt.Errorf("%s: %w", addr, ErrNoHostKey)
	}
}

// Callback adapts the policy to ssh.ClientConfig; a key trusted on first use is passed to learn.
func (p HostKeyPolicy) Callback(learn func(string)) ssh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		// hostname is the address dialled; a channel through a jump host has no remote address.
		addr := hostname
		if addr == "" && remote != nil {
			addr = remote.String()
		}
		learned, err := p.Check(addr, key)
		if err != nil {
			return err
		}
		if learned != "" && learn != nil {
			learn(learned)
		}
		return nil
	}
}

// FormatHostKey is a host key as it can be pasted into spec.hostKey: "ssh-ed25519 AAAA...".
func FormatHostKey(key ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

// matchHostKey compares key with a pinned key line or SHA256 fingerprint.
func matchHostKey(pinned string, key ssh.PublicKey) (bool, error) {
	pinned = strings.TrimSpace(pinned)
	if fp, ok := strings.CutPrefix(pinned, "SHA256:"); ok {
		return strings.TrimRight(fp, "=") == strings.TrimPrefix(ssh.FingerprintSHA256(key), "SHA256:"), nil
	}
	want, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pinned))
	if err != nil {
		return false, fmt.Errorf("hostKey %q is neither an SSH public key line nor a SHA256: fingerprint: %w", abbreviate(pinned), err)
	}
	return bytes.Equal(want.Marshal(), key.Marshal()), nil
}

// ValidateHostKey checks that s is a public key line or a SHA256 fingerprint.
func ValidateHostKey(s string) error {
	s = strings.TrimSpace(s)
	if fp, ok := strings.CutPrefix(s, "SHA256:"); ok {
		if len(strings.TrimRight(fp, "=")) != 43 {
			return fmt.Errorf("fingerprint %q: want SHA256: followed by 43 base64 characters", s)
		}
		return nil
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(s)); err != nil {
		return fmt.Errorf("%q is neither an SSH public key line (\"ssh-ed25519 AAAA...\") nor a SHA256: fingerprint", abbreviate(s))
	}
	return nil
}

// describeKey shows a pinned value as a fingerprint when it is a key line.
func describeKey(pinned string) string {
	pinned = strings.TrimSpace(pinned)
	if strings.HasPrefix(pinned, "SHA256:") {
		return pinned
	}
	if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(pinned)); err == nil {
		return ssh.FingerprintSHA256(k)
	}
	return abbreviate(pinned)
}

func abbreviate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
