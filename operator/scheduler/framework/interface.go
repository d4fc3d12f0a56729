// Package framework is the scheduler's plugin contract, in the shape of kube-scheduler's
// framework/interface.go: PreFilter, Filter and Score plugins return a *Status; a Framework runs
// a configured set of them over the cluster's nodes, aggregates filter reasons into the
// "0/N nodes are available: ..." message and normalises and weights scores.
//
//	pod ──PreFilter──> CycleState ──Filter(node)──> feasible nodes ──Score──> Normalize ──> weighted sum
package framework

import (
	"context"
	"errors"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Code is the outcome of a plugin call.
type Code int

// Status codes, as in kube-scheduler.
const (
	// Success means the pod fits (or the plugin has nothing to say).
	Success Code = iota
	// Error is an internal failure; the pod is retried with backoff.
	Error
	// Unschedulable means the node does not fit now but might after a change on it (for
	// example other pods leaving).
	Unschedulable
	// UnschedulableAndUnresolvable means the node does not fit and no change of other pods can
	// make it fit (node name, selector, taints).
	UnschedulableAndUnresolvable
)

func (c Code) String() string {
	switch c {
	case Success:
		return "Success"
	case Error:
		return "Error"
	case Unschedulable:
		return "Unschedulable"
	case UnschedulableAndUnresolvable:
		return "UnschedulableAndUnresolvable"
	}
	return "Unknown"
}

// Status is the result of a plugin call: a code and the reasons behind it. A nil *Status is
// Success.
type Status struct {
	code    Code
	reasons []string
	err     error
	plugin  string
}

// NewStatus returns a status with code and reasons.
func NewStatus(code Code, reasons ...string) *Status {
	return &Status{code: code, reasons: reasons}
}

// AsStatus wraps an internal error.
func AsStatus(err error) *Status {
	if err == nil {
		return nil
	}
	return &Status{code: Error, reasons: []string{err.Error()}, err: err}
}

// Code returns the status code (Success for nil).
func (s *Status) Code() Code {
	if s == nil {
		return Success
	}
	return s.code
}

// IsSuccess reports whether s is nil or Success.
func (s *Status) IsSuccess() bool { return s.Code() == Success }

// IsRejected reports whether the status says the pod does not fit (either unschedulable code).
func (s *Status) IsRejected() bool {
	c := s.Code()
	return c == Unschedulable || c == UnschedulableAndUnresolvable
}

// Reasons returns the reasons (e.g. "Insufficient cpu").
func (s *Status) Reasons() []string {
	if s == nil {
		return nil
	}
	return s.reasons
}

// Plugin names the plugin that returned the status (set by the Framework).
func (s *Status) Plugin() string {
	if s == nil {
		return ""
	}
	return s.plugin
}

// AsError returns the status as an error (nil for Success).
func (s *Status) AsError() error {
	if s.IsSuccess() {
		return nil
	}
	if s.err != nil {
		return s.err
	}
	return errors.New(strings.Join(s.reasons, ", "))
}

// Message is the reasons joined with ", ".
func (s *Status) Message() string { return strings.Join(s.Reasons(), ", ") }

// Plugin is the common part of every plugin.
type Plugin interface {
	Name() string
}

// PreFilterPlugin computes per-pod state once per scheduling cycle (stored in CycleState) and
// may reject the pod outright.
type PreFilterPlugin interface {
	Plugin
	PreFilter(ctx context.Context, state *CycleState, pod *corev1.Pod) *Status
}

// FilterPlugin decides whether pod may run on the node.
type FilterPlugin interface {
	Plugin
	Filter(ctx context.Context, state *CycleState, pod *corev1.Pod, node *NodeInfo) *Status
}

// ScorePlugin ranks a feasible node; higher is better. Raw scores are normalised by
// NormalizeScore when the plugin implements ScoreExtensions, then must lie in
// [MinNodeScore, MaxNodeScore].
type ScorePlugin interface {
	Plugin
	Score(ctx context.Context, state *CycleState, pod *corev1.Pod, node *NodeInfo) (int64, *Status)
}

// ScoreExtensions is implemented by score plugins whose raw scores need normalising once every
// node has been scored (for example counts turned into "fewer is better").
type ScoreExtensions interface {
	NormalizeScore(ctx context.Context, state *CycleState, pod *corev1.Pod, scores NodeScoreList) *Status
}

// Score bounds.
const (
	MinNodeScore int64 = 0
	MaxNodeScore int64 = 100
)

// NodeScore is one node's score.
type NodeScore struct {
	Name  string
	Score int64
}

// NodeScoreList is the scores of every feasible node, in the order they were filtered.
type NodeScoreList []NodeScore

// DefaultNormalizeScore scales scores to [0, MaxNodeScore] relative to the highest one; with
// reverse, lower raw scores become higher (MaxNodeScore - scaled).
func DefaultNormalizeScore(maxPriority int64, reverse bool, scores NodeScoreList) *Status {
	var maxCount int64
	for i := range scores {
		maxCount = max(maxCount, scores[i].Score)
	}
	if maxCount == 0 {
		if reverse {
			for i := range scores {
				scores[i].Score = maxPriority
			}
		}
		return nil
	}
	for i := range scores {
		s := scores[i].Score * maxPriority / maxCount
		if reverse {
			s = maxPriority - s
		}
		scores[i].Score = s
	}
	return nil
}
