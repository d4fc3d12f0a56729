package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// defaultKubeconfig is where `make run` (bosun up --data-dir .bosun) writes the admin kubeconfig.
const defaultKubeconfig = ".bosun/admin.kubeconfig"

// kubeconfigRules says where the kubeconfig comes from, in this order: --kubeconfig (one file),
// $BOSUN_KUBECONFIG, $KUBECONFIG (colon-separated lists merged as kubectl merges $KUBECONFIG: the
// first file to set a value wins, missing files are skipped), then the kubeconfig of a
// `make run` cluster in the current directory. desc names the source in messages.
func (g *globalFlags) kubeconfigRules() (rules *clientcmd.ClientConfigLoadingRules, desc string, err error) {
	if g.kubeconfig != "" {
		return &clientcmd.ClientConfigLoadingRules{ExplicitPath: g.kubeconfig}, g.kubeconfig, nil
	}
	for _, env := range []string{"BOSUN_KUBECONFIG", "KUBECONFIG"} {
		var files []string
		for _, f := range filepath.SplitList(os.Getenv(env)) {
			if f != "" && !slices.Contains(files, f) {
				files = append(files, f)
			}
		}
		if len(files) > 0 {
			return &clientcmd.ClientConfigLoadingRules{Precedence: files}, fmt.Sprintf("$%s (%s)", env, strings.Join(files, string(filepath.ListSeparator))), nil
		}
	}
	if _, err := os.Stat(defaultKubeconfig); err == nil {
		return &clientcmd.ClientConfigLoadingRules{ExplicitPath: defaultKubeconfig}, defaultKubeconfig, nil
	}
	return nil, "", fmt.Errorf("no kubeconfig: pass --kubeconfig FILE or set $BOSUN_KUBECONFIG " +
		"(the operator writes DATA-DIR/admin.kubeconfig on first start)")
}

// restConfig loads the kubeconfig (see kubeconfigRules) and returns its current context's
// client configuration; it notes the context's namespace in g.contextNamespace. Unlike kubectl it never falls back to a pod's in-cluster credentials.
func (g *globalFlags) restConfig() (*rest.Config, error) {
	rules, desc, err := g.kubeconfigRules()
	if err != nil {
		return nil, err
	}
	raw, err := rules.Load()
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig %s: %w", desc, err)
	}
	if clientcmdapi.IsConfigEmpty(raw) {
		return nil, fmt.Errorf("kubeconfig %s: none of the files exists or holds a configuration; "+
			"pass --kubeconfig FILE (the operator writes DATA-DIR/admin.kubeconfig)", desc)
	}
	cc := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", desc, err)
	}
	if g.contextNamespace, _, err = cc.Namespace(); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", desc, err)
	}
	return cfg, nil
}

// apiClient talks to the operator's Kubernetes-shaped API with the credentials of a kubeconfig.
type apiClient struct {
	base string
	http *http.Client
}

func (g *globalFlags) client() (*apiClient, error) {
	cfg, err := g.restConfig()
	if err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig for %s: %w", cfg.Host, err)
	}
	return &apiClient{base: strings.TrimSuffix(cfg.Host, "/"), http: hc}, nil
}

// resourcePath builds the REST path of a collection (name == "") or an object.
func resourcePath(res *resource.Resource, namespace, name string) string {
	p := "/api/v1"
	if res.Group != "" {
		p = "/apis/" + res.Group + "/" + res.Version
	}
	if res.Namespaced && namespace != "" {
		p += "/namespaces/" + url.PathEscape(namespace)
	}
	p += "/" + res.Resource
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// apiError is a non-2xx answer, carrying the server's metav1.Status message.
type apiError struct {
	Code    int
	Reason  metav1.StatusReason
	Message string
}

func (e *apiError) Error() string { return e.Message }

func (c *apiClient) do(ctx context.Context, method, p string, query url.Values, body any, contentType string, out any) error {
	u := c.base + path.Clean("/"+p)
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("contacting the operator at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the answer of %s %s: %w", method, p, err)
	}
	if resp.StatusCode/100 != 2 {
		var st metav1.Status
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			return &apiError{Code: resp.StatusCode, Reason: st.Reason, Message: st.Message}
		}
		return &apiError{Code: resp.StatusCode, Message: fmt.Sprintf("%s %s: %s: %s", method, p, resp.Status, strings.TrimSpace(string(data)))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding the answer of %s %s: %w", method, p, err)
	}
	return nil
}

func (c *apiClient) get(ctx context.Context, res *resource.Resource, namespace, name string) (resource.Object, error) {
	obj := res.New()
	if err := c.do(ctx, http.MethodGet, resourcePath(res, namespace, name), nil, nil, "", obj); err != nil {
		return nil, err
	}
	res.SetTypeMeta(obj)
	return obj, nil
}

// list returns the typed items of a collection (namespace "" = all namespaces).
func (c *apiClient) list(ctx context.Context, res *resource.Resource, namespace string, query url.Values) ([]resource.Object, error) {
	var raw struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := c.do(ctx, http.MethodGet, resourcePath(res, namespace, ""), query, nil, "", &raw); err != nil {
		return nil, err
	}
	items := make([]resource.Object, 0, len(raw.Items))
	for _, r := range raw.Items {
		obj := res.New()
		if err := json.Unmarshal(r, obj); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", res, err)
		}
		res.SetTypeMeta(obj)
		items = append(items, obj)
	}
	return items, nil
}

func isNotFound(err error) bool {
	ae, ok := err.(*apiError)
	return ok && ae.Code == http.StatusNotFound
}
