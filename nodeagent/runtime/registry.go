package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/containerd/reference/docker"
	"github.com/containerd/containerd/remotes"
	cdocker "github.com/containerd/containerd/remotes/docker"

	"github.com/bosun-gitops/bosun/nodeagent/pods"
)

// RegistryConfig is the node's registry configuration, the equivalent of containerd's hosts.toml.
type RegistryConfig struct {
	// Mirrors lists, per registry host ("docker.io", "registry.example.com:5000"), the endpoints
	// tried before the host itself: "https://mirror.example.com" or "http://127.0.0.1:5000"
	// (without a scheme, the host's plain-HTTP setting decides).
	Mirrors map[string][]string
	// PlainHTTP lists the hosts ("127.0.0.1:5000") spoken to over HTTP instead of HTTPS.
	PlainHTTP []string
	// Auth holds per-host credentials; credentials from a pod's imagePullSecrets take precedence.
	Auth []pods.RegistryAuth
}

// Validate checks the mirror endpoints.
func (c RegistryConfig) Validate() error {
	for host, mirrors := range c.Mirrors {
		for _, m := range mirrors {
			if _, _, err := splitEndpoint(m, false); err != nil {
				return fmt.Errorf("registry.mirrors[%s]: %q: %w", host, m, err)
			}
		}
	}
	for _, a := range c.Auth {
		if a.Host == "" {
			return fmt.Errorf("registry.auth: an entry has no host")
		}
	}
	return nil
}

// resolver builds a remotes/docker resolver with the configured mirrors, plain-HTTP hosts and
// credentials (auth from the call first, then from the config).
func (r *Runtime) resolver(auth []pods.RegistryAuth) remotes.Resolver {
	return cdocker.NewResolver(cdocker.ResolverOptions{Hosts: r.registryHosts(auth)})
}

func (r *Runtime) registryHosts(auth []pods.RegistryAuth) cdocker.RegistryHosts {
	cfg := r.cfg.Registry
	creds := func(host string) (string, string, error) {
		for _, list := range [][]pods.RegistryAuth{auth, cfg.Auth} {
			for _, a := range list {
				if sameRegistry(a.Host, host) {
					return a.Username, a.Password, nil
				}
			}
		}
		return "", "", nil
	}
	client := &http.Client{Timeout: 0, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	authorizer := cdocker.NewDockerAuthorizer(
		cdocker.WithAuthClient(client),
		cdocker.WithAuthCreds(creds))
	plain := map[string]bool{}
	for _, h := range cfg.PlainHTTP {
		plain[h] = true
	}
	return func(host string) ([]cdocker.RegistryHost, error) {
		var hosts []cdocker.RegistryHost
		for _, m := range cfg.Mirrors[host] {
			scheme, mhost, err := splitEndpoint(m, plain[m])
			if err != nil {
				return nil, err
			}
			if plain[mhost] {
				scheme = "http"
			}
			hosts = append(hosts, cdocker.RegistryHost{
				Client: client, Authorizer: authorizer, Host: mhost, Scheme: scheme, Path: "/v2",
				Capabilities: cdocker.HostCapabilityPull | cdocker.HostCapabilityResolve,
			})
		}
		upstream := host
		if host == "docker.io" {
			upstream = "registry-1.docker.io"
		}
		scheme := "https"
		if plain[host] {
			scheme = "http"
		}
		hosts = append(hosts, cdocker.RegistryHost{
			Client: client, Authorizer: authorizer, Host: upstream, Scheme: scheme, Path: "/v2",
			Capabilities: cdocker.HostCapabilityPull | cdocker.HostCapabilityResolve | cdocker.HostCapabilityPush,
		})
		return hosts, nil
	}
}

// splitEndpoint splits "http://host:port" into scheme and host; without a scheme it is https
// unless plainHTTP.
func splitEndpoint(endpoint string, plainHTTP bool) (scheme, host string, err error) {
	if !strings.Contains(endpoint, "://") {
		if plainHTTP {
			return "http", endpoint, nil
		}
		return "https", endpoint, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", fmt.Errorf("scheme must be http or https")
	}
	if u.Host == "" {
		return "", "", fmt.Errorf("no host")
	}
	return u.Scheme, u.Host, nil
}

func sameRegistry(configured, host string) bool {
	if configured == host {
		return true
	}
	docker := func(h string) bool {
		return h == "docker.io" || h == "registry-1.docker.io" || h == "index.docker.io"
	}
	return docker(configured) && docker(host)
}

// registryMessage asks the registry for ref's manifest with a GET (the resolver's HEAD carries no
// body) and returns the registry's own error text, such as "MANIFEST_UNKNOWN: manifest unknown",
// or "" when it has none to give.
func (r *Runtime) registryMessage(ctx context.Context, ref string, auth []pods.RegistryAuth) string {
	named, err := docker.ParseDockerRef(ref)
	if err != nil {
		return ""
	}
	tagOrDigest := "latest"
	if d, ok := named.(docker.Digested); ok {
		tagOrDigest = d.Digest().String()
	} else if t, ok := named.(docker.Tagged); ok {
		tagOrDigest = t.Tag()
	}
	hosts, err := r.registryHosts(auth)(docker.Domain(named))
	if err != nil || len(hosts) == 0 {
		return ""
	}
	h := hosts[len(hosts)-1]
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u := fmt.Sprintf("%s://%s%s/%s/manifests/%s", h.Scheme, h.Host, h.Path, docker.Path(named), tagOrDigest)
	var resp *http.Response
	for attempt := 0; attempt < 2; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return ""
		}
		req.Header.Set("Accept", strings.Join([]string{
			"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
			"application/vnd.docker.distribution.manifest.v2+json",
			"application/vnd.docker.distribution.manifest.list.v2+json"}, ", "))
		if h.Authorizer != nil {
			if err := h.Authorizer.Authorize(ctx, req); err != nil {
				return ""
			}
		}
		resp, err = h.Client.Do(req)
		if err != nil {
			return ""
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 && h.Authorizer != nil {
			if err := h.Authorizer.AddResponses(ctx, []*http.Response{resp}); err != nil {
				break // no credentials for this challenge: the 401's body is the message
			}
			resp.Body.Close()
			continue
		}
		break
	}
	if resp == nil {
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode < 400 {
		return ""
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	var parsed struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &parsed) == nil && len(parsed.Errors) > 0 {
		var parts []string
		for _, e := range parsed.Errors {
			parts = append(parts, strings.TrimSpace(e.Code+": "+e.Message))
		}
		return fmt.Sprintf("%s (%s)", strings.Join(parts, "; "), resp.Status)
	}
	if msg := strings.TrimSpace(string(body)); msg != "" {
		return fmt.Sprintf("%s: %s", resp.Status, msg)
	}
	return resp.Status
}
