package bootstrap

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

func newHostKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestHostKeyPolicy(t *testing.T) {
	key, other := newHostKey(t), newHostKey(t)
	line := FormatHostKey(key) + " root@m1"
	tests := []struct {
		name        string
		policy      HostKeyPolicy
		wantLearned string
		wantErr     string // substring; "" = accepted
		mismatch    bool
		noKey       bool // errors.Is(err, ErrNoHostKey)
	}{
		{name: "pinned key line", policy: HostKeyPolicy{Pinned: line}},
		{name: "pinned fingerprint", policy: HostKeyPolicy{Pinned: ssh.FingerprintSHA256(key)}},
		{name: "pinned fingerprint with padding", policy: HostKeyPolicy{Pinned: ssh.FingerprintSHA256(key) + "="}},
		{name: "pinned wins over TOFU", policy: HostKeyPolicy{Pinned: line, TrustOnFirstUse: true}},
		{name: "pinned key mismatch", policy: HostKeyPolicy{Pinned: FormatHostKey(other)}, mismatch: true,
			wantErr: "host key of 192.0.2.1:22 changed: expected " + ssh.FingerprintSHA256(other) + " (spec.hostKey), the server presented " + ssh.FingerprintSHA256(key)},
		{name: "pinned fingerprint mismatch", policy: HostKeyPolicy{Pinned: ssh.FingerprintSHA256(other)}, mismatch: true,
			wantErr: "put its new key in spec.hostKey"},
		{name: "pinned garbage", policy: HostKeyPolicy{Pinned: "not a key"}, wantErr: "neither an SSH public key line nor a SHA256: fingerprint"},
		{name: "no key refused", policy: HostKeyPolicy{}, wantErr: "192.0.2.1:22: no host key pinned", noKey: true},
		{name: "TOFU learns", policy: HostKeyPolicy{TrustOnFirstUse: true}, wantLearned: FormatHostKey(key)},
		{name: "TOFU enforces the learned key", policy: HostKeyPolicy{TrustOnFirstUse: true, Learned: FormatHostKey(key)}},
		{name: "TOFU learned key changed", policy: HostKeyPolicy{TrustOnFirstUse: true, Learned: FormatHostKey(other)}, mismatch: true,
			wantErr: "(the key learned on first use (status.learnedHostKey))"},
		{name: "learned key enforced even after TOFU is switched off", policy: HostKeyPolicy{Learned: FormatHostKey(key)}},
		{name: "jump host pinned", policy: HostKeyPolicy{Pinned: line, Jump: true}},
		{name: "jump host mismatch", policy: HostKeyPolicy{Pinned: FormatHostKey(other), Jump: true}, mismatch: true,
			wantErr: "jump host 192.0.2.1:22: host key changed: expected " + ssh.FingerprintSHA256(other) + " (spec.proxyJump.hostKey), " +
				"the server presented " + ssh.FingerprintSHA256(key) + "; bootstrap stopped. If the jump host was reinstalled, put its new key in spec.proxyJump.hostKey"},
		{name: "jump host learned key changed", policy: HostKeyPolicy{Learned: FormatHostKey(other), Jump: true}, mismatch: true,
			wantErr: "(the key learned on first use (status.learnedJumpHostKey))"},
		{name: "jump host without key refused", policy: HostKeyPolicy{Jump: true}, noKey: true,
			wantErr: "jump host 192.0.2.1:22: no host key pinned for the jump host: set spec.proxyJump.hostKey"},
		{name: "jump host TOFU learns", policy: HostKeyPolicy{TrustOnFirstUse: true, Jump: true}, wantLearned: FormatHostKey(key)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			learned, err := tt.policy.Check("192.0.2.1:22", key)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check error = %v, want it to contain %q", err, tt.wantErr)
			}
			var m *HostKeyMismatchError
			if got := errors.As(err, &m); got != tt.mismatch {
				t.Errorf("HostKeyMismatchError = %v, want %v", got, tt.mismatch)
			}
			if got := errors.Is(err, ErrNoHostKey); got != tt.noKey {
				t.Errorf("errors.Is(err, ErrNoHostKey) = %v, want %v", got, tt.noKey)
			}
			if diff := cmp.Diff(tt.wantLearned, learned); diff != "" {
				t.Errorf("learned (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTOFURecordsThenEnforces(t *testing.T) {
	key, other := newHostKey(t), newHostKey(t)
	var recorded string
	cb := HostKeyPolicy{TrustOnFirstUse: true}.Callback(func(k string) { recorded = k })
	if err := cb("m1:22", nil, key); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := ValidateHostKey(recorded); err != nil {
		t.Fatalf("the recorded key cannot be pasted into spec.hostKey: %v", err)
	}
	next := HostKeyPolicy{TrustOnFirstUse: true, Learned: recorded}.Callback(func(string) { t.Error("learned again") })
	if err := next("m1:22", nil, key); err != nil {
		t.Fatalf("second use, same key: %v", err)
	}
	var m *HostKeyMismatchError
	if err := next("m1:22", nil, other); !errors.As(err, &m) {
		t.Fatalf("second use, other key: err = %v, want a HostKeyMismatchError", err)
	}
}

func TestValidateHostKey(t *testing.T) {
	key := newHostKey(t)
	for _, s := range []string{FormatHostKey(key), FormatHostKey(key) + " root@host", ssh.FingerprintSHA256(key)} {
		if err := ValidateHostKey(s); err != nil {
			t.Errorf("ValidateHostKey(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "SHA256:short", "ssh-ed25519 notbase64!"} {
		if err := ValidateHostKey(s); err == nil {
			t.Errorf("ValidateHostKey(%q) accepted", s)
		}
	}
}

func TestLoadOrCreateIdentity(t *testing.T) {
	path := t.TempDir() + "/ssh/id_ed25519"
	a, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(AuthorizedKey(a), AuthorizedKey(b)); diff != "" {
		t.Errorf("identity changed on reload (-first +second):\n%s", diff)
	}
	if !strings.HasPrefix(AuthorizedKey(a), "ssh-ed25519 ") {
		t.Errorf("AuthorizedKey = %q, want an ssh-ed25519 line", AuthorizedKey(a))
	}
}

// TestUnwrapHandshake: a refused host key reaches the user without x/crypto's prefix, still
// recognisable as the typed error.
func TestUnwrapHandshake(t *testing.T) {
	key, other := newHostKey(t), newHostKey(t)
	_, cause := HostKeyPolicy{Pinned: FormatHostKey(other), Jump: true}.Check("192.0.2.1:22", key)
	got := unwrapHandshake(fmt.Errorf("ssh: handshake failed: %w", cause))
	if got.Error() != cause.Error() || !isHostKeyError(got) {
		t.Errorf("unwrapHandshake = %v, want %v", got, cause)
	}
	_, cause = HostKeyPolicy{}.Check("192.0.2.1:22", key)
	got = unwrapHandshake(fmt.Errorf("ssh: handshake failed: %w", cause))
	if got.Error() != cause.Error() || !errors.Is(got, ErrNoHostKey) {
		t.Errorf("unwrapHandshake = %v, want %v", got, cause)
	}
}
