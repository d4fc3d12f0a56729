package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"slices"
	"strings"
)

// Backends of iptables.
const (
	BackendNFT    = "nft"
	BackendLegacy = "legacy"
)

// Executor runs a command to completion and returns its standard output. A non-zero exit is an
// error that carries the exit status (*exec.ExitError when it comes from os/exec) and stderr.
type Executor interface {
	Run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error)
}

// HostExec runs commands on this host with os/exec.
type HostExec struct{}

var _ Executor = HostExec{}

// Run implements Executor.
func (HostExec) Run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &CommandError{Cmd: name + " " + strings.Join(args, " "), Err: err, Stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.Bytes(), nil
}

// CommandError is a failed command with its stderr.
type CommandError struct {
	Cmd    string
	Err    error
	Stderr string
}

func (e *CommandError) Error() string {
	cmd := e.Cmd
	if len(cmd) > 200 {
		cmd = cmd[:200] + "..."
	}
	return fmt.Sprintf("%s: %v: %s", cmd, e.Err, e.Stderr)
}

func (e *CommandError) Unwrap() error { return e.Err }

// exitCode returns the exit status of a failed command (from *exec.ExitError or anything with
// an ExitCode method), or -1.
func exitCode(err error) int {
	var ee interface{ ExitCode() int }
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// iptables runs the iptables tools of one backend.
type iptables struct {
	exec    Executor
	backend string
}

// DetectBackend asks `iptables --version` whether the system uses nf_tables or legacy.
func DetectBackend(ctx context.Context, ex Executor) (string, error) {
	out, err := ex.Run(ctx, nil, "iptables", "--version")
	if err != nil {
		return "", fmt.Errorf("detecting the iptables backend: %w", err)
	}
	switch s := string(out); {
	case strings.Contains(s, "nf_tables"):
		return BackendNFT, nil
	case strings.Contains(s, "legacy"):
		return BackendLegacy, nil
	default:
		// iptables before 1.8 has only the legacy backend and does not say so.
		return BackendLegacy, nil
	}
}

func (ipt *iptables) bin(tool string) string { return tool + "-" + ipt.backend }

// restore applies input with iptables-restore --noflush (the chains it declares are flushed,
// the others untouched). -w waits for the xtables lock held by another writer.
func (ipt *iptables) restore(ctx context.Context, input []byte) error {
	if _, err := ipt.exec.Run(ctx, bytes.NewReader(input), ipt.bin("iptables")+"-restore", "-w", "--noflush"); err != nil {
		return fmt.Errorf("iptables-restore (%d bytes): %w", len(input), err)
	}
	return nil
}

// ownedChains lists the chains of table that the proxy owns (ownedChain).
func (ipt *iptables) ownedChains(ctx context.Context, table string) ([]string, error) {
	out, err := ipt.exec.Run(ctx, nil, ipt.bin("iptables")+"-save", "-t", table)
	if err != nil {
		return nil, fmt.Errorf("listing %s chains: %w", table, err)
	}
	var chains []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, ":") {
			name, _, _ := strings.Cut(line[1:], " ")
			if ownedChain(name) {
				chains = append(chains, name)
			}
		}
	}
	return chains, nil
}

// ownedRule reports whether an iptables-save "-A CHAIN ..." line is the proxy's: a rule of one
// of its chains, or a jump into one of them.
func ownedRule(line string) bool {
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "-A" {
		return false
	}
	if ownedChain(f[1]) {
		return true
	}
	for i := 2; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && ownedChain(f[i+1]) {
			return true
		}
	}
	return false
}

// chainExists reports whether chain exists in table (-S exits 1 when it does not).
func (ipt *iptables) chainExists(ctx context.Context, table, chain string) (bool, error) {
	_, err := ipt.exec.Run(ctx, nil, ipt.bin("iptables"), "-w", "-t", table, "-S", chain)
	if err == nil {
		return true, nil
	}
	if exitCode(err) == 1 {
		return false, nil
	}
	return false, fmt.Errorf("checking chain %s/%s: %w", table, chain, err)
}

// ruleExists runs -C (exit 1: no such rule).
func (ipt *iptables) ruleExists(ctx context.Context, r jumpRule) (bool, error) {
	args := append([]string{"-w", "-t", r.table, "-C", r.chain}, r.args...)
	_, err := ipt.exec.Run(ctx, nil, ipt.bin("iptables"), args...)
	if err == nil {
		return true, nil
	}
	if exitCode(err) == 1 {
		return false, nil
	}
	return false, fmt.Errorf("checking rule in %s/%s: %w", r.table, r.chain, err)
}

// saveLine renders r as iptables-save prints it.
func (r jumpRule) saveLine() string {
	args := slices.Clone(r.args)
	for i, a := range args {
		if strings.Contains(a, " ") {
			args[i] = `"` + a + `"`
		}
	}
	return "-A " + r.chain + " " + strings.Join(args, " ")
}

// ensureJump inserts r at the top of its chain unless -C finds it; it reports whether it did.
func (ipt *iptables) ensureJump(ctx context.Context, r jumpRule) (bool, error) {
	ok, err := ipt.ruleExists(ctx, r)
	if err != nil || ok {
		return false, err
	}
	args := append([]string{"-w", "-t", r.table, "-I", r.chain}, r.args...)
	if _, err := ipt.exec.Run(ctx, nil, ipt.bin("iptables"), args...); err != nil {
		return false, fmt.Errorf("inserting jump in %s/%s: %w", r.table, r.chain, err)
	}
	return true, nil
}

// errIncompatible means iptables-save cannot represent a table (rules made with nft directly),
// so it cannot be rewritten whole.
var errIncompatible = errors.New("table holds rules iptables-save cannot represent")

// replaceInput renders the input of a whole-table restore (without --noflush): every table's
// current content as iptables-save prints it minus the proxy's chains and rules, plus the chains of
// c.write. Chains Bosun no longer wants simply are not declared again.
//
// This is the fast path for full syncs: with the nf_tables backend `iptables-restore --noflush`
// slows down far faster than the ruleset grows (DESIGN.md: 10 000 services do not finish in
// 10 minutes) while a whole-table restore takes seconds. The price is a race: a rule another
// program adds between the save and the restore is lost, and foreign rules' packet counters
// restart from zero; partial syncs, the frequent ones, never take this path.
func (ipt *iptables) replaceInput(ctx context.Context, c changes) ([]byte, error) {
	var b bytes.Buffer
	for _, table := range []string{tableFilter, tableNAT} {
		out, err := ipt.exec.Run(ctx, nil, ipt.bin("iptables")+"-save", "-t", table)
		if err != nil {
			return nil, fmt.Errorf("saving table %s: %w", table, err)
		}
		if bytes.Contains(out, []byte("incompatible")) {
			return nil, fmt.Errorf("saving table %s: %w", table, errIncompatible)
		}
		var decls, rules []string
		for _, line := range strings.Split(string(out), "\n") {
			switch {
			case strings.HasPrefix(line, ":"):
				if name, _, _ := strings.Cut(line[1:], " "); !ownedChain(name) {
					decls = append(decls, line)
				}
			case strings.HasPrefix(line, "-A "):
				// The proxy's chains and its jump rules (only the proxy jumps to them) are
				// written anew below; everything else, other BOSUN-* chains included, is kept.
				if !ownedRule(line) {
					rules = append(rules, line)
				}
			}
		}
		ours := slices.Sorted(maps.Keys(c.write[table]))
		b.WriteString("*" + table + "\n")
		for _, d := range decls {
			b.WriteString(d + "\n")
		}
		for _, name := range ours {
			b.WriteString(":" + name + " - [0:0]\n")
		}
		// The jump rules go first in their builtin chains, as -I puts them.
		for _, r := range jumpRules {
			if r.table == table {
				b.WriteString(r.saveLine() + "\n")
			}
		}
		for _, r := range rules {
			b.WriteString(r + "\n")
		}
		for _, name := range ours {
			b.WriteString(c.write[table][name])
		}
		b.WriteString("COMMIT\n")
	}
	return b.Bytes(), nil
}

// replace applies a whole-table restore input.
func (ipt *iptables) replace(ctx context.Context, input []byte) error {
	if _, err := ipt.exec.Run(ctx, bytes.NewReader(input), ipt.bin("iptables")+"-restore", "-w"); err != nil {
		return fmt.Errorf("iptables-restore of whole tables (%d bytes): %w", len(input), err)
	}
	return nil
}
