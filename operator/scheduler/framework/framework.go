package framework

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Factory builds one plugin.
type Factory func() (Plugin, error)

// Registry maps plugin names to their factories.
type Registry map[string]Factory

// Register adds a factory; a name registered twice is an error.
func (r Registry) Register(name string, f Factory) error {
	if _, ok := r[name]; ok {
		return fmt.Errorf("plugin %q registered twice", name)
	}
	r[name] = f
	return nil
}

// PluginConfig enables one plugin; Weight multiplies its normalised score (0 means 1).
type PluginConfig struct {
	Name   string
	Weight int64
}

type weightedScore struct {
	ScorePlugin
	weight int64
}

// Framework runs an ordered set of plugins.
type Framework struct {
	preFilters []PreFilterPlugin
	filters    []FilterPlugin
	scores     []weightedScore
}

// New builds the plugins named in enabled from reg; each is used at every extension point it
// implements.
func New(reg Registry, enabled []PluginConfig) (*Framework, error) {
	f := &Framework{}
	seen := map[string]bool{}
	for _, pc := range enabled {
		if seen[pc.Name] {
			return nil, fmt.Errorf("plugin %q enabled twice", pc.Name)
		}
		seen[pc.Name] = true
		factory, ok := reg[pc.Name]
		if !ok {
			return nil, fmt.Errorf("plugin %q is not registered", pc.Name)
		}
		p, err := factory()
		if err != nil {
			return nil, fmt.Errorf("building plugin %s: %w", pc.Name, err)
		}
		used := false
		if pf, ok := p.(PreFilterPlugin); ok {
			f.preFilters = append(f.preFilters, pf)
			used = true
		}
		if fp, ok := p.(FilterPlugin); ok {
			f.filters = append(f.filters, fp)
			used = true
		}
		if sp, ok := p.(ScorePlugin); ok {
			w := pc.Weight
			if w == 0 {
				w = 1
			}
			f.scores = append(f.scores, weightedScore{sp, w})
			used = true
		}
		if !used {
			return nil, fmt.Errorf("plugin %s implements no extension point", pc.Name)
		}
	}
	return f, nil
}

// HasScorePlugins reports whether any score plugin is enabled.
func (f *Framework) HasScorePlugins() bool { return len(f.scores) > 0 }

// RunPreFilterPlugins runs every PreFilter plugin; the first non-success status is returned.
func (f *Framework) RunPreFilterPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod) *Status {
	for _, p := range f.preFilters {
		if s := p.PreFilter(ctx, state, pod); !s.IsSuccess() {
			s.plugin = p.Name()
			return s
		}
	}
	return nil
}

// RunFilterPlugins runs the Filter plugins in order against one node and returns the first
// rejection (as kube-scheduler does: the message names one reason per node).
func (f *Framework) RunFilterPlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, node *NodeInfo) *Status {
	for _, p := range f.filters {
		if s := p.Filter(ctx, state, pod, node); !s.IsSuccess() {
			s.plugin = p.Name()
			return s
		}
	}
	return nil
}

// RunScorePlugins scores nodes with every Score plugin, normalises each plugin's scores, checks
// they lie in [MinNodeScore, MaxNodeScore] and returns the weighted sums in node order.
func (f *Framework) RunScorePlugins(ctx context.Context, state *CycleState, pod *corev1.Pod, nodes []*NodeInfo, buf *ScoreBuffer) (NodeScoreList, *Status) {
	if buf == nil {
		buf = &ScoreBuffer{}
	}
	total := buf.total.take(len(nodes))
	for i, n := range nodes {
		total[i] = NodeScore{Name: n.Name()}
	}
	scores := buf.scores.take(len(nodes))
	for _, p := range f.scores {
		for i, n := range nodes {
			s, st := p.Score(ctx, state, pod, n)
			if !st.IsSuccess() {
				st.plugin = p.Name()
				return nil, st
			}
			scores[i] = NodeScore{Name: total[i].Name, Score: s}
		}
		if ext, ok := p.ScorePlugin.(ScoreExtensions); ok {
			if st := ext.NormalizeScore(ctx, state, pod, scores); !st.IsSuccess() {
				st.plugin = p.Name()
				return nil, st
			}
		}
		for i := range scores {
			if s := scores[i].Score; s < MinNodeScore || s > MaxNodeScore {
				return nil, &Status{code: Error, plugin: p.Name(),
					reasons: []string{fmt.Sprintf("plugin %s returned score %d for node %s, outside [%d, %d]", p.Name(), s, scores[i].Name, MinNodeScore, MaxNodeScore)}}
			}
			total[i].Score += scores[i].Score * p.weight
		}
	}
	return total, nil
}

// ScoreBuffer holds the score lists of RunScorePlugins for reuse by the next call: scheduling
// thousands of pods would otherwise allocate two lists of every feasible node per pod. Not safe
// for concurrent use; a list RunScorePlugins returned is valid until the buffer's next use.
type ScoreBuffer struct {
	total, scores scoreList
}

type scoreList NodeScoreList

// take returns the list with n zeroed entries, growing it when needed.
func (l *scoreList) take(n int) NodeScoreList {
	if cap(*l) < n {
		*l = make(scoreList, n)
	}
	*l = (*l)[:n]
	clear(*l)
	return NodeScoreList(*l)
}

// Diagnosis records why nodes were rejected in one scheduling attempt.
type Diagnosis struct {
	// NodeToStatus is the rejecting status of each filtered-out node.
	NodeToStatus map[string]*Status
	// PreFilterMsg is set when a PreFilter plugin rejected the pod for every node.
	PreFilterMsg string
	// UnschedulablePlugins names the plugins that rejected the pod somewhere.
	UnschedulablePlugins map[string]bool
}

// FitError is the error of a pod that fits no node.
type FitError struct {
	Pod         *corev1.Pod
	NumAllNodes int
	Diagnosis   Diagnosis
}

// Messages of a FitError, as kube-scheduler words them: NoNodeAvailableMsg starts the message
// when there are nodes, NoNodesMsg is all of it when there are none.
const (
	NoNodeAvailableMsg = "0/%v nodes are available"
	NoNodesMsg         = "no nodes available to schedule pods"
)

// Error returns the message in kube-scheduler's form: "0/3 nodes are available: 1 node(s) had
// untolerated taint {dedicated: db}, 2 Insufficient cpu." — each reason with the number of nodes
// it applies to, sorted as strings — or NoNodesMsg when the cluster has no node at all.
func (e *FitError) Error() string {
	if e.NumAllNodes == 0 {
		return NoNodesMsg
	}
	msg := fmt.Sprintf(NoNodeAvailableMsg+":", e.NumAllNodes)
	if e.Diagnosis.PreFilterMsg != "" {
		return msg + " " + e.Diagnosis.PreFilterMsg + "."
	}
	histogram := map[string]int{}
	for _, st := range e.Diagnosis.NodeToStatus {
		for _, r := range st.Reasons() {
			histogram[r]++
		}
	}
	parts := make([]string, 0, len(histogram))
	for r, n := range histogram {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return msg[:len(msg)-1] + "."
	}
	return msg + " " + strings.Join(parts, ", ") + "."
}

// Resolvable reports whether some node rejected the pod for a reason that a change of other pods
// could remove (Unschedulable rather than UnschedulableAndUnresolvable).
func (e *FitError) Resolvable() bool {
	return slices.ContainsFunc(mapValues(e.Diagnosis.NodeToStatus), func(s *Status) bool { return s.Code() == Unschedulable })
}

func mapValues(m map[string]*Status) []*Status {
	out := make([]*Status, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
