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
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// defaultKubeconfig is where `make run` (bosun up --data-dir .bosun) writes the admin kubeconfig.
const defaultKubeconfig = ".bosun/admin.kubeconfig"

// kubeconfigPath resolves --kubeconfig, then $BOSUN_KUBECONFIG, then $KUBECONFIG, then the
// kubeconfig of a `make run` cluster in the current directory.
func (g *globalFlags) kubeconfigPath() (string, error) {
	for _, p := range []string{g.kubeconfig, os.Getenv("BOSUN_KUBECONFIG"), os.Getenv("KUBECONFIG")} {
		if p != "" {
			return p, nil
		}
	}
	if _, err := os.Stat(defaultKubeconfig); err == nil {
		return defaultKubeconfig, nil
	}
	return "", fmt.Errorf("no kubeconfig: pass --kubeconfig FILE or set $BOSUN_KUBECONFIG " +
		"(the operator writes DATA-DIR/admin.kubeconfig on first start)")
}

// apiClient talks to the operator's Kubernetes-shaped API with the credentials of a kubeconfig.
type apiClient struct {
	base string
	http *http.Client
}

func (g *globalFlags) client() (*apiClient, error) {
	p, err := g.kubeconfigPath()
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", p)
	if err != nil {
		return nil, fmt.Errorf("reading kubeconfig %s: %w", p, err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", p, err)
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
