package machines

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// namePrefix starts the name of every namespace, host link and directory a lab creates, so
// that CleanupStale finds them.
const namePrefix = "bosun-lab"

// Lab is a set of machines on one switch.
type Lab struct {
	id       string
	dir      string
	cfg      Config
	plan     addressPlan
	log      *slog.Logger
	machines []*Machine
	registry *Process

	closeOnce sync.Once
	closeErr  error
}

// NewLab starts a lab for a test and closes it in t.Cleanup, printing the machines' logs first
// when the test failed. It skips the test when not run as root.
func NewLab(t testing.TB, cfg Config) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("namespace machines need root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("starting lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			lab.DumpLogs(tLogWriter{t})
		}
		if err := lab.Close(); err != nil {
			t.Errorf("closing lab: %v", err)
		}
	})
	return lab
}

type tLogWriter struct{ t testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Start builds a lab: the switch, the machines, and their sshd, containerd and registry. On
// error everything started so far is removed again.
func Start(ctx context.Context, cfg Config) (_ *Lab, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lab config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	idb := make([]byte, 3)
	if _, err := rand.Read(idb); err != nil {
		return nil, fmt.Errorf("lab id: %w", err)
	}
	id := hex.EncodeToString(idb)
	dir := filepath.Join(os.TempDir(), namePrefix+id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lab dir: %w", err)
	}
	if err := writeOwner(dir); err != nil {
		return nil, err
	}
	l := &Lab{id: id, dir: dir, cfg: cfg, plan: newAddressPlan(cfg.Subnet), log: log.With("component", "lab", "lab", id)}
	defer func() {
		if err != nil {
			if cerr := l.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("cleaning up: %w", cerr))
			}
			l = nil
		}
	}()
	if err := l.startNetwork(ctx); err != nil {
		return l, err
	}
	for i := 1; i <= cfg.N; i++ {
		m, err := l.startMachine(ctx, i)
		if m != nil {
			l.machines = append(l.machines, m)
		}
		if err != nil {
			return l, fmt.Errorf("machine %d: %w", i, err)
		}
	}
	if !cfg.NoRegistry {
		if err := l.startRegistry(ctx); err != nil {
			return l, err
		}
	}
	l.log.Info("lab ready", "machines", cfg.N, "dir", dir)
	return l, nil
}

// ID is the lab's random identifier; its namespaces are named bosun-lab<ID>-<i> and -sw.
func (l *Lab) ID() string { return l.id }

// Dir is the lab's directory on the host (machine file systems, logs, registry storage).
func (l *Lab) Dir() string { return l.dir }

// Machines returns the machines in order.
func (l *Lab) Machines() []*Machine { return l.machines }

// Machine returns machine i, 1-based.
func (l *Lab) Machine(i int) *Machine { return l.machines[i-1] }

// Prefix is the lab network.
func (l *Lab) Prefix() netip.Prefix { return l.plan.prefix }

// HostAddr is the host's address on the lab network; valid only with Config.HostLink.
func (l *Lab) HostAddr() netip.Addr { return l.plan.host() }

// SwitchAddr is the switch's address, where the registry listens.
func (l *Lab) SwitchAddr() netip.Addr { return l.plan.switchAddr() }

// SwitchNetNS is the path of the switch's network namespace.
func (l *Lab) SwitchNetNS() string { return netnsPath(l.switchNS()) }

// DialContext connects from the switch's network namespace: it reaches every machine whether
// or not the lab has a host link.
func (l *Lab) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialInNetNS(ctx, l.SwitchNetNS(), network, addr)
}

func (l *Lab) switchNS() string       { return fmt.Sprintf("%s%s-sw", namePrefix, l.id) }
func (l *Lab) machineNS(i int) string { return fmt.Sprintf("%s%s-%d", namePrefix, l.id, i) }
func (l *Lab) hostLink() string       { return hostLinkName(l.id) }
func hostLinkName(id string) string   { return "bl" + id + "h" }
func netnsPath(name string) string    { return filepath.Join("/run/netns", name) }

// DumpLogs writes every machine's and the registry's logs to w.
func (l *Lab) DumpLogs(w io.Writer) {
	files, _ := filepath.Glob(filepath.Join(l.dir, "*", "logs", "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		const max = 8 << 10
		if len(b) > max {
			b = append([]byte("...\n"), b[len(b)-max:]...)
		}
		rel, _ := filepath.Rel(l.dir, f)
		fmt.Fprintf(w, "==== %s ====\n%s\n", rel, b)
	}
}

// Close stops every process of the lab, deletes its namespaces, links and directory. It is
// safe to call more than once and on a partly started lab.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() {
		errs := make([]error, len(l.machines))
		var wg sync.WaitGroup
		for i, m := range l.machines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := m.stop(); err != nil {
					errs[i] = fmt.Errorf("stopping %s: %w", m.name, err)
				}
			}()
		}
		wg.Wait()
		if l.registry != nil {
			if err := l.registry.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("stopping registry: %w", err))
			}
		}
		errs = append(errs, removeLab(l.id, l.dir))
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}
