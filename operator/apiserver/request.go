package apiserver

import (
	"net/http"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Verbs, as Kubernetes names them in authorization and discovery.
const (
	verbGet    = "get"
	verbList   = "list"
	verbWatch  = "watch"
	verbCreate = "create"
	verbUpdate = "update"
	verbPatch  = "patch"
	verbDelete = "delete"
)

// requestInfo is what a request path and method mean.
type requestInfo struct {
	// Resource is nil for non-resource paths (discovery, health, metrics).
	Resource     *resource.Resource
	GroupVersion schema.GroupVersion
	Namespace    string
	Name         string
	Subresource  string
	Verb         string
	// Discovery is set for /api, /apis and group/version documents.
	Discovery bool
}

// resourceLabel is the metrics label: "pods", "pods/status" or "" for non-resource paths.
func (ri *requestInfo) resourceLabel() string {
	if ri.Resource == nil {
		return ""
	}
	if ri.Subresource != "" {
		return ri.Resource.Resource + "/" + ri.Subresource
	}
	return ri.Resource.Resource
}

// parseRequest reads a Kubernetes API path:
//
//	/api/v1[/watch]/namespaces/{ns}/{resource}[/{name}[/{subresource}]]
//	/apis/{group}/{version}[/watch]/{resource}[/{name}[/{subresource}]]
//
// notFound is true for paths that are not API resources at all.
func parseRequest(r *http.Request) (ri *requestInfo, notFound bool) {
	ri = &requestInfo{}
	parts := splitPath(r.URL.Path)
	if len(parts) == 0 {
		return ri, true
	}
	switch parts[0] {
	case "api":
		if len(parts) < 2 {
			ri.Discovery = true
			return ri, false
		}
		ri.GroupVersion = schema.GroupVersion{Version: parts[1]}
		parts = parts[2:]
	case "apis":
		if len(parts) < 3 {
			ri.Discovery = true
			if len(parts) == 2 {
				ri.GroupVersion.Group = parts[1]
			}
			return ri, false
		}
		ri.GroupVersion = schema.GroupVersion{Group: parts[1], Version: parts[2]}
		parts = parts[3:]
	default:
		return ri, true
	}
	if len(parts) == 0 {
		ri.Discovery = true
		return ri, false
	}
	watchPath := false
	if parts[0] == "watch" {
		watchPath = true
		parts = parts[1:]
	}
	if len(parts) == 0 {
		return ri, true
	}
	if parts[0] == "namespaces" && len(parts) > 1 {
		ri.Namespace = parts[1]
		if len(parts) > 2 && parts[2] != "status" && parts[2] != "finalize" {
			parts = parts[2:]
		}
	}
	res, ok := resource.ForResource(ri.GroupVersion.Group, ri.GroupVersion.Version, parts[0])
	if !ok {
		return ri, true
	}
	ri.Resource = res
	if len(parts) > 1 {
		ri.Name = parts[1]
	}
	if len(parts) > 2 {
		ri.Subresource = parts[2]
	}
	if len(parts) > 3 {
		return ri, true
	}
	if !res.Namespaced {
		ri.Namespace = ""
	}
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watchPath || q.Get("watch") == "true" || q.Get("watch") == "1":
			ri.Verb = verbWatch
		case ri.Name == "":
			ri.Verb = verbList
		default:
			ri.Verb = verbGet
		}
	case http.MethodPost:
		ri.Verb = verbCreate
	case http.MethodPut:
		ri.Verb = verbUpdate
	case http.MethodPatch:
		ri.Verb = verbPatch
	case http.MethodDelete:
		ri.Verb = verbDelete
	default:
		ri.Verb = strings.ToLower(r.Method)
	}
	return ri, false
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}
