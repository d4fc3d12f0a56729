package proxy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
)

// A node switched from one proxy mode to the other would keep the old mode's rules, and both
// modes DNAT at the same hooks: the old rules would keep sending new connections to the
// endpoints they knew. So each mode removes the other's leftovers when it starts.

// removeIPTablesLeftovers deletes what the iptables mode wrote: its jump rules and its own
// chains in nat and filter (ownedChain), nothing else. Without iptables there is nothing to do.
func removeIPTablesLeftovers(ctx context.Context, ex Executor) (removed int, err error) {
	backend, err := DetectBackend(ctx, ex)
	if err != nil {
		return 0, nil // no iptables on this machine
	}
	ipt := &iptables{exec: ex, backend: backend}
	owned := map[string][]string{}
	for _, table := range []string{tableNAT, tableFilter} {
		if owned[table], err = ipt.ownedChains(ctx, table); err != nil {
			return 0, err
		}
	}
	for _, r := range jumpRules {
		// -C fails with another status than "no such rule" when the target chain is missing.
		if !slices.Contains(owned[r.table], r.args[len(r.args)-1]) {
			continue
		}
		for {
			ok, err := ipt.ruleExists(ctx, r)
			if err != nil {
				return removed, err
			}
			if !ok {
				break
			}
			args := append([]string{"-w", "-t", r.table, "-D", r.chain}, r.args...)
			if _, err := ipt.exec.Run(ctx, nil, ipt.bin("iptables"), args...); err != nil {
				return removed, fmt.Errorf("deleting the iptables mode's jump in %s/%s: %w", r.table, r.chain, err)
			}
			removed++
		}
	}
	for _, table := range []string{tableNAT, tableFilter} {
		chains := owned[table]
		if len(chains) == 0 {
			continue
		}
		// Flush them all first (they jump to each other), then delete them, in one restore.
		var b strings.Builder
		fmt.Fprintf(&b, "*%s\n", table)
		for _, c := range chains {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, c := range chains {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
		if err := ipt.restore(ctx, []byte(b.String())); err != nil {
			return removed, fmt.Errorf("deleting the iptables mode's chains: %w", err)
		}
		removed += len(chains)
	}
	return removed, nil
}

// removeNFTLeftovers deletes the nftables mode's tables (ip bosun and its shards), nothing else.
// Without nf_tables there is nothing to do.
func removeNFTLeftovers(cfg Config) (removed int, err error) {
	m := newNFTMode(cfg)
	c, err := m.dial()
	if err != nil {
		return 0, nil
	}
	defer c.CloseLasting()
	tables, err := m.listTables(c)
	if err != nil {
		return 0, nil // no nf_tables in this kernel
	}
	for name := range tables {
		c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: name})
		removed++
	}
	if removed == 0 {
		return 0, nil
	}
	if err := c.Flush(); err != nil {
		return 0, fmt.Errorf("deleting the nftables mode's tables: %w", err)
	}
	return removed, nil
}

// RemoveAll deletes what either proxy mode wrote in this host's network namespace (the iptables
// jumps and chains, the nftables tables) and nothing else; `bosun agent cleanup` runs it when a
// machine is retired. It returns how many rules, chains and tables it removed.
func RemoveAll(ctx context.Context) (int, error) {
	n, err := removeIPTablesLeftovers(ctx, HostExec{})
	if err != nil {
		return n, err
	}
	m, err := removeNFTLeftovers(Config{})
	return n + m, err
}
