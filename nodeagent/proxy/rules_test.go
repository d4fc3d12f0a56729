package proxy

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fakeExec records commands; iptables-save prints kernelSave, -C and -S fail with exit 1 unless
// allowed, everything else succeeds.
type fakeExec struct {
	mu          sync.Mutex
	calls       []string
	inputs      [][]byte
	kernelSave  string
	failRestore bool
}

type exitErr int

func (e exitErr) Error() string { return "exit status" }
func (e exitErr) ExitCode() int { return int(e) }

func (f *fakeExec) Run(_ context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name+" "+strings.Join(args, " "))
	switch {
	case strings.HasSuffix(name, "-restore"):
		b, _ := io.ReadAll(stdin)
		f.inputs = append(f.inputs, b)
		if f.failRestore {
			return nil, exitErr(2)
		}
	case strings.HasSuffix(name, "-save"):
		// Only the section of the asked table.
		table := "*" + args[slices.Index(args, "-t")+1] + "\n"
		_, rest, ok := strings.Cut(f.kernelSave, table)
		if !ok {
			return nil, nil
		}
		section, _, _ := strings.Cut(rest, "COMMIT\n")
		return []byte(table + section + "COMMIT\n"), nil
	case slices.Contains(args, "-C"):
		return nil, exitErr(1)
	}
	return nil, nil
}

func newTestProxier(t testing.TB, c *cluster, ex Executor) *Proxier {
	t.Helper()
	p, err := New(Config{Services: c.serviceLister(), Endpoints: c.endpointsLister(),
		ClusterCIDR: "10.244.0.0/16", Backend: BackendNFT, Exec: ex})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got), run with -update if intended:\n%s", path, d)
	}
}

func TestFullRulesetGolden(t *testing.T) {
	c := newCluster()
	c.set(t, representative()...)
	ex := &fakeExec{kernelSave: "*nat\n:PREROUTING ACCEPT [0:0]\n:BOSUN-SVC-STALESTALESTALE - [0:0]\n:KUBE-SERVICES - [0:0]\n" +
		"-A PREROUTING -j KUBE-SERVICES\n-A BOSUN-SVC-STALESTALESTALE -j ACCEPT\nCOMMIT\n"}
	p := newTestProxier(t, c, ex)
	st, err := p.sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range jumpRules {
		if !bytes.Contains(st.input, []byte(r.saveLine()+"\n")) {
			t.Errorf("whole-table input lacks the jump rule %q", r.saveLine())
		}
	}

	// The --noflush form of a full sync (the fallback path), golden.
	noflush := restoreInput(diff(nil, p.last, map[string][]string{tableNAT: {"BOSUN-SVC-STALESTALESTALE"}}))
	golden(t, "full.golden", noflush)
	checkJumpTargets(t, noflush)
	if !bytes.Contains(noflush, []byte("-X BOSUN-SVC-STALESTALESTALE\n")) {
		t.Error("a stale BOSUN chain found in the kernel was not deleted")
	}
	if bytes.Contains(noflush, []byte("KUBE-SERVICES")) || bytes.Contains(noflush, []byte("PREROUTING")) {
		t.Error("the restore input touches chains that are not Bosun's")
	}
	for _, notProxied := range []string{"default/headless", "default/failed", "default/ext", "10.244.3.33", "10.244.0.8"} {
		if bytes.Contains(noflush, []byte(notProxied)) {
			t.Errorf("%s has rules; headless, failed, ExternalName services and not-ready endpoints must not", notProxied)
		}
	}

	// The whole-table form the sync used: the same Bosun rules, the foreign ones kept, the
	// stale chain gone.
	if !st.replaced {
		t.Fatal("the first sync did not rewrite whole tables")
	}
	checkJumpTargets(t, st.input)
	for _, want := range []string{":PREROUTING ACCEPT [0:0]\n", ":KUBE-SERVICES - [0:0]\n", "-A PREROUTING -j KUBE-SERVICES\n"} {
		if !bytes.Contains(st.input, []byte(want)) {
			t.Errorf("whole-table input lost the foreign line %q", want)
		}
	}
	if bytes.Contains(st.input, []byte("STALE")) {
		t.Error("whole-table input keeps the stale Bosun chain")
	}
	if d := cmp.Diff(wantRules(noflush), wantRules(st.input)); d != "" {
		t.Errorf("whole-table and --noflush forms differ in Bosun rules (-noflush +whole):\n%s", d)
	}
}

var jumpRE = regexp.MustCompile(`\s-j (\S+)`)

// checkJumpTargets fails if a -j target is neither a chain declared in input nor a builtin.
func checkJumpTargets(t *testing.T, input []byte) {
	t.Helper()
	declared := map[string]bool{}
	for _, line := range strings.Split(string(input), "\n") {
		if strings.HasPrefix(line, ":") {
			name, _, _ := strings.Cut(line[1:], " ")
			declared[name] = true
		}
	}
	for _, line := range strings.Split(string(input), "\n") {
		for _, m := range jumpRE.FindAllStringSubmatch(line, -1) {
			if !declared[m[1]] && !builtinTargets[m[1]] {
				t.Errorf("rule jumps to undefined chain %s: %s", m[1], line)
			}
		}
	}
}

func TestProbabilities(t *testing.T) {
	r := generateService(service("a", "b", "10.96.0.1", npPorts...),
		endpoints("a", "b", []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}, nil, npPorts...), "")
	svc := r.chains[svcChainName("a/b", "tcp")]
	var got []string
	for _, m := range regexp.MustCompile(`--probability (\S+)`).FindAllStringSubmatch(svc, -1) {
		got = append(got, m[1])
	}
	want := []string{"0.2500000000", "0.3333333333", "0.5000000000"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("probabilities (-want +got):\n%s", d)
	}
	if !strings.Contains(svc, "-d 10.96.0.1/32 --dport 80 -j BOSUN-MARK-MASQ\n") {
		t.Errorf("without a cluster CIDR all service traffic is masqueraded:\n%s", svc)
	}
}

func names(m map[string]string) []string { return slices.Sorted(mapsKeys(m)) }

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestDiffWritesOnlyChangedChains(t *testing.T) {
	web := "default/web"
	webHTTP, webHTTPS := svcChainName(web+":http", "tcp"), svcChainName(web+":https", "tcp")
	sep := func(spn, ep string) string { return sepChainName(spn, "tcp", ep) }
	tests := []struct {
		name       string
		change     []any
		wantWrite  map[string][]string
		wantRemove map[string][]string
	}{
		{
			name:      "endpoint removed",
			change:    []any{endpoints("default", "web", []string{"10.244.1.5", "10.244.0.4"}, nil, webPorts...)},
			wantWrite: map[string][]string{tableNAT: {webHTTP, webHTTPS}},
			wantRemove: map[string][]string{tableNAT: slices.Sorted(slices.Values([]string{
				sep(web+":http", "10.244.2.6:8080"), sep(web+":https", "10.244.2.6:8443")}))},
		},
		{
			name:   "endpoint added",
			change: []any{endpoints("default", "web", []string{"10.244.1.5", "10.244.0.4", "10.244.2.6", "10.244.3.1"}, nil, webPorts...)},
			wantWrite: map[string][]string{tableNAT: slices.Sorted(slices.Values([]string{webHTTP, webHTTPS,
				sep(web+":http", "10.244.3.1:8080"), sep(web+":https", "10.244.3.1:8443")}))},
		},
		{
			name:   "not-ready endpoint changes nothing",
			change: []any{endpoints("default", "web", []string{"10.244.1.5", "10.244.0.4", "10.244.2.6"}, []string{"10.244.7.7"}, webPorts...)},
		},
		{
			name:      "last endpoint gone: reject",
			change:    []any{endpoints("default", "np", nil, nil, npPorts...)},
			wantWrite: map[string][]string{tableFilter: {chainServices}, tableNAT: {svcChainName("default/np", "tcp")}},
			wantRemove: map[string][]string{tableNAT: slices.Sorted(slices.Values([]string{
				sep("default/np", "10.244.0.7:80"), sep("default/np", "10.244.1.7:80")}))},
		},
		{
			name:      "new service rewrites the dispatch chain",
			change:    []any{service("default", "new", "10.96.0.50", npPorts...)},
			wantWrite: map[string][]string{tableFilter: {chainServices}, tableNAT: {chainNodePorts, chainServices, svcChainName("default/new", "tcp")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster()
			c.set(t, representative()...)
			p := newTestProxier(t, c, &fakeExec{})
			if _, err := p.sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			c.set(t, tt.change...)
			st, err := p.sync(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			gotWrite, gotRemove := parseRestore(st.input)
			for _, m := range []map[string][]string{tt.wantWrite, tt.wantRemove, gotRemove} {
				for _, v := range m {
					slices.Sort(v)
				}
			}
			if d := cmp.Diff(tt.wantWrite, gotWrite); d != "" {
				t.Errorf("chains written (-want +got):\n%s\ninput:\n%s", d, st.input)
			}
			if d := cmp.Diff(tt.wantRemove, gotRemove); d != "" {
				t.Errorf("chains removed (-want +got):\n%s", d)
			}
			if st.full {
				t.Error("second sync was a full sync")
			}
			checkJumpTargetsWithKernel(t, st.input, p.last)
		})
	}
}

// checkJumpTargetsWithKernel checks the jumps of a partial input against the chains that the
// input declares or that exist already (those of the whole state).
func checkJumpTargetsWithKernel(t *testing.T, input []byte, s *state) {
	t.Helper()
	known := map[string]bool{}
	for _, chains := range s.global {
		for c := range chains {
			known[c] = true
		}
	}
	for _, r := range s.services {
		for c := range r.chains {
			known[c] = true
		}
	}
	for _, line := range strings.Split(string(input), "\n") {
		if strings.HasPrefix(line, "-X ") {
			continue
		}
		for _, m := range jumpRE.FindAllStringSubmatch(line, -1) {
			if !known[m[1]] && !builtinTargets[m[1]] {
				t.Errorf("rule jumps to undefined chain %s: %s", m[1], line)
			}
		}
	}
}

// parseRestore returns the chains an input writes (declares and fills or leaves empty) and
// deletes, by table.
func parseRestore(input []byte) (write, remove map[string][]string) {
	var table string
	declared := map[string]map[string]bool{}
	for _, line := range strings.Split(string(input), "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			declared[table] = map[string]bool{}
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			declared[table][name] = true
		case strings.HasPrefix(line, "-X "):
			if remove == nil {
				remove = map[string][]string{}
			}
			remove[table] = append(remove[table], line[3:])
			delete(declared[table], line[3:])
		}
	}
	for table, chains := range declared {
		if len(chains) == 0 {
			continue
		}
		if write == nil {
			write = map[string][]string{}
		}
		for c := range chains {
			write[table] = append(write[table], c)
		}
		slices.Sort(write[table])
	}
	return write, remove
}

func TestFailedRestoreForcesFullSync(t *testing.T) {
	c := newCluster()
	c.set(t, representative()...)
	ex := &fakeExec{}
	p := newTestProxier(t, c, ex)
	if _, err := p.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ex.failRestore = true
	c.set(t, endpoints("default", "web", []string{"10.244.1.5"}, nil, webPorts...))
	if _, err := p.sync(context.Background()); err == nil {
		t.Fatal("sync succeeded although iptables-restore failed")
	}
	p.invalidate() // what Run does after a failure
	ex.failRestore = false
	st, err := p.sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.full || !bytes.Contains(st.input, []byte(":"+chainServices+" ")) {
		t.Errorf("sync after a failure was not full:\n%s", st.input)
	}
}

func TestStaleConntrack(t *testing.T) {
	syslog := func(ips ...string) *serviceRules {
		return generateService(service("default", "syslog", "10.96.0.14", udpNP...),
			endpoints("default", "syslog", ips, nil, udpNP...), "")
	}
	tests := []struct {
		name     string
		old, new *serviceRules
		want     [][]string
	}{
		{"unchanged", syslog("10.0.0.1"), syslog("10.0.0.1"), nil},
		{"endpoint gone", syslog("10.0.0.1", "10.0.0.2"), syslog("10.0.0.2"), [][]string{
			{"-D", "-p", "udp", "--orig-dst", "10.96.0.14", "--dst-nat", "10.0.0.1"},
			{"-D", "-p", "udp", "--dport", "30514", "--dst-nat", "10.0.0.1"},
		}},
		{"first endpoint", syslog(), syslog("10.0.0.1"), [][]string{
			{"-D", "-p", "udp", "--orig-dst", "10.96.0.14"},
			{"-D", "-p", "udp", "--dport", "30514"},
		}},
		{"service deleted", syslog("10.0.0.1"), nil, [][]string{
			{"-D", "-p", "udp", "--orig-dst", "10.96.0.14", "--dst-nat", "10.0.0.1"},
			{"-D", "-p", "udp", "--dport", "30514", "--dst-nat", "10.0.0.1"},
		}},
		{"tcp needs nothing", generateService(service("a", "b", "10.96.0.1", npPorts...),
			endpoints("a", "b", []string{"10.0.0.1"}, nil, npPorts...), ""), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, staleConntrack(tt.old, tt.new)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestSyncClearsConntrackForRemovedUDPEndpoint(t *testing.T) {
	c := newCluster()
	c.set(t, representative()...)
	ex := &fakeExec{}
	p := newTestProxier(t, c, ex)
	if _, err := p.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ex.calls = nil
	c.set(t, endpoints("kube-system", "kube-dns", []string{"10.244.1.2"}, nil, dnsPorts...))
	if _, err := p.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "conntrack -D -p udp --orig-dst 10.96.0.3 --dst-nat 10.244.0.2"
	if !slices.Contains(ex.calls, want) {
		t.Errorf("calls %q lack %q", ex.calls, want)
	}
}

func TestConfigValidate(t *testing.T) {
	c := newCluster()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"ok", Config{Services: c.serviceLister(), Endpoints: c.endpointsLister()}, ""},
		{"no services", Config{Endpoints: c.endpointsLister()}, "Services"},
		{"bad cidr", Config{Services: c.serviceLister(), Endpoints: c.endpointsLister(), ClusterCIDR: "10.0.0.0"}, "ClusterCIDR"},
		{"bad backend", Config{Services: c.serviceLister(), Endpoints: c.endpointsLister(), Backend: "ipvs"}, "Backend"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

var _ = corev1.ProtocolTCP
