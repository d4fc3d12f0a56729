package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// table is the columns `bosun get` prints for one kind, as kubectl prints them.
type table struct {
	headers []string
	wide    []string // extra columns for -o wide
	row     func(obj resource.Object, now time.Time) (cells, wide []string)
}

func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func shortAge(d time.Duration) string { return duration.HumanDuration(d) }

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func joinMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func shortSHA(s string) string {
	if len(s) > 7 {
		return s[:7]
	}
	return s
}

func sourceOf(obj resource.Object) string {
	a := obj.GetAnnotations()
	src := a[resource.AnnotationSource]
	if src == "" {
		return "<none>"
	}
	if l := a[resource.AnnotationSourceLine]; l != "" && l != "1" {
		src += ":" + l
	}
	return src
}

func int32Ptr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

func containersAndImages(spec corev1.PodSpec) (string, string) {
	var names, images []string
	for _, c := range spec.Containers {
		names = append(names, c.Name)
		images = append(images, c.Image)
	}
	return strings.Join(names, ","), strings.Join(images, ",")
}

func servicePorts(svc *corev1.Service) string {
	var parts []string
	for _, p := range svc.Spec.Ports {
		s := strconv.Itoa(int(p.Port))
		if p.NodePort != 0 {
			s += ":" + strconv.Itoa(int(p.NodePort))
		}
		parts = append(parts, s+"/"+string(p.Protocol))
	}
	return orNone(strings.Join(parts, ","))
}

// podStatus mirrors kubectl's STATUS column: the waiting or terminated reason of a container
// when there is one, else the phase.
func podStatus(p *corev1.Pod) (ready string, status string, restarts int32) {
	status = string(p.Status.Phase)
	if p.Status.Reason != "" {
		status = p.Status.Reason
	}
	n := 0
	for _, cs := range p.Status.ContainerStatuses {
		restarts += cs.RestartCount
		if cs.Ready {
			n++
		}
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			status = cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
			status = cs.State.Terminated.Reason
		}
	}
	if p.DeletionTimestamp != nil {
		status = "Terminating"
	}
	if status == "" {
		status = "Pending"
	}
	return fmt.Sprintf("%d/%d", n, len(p.Spec.Containers)), status, restarts
}

func nodeReady(n *corev1.Node) string {
	status := "Unknown"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				status = "Ready"
			} else {
				status = "NotReady"
			}
		}
	}
	if n.Spec.Unschedulable {
		status += ",SchedulingDisabled"
	}
	return status
}

func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

var tables = map[*resource.Resource]table{
	resource.Namespaces: {
		headers: []string{"NAME", "STATUS", "AGE"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			ns := o.(*corev1.Namespace)
			phase := string(ns.Status.Phase)
			if phase == "" {
				phase = "Active"
			}
			return []string{ns.Name, phase, age(ns.CreationTimestamp, now)}, nil
		},
	},
	resource.Pods: {
		headers: []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"},
		wide:    []string{"IP", "NODE"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			p := o.(*corev1.Pod)
			ready, status, restarts := podStatus(p)
			return []string{p.Name, ready, status, strconv.Itoa(int(restarts)), age(p.CreationTimestamp, now)},
				[]string{orNone(p.Status.PodIP), orNone(p.Spec.NodeName)}
		},
	},
	resource.Deployments: {
		headers: []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"},
		wide:    []string{"CONTAINERS", "IMAGES", "SELECTOR"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			d := o.(*appsv1.Deployment)
			c, i := containersAndImages(d.Spec.Template.Spec)
			return []string{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, int32Ptr(d.Spec.Replicas, 1)),
					strconv.Itoa(int(d.Status.UpdatedReplicas)), strconv.Itoa(int(d.Status.AvailableReplicas)), age(d.CreationTimestamp, now)},
				[]string{c, i, selectorString(d.Spec.Selector)}
		},
	},
	resource.ReplicaSets: {
		headers: []string{"NAME", "DESIRED", "CURRENT", "READY", "AGE"},
		wide:    []string{"CONTAINERS", "IMAGES", "SELECTOR"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			r := o.(*appsv1.ReplicaSet)
			c, i := containersAndImages(r.Spec.Template.Spec)
			return []string{r.Name, strconv.Itoa(int(int32Ptr(r.Spec.Replicas, 1))), strconv.Itoa(int(r.Status.Replicas)),
					strconv.Itoa(int(r.Status.ReadyReplicas)), age(r.CreationTimestamp, now)},
				[]string{c, i, selectorString(r.Spec.Selector)}
		},
	},
	resource.ReplicationControllers: {
		headers: []string{"NAME", "DESIRED", "CURRENT", "READY", "AGE"},
		wide:    []string{"CONTAINERS", "IMAGES", "SELECTOR"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			r := o.(*corev1.ReplicationController)
			var c, i string
			if r.Spec.Template != nil {
				c, i = containersAndImages(r.Spec.Template.Spec)
			}
			return []string{r.Name, strconv.Itoa(int(int32Ptr(r.Spec.Replicas, 1))), strconv.Itoa(int(r.Status.Replicas)),
					strconv.Itoa(int(r.Status.ReadyReplicas)), age(r.CreationTimestamp, now)},
				[]string{c, i, orNone(joinMap(r.Spec.Selector))}
		},
	},
	resource.DaemonSets: {
		headers: []string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"},
		wide:    []string{"CONTAINERS", "IMAGES", "SELECTOR"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			d := o.(*appsv1.DaemonSet)
			c, i := containersAndImages(d.Spec.Template.Spec)
			s := d.Status
			return []string{d.Name, strconv.Itoa(int(s.DesiredNumberScheduled)), strconv.Itoa(int(s.CurrentNumberScheduled)),
					strconv.Itoa(int(s.NumberReady)), strconv.Itoa(int(s.UpdatedNumberScheduled)), strconv.Itoa(int(s.NumberAvailable)),
					orNone(joinMap(d.Spec.Template.Spec.NodeSelector)), age(d.CreationTimestamp, now)},
				[]string{c, i, selectorString(d.Spec.Selector)}
		},
	},
	resource.Services: {
		headers: []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"},
		wide:    []string{"SELECTOR"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			s := o.(*corev1.Service)
			ip := s.Spec.ClusterIP
			if ip == "" {
				ip = "<pending>"
			}
			return []string{s.Name, string(s.Spec.Type), ip, orNone(strings.Join(s.Spec.ExternalIPs, ",")), servicePorts(s), age(s.CreationTimestamp, now)},
				[]string{orNone(joinMap(s.Spec.Selector))}
		},
	},
	resource.Endpoints: {
		headers: []string{"NAME", "ENDPOINTS", "AGE"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			e := o.(*corev1.Endpoints)
			var eps []string
			for _, ss := range e.Subsets {
				for _, a := range ss.Addresses {
					for _, p := range ss.Ports {
						eps = append(eps, a.IP+":"+strconv.Itoa(int(p.Port)))
					}
				}
			}
			list := strings.Join(eps, ",")
			if len(eps) > 3 {
				list = strings.Join(eps[:3], ",") + fmt.Sprintf(" + %d more...", len(eps)-3)
			}
			return []string{e.Name, orNone(list), age(e.CreationTimestamp, now)}, nil
		},
	},
	resource.ConfigMaps: {
		headers: []string{"NAME", "DATA", "AGE"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			c := o.(*corev1.ConfigMap)
			return []string{c.Name, strconv.Itoa(len(c.Data) + len(c.BinaryData)), age(c.CreationTimestamp, now)}, nil
		},
	},
	resource.Secrets: {
		headers: []string{"NAME", "TYPE", "DATA", "AGE"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			s := o.(*corev1.Secret)
			return []string{s.Name, string(s.Type), strconv.Itoa(len(s.Data)), age(s.CreationTimestamp, now)}, nil
		},
	},
	resource.Nodes: {
		headers: []string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"},
		wide:    []string{"INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			n := o.(*corev1.Node)
			var roles []string
			for k := range n.Labels {
				if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok {
					roles = append(roles, r)
				}
			}
			sort.Strings(roles)
			info := n.Status.NodeInfo
			return []string{n.Name, nodeReady(n), orNone(strings.Join(roles, ",")), age(n.CreationTimestamp, now), orNone(info.KubeletVersion)},
				[]string{nodeAddress(n, corev1.NodeInternalIP), orNone(info.OSImage), orNone(info.KernelVersion), orNone(info.ContainerRuntimeVersion)}
		},
	},
	resource.Events: {
		headers: []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			e := o.(*corev1.Event)
			last := e.LastTimestamp
			if last.IsZero() {
				last = metav1.Time{Time: e.EventTime.Time}
			}
			if last.IsZero() {
				last = e.CreationTimestamp
			}
			obj := strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
			return []string{age(last, now), e.Type, e.Reason, obj, e.Message}, nil
		},
	},
	resource.Leases: {
		headers: []string{"NAME", "HOLDER", "AGE"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			l := o.(*coordinationv1.Lease)
			holder := ""
			if l.Spec.HolderIdentity != nil {
				holder = *l.Spec.HolderIdentity
			}
			return []string{l.Name, orNone(holder), age(l.CreationTimestamp, now)}, nil
		},
	},
	resource.ControllerRevisions: {
		headers: []string{"NAME", "CONTROLLER", "REVISION", "AGE"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			r := o.(*appsv1.ControllerRevision)
			ctrl := "<none>"
			if ref := metav1.GetControllerOf(r); ref != nil {
				ctrl = strings.ToLower(ref.Kind) + "/" + ref.Name
			}
			return []string{r.Name, ctrl, strconv.FormatInt(r.Revision, 10), age(r.CreationTimestamp, now)}, nil
		},
	},
	resource.Clusters: {
		headers: []string{"NAME", "POD-CIDR", "SERVICE-CIDR", "DOMAIN", "AGE"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			c := o.(*bosunv1.Cluster)
			return []string{c.Name, c.Spec.PodCIDR, c.Spec.ServiceCIDR, c.Spec.ClusterDomain, age(c.CreationTimestamp, now)}, nil
		},
	},
	resource.Machines: {
		headers: []string{"NAME", "ADDRESS", "PHASE", "STEP", "VERSION", "AGE"},
		wide:    []string{"USER", "LAST-ERROR"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			m := o.(*bosunv1.Machine)
			addr := m.Spec.Address
			if m.Spec.Port != 0 && m.Spec.Port != 22 {
				addr += ":" + strconv.Itoa(int(m.Spec.Port))
			}
			phase := string(m.Status.Phase)
			if phase == "" {
				phase = string(bosunv1.MachinePending)
			}
			return []string{m.Name, addr, phase, orNone(m.Status.Step), orNone(m.Status.AgentVersion), age(m.CreationTimestamp, now)},
				[]string{m.Spec.User, orNone(m.Status.LastError)}
		},
	},
	resource.GitSyncs: {
		headers: []string{"NAME", "STATE", "COMMIT", "APPLIED", "AGE"},
		wide:    []string{"REPO", "BRANCH", "MESSAGE"},
		row: func(o resource.Object, now time.Time) ([]string, []string) {
			g := o.(*bosunv1.GitSync)
			return []string{g.Name, orNone(string(g.Status.State)), orNone(shortSHA(g.Status.Commit.SHA)), orNone(shortSHA(g.Status.Applied.SHA)), age(g.CreationTimestamp, now)},
				[]string{g.Spec.Repo, g.Spec.Branch, orNone(g.Status.Message)}
		},
	},
}

func selectorString(s *metav1.LabelSelector) string {
	if s == nil {
		return "<none>"
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return "<invalid>"
	}
	return orNone(sel.String())
}

// printTable writes objects as an aligned table. withNamespace adds a NAMESPACE column (for -A);
// wide adds the kind's extra columns and, for kinds that live in Git, the source file.
func printTable(w io.Writer, res *resource.Resource, objs []resource.Object, withNamespace, wide bool, now time.Time) error {
	t, ok := tables[res]
	if !ok {
		t = table{headers: []string{"NAME", "AGE"}, row: func(o resource.Object, now time.Time) ([]string, []string) {
			return []string{o.GetName(), age(o.GetCreationTimestamp(), now)}, nil
		}}
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	headers := t.headers
	if withNamespace && res.Namespaced {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	if wide {
		headers = append(headers, t.wide...)
		if res.InRepo {
			headers = append(headers, "SOURCE")
		}
	}
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, o := range objs {
		cells, extra := t.row(o, now)
		if withNamespace && res.Namespaced {
			cells = append([]string{o.GetNamespace()}, cells...)
		}
		if wide {
			cells = append(cells, extra...)
			if res.InRepo {
				cells = append(cells, sourceOf(o))
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}
