package gitsync

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
)

// desired is one object that the commit declares, ready to be compared with what is live.
type desired struct {
	res  *resource.Resource
	obj  resource.Object
	file string
	line int
	hash string
}

// objKey identifies an object in the store.
type objKey struct {
	res             *resource.Resource
	namespace, name string
}

func keyOf(res *resource.Resource, namespace, name string) objKey {
	if !res.Namespaced {
		namespace = ""
	}
	return objKey{res, namespace, name}
}

type action int

const (
	actCreate action = iota + 1
	actUpdate        // a managed object whose manifest changed
	actAdopt         // an object created outside Git that Git now declares
	actDelete        // a managed object that Git no longer declares
)

func (a action) String() string {
	return [...]string{"", "create", "update", "adopt", "delete"}[a]
}

// change is one write of a plan.
type change struct {
	action action
	res    *resource.Resource
	want   *desired        // nil for deletes
	live   resource.Object // nil for creates
}

// plan is the difference between a commit and the live objects.
type plan struct {
	// phases are applied in order: cluster-scoped creates/updates (Namespaces, Cluster,
	// Machines), namespaced creates/updates, namespaced deletes, cluster-scoped deletes.
	phases    [4][]change
	unchanged int
	// waiting names the declared objects that cannot be written yet: their live copy is being
	// deleted (a pod its node is stopping, say); they are created again once it is gone.
	waiting []string
}

func (p *plan) count(a action) int {
	n := 0
	for _, ph := range p.phases {
		for _, c := range ph {
			if c.action == a {
				n++
			}
		}
	}
	return n
}

func (p *plan) empty() bool {
	for _, ph := range p.phases {
		if len(ph) > 0 {
			return false
		}
	}
	return true
}

// appliedHash identifies a manifest as written (document, file and line), so an object whose
// manifest did not change is recognised without comparing defaulted fields. The line is part of
// it so that the source-line annotation stays true.
func appliedHash(raw []byte, file string, line int) string {
	h := sha256.New()
	h.Write([]byte(file))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(line)))
	h.Write([]byte{0})
	h.Write(raw)
	return hex.EncodeToString(h.Sum(nil)[:20])
}

// objectRef names obj for people: "Pod shop/web", "Namespace shop".
func objectRef(res *resource.Resource, obj resource.Object) string {
	if res.Namespaced {
		return res.Kind + " " + obj.GetNamespace() + "/" + obj.GetName()
	}
	return res.Kind + " " + obj.GetName()
}

// waitingList is p.waiting for a message, sorted.
func (p *plan) waitingList() string {
	w := append([]string(nil), p.waiting...)
	sort.Strings(w)
	return strings.Join(w, ", ")
}

// isManaged reports whether Git manages obj (it is part of the inventory).
func isManaged(obj resource.Object) bool {
	_, ok := obj.GetAnnotations()[resource.AnnotationSource]
	return ok
}

// computePlan diffs the desired objects against live, which holds every stored object of every
// InRepo kind (managed or not). Only managed objects are pruned; unmanaged objects that Git
// declares are adopted.
func computePlan(want []*desired, live map[objKey]resource.Object) *plan {
	p := &plan{}
	declared := make(map[objKey]bool, len(want))
	for _, d := range want {
		k := keyOf(d.res, d.obj.GetNamespace(), d.obj.GetName())
		declared[k] = true
		cur, ok := live[k]
		var c change
		switch {
		case ok && cur.GetDeletionTimestamp() != nil:
			p.waiting = append(p.waiting, objectRef(d.res, cur))
			continue
		case !ok:
			c = change{action: actCreate, res: d.res, want: d}
		case !isManaged(cur):
			c = change{action: actAdopt, res: d.res, want: d, live: cur}
		case cur.GetAnnotations()[resource.AnnotationAppliedHash] != d.hash:
			c = change{action: actUpdate, res: d.res, want: d, live: cur}
		default:
			p.unchanged++
			continue
		}
		ph := 1
		if !d.res.Namespaced {
			ph = 0
		}
		p.phases[ph] = append(p.phases[ph], c)
	}
	for k, cur := range live {
		if declared[k] || !isManaged(cur) || cur.GetDeletionTimestamp() != nil {
			continue // kept, not Git's, or already being deleted
		}
		res := k.res
		ph := 2
		if !res.Namespaced {
			ph = 3
		}
		p.phases[ph] = append(p.phases[ph], change{action: actDelete, res: res, live: cur})
	}
	// A stable order makes logs and batches reproducible; the Namespace kind goes first within
	// the cluster-scoped phase so that Machines or Clusters never wait on it.
	for i := range p.phases {
		ph := p.phases[i]
		sort.Slice(ph, func(a, b int) bool {
			ka, kb := changeKey(ph[a]), changeKey(ph[b])
			if ka.res != kb.res {
				if kindRank(ka) != kindRank(kb) {
					return kindRank(ka) < kindRank(kb)
				}
				return ka.res.String() < kb.res.String()
			}
			if ka.namespace != kb.namespace {
				return ka.namespace < kb.namespace
			}
			return ka.name < kb.name
		})
	}
	return p
}

func kindRank(k objKey) int {
	if k.res == resource.Namespaces {
		return 0
	}
	return 1
}

func changeKey(c change) objKey {
	obj := c.live
	if c.want != nil {
		obj = c.want.obj
	}
	return keyOf(c.res, obj.GetNamespace(), obj.GetName())
}
