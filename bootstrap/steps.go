package bootstrap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
)

// Remote runs shell commands as root on a machine (*Client over SSH; tests may run them locally).
type Remote interface {
	Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, error)
}

var _ Remote = (*Client)(nil)

// Progress receives what a bootstrap does, for status and events. Output never holds a secret.
type Progress interface {
	// Step is called when a step starts.
	Step(name string)
	// Output reports one command of a step: what it did and its output.
	Output(step, what string, out []byte)
}

// Binary is the bosun executable for one architecture.
type Binary struct {
	// Digest is the hex SHA-256 of the file.
	Digest string
	Open   func() (io.ReadCloser, error)
}

// Plan is what one bootstrap installs.
type Plan struct {
	NodeName string
	// NodeIP goes into the agent's config and its serving certificate.
	NodeIP string
	Layout Layout
	// Binary returns the executable for a GOARCH ("amd64", "arm64").
	Binary func(arch string) (Binary, error)
	// CA is the cluster CA: the node trusts it (ca.crt) and it signs the node's client
	// certificate.
	CA *pki.CA
	// NodeServingCA signs the node's serving certificate (its logs endpoint), which only the
	// operator's log proxy trusts.
	NodeServingCA *pki.CA
	// Agent is the agent configuration; paths are filled from Layout.
	Agent AgentConfig
	// SkipPackages leaves packages alone (the check still reports what is missing).
	SkipPackages bool
	// MinFreeMB is the free space required under /var/lib (default 512).
	MinFreeMB int64
}

// Facts are what the probe learned about a machine.
type Facts struct {
	OS      string
	Arch    string // GOARCH
	Systemd bool
	FreeMB  int64
	// PackageManager is "apt-get", "dnf" or "".
	PackageManager string
	Missing        []string
}

// Result is the outcome of a bootstrap.
type Result struct {
	Facts Facts
	// Changed lists the steps whose action ran; empty when the machine was already up to date.
	Changed []string
	// BinaryDigest is the digest of the installed agent binary.
	BinaryDigest string
}

type nopProgress struct{}

func (nopProgress) Step(string)                   {}
func (nopProgress) Output(string, string, []byte) {}

// step is one idempotent unit: check says whether the machine is already right; apply makes it so.
type step struct {
	name  string
	check func(ctx context.Context, r *run) (bool, error)
	apply func(ctx context.Context, r *run) error
}

// Step names, in order.
const (
	StepProbe       = "probe"
	StepPackages    = "packages"
	StepBinary      = "binary"
	StepCredentials = "credentials"
	StepConfig      = "config"
	StepService     = "service"
)

// run is the state of one bootstrap.
type run struct {
	plan     Plan
	remote   Remote
	progress Progress
	step     string
	facts    Facts
	binary   Binary
	config   []byte
	credHash string
	// installed is set once the packages step ran its action.
	installed bool
}

func (r *run) exec(ctx context.Context, what, cmd string, stdin io.Reader) ([]byte, error) {
	out, err := r.remote.Run(ctx, cmd, stdin)
	r.progress.Output(r.step, what, out)
	if err != nil {
		return out, fmt.Errorf("%s: %s: %w", r.step, what, err)
	}
	return out, nil
}

// quiet runs a command whose output is only for the step itself (certificates, hashes).
func (r *run) quiet(ctx context.Context, what, cmd string) ([]byte, error) {
	out, err := r.remote.Run(ctx, cmd, nil)
	if err != nil {
		return out, fmt.Errorf("%s: %s: %w", r.step, what, err)
	}
	return out, nil
}

// Run bootstraps a machine: every step's check, and its action where the check fails. It stops
// at the first error, naming the step.
func Run(ctx context.Context, remote Remote, plan Plan, progress Progress) (Result, error) {
	if plan.CA == nil || plan.NodeServingCA == nil {
		return Result{}, errors.New("bootstrap plan: CA and NodeServingCA are required")
	}
	if plan.MinFreeMB == 0 {
		plan.MinFreeMB = 512
	}
	if progress == nil {
		progress = nopProgress{}
	}
	r := &run{plan: plan, remote: remote, progress: progress}
	var res Result
	for _, s := range steps() {
		r.step = s.name
		progress.Step(s.name)
		ok, err := s.check(ctx, r)
		if err != nil {
			res.Facts = r.facts
			return res, err
		}
		if !ok {
			if err := s.apply(ctx, r); err != nil {
				res.Facts = r.facts
				return res, err
			}
			res.Changed = append(res.Changed, s.name)
			if ok, err = s.check(ctx, r); err != nil || !ok {
				res.Facts = r.facts
				return res, errors.Join(fmt.Errorf("%s: still not in place after its action", s.name), err)
			}
		}
	}
	res.Facts, res.BinaryDigest = r.facts, r.binary.Digest
	return res, nil
}

func steps() []step {
	return []step{
		{StepProbe, checkProbe, func(context.Context, *run) error { return nil }},
		{StepPackages, checkPackages, applyPackages},
		{StepBinary, checkBinary, applyBinary},
		{StepCredentials, checkCredentials, applyCredentials},
		{StepConfig, checkConfig, applyConfig},
		{StepService, checkService, applyService},
	}
}

// ---- probe

// probeScript prints key=value facts. Every command is read-only.
const probeScript = `os=$( (. /etc/os-release 2>/dev/null && echo "$ID $VERSION_ID") || uname -s)
echo "os=$os"
echo "arch=$(uname -m)"
if [ -d /run/systemd/system ]; then echo init=systemd; else echo "init=$(cat /proc/1/comm 2>/dev/null)"; fi
mkdir -p /var/lib && echo "freekb=$(df -Pk /var/lib | awk 'NR==2 {print $4}')"
if command -v apt-get >/dev/null 2>&1; then echo pm=apt-get; elif command -v dnf >/dev/null 2>&1; then echo pm=dnf; fi
for b in containerd runc iptables conntrack; do command -v "$b" >/dev/null 2>&1 || echo "missing=$b"; done
[ -x /usr/lib/cni/bridge ] || [ -x /opt/cni/bin/bridge ] || echo missing=cni-plugins
[ -S /run/containerd/containerd.sock ] || echo containerd=stopped
`

func checkProbe(ctx context.Context, r *run) (bool, error) {
	if out, err := r.remote.Run(ctx, "id -u", nil); err != nil || strings.TrimSpace(string(out)) != "0" {
		return false, fmt.Errorf("probe: cannot run commands as root (passwordless sudo is required for a non-root user; "+
			"add \"USER ALL=(ALL) NOPASSWD: ALL\" to /etc/sudoers.d/bosun): %w", errors.Join(err, errors.New(strings.TrimSpace(string(out)))))
	}
	out, err := r.exec(ctx, "probing the machine", probeScript, nil)
	if err != nil {
		return false, err
	}
	f := Facts{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		switch k {
		case "os":
			f.OS = v
		case "arch":
			f.Arch = goarch(v)
		case "init":
			f.Systemd = v == "systemd"
		case "freekb":
			kb, _ := strconv.ParseInt(v, 10, 64)
			f.FreeMB = kb / 1024
		case "pm":
			f.PackageManager = v
		case "missing":
			f.Missing = append(f.Missing, v)
		case "containerd":
			if !f.Systemd {
				f.Missing = append(f.Missing, "containerd-running")
			}
		}
	}
	r.facts = f
	if f.Arch == "" {
		return false, fmt.Errorf("probe: unsupported architecture in %q", strings.TrimSpace(string(out)))
	}
	if f.FreeMB < r.plan.MinFreeMB {
		return false, fmt.Errorf("probe: only %d MiB free under /var/lib, need %d MiB: free some space", f.FreeMB, r.plan.MinFreeMB)
	}
	return true, nil
}

func goarch(uname string) string {
	switch uname {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "armv7l":
		return "arm"
	case "riscv64", "ppc64le", "s390x":
		return uname
	}
	return ""
}

// ---- packages

func checkPackages(ctx context.Context, r *run) (bool, error) {
	if r.installed {
		// Re-probe after installing.
		if _, err := checkProbe(ctx, r); err != nil {
			return false, err
		}
	}
	if len(r.facts.Missing) == 0 {
		return true, nil
	}
	if r.plan.SkipPackages {
		return false, fmt.Errorf("packages: missing %s and package installation is disabled", strings.Join(r.facts.Missing, ", "))
	}
	return false, nil
}

func (r *run) stepRan(name string) bool {
	return r.facts.OS != "" && r.step == name && r.facts.Missing == nil
}

var packageNames = map[string]map[string]string{
	"apt-get": {"containerd": "containerd", "runc": "runc", "iptables": "iptables", "conntrack": "conntrack", "cni-plugins": "containernetworking-plugins"},
	"dnf":     {"containerd": "containerd", "runc": "runc", "iptables": "iptables", "conntrack": "conntrack-tools", "cni-plugins": "containernetworking-plugins"},
}

func applyPackages(ctx context.Context, r *run) error {
	var pkgs []string
	startContainerd := false
	for _, m := range r.facts.Missing {
		if m == "containerd-running" {
			startContainerd = true
			continue
		}
		name, ok := packageNames[r.facts.PackageManager][m]
		if !ok {
			return fmt.Errorf("packages: %s is missing and there is no apt-get or dnf on %s: install it by hand", m, r.facts.OS)
		}
		pkgs = append(pkgs, name)
	}
	if len(pkgs) > 0 {
		var cmd string
		if r.facts.PackageManager == "apt-get" {
			cmd = "export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q --no-install-recommends " + strings.Join(pkgs, " ")
		} else {
			cmd = "dnf install -y -q " + strings.Join(pkgs, " ")
		}
		if _, err := r.exec(ctx, "installing "+strings.Join(pkgs, " "), cmd, nil); err != nil {
			return err
		}
	}
	if r.facts.Systemd {
		if _, err := r.exec(ctx, "starting containerd", "systemctl enable --now containerd.service", nil); err != nil {
			return err
		}
	} else if startContainerd {
		return errors.New("packages: containerd is installed but not running, and there is no systemd to start it: start containerd (socket /run/containerd/containerd.sock)")
	}
	r.installed = true
	return nil
}

// ---- binary

func checkBinary(ctx context.Context, r *run) (bool, error) {
	if r.binary.Open == nil {
		b, err := r.plan.Binary(r.facts.Arch)
		if err != nil {
			return false, fmt.Errorf("binary: %w", err)
		}
		r.binary = b
	}
	out, err := r.quiet(ctx, "checksum", "sha256sum "+shellQuote(r.plan.Layout.Binary)+" 2>/dev/null | cut -d' ' -f1; true")
	if err != nil {
		return false, err
	}
	have := strings.TrimSpace(string(out))
	if have == r.binary.Digest {
		r.progress.Output(r.step, "binary is up to date", []byte("sha256 "+have))
		return true, nil
	}
	return false, nil
}

func applyBinary(ctx context.Context, r *run) error {
	f, err := r.binary.Open()
	if err != nil {
		return fmt.Errorf("binary: %w", err)
	}
	defer f.Close()
	bin := shellQuote(r.plan.Layout.Binary)
	// Upload under a temporary name, verify, then rename over the old binary: a running agent
	// keeps its inode, and an interrupted upload never leaves a truncated bosun in place.
	cmd := fmt.Sprintf(`set -e
bin=%s
mkdir -p "$(dirname "$bin")"
rm -f "$bin".tmp.*
tmp="$bin.tmp.$$"
cat > "$tmp"
sum=$(sha256sum "$tmp" | cut -d' ' -f1)
if [ "$sum" != %s ]; then rm -f "$tmp"; echo "uploaded binary has checksum $sum, want %s" >&2; exit 1; fi
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
echo "installed $bin (sha256 $sum)"`, bin, r.binary.Digest, r.binary.Digest)
	_, err = r.exec(ctx, "uploading bosun", cmd, f)
	return err
}

// ---- credentials

// renewBefore is how long before expiry certificates are reissued.
const renewBefore = 30 * 24 * time.Hour

func checkCredentials(ctx context.Context, r *run) (bool, error) {
	dir := r.plan.Layout.PKIDir()
	out, err := r.quiet(ctx, "reading certificates", fmt.Sprintf(`cd %s 2>/dev/null || exit 0
for f in ca.crt node.crt serving.crt; do echo "==$f"; cat "$f" 2>/dev/null; done
echo "==modes"; stat -c '%%a %%n' node.key serving.key 2>/dev/null; true`, shellQuote(dir)))
	if err != nil {
		return false, err
	}
	files := splitSections(out)
	problem := r.credentialProblem(files)
	if problem != "" {
		r.progress.Output(r.step, "credentials need to be issued", []byte(problem))
		return false, nil
	}
	sum := sha256.Sum256([]byte(files["node.crt"] + files["serving.crt"] + files["ca.crt"]))
	r.credHash = hex.EncodeToString(sum[:])
	r.progress.Output(r.step, "credentials are valid", []byte("node certificate signed by the cluster CA, serving certificate by the node serving CA"))
	return true, nil
}

func splitSections(out []byte) map[string]string {
	m := map[string]string{}
	var cur string
	for _, line := range strings.SplitAfter(string(out), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "=="); ok {
			cur = name
			continue
		}
		if cur != "" {
			m[cur] += line
		}
	}
	return m
}

func (r *run) credentialProblem(files map[string]string) string {
	ca := r.plan.CA
	if strings.TrimSpace(files["ca.crt"]) != strings.TrimSpace(string(ca.CertPEM)) {
		return "ca.crt is missing or is not the cluster CA"
	}
	modes := files["modes"]
	for _, k := range []string{"node.key", "serving.key"} {
		if !strings.Contains(modes, "600 "+k) {
			return k + " is missing or not mode 0600"
		}
	}
	deadline := time.Now().Add(renewBefore)
	client, err := pki.ParseCert([]byte(files["node.crt"]))
	if err != nil {
		return "node.crt: " + err.Error()
	}
	if err := client.CheckSignatureFrom(ca.Cert); err != nil {
		return "node.crt is not signed by the cluster CA"
	}
	if client.Subject.CommonName != "system:node:"+r.plan.NodeName || strings.Join(client.Subject.Organization, ",") != "system:nodes" {
		return "node.crt is for " + client.Subject.CommonName
	}
	if client.NotAfter.Before(deadline) {
		return "node.crt expires soon"
	}
	serving, err := pki.ParseCert([]byte(files["serving.crt"]))
	if err != nil {
		return "serving.crt: " + err.Error()
	}
	if err := serving.CheckSignatureFrom(r.plan.NodeServingCA.Cert); err != nil {
		return "serving.crt is not signed by the node serving CA"
	}
	if serving.Subject.CommonName != pki.NodeUserPrefix+r.plan.NodeName {
		return "serving.crt is for " + serving.Subject.CommonName
	}
	if serving.NotAfter.Before(deadline) {
		return "serving.crt expires soon"
	}
	if err := serving.VerifyHostname(r.plan.NodeName); err != nil {
		return "serving.crt does not name " + r.plan.NodeName
	}
	if r.plan.NodeIP != "" {
		if err := serving.VerifyHostname(r.plan.NodeIP); err != nil {
			return "serving.crt does not name " + r.plan.NodeIP
		}
	}
	return ""
}

func applyCredentials(ctx context.Context, r *run) error {
	ca := r.plan.CA
	certPEM, keyPEM, err := ca.IssueClient("system:node:"+r.plan.NodeName, []string{"system:nodes"}, pki.CertValidity)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	names := []string{r.plan.NodeName}
	if r.plan.NodeIP != "" {
		names = append(names, r.plan.NodeIP)
	}
	servingPEM, servingKeyPEM, err := r.plan.NodeServingCA.IssueNodeServing(r.plan.NodeName, names, pki.CertValidity)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	archive, err := tarFiles([]tarFile{
		{"ca.crt", ca.CertPEM, 0o644},
		{"node.crt", certPEM, 0o644},
		{"node.key", keyPEM, 0o600},
		{"serving.crt", servingPEM, 0o644},
		{"serving.key", servingKeyPEM, 0o600},
	})
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	// The keys travel on stdin; the directory is swapped in whole, so an interrupted run never
	// leaves a key beside a certificate that does not match it.
	cmd := fmt.Sprintf(`set -e
umask 077
d=%s
mkdir -p "$(dirname "$d")"
rm -rf "$d.new" "$d.old"
mkdir -m 0700 "$d.new"
tar -x -o -C "$d.new"
chmod 0600 "$d.new/node.key" "$d.new/serving.key"
chmod 0644 "$d.new/ca.crt" "$d.new/node.crt" "$d.new/serving.crt"
if [ -d "$d" ]; then mv "$d" "$d.old"; fi
mv "$d.new" "$d"
rm -rf "$d.old"
echo "installed node credentials for %s in $d"`, shellQuote(r.plan.Layout.PKIDir()), r.plan.NodeName)
	_, err = r.exec(ctx, "installing credentials", cmd, bytes.NewReader(archive))
	return err
}

// ---- config

func checkConfig(ctx context.Context, r *run) (bool, error) {
	if r.config == nil {
		cfg := r.plan.Agent
		cfg.NodeName, cfg.NodeIP = r.plan.NodeName, r.plan.NodeIP
		b, err := cfg.render(r.plan.Layout)
		if err != nil {
			return false, err
		}
		r.config = b
	}
	return r.fileMatches(ctx, r.plan.Layout.ConfigFile(), r.config)
}

// fileMatches compares a remote file's checksum with data.
func (r *run) fileMatches(ctx context.Context, path string, data []byte) (bool, error) {
	out, err := r.quiet(ctx, "checksum", "sha256sum "+shellQuote(path)+" 2>/dev/null | cut -d' ' -f1; true")
	if err != nil {
		return false, err
	}
	ok := strings.TrimSpace(string(out)) == sha256Hex(data)
	if ok {
		r.progress.Output(r.step, path+" is up to date", nil)
	}
	return ok, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeFile uploads data over stdin to path (temp name + rename).
func (r *run) writeFile(ctx context.Context, path string, data []byte, mode string) error {
	cmd := fmt.Sprintf(`set -e
umask 077
f=%s
mkdir -p "$(dirname "$f")"
cat > "$f.tmp"
chmod %s "$f.tmp"
mv -f "$f.tmp" "$f"
echo "wrote $f"`, shellQuote(path), mode)
	_, err := r.exec(ctx, "writing "+path, cmd, bytes.NewReader(data))
	return err
}

func applyConfig(ctx context.Context, r *run) error {
	return r.writeFile(ctx, r.plan.Layout.ConfigFile(), r.config, "0600")
}
