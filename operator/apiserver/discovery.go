package apiserver

import (
	"net"
	"net/http"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/internal/version"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8sversion "k8s.io/apimachinery/pkg/version"
)

// The Kubernetes API version Bosun's protocol follows (the k8s.io modules it is built with).
const (
	kubeMajor = "1"
	kubeMinor = "37"
)

var (
	resourceVerbs = metav1.Verbs{verbCreate, verbDelete, verbGet, verbList, verbPatch, verbUpdate, verbWatch}
	statusVerbs   = metav1.Verbs{verbGet, verbPatch, verbUpdate}
)

// serveDiscovery answers /api, /apis, /apis/{group} and the group-version resource lists with
// the legacy (unaggregated) documents, whatever the Accept header asks for: client-go and kubectl
// fall back to them when the response is plain application/json.
func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request, ri *requestInfo) {
	path := strings.Trim(r.URL.Path, "/")
	switch {
	case path == "api":
		writeJSON(w, http.StatusOK, coreVersions(r))
	case path == "apis":
		writeJSON(w, http.StatusOK, groupList())
	case strings.HasPrefix(path, "apis/") && ri.GroupVersion.Version == "":
		for _, g := range groupList().Groups {
			if g.Name == ri.GroupVersion.Group {
				g.TypeMeta = metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}
				writeJSON(w, http.StatusOK, &g)
				return
			}
		}
		writeError(w, errPathNotFound())
	default:
		list := resourceList(ri.GroupVersion)
		if list == nil {
			writeError(w, errPathNotFound())
			return
		}
		writeJSON(w, http.StatusOK, list)
	}
}

func coreVersions(r *http.Request) *metav1.APIVersions {
	addr := r.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "443")
	}
	return &metav1.APIVersions{
		TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
		Versions: []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{
			{ClientCIDR: "0.0.0.0/0", ServerAddress: addr},
		},
	}
}

// groupList lists the named groups (not the core group), in resource.All's order.
func groupList() *metav1.APIGroupList {
	list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	index := map[string]int{}
	for _, gv := range resource.Groups() {
		if gv.Group == "" {
			continue
		}
		v := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
		i, ok := index[gv.Group]
		if !ok {
			index[gv.Group] = len(list.Groups)
			list.Groups = append(list.Groups, metav1.APIGroup{Name: gv.Group, PreferredVersion: v})
			i = len(list.Groups) - 1
		}
		list.Groups[i].Versions = append(list.Groups[i].Versions, v)
	}
	return list
}

// resourceList is the APIResourceList of one group version, nil when it is not served.
func resourceList(gv schema.GroupVersion) *metav1.APIResourceList {
	var list *metav1.APIResourceList
	for _, res := range resource.All {
		if res.GroupVersion() != gv {
			continue
		}
		if list == nil {
			list = &metav1.APIResourceList{
				TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
				GroupVersion: gv.String(),
				APIResources: []metav1.APIResource{},
			}
		}
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: res.Resource, SingularName: res.Singular, Namespaced: res.Namespaced,
			Kind: res.Kind, Verbs: resourceVerbs, ShortNames: res.ShortNames,
		})
		if res.HasStatus {
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: res.Resource + "/status", Namespaced: res.Namespaced, Kind: res.Kind, Verbs: statusVerbs,
			})
		}
	}
	return list
}

func (s *Server) serveVersion(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, &k8sversion.Info{
		Major: kubeMajor, Minor: kubeMinor,
		GitVersion: "v" + kubeMajor + "." + kubeMinor + ".0-bosun",
		GitCommit:  version.Version,
		Platform:   "bosun",
	})
}
