package main

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// column is one column of a `bosun get` table; a wide one shows only with -o wide.
type column struct {
	name string
	wide bool
}

// columns lists the default columns, then the ones -o wide adds at the end.
func columns(names []string, wide ...string) []column {
	out := make([]column, 0, len(names)+len(wide))
	for _, n := range names {
		out = append(out, column{name: n})
	}
	for _, n := range wide {
		out = append(out, column{name: n, wide: true})
	}
	return out
}

// table is the columns `bosun get` prints for one kind, as kubectl prints them: the columns and
// cells of k8s.io/kubernetes/pkg/printers/internalversion, wide ones included.
type table struct {
	columns []column
	// row returns one cell per column, wide ones included.
	row func(obj resource.Object, now time.Time) []string
}

// newTableWriter aligns columns the way kubectl's printers do (cli-runtime's GetNewTabWriter).
func newTableWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
}

func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func microAge(t metav1.MicroTime, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

// joinMap formats labels as kubectl's labels.FormatLabels does, without the "<none>".
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

func itoa[T ~int32 | ~int64 | int](n T) string { return strconv.FormatInt(int64(n), 10) }

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

// serviceExternalIP is kubectl's EXTERNAL-IP column.
func serviceExternalIP(svc *corev1.Service) string {
	switch svc.Spec.Type {
	case corev1.ServiceTypeLoadBalancer:
		var ips []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ips = append(ips, in.IP)
			} else if in.Hostname != "" {
				ips = append(ips, in.Hostname)
			}
		}
		sort.Strings(ips)
		ips = append(ips, svc.Spec.ExternalIPs...)
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	case corev1.ServiceTypeExternalName:
		return svc.Spec.ExternalName
	}
	return orNone(strings.Join(svc.Spec.ExternalIPs, ","))
}

// formatEndpoints is kubectl's ENDPOINTS column: ip:port for every port of every ready address
// (bare IPs for a headless service without ports), the first three and a count of the rest.
func formatEndpoints(e *corev1.Endpoints) string {
	if len(e.Subsets) == 0 {
		return "<none>"
	}
	const max = 3
	var list []string
	count := 0
	add := func(s string) {
		count++
		if len(list) < max {
			list = append(list, s)
		}
	}
	for _, ss := range e.Subsets {
		if len(ss.Ports) == 0 {
			for _, a := range ss.Addresses {
				add(a.IP)
			}
			continue
		}
		for _, p := range ss.Ports {
			for _, a := range ss.Addresses {
				add(net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	ret := strings.Join(list, ",")
	if count > max {
		ret += fmt.Sprintf(" + %d more...", count-max)
	}
	return ret
}

// podColumns computes kubectl's READY, STATUS and RESTARTS cells for a pod, following printPod in
// k8s.io/kubernetes/pkg/printers/internalversion: the first init container that has not
// finished gives Init:N/M or Init:<reason>; after initialization the last container with a
// waiting or terminated reason gives it (CrashLoopBackOff, ErrImagePull, Completed, Error,
// ExitCode:N); a pod being deleted shows Terminating (Unknown when its node was lost). Sidecars
// (init containers with restartPolicy Always) count as containers.
func podColumns(p *corev1.Pod, now time.Time) (ready, status, restarts string) {
	nRestarts, sidecarRestarts := 0, 0
	total := len(p.Spec.Containers)
	nReady := 0
	var lastRestart, lastSidecarRestart time.Time

	reason := string(podPhase(p))
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonSchedulingGated {
			reason = corev1.PodReasonSchedulingGated
		}
	}

	sidecars := map[string]bool{}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars[c.Name] = true
			total++
		}
	}
	later := func(t *time.Time, s corev1.ContainerStatus) {
		if term := s.LastTerminationState.Terminated; term != nil && term.FinishedAt.After(*t) {
			*t = term.FinishedAt.Time
		}
	}

	initializing := false
	for i, c := range p.Status.InitContainerStatuses {
		nRestarts += int(c.RestartCount)
		later(&lastRestart, c)
		if sidecars[c.Name] {
			sidecarRestarts += int(c.RestartCount)
			later(&lastSidecarRestart, c)
		}
		term, wait := c.State.Terminated, c.State.Waiting
		switch {
		case term != nil && term.ExitCode == 0:
			continue
		case sidecars[c.Name] && c.Started != nil && *c.Started:
			if c.Ready {
				nReady++
			}
			continue
		case term != nil:
			switch {
			case term.Reason != "":
				reason = "Init:" + term.Reason
			case term.Signal != 0:
				reason = fmt.Sprintf("Init:Signal:%d", term.Signal)
			default:
				reason = fmt.Sprintf("Init:ExitCode:%d", term.ExitCode)
			}
		case wait != nil && wait.Reason != "" && wait.Reason != "PodInitializing":
			reason = "Init:" + wait.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers))
		}
		initializing = true
		break
	}

	if !initializing || podCondition(p, corev1.PodInitialized) {
		nRestarts, lastRestart = sidecarRestarts, lastSidecarRestart
		running := false
		for i := len(p.Status.ContainerStatuses) - 1; i >= 0; i-- {
			c := p.Status.ContainerStatuses[i]
			nRestarts += int(c.RestartCount)
			later(&lastRestart, c)
			term, wait := c.State.Terminated, c.State.Waiting
			switch {
			case wait != nil && wait.Reason != "":
				reason = wait.Reason
			case term != nil && term.Reason != "":
				reason = term.Reason
			case term != nil && term.Signal != 0:
				reason = fmt.Sprintf("Signal:%d", term.Signal)
			case term != nil:
				reason = fmt.Sprintf("ExitCode:%d", term.ExitCode)
			case c.Ready && c.State.Running != nil:
				running = true
				nReady++
			}
		}
		// A finished container next to one still running: the pod is running, ready or not.
		if reason == "Completed" && running {
			reason = "NotReady"
			if podCondition(p, corev1.PodReady) {
				reason = "Running"
			}
		}
	}

	terminal := p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	switch {
	case p.DeletionTimestamp != nil && p.Status.Reason == "NodeLost":
		reason = "Unknown"
	case p.DeletionTimestamp != nil && !terminal:
		reason = "Terminating"
	}

	restarts = strconv.Itoa(nRestarts)
	if nRestarts != 0 && !lastRestart.IsZero() {
		restarts += " (" + duration.HumanDuration(now.Sub(lastRestart)) + " ago)"
	}
	return fmt.Sprintf("%d/%d", nReady, total), reason, restarts
}

// podPhase is the pod's phase; Kubernetes' API server sets Pending on create, so a pod without
// one is Pending.
func podPhase(p *corev1.Pod) corev1.PodPhase {
	if p.Status.Phase == "" {
		return corev1.PodPending
	}
	return p.Status.Phase
}

func podCondition(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readinessGates is kubectl's READINESS GATES column: how many of the pod's gates are true.
func readinessGates(p *corev1.Pod) string {
	if len(p.Spec.ReadinessGates) == 0 {
		return "<none>"
	}
	n := 0
	for _, g := range p.Spec.ReadinessGates {
		if podCondition(p, g.ConditionType) {
			n++
		}
	}
	return fmt.Sprintf("%d/%d", n, len(p.Spec.ReadinessGates))
}

func podIP(p *corev1.Pod) string {
	if len(p.Status.PodIPs) > 0 {
		return p.Status.PodIPs[0].IP
	}
	return p.Status.PodIP
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

// nodeRoles reads node-role.kubernetes.io/<role> labels and the kubernetes.io/role label.
func nodeRoles(n *corev1.Node) string {
	set := map[string]bool{}
	for k, v := range n.Labels {
		if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && r != "" {
			set[r] = true
		} else if k == "kubernetes.io/role" && v != "" {
			set[v] = true
		}
	}
	roles := make([]string, 0, len(set))
	for r := range set {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	return orNone(strings.Join(roles, ","))
}

func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

// eventObject is kubectl's OBJECT column of `get events`: kind/name in lower case.
func eventObject(e *corev1.Event) string {
	kind := strings.ToLower(e.InvolvedObject.Kind)
	if e.InvolvedObject.Name == "" {
		return kind
	}
	return kind + "/" + e.InvolvedObject.Name
}

// eventFirstSeen is when an event first happened: firstTimestamp, else eventTime.
func eventFirstSeen(e *corev1.Event, now time.Time) string {
	if e.FirstTimestamp.IsZero() {
		return microAge(e.EventTime, now)
	}
	return age(e.FirstTimestamp, now)
}

var (
	templateColumns = []string{"CONTAINERS", "IMAGES", "SELECTOR"}
	replicasColumns = columns([]string{"NAME", "DESIRED", "CURRENT", "READY", "AGE"}, templateColumns...)
)

var tables = map[*resource.Resource]table{
	resource.Namespaces: {
		columns: columns([]string{"NAME", "STATUS", "AGE"}),
		row: func(o resource.Object, now time.Time) []string {
			ns := o.(*corev1.Namespace)
			phase := string(ns.Status.Phase)
			if phase == "" {
				phase = "Active"
			}
			return []string{ns.Name, phase, age(ns.CreationTimestamp, now)}
		},
	},
	resource.Pods: {
		columns: columns([]string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}, "IP", "NODE", "NOMINATED NODE", "READINESS GATES"),
		row: func(o resource.Object, now time.Time) []string {
			p := o.(*corev1.Pod)
			ready, status, restarts := podColumns(p, now)
			return []string{p.Name, ready, status, restarts, age(p.CreationTimestamp, now),
				orNone(podIP(p)), orNone(p.Spec.NodeName), orNone(p.Status.NominatedNodeName), readinessGates(p)}
		},
	},
	resource.Deployments: {
		columns: columns([]string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}, templateColumns...),
		row: func(o resource.Object, now time.Time) []string {
			d := o.(*appsv1.Deployment)
			c, i := containersAndImages(d.Spec.Template.Spec)
			return []string{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, int32Ptr(d.Spec.Replicas, 1)),
				itoa(d.Status.UpdatedReplicas), itoa(d.Status.AvailableReplicas), age(d.CreationTimestamp, now),
				c, i, selectorString(d.Spec.Selector)}
		},
	},
	resource.ReplicaSets: {
		columns: replicasColumns,
		row: func(o resource.Object, now time.Time) []string {
			r := o.(*appsv1.ReplicaSet)
			c, i := containersAndImages(r.Spec.Template.Spec)
			return []string{r.Name, itoa(int32Ptr(r.Spec.Replicas, 1)), itoa(r.Status.Replicas), itoa(r.Status.ReadyReplicas),
				age(r.CreationTimestamp, now), c, i, metav1.FormatLabelSelector(r.Spec.Selector)}
		},
	},
	resource.ReplicationControllers: {
		columns: replicasColumns,
		row: func(o resource.Object, now time.Time) []string {
			r := o.(*corev1.ReplicationController)
			var c, i string
			if r.Spec.Template != nil {
				c, i = containersAndImages(r.Spec.Template.Spec)
			}
			return []string{r.Name, itoa(int32Ptr(r.Spec.Replicas, 1)), itoa(r.Status.Replicas), itoa(r.Status.ReadyReplicas),
				age(r.CreationTimestamp, now), c, i, orNone(joinMap(r.Spec.Selector))}
		},
	},
	resource.DaemonSets: {
		columns: columns([]string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"}, templateColumns...),
		row: func(o resource.Object, now time.Time) []string {
			d := o.(*appsv1.DaemonSet)
			c, i := containersAndImages(d.Spec.Template.Spec)
			s := d.Status
			return []string{d.Name, itoa(s.DesiredNumberScheduled), itoa(s.CurrentNumberScheduled), itoa(s.NumberReady),
				itoa(s.UpdatedNumberScheduled), itoa(s.NumberAvailable), orNone(joinMap(d.Spec.Template.Spec.NodeSelector)),
				age(d.CreationTimestamp, now), c, i, metav1.FormatLabelSelector(d.Spec.Selector)}
		},
	},
	resource.Services: {
		columns: columns([]string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"}, "SELECTOR"),
		row: func(o resource.Object, now time.Time) []string {
			s := o.(*corev1.Service)
			ip := "<none>"
			if len(s.Spec.ClusterIPs) > 0 {
				ip = s.Spec.ClusterIPs[0]
			} else if s.Spec.ClusterIP != "" {
				ip = s.Spec.ClusterIP
			}
			return []string{s.Name, string(s.Spec.Type), ip, serviceExternalIP(s), servicePorts(s), age(s.CreationTimestamp, now),
				orNone(joinMap(s.Spec.Selector))}
		},
	},
	resource.Endpoints: {
		columns: columns([]string{"NAME", "ENDPOINTS", "AGE"}),
		row: func(o resource.Object, now time.Time) []string {
			e := o.(*corev1.Endpoints)
			return []string{e.Name, formatEndpoints(e), age(e.CreationTimestamp, now)}
		},
	},
	resource.ConfigMaps: {
		columns: columns([]string{"NAME", "DATA", "AGE"}),
		row: func(o resource.Object, now time.Time) []string {
			c := o.(*corev1.ConfigMap)
			return []string{c.Name, strconv.Itoa(len(c.Data) + len(c.BinaryData)), age(c.CreationTimestamp, now)}
		},
	},
	resource.Secrets: {
		columns: columns([]string{"NAME", "TYPE", "DATA", "AGE"}),
		row: func(o resource.Object, now time.Time) []string {
			s := o.(*corev1.Secret)
			return []string{s.Name, string(s.Type), strconv.Itoa(len(s.Data)), age(s.CreationTimestamp, now)}
		},
	},
	resource.Nodes: {
		columns: columns([]string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"},
			"INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"),
		row: func(o resource.Object, now time.Time) []string {
			n := o.(*corev1.Node)
			info := n.Status.NodeInfo
			return []string{n.Name, nodeReady(n), nodeRoles(n), age(n.CreationTimestamp, now), info.KubeletVersion,
				nodeAddress(n, corev1.NodeInternalIP), nodeAddress(n, corev1.NodeExternalIP),
				orUnknown(info.OSImage), orUnknown(info.KernelVersion), orUnknown(info.ContainerRuntimeVersion)}
		},
	},
	resource.Events: {
		// kubectl interleaves the wide columns of events.
		columns: []column{{name: "LAST SEEN"}, {name: "TYPE"}, {name: "REASON"}, {name: "OBJECT"},
			{name: "SUBOBJECT", wide: true}, {name: "SOURCE", wide: true}, {name: "MESSAGE"},
			{name: "FIRST SEEN", wide: true}, {name: "COUNT", wide: true}, {name: "NAME", wide: true}},
		row: func(o resource.Object, now time.Time) []string {
			e := o.(*corev1.Event)
			first := eventFirstSeen(e, now)
			last := first
			if !e.LastTimestamp.IsZero() {
				last = age(e.LastTimestamp, now)
			}
			count := e.Count
			if e.Series != nil {
				last, count = microAge(e.Series.LastObservedTime, now), e.Series.Count
			} else if count == 0 {
				count = 1 // singleton events of the events.k8s.io API carry no count
			}
			source := cmp.Or(e.Source.Component, e.ReportingController)
			if host := cmp.Or(e.Source.Host, e.ReportingInstance); host != "" {
				source += ", " + host
			}
			return []string{last, e.Type, e.Reason, eventObject(e), e.InvolvedObject.FieldPath, source,
				strings.TrimSpace(e.Message), first, itoa(count), e.Name}
		},
	},
	resource.Leases: {
		columns: columns([]string{"NAME", "HOLDER", "AGE"}),
		row: func(o resource.Object, now time.Time) []string {
			l := o.(*coordinationv1.Lease)
			holder := ""
			if l.Spec.HolderIdentity != nil {
				holder = *l.Spec.HolderIdentity
			}
			return []string{l.Name, orNone(holder), age(l.CreationTimestamp, now)}
		},
	},
	resource.ControllerRevisions: {
		columns: columns([]string{"NAME", "CONTROLLER", "REVISION", "AGE"}),
		row: func(o resource.Object, now time.Time) []string {
			r := o.(*appsv1.ControllerRevision)
			ctrl := "<none>"
			if ref := metav1.GetControllerOf(r); ref != nil {
				ctrl = strings.ToLower(ref.Kind) + "/" + ref.Name
			}
			return []string{r.Name, ctrl, strconv.FormatInt(r.Revision, 10), age(r.CreationTimestamp, now)}
		},
	},
	resource.Clusters: {
		columns: columns([]string{"NAME", "POD-CIDR", "SERVICE-CIDR", "DOMAIN", "AGE"}),
		row: func(o resource.Object, now time.Time) []string {
			c := o.(*bosunv1.Cluster)
			return []string{c.Name, c.Spec.PodCIDR, c.Spec.ServiceCIDR, c.Spec.ClusterDomain, age(c.CreationTimestamp, now)}
		},
	},
	resource.Machines: {
		columns: columns([]string{"NAME", "ADDRESS", "PHASE", "STEP", "VERSION", "AGE"}, "USER", "LAST-ERROR"),
		row: func(o resource.Object, now time.Time) []string {
			m := o.(*bosunv1.Machine)
			addr := m.Spec.Address
			if m.Spec.Port != 0 && m.Spec.Port != 22 {
				addr += ":" + strconv.Itoa(int(m.Spec.Port))
			}
			phase := string(m.Status.Phase)
			if phase == "" {
				phase = string(bosunv1.MachinePending)
			}
			return []string{m.Name, addr, phase, orNone(m.Status.Step), orNone(m.Status.AgentVersion), age(m.CreationTimestamp, now),
				m.Spec.User, orNone(m.Status.LastError)}
		},
	},
	resource.GitSyncs: {
		columns: columns([]string{"NAME", "STATE", "COMMIT", "APPLIED", "AGE"}, "REPO", "BRANCH", "MESSAGE"),
		row: func(o resource.Object, now time.Time) []string {
			g := o.(*bosunv1.GitSync)
			return []string{g.Name, orNone(string(g.Status.State)), orNone(shortSHA(g.Status.Commit.SHA)), orNone(shortSHA(g.Status.Applied.SHA)),
				age(g.CreationTimestamp, now), gitsync.RedactURL(g.Spec.Repo), g.Spec.Branch, orNone(g.Status.Message)}
		},
	},
}

// selectorString is the SELECTOR of a Deployment as kubectl prints it (empty for an empty one).
func selectorString(s *metav1.LabelSelector) string {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return "<invalid>"
	}
	return sel.String()
}

// printTable writes objects as an aligned table. withNamespace adds a NAMESPACE column (for -A);
// wide adds the kind's wide columns and, for kinds that live in Git, the source file.
func printTable(w io.Writer, res *resource.Resource, objs []resource.Object, withNamespace, wide bool, now time.Time) error {
	t, ok := tables[res]
	if !ok {
		t = table{columns: columns([]string{"NAME", "AGE"}), row: func(o resource.Object, now time.Time) []string {
			return []string{o.GetName(), age(o.GetCreationTimestamp(), now)}
		}}
	}
	tw := newTableWriter(w)
	line := func(namespace string, cells []string) {
		var out []string
		if withNamespace && res.Namespaced {
			out = append(out, namespace)
		}
		for i, c := range t.columns {
			if !c.wide || wide {
				out = append(out, cells[i])
			}
		}
		if wide && res.InRepo {
			out = append(out, cells[len(t.columns)])
		}
		fmt.Fprintln(tw, strings.Join(out, "\t"))
	}
	headers := make([]string, 0, len(t.columns)+1)
	for _, c := range t.columns {
		headers = append(headers, c.name)
	}
	line("NAMESPACE", append(headers, "SOURCE"))
	for _, o := range objs {
		line(o.GetNamespace(), append(t.row(o, now), sourceOf(o)))
	}
	return tw.Flush()
}
