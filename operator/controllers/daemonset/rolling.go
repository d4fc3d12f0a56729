package daemonset

import (
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// podState is what the rolling update needs to know of a daemon pod.
type podState struct {
	Name      string
	Updated   bool // of the current revision
	Available bool
}

// updateBudget returns maxSurge and maxUnavailable of a RollingUpdate DaemonSet scaled to
// desired nodes (percentages round up); both zero gives maxUnavailable 1, as in Kubernetes.
func updateBudget(ds *appsv1.DaemonSet, desired int) (maxSurge, maxUnavailable int, err error) {
	one := intstr.FromInt32(1)
	zero := intstr.FromInt32(0)
	unavail, surge := &one, &zero
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		if ru.MaxUnavailable != nil {
			unavail = ru.MaxUnavailable
		}
		if ru.MaxSurge != nil {
			surge = ru.MaxSurge
		}
	}
	if maxSurge, err = intstr.GetScaledValueFromIntOrPercent(surge, desired, true); err != nil {
		return 0, 0, err
	}
	if maxUnavailable, err = intstr.GetScaledValueFromIntOrPercent(unavail, desired, true); err != nil {
		return 0, 0, err
	}
	if maxSurge == 0 && maxUnavailable == 0 {
		maxUnavailable = 1
	}
	return maxSurge, maxUnavailable, nil
}

// splitPods finds the one updated and the one old pod of a node; ok is false when there are
// several of either (the manage step cleans that up first).
func splitPods(pods []podState) (newPod, oldPod *podState, ok bool) {
	for i := range pods {
		p := &pods[i]
		if p.Updated {
			if newPod != nil {
				return nil, nil, false
			}
			newPod = p
		} else {
			if oldPod != nil {
				return nil, nil, false
			}
			oldPod = p
		}
	}
	return newPod, oldPod, true
}

// rollingUpdate is Kubernetes' DaemonSet rolling-update step for the nodes that should run the
// daemon (node name → its live pods): which old pods to delete and, with surge, on which nodes
// to start a new pod beside the old one.
//
// Without surge, unavailable old pods are replaced at once and at most maxUnavailable nodes are
// without an available pod. With surge, at most maxSurge nodes run two pods; an old pod is
// deleted once its new neighbour is available, and a node whose old pod is unavailable gets its
// new pod at once.
func rollingUpdate(nodePods map[string][]podState, maxSurge, maxUnavailable int) (deletes, creates []string) {
	names := make([]string, 0, len(nodePods))
	for n := range nodePods {
		names = append(names, n)
	}
	sort.Strings(names)
	if maxSurge == 0 {
		numUnavailable := 0
		var allowed, candidates []string
		for _, node := range names {
			newPod, oldPod, ok := splitPods(nodePods[node])
			switch {
			case !ok, oldPod == nil && newPod == nil, oldPod != nil && newPod != nil:
				numUnavailable++ // the manage step handles this node
			case newPod != nil:
				if !newPod.Available {
					numUnavailable++
				}
			case !oldPod.Available:
				allowed = append(allowed, oldPod.Name)
			case numUnavailable >= maxUnavailable:
			default:
				candidates = append(candidates, oldPod.Name)
			}
		}
		remaining := min(max(maxUnavailable-numUnavailable, 0), len(candidates))
		return append(allowed, candidates[:remaining]...), nil
	}
	numSurge := 0
	var allowedNodes, candidateNodes []string
	for _, node := range names {
		newPod, oldPod, ok := splitPods(nodePods[node])
		switch {
		case !ok:
			numSurge++
		case oldPod == nil:
		case newPod == nil:
			switch {
			case !oldPod.Available:
				allowedNodes = append(allowedNodes, node)
			case numSurge >= maxSurge:
			default:
				candidateNodes = append(candidateNodes, node)
			}
		default:
			if !newPod.Available {
				numSurge++
				continue
			}
			deletes = append(deletes, oldPod.Name)
		}
	}
	remaining := min(max(maxSurge-numSurge, 0), len(candidateNodes))
	return deletes, append(allowedNodes, candidateNodes[:remaining]...)
}
