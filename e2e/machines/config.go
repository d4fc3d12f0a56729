package machines

import (
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
)

// DefaultSubnet is the lab network used when Config.Subnet is empty.
const DefaultSubnet = "192.168.77.0/24"

// Config describes a lab.
type Config struct {
	// N is the number of machines (1..200).
	N int
	// Subnet is the lab network, an IPv4 prefix of length 24 or shorter. Machine i (1-based)
	// gets the i-th address, the switch (and the registry) the second-to-last, the host the last.
	Subnet string
	// HostLink gives the host's root namespace an address on the lab network (Lab.HostAddr), so
	// that processes on the host, such as the operator, reach the machines and are reached by
	// them. It adds a veth and an on-link route to the host and nothing else.
	HostLink bool
	// AuthorizedKeys are public key lines ("ssh-ed25519 AAAA... comment") that sshd accepts for
	// root and for SudoUser.
	AuthorizedKeys []string
	// SudoUser, when set, is a non-root user created in every machine with passwordless sudo.
	SudoUser string
	// NoSSHD, NoContainerd and NoRegistry leave out those components (for tests that only
	// need the network).
	NoSSHD, NoContainerd, NoRegistry bool
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

var userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,30}$`)

// Validate checks the configuration and names the first bad field.
func (c Config) Validate() error {
	if c.N < 1 || c.N > 200 {
		return fmt.Errorf("N: %d machines, want 1..200", c.N)
	}
	if c.Subnet != "" {
		p, err := netip.ParsePrefix(c.Subnet)
		if err != nil {
			return fmt.Errorf("Subnet: %w", err)
		}
		if !p.Addr().Is4() || p.Bits() > 24 {
			return fmt.Errorf("Subnet: %s must be an IPv4 prefix of length 24 or shorter", c.Subnet)
		}
	}
	if c.SudoUser != "" && (!userName.MatchString(c.SudoUser) || c.SudoUser == "root") {
		return fmt.Errorf("SudoUser: %q is not a valid non-root user name", c.SudoUser)
	}
	return nil
}

// addressPlan is the lab's addressing, derived from the subnet.
type addressPlan struct {
	prefix netip.Prefix
}

func newAddressPlan(subnet string) addressPlan {
	if subnet == "" {
		subnet = DefaultSubnet
	}
	return addressPlan{prefix: netip.MustParsePrefix(subnet).Masked()}
}

// nth returns the n-th address of the subnet (n >= 1).
func (a addressPlan) nth(n int) netip.Addr {
	b := a.prefix.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (a addressPlan) size() int { return 1 << (32 - a.prefix.Bits()) }

func (a addressPlan) machine(i int) netip.Addr { return a.nth(i) }
func (a addressPlan) switchAddr() netip.Addr   { return a.nth(a.size() - 3) }
func (a addressPlan) host() netip.Addr         { return a.nth(a.size() - 2) }

// cidr formats addr with the lab's prefix length ("192.168.77.1/24").
func (a addressPlan) cidr(addr netip.Addr) string {
	return netip.PrefixFrom(addr, a.prefix.Bits()).String()
}
