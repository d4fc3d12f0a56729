package operator

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/bosun-gitops/bosun/internal/version"
	"github.com/bosun-gitops/bosun/operator/controllers/machine"
)

// serverNames are the API certificate's extra names: --server-name and --advertise-address.
func serverNames(cfg Config) []string {
	names := append([]string(nil), cfg.ServerNames...)
	if cfg.AdvertiseAddress != "" {
		names = append(names, cfg.AdvertiseAddress)
	}
	return names
}

// machineOptions wires the machine controller: the SSH identity, the CAs, the API address the
// agents use, and this very executable as the agent binary.
func (o *Operator) machineOptions() machine.Options {
	cfg := o.cfg
	server := o.Server()
	api := server.URL()
	if cfg.AdvertiseAddress != "" {
		if u, err := url.Parse(api); err == nil {
			api = "https://" + net.JoinHostPort(cfg.AdvertiseAddress, u.Port())
		}
	}
	digest, _ := version.BinaryDigest()
	var registry bootstrap.RegistryConfig
	registry.PlainHTTP = cfg.AgentPlainHTTPRegistries
	return machine.Options{
		Signer:        o.signer,
		CA:            server.CA(),
		NodeServingCA: server.NodeServingCA(),
		ServerURL:     api,
		Digest:        digest,
		Registry:      registry,
		Binary:        func(arch string) (bootstrap.Binary, error) { return agentBinary(cfg.DataDir, arch, digest) },
	}
}

// agentBinary is the operator's own executable for its architecture, else
// DATA-DIR/bin/bosun-linux-<arch>.
func agentBinary(dataDir, arch, ownDigest string) (bootstrap.Binary, error) {
	if arch == runtime.GOARCH && runtime.GOOS == "linux" {
		exe, err := os.Executable()
		if err != nil {
			return bootstrap.Binary{}, fmt.Errorf("locating the operator's executable: %w", err)
		}
		return bootstrap.Binary{Digest: ownDigest, Open: func() (io.ReadCloser, error) { return os.Open(exe) }}, nil
	}
	path := filepath.Join(dataDir, "bin", "bosun-linux-"+arch)
	f, err := os.Open(path)
	if err != nil {
		return bootstrap.Binary{}, fmt.Errorf("no bosun binary for linux/%s: put one at %s", arch, path)
	}
	defer f.Close()
	digest, err := bootstrap.FileDigest(f)
	if err != nil {
		return bootstrap.Binary{}, err
	}
	return bootstrap.Binary{Digest: digest, Open: func() (io.ReadCloser, error) { return os.Open(path) }}, nil
}
