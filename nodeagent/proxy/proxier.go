package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
)

// Proxier keeps this node's service rules in sync with the cluster's Services and Endpoints.
type Proxier struct {
	cfg    Config
	log    *slog.Logger
	notify chan struct{}
	ready  chan struct{}

	// Owned by the goroutine that syncs (Run, or a test calling sync).
	mu   sync.Mutex
	ipt  *iptables
	nft  *nftMode // the nftables mode; nil in the iptables mode
	last *state   // what the last successful sync wrote (iptables mode)
	full bool     // the kernel may differ from last: write everything next time
}

// New validates cfg and returns a Proxier; Run starts it.
func New(cfg Config) (*Proxier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	return &Proxier{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "proxy"),
		notify: make(chan struct{}, 1),
		ready:  make(chan struct{}),
		full:   true,
	}, nil
}

// Notify asks for a sync; bursts coalesce into one sync at most every MinSyncPeriod. It never
// blocks.
func (p *Proxier) Notify() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Handler is an informer event handler that calls Notify on every Service or Endpoints change.
func (p *Proxier) Handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.Notify() },
		UpdateFunc: func(any, any) { p.Notify() },
		DeleteFunc: func(any) { p.Notify() },
	}
}

// Ready is closed after the first successful sync.
func (p *Proxier) Ready() <-chan struct{} { return p.ready }

// Run syncs on start, on Notify (rate-limited), every FullSyncPeriod (everything), and when the
// check every CheckPeriod finds the jump rules or canary chains gone. It returns when ctx ends;
// sync failures are logged and retried with a full sync. Start it after the listers' informers
// have synced, or it would delete the rules of services it has not seen yet.
func (p *Proxier) Run(ctx context.Context) error {
	if err := p.init(ctx); err != nil {
		return err
	}
	full := time.NewTicker(p.cfg.FullSyncPeriod)
	defer full.Stop()
	check := time.NewTicker(p.cfg.CheckPeriod)
	defer check.Stop()
	retry := time.NewTimer(0) // the first sync
	defer retry.Stop()
	var last time.Time
	failures := 0
	for {
		wantFull := false
		select {
		case <-ctx.Done():
			return nil
		case <-p.notify:
		case <-retry.C:
		case <-full.C:
			wantFull = true
		case <-check.C:
			ok, err := p.intact(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				p.log.Warn("checking the proxy rules", "err", err)
				continue
			}
			if ok {
				continue
			}
			p.log.Warn("proxy rules were flushed by someone else; restoring them")
			wantFull = true
		}
		// Rate limit: wait out MinSyncPeriod since the last sync; notifications meanwhile
		// coalesce into this sync.
		if wait := p.cfg.MinSyncPeriod - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		select { // this sync covers any notification that came while waiting
		case <-p.notify:
		default:
		}
		last = time.Now()
		if wantFull {
			p.invalidate()
		}
		st, err := p.sync(ctx)
		if err != nil {
			failures++
			backoff := min(time.Duration(failures)*p.cfg.MinSyncPeriod, 30*time.Second)
			p.log.Error("syncing service rules", "err", err, "retryIn", backoff)
			p.invalidate()
			retry.Reset(backoff)
			continue
		}
		failures = 0
		p.log.Debug("synced service rules", "full", st.full, "services", st.services,
			"chainsWritten", st.written, "chainsRemoved", st.removed, "bytes", st.bytes, "took", st.took)
		select {
		case <-p.ready:
		default:
			close(p.ready)
		}
	}
}

// init detects the backend once (iptables mode) or checks that netlink answers (nftables mode).
func (p *Proxier) init(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ipt != nil || p.nft != nil {
		return nil
	}
	if p.cfg.Mode == ModeNFTables {
		m := newNFTMode(p.cfg)
		c, err := m.dial()
		if err != nil {
			return err
		}
		defer c.CloseLasting()
		if _, err := m.listTables(c); err != nil {
			return fmt.Errorf("the nftables proxy mode needs nf_tables in the kernel (or set proxyMode to iptables): %w", err)
		}
		if n, err := removeIPTablesLeftovers(ctx, p.cfg.Exec); err != nil {
			return fmt.Errorf("removing the iptables proxy mode's rules: %w", err)
		} else if n > 0 {
			p.log.Info("removed the iptables proxy mode's rules", "rulesAndChains", n)
		}
		p.nft = m
		p.log.Info("service proxy starting", "mode", ModeNFTables, "tables", fmt.Sprintf("ip %s, ip %s … ip %s", nftTable, nftShardTable(0), nftShardTable(nftShards-1)), "clusterCIDR", p.cfg.ClusterCIDR)
		return nil
	}
	backend := p.cfg.Backend
	if backend == "" {
		b, err := DetectBackend(ctx, p.cfg.Exec)
		if err != nil {
			return err
		}
		backend = b
	}
	if n, err := removeNFTLeftovers(p.cfg); err != nil {
		return fmt.Errorf("removing the nftables proxy mode's tables: %w", err)
	} else if n > 0 {
		p.log.Info("removed the nftables proxy mode's tables", "tables", n)
	}
	p.ipt = &iptables{exec: p.cfg.Exec, backend: backend}
	p.log.Info("service proxy starting", "mode", ModeIPTables, "backend", backend, "clusterCIDR", p.cfg.ClusterCIDR)
	return nil
}

// invalidate makes the next sync write everything.
func (p *Proxier) invalidate() {
	p.mu.Lock()
	p.full = true
	p.mu.Unlock()
}

// intact reports whether the jump rules and the canary chains (iptables mode), or the table
// and its base chains (nftables mode), are still there.
func (p *Proxier) intact(ctx context.Context) (bool, error) {
	if p.nft != nil {
		return p.nft.intact()
	}
	for _, table := range []string{tableNAT, tableFilter} {
		ok, err := p.ipt.chainExists(ctx, table, chainCanary)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, r := range jumpRules {
		ok, err := p.ipt.ruleExists(ctx, r)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// syncStats describes one sync, for logs and tests.
type syncStats struct {
	full               bool
	replaced           bool // a full sync that rewrote whole tables
	services           int
	written, removed   int
	bytes              int
	input              []byte
	took               time.Duration
	conntrackDeletions int
	jumpRulesInstalled int

	// nftables mode
	plan     *nftPlan
	elements int // map elements added and deleted
	batches  int // netlink batches sent
	messages int // netlink messages in them
}

// sync brings the kernel to the rules of the listed services: everything when nothing is known
// about the kernel (first sync, after a failure or a flush, periodic full sync), else only the
// chains that changed since the last successful sync.
func (p *Proxier) sync(ctx context.Context) (syncStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	start := time.Now()
	svcs, err := p.cfg.Services.List(labels.Everything())
	if err != nil {
		return syncStats{}, fmt.Errorf("listing services: %w", err)
	}
	eps, err := p.cfg.Endpoints.List(labels.Everything())
	if err != nil {
		return syncStats{}, fmt.Errorf("listing endpoints: %w", err)
	}
	epByKey := make(map[string]*corev1.Endpoints, len(eps))
	for _, e := range eps {
		epByKey[e.Namespace+"/"+e.Name] = e
	}
	if p.nft != nil {
		return p.syncNFT(ctx, svcs, epByKey, start)
	}
	next := p.generate(svcs, epByKey)
	st := syncStats{full: p.full || p.last == nil, services: len(next.services)}

	prev := p.last
	var c changes
	switch {
	case !st.full:
		c = diff(prev, next, nil)
		if !c.empty() {
			st.input = restoreInput(c)
			if err := p.ipt.restore(ctx, st.input); err != nil {
				return st, err
			}
		}
	default:
		c = diff(nil, next, nil)
		input, err := p.ipt.replaceInput(ctx, c)
		if err == nil {
			st.input = input
			err = p.ipt.replace(ctx, input)
		}
		if err == nil {
			st.replaced = true
			break
		}
		// Fall back to --noflush, deleting the proxy's stale chains one by one.
		p.log.Warn("whole-table restore failed; falling back to iptables-restore --noflush", "err", err)
		kernel := map[string][]string{}
		for _, table := range []string{tableNAT, tableFilter} {
			chains, err := p.ipt.ownedChains(ctx, table)
			if err != nil {
				return st, err
			}
			kernel[table] = chains
		}
		c = diff(nil, next, kernel)
		st.input = restoreInput(c)
		if err := p.ipt.restore(ctx, st.input); err != nil {
			return st, err
		}
	}
	for _, chains := range c.write {
		st.written += len(chains)
	}
	for _, chains := range c.remove {
		st.removed += len(chains)
	}
	st.bytes = len(st.input)
	if st.full && !st.replaced { // the whole-table input carries the jump rules itself
		for _, r := range jumpRules {
			inserted, err := p.ipt.ensureJump(ctx, r)
			if err != nil {
				return st, err
			}
			if inserted {
				st.jumpRulesInstalled++
			}
		}
	}
	prev = p.last
	p.last, p.full = next, false
	if prev != nil {
		var deletions [][]string
		for key, n := range next.services {
			if o := prev.services[key]; o != n {
				deletions = append(deletions, staleConntrack(o, n)...)
			}
		}
		for key, o := range prev.services {
			if _, ok := next.services[key]; !ok {
				deletions = append(deletions, staleConntrack(o, nil)...)
			}
		}
		st.conntrackDeletions = len(deletions)
		if err := clearConntrack(ctx, p.cfg.Exec, deletions); err != nil {
			p.log.Warn("clearing conntrack", "err", err) // the rules are right; flows expire
		}
	}
	st.took = time.Since(start)
	return st, nil
}

// generate computes the desired state, reusing the rules of every service whose Service and
// Endpoints objects are the same (informer caches replace objects, never mutate them) as in
// the last successful sync.
func (p *Proxier) generate(svcs []*corev1.Service, epByKey map[string]*corev1.Endpoints) *state {
	services := make(map[string]*serviceRules, len(svcs))
	keys := make([]string, 0, len(svcs))
	for _, s := range svcs {
		key := s.Namespace + "/" + s.Name
		ep := epByKey[key]
		if p.last != nil {
			if old := p.last.services[key]; old != nil && old.svc == s && old.ep == ep {
				services[key] = old
				keys = append(keys, key)
				continue
			}
		}
		services[key] = generateService(s, ep, p.cfg.ClusterCIDR)
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return newState(keys, services)
}
