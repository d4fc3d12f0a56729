package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

func newDescribeCmd(g *globalFlags) *cobra.Command {
	o := &getOptions{}
	cmd := &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show an object in detail, with its source in Git and its events",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := resource.Lookup(args[0])
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			obj, err := c.get(cmd.Context(), res, g.namespace(o.namespace), args[1])
			if err != nil {
				return err
			}
			q := url.Values{}
			sel := "involvedObject.name=" + obj.GetName()
			if res.Namespaced {
				sel += ",involvedObject.namespace=" + obj.GetNamespace()
			}
			q.Set("fieldSelector", sel)
			evNS := obj.GetNamespace()
			events, err := c.list(cmd.Context(), resource.Events, evNS, q)
			if err != nil && !isNotFound(err) {
				return err
			}
			var mine []*corev1.Event
			for _, e := range events {
				ev := e.(*corev1.Event)
				if ev.InvolvedObject.Kind == "" || ev.InvolvedObject.Kind == res.Kind {
					mine = append(mine, ev)
				}
			}
			return describe(cmd.OutOrStdout(), res, obj, mine, time.Now())
		},
	}
	o.addFlags(cmd)
	return cmd
}

// describe prints an object the way `kubectl describe` does: identity, Git source, the fields
// that matter for its kind, then its events.
func describe(w io.Writer, res *resource.Resource, obj resource.Object, events []*corev1.Event, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	kv := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	kv("Name", obj.GetName())
	if res.Namespaced {
		kv("Namespace", obj.GetNamespace())
	}
	kv("Kind", res.Kind+" ("+res.APIVersion()+")")
	kv("Labels", orNone(joinMapLines(obj.GetLabels())))
	var ann = map[string]string{}
	for k, v := range obj.GetAnnotations() {
		if !strings.HasPrefix(k, "bosun.dev/") {
			ann[k] = v
		}
	}
	kv("Annotations", orNone(joinMapLines(ann)))
	kv("Created", fmt.Sprintf("%s (%s ago)", obj.GetCreationTimestamp().Format(time.RFC3339), age(obj.GetCreationTimestamp(), now)))
	if src := obj.GetAnnotations()[resource.AnnotationSource]; src != "" {
		kv("Source", fmt.Sprintf("%s (managed by Git; edit this file to change the object)", sourceOf(obj)))
		if c := obj.GetAnnotations()[resource.AnnotationCommit]; c != "" {
			kv("Commit", c)
		}
	}
	for _, ref := range obj.GetOwnerReferences() {
		kv("Controlled By", ref.Kind+"/"+ref.Name)
	}
	if obj.GetDeletionTimestamp() != nil {
		kv("Deleting", fmt.Sprintf("since %s", obj.GetDeletionTimestamp().Format(time.RFC3339)))
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		describePod(tw, o, now)
	case *appsv1.Deployment:
		describeDeployment(tw, o)
	case *corev1.Service:
		kv("Type", o.Spec.Type)
		kv("Selector", orNone(joinMap(o.Spec.Selector)))
		kv("IP", orNone(o.Spec.ClusterIP))
		for _, p := range o.Spec.Ports {
			name := p.Name
			if name == "" {
				name = "<unset>"
			}
			kv("Port", fmt.Sprintf("%s %d/%s -> %s", name, p.Port, p.Protocol, p.TargetPort.String()))
			if p.NodePort != 0 {
				kv("NodePort", fmt.Sprintf("%s %d/%s", name, p.NodePort, p.Protocol))
			}
		}
		kv("Session Affinity", o.Spec.SessionAffinity)
	case *corev1.Node:
		kv("Status", nodeReady(o))
		kv("Addresses", nodeAddress(o, corev1.NodeInternalIP))
		kv("Pod CIDR", orNone(o.Spec.PodCIDR))
		for _, t := range o.Spec.Taints {
			kv("Taint", t.ToString())
		}
		describeConditions(tw, nodeConditions(o))
	case *bosunv1.GitSync:
		tw.Flush()
		return describeGitSync(w, o, events, now)
	case *bosunv1.Machine:
		describeMachine(tw, kv, o)
	default:
		tw.Flush()
		if err := printSpecAndStatus(w, obj); err != nil {
			return err
		}
	}
	tw.Flush()
	printEvents(w, events, now)
	return nil
}

func joinMapLines(m map[string]string) string {
	return strings.ReplaceAll(joinMap(m), ",", "\n\t")
}

// describePod prints what `kubectl describe pod` prints about where the pod runs, its
// containers' states, its conditions (with their reasons: PodScheduled=False says why no node
// fits), node selector and tolerations.
func describePod(tw *tabwriter.Writer, p *corev1.Pod, now time.Time) {
	kv := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	node := "<none>"
	if p.Spec.NodeName != "" {
		node = p.Spec.NodeName + "/" + p.Status.HostIP
	}
	kv("Node", node)
	if p.Status.StartTime != nil {
		kv("Start Time", p.Status.StartTime.Format(time.RFC1123Z))
	}
	if p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
		kv("Status", "Terminating (lasts "+duration.HumanDuration(p.DeletionTimestamp.Sub(now))+")")
		if p.DeletionGracePeriodSeconds != nil {
			kv("Termination Grace Period", fmt.Sprintf("%ds", *p.DeletionGracePeriodSeconds))
		}
	} else {
		kv("Status", podPhase(p))
	}
	if p.Status.Reason != "" {
		kv("Reason", p.Status.Reason)
	}
	if p.Status.Message != "" {
		kv("Message", p.Status.Message)
	}
	kv("IP", orNone(podIP(p)))
	if p.Status.NominatedNodeName != "" {
		kv("NominatedNodeName", p.Status.NominatedNodeName)
	}
	statuses := map[string]corev1.ContainerStatus{}
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		statuses[cs.Name] = cs
	}
	for _, group := range []struct {
		title string
		cs    []corev1.Container
	}{{"Init Containers", p.Spec.InitContainers}, {"Containers", p.Spec.Containers}} {
		if len(group.cs) == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s:\n", group.title)
		for _, c := range group.cs {
			fmt.Fprintf(tw, "  %s:\n", c.Name)
			fmt.Fprintf(tw, "    Image:\t%s\n", c.Image)
			if cs, ok := statuses[c.Name]; ok {
				describeContainerState(tw, "State", cs.State)
				if cs.LastTerminationState.Terminated != nil {
					describeContainerState(tw, "Last State", cs.LastTerminationState)
				}
				fmt.Fprintf(tw, "    Ready:\t%s\n", title(cs.Ready))
				fmt.Fprintf(tw, "    Restart Count:\t%d\n", cs.RestartCount)
			}
			if len(c.Resources.Requests) > 0 {
				fmt.Fprintf(tw, "    Requests:\n")
				for _, name := range sortedKeys(c.Resources.Requests) {
					q := c.Resources.Requests[name]
					fmt.Fprintf(tw, "      %s:\t%s\n", name, q.String())
				}
			}
		}
	}
	var conds []condition
	for _, c := range p.Status.Conditions {
		conds = append(conds, condition{string(c.Type), string(c.Status), c.Reason, c.Message})
	}
	describeConditions(tw, conds)
	kv("Node-Selectors", orNone(joinMapLines(p.Spec.NodeSelector)))
	kv("Tolerations", orNone(tolerations(p.Spec.Tolerations)))
}

// describeContainerState prints a container state as kubectl's describeStatus does.
func describeContainerState(tw *tabwriter.Writer, name string, s corev1.ContainerState) {
	line := func(k string, v any) { fmt.Fprintf(tw, "      %s:\t%v\n", k, v) }
	switch {
	case s.Running != nil:
		fmt.Fprintf(tw, "    %s:\tRunning\n", name)
		line("Started", s.Running.StartedAt.Format(time.RFC1123Z))
	case s.Terminated != nil:
		t := s.Terminated
		fmt.Fprintf(tw, "    %s:\tTerminated\n", name)
		if t.Reason != "" {
			line("Reason", t.Reason)
		}
		if t.Message != "" {
			line("Message", t.Message)
		}
		line("Exit Code", t.ExitCode)
		if t.Signal > 0 {
			line("Signal", t.Signal)
		}
		line("Started", t.StartedAt.Format(time.RFC1123Z))
		line("Finished", t.FinishedAt.Format(time.RFC1123Z))
	default:
		fmt.Fprintf(tw, "    %s:\tWaiting\n", name)
		if s.Waiting != nil && s.Waiting.Reason != "" {
			line("Reason", s.Waiting.Reason)
		}
		if s.Waiting != nil && s.Waiting.Message != "" {
			line("Message", s.Waiting.Message)
		}
	}
}

func title(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func sortedKeys(m corev1.ResourceList) []corev1.ResourceName {
	keys := make([]corev1.ResourceName, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// tolerations formats tolerations one a line, as kubectl describe does:
// key=value:Effect, "op=Exists" for a value-less Exists, "for Ns" with tolerationSeconds.
func tolerations(ts []corev1.Toleration) string {
	lines := make([]string, 0, len(ts))
	for _, t := range ts {
		s := t.Key
		if t.Value != "" {
			s += "=" + t.Value
		}
		if t.Effect != "" {
			s += ":" + string(t.Effect)
		}
		if t.Operator == corev1.TolerationOpExists && t.Value == "" {
			if s != "" {
				s += " "
			}
			s += "op=Exists"
		}
		if t.TolerationSeconds != nil {
			s += fmt.Sprintf(" for %ds", *t.TolerationSeconds)
		}
		lines = append(lines, s)
	}
	return strings.Join(lines, "\n\t")
}

func describeDeployment(tw *tabwriter.Writer, d *appsv1.Deployment) {
	kv := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	kv("Selector", selectorString(d.Spec.Selector))
	kv("Replicas", fmt.Sprintf("%d desired | %d updated | %d total | %d available | %d unavailable",
		int32Ptr(d.Spec.Replicas, 1), d.Status.UpdatedReplicas, d.Status.Replicas, d.Status.AvailableReplicas, d.Status.UnavailableReplicas))
	kv("Strategy", d.Spec.Strategy.Type)
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		kv("RollingUpdate", fmt.Sprintf("%s max unavailable, %s max surge", ru.MaxUnavailable, ru.MaxSurge))
	}
	c, i := containersAndImages(d.Spec.Template.Spec)
	kv("Containers", c)
	kv("Images", i)
	var conds []condition
	for _, c := range d.Status.Conditions {
		conds = append(conds, condition{string(c.Type), string(c.Status), c.Reason, c.Message})
	}
	describeConditions(tw, conds)
}

type condition struct{ typ, status, reason, message string }

func nodeConditions(n *corev1.Node) []condition {
	var out []condition
	for _, c := range n.Status.Conditions {
		out = append(out, condition{string(c.Type), string(c.Status), c.Reason, c.Message})
	}
	return out
}

func describeConditions(tw *tabwriter.Writer, conds []condition) {
	if len(conds) == 0 {
		return
	}
	fmt.Fprintln(tw, "Conditions:")
	fmt.Fprintln(tw, "  Type\tStatus\tReason\tMessage")
	fmt.Fprintln(tw, "  ----\t------\t------\t-------")
	for _, c := range conds {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", c.typ, c.status, orNone(c.reason), c.message)
	}
}

// printSpecAndStatus prints the object's spec (or data) and status as YAML, for kinds without a
// dedicated layout.
func printSpecAndStatus(w io.Writer, obj resource.Object) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		switch k {
		case "apiVersion", "kind", "metadata":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		if k == "data" {
			if _, ok := obj.(*corev1.Secret); ok {
				masked := map[string]string{}
				for dk, dv := range v.(map[string]any) {
					masked[dk] = fmt.Sprintf("<%d bytes, base64>", len(fmt.Sprint(dv)))
				}
				v = masked
			}
		}
		y, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s%s:\n  %s\n", strings.ToUpper(k[:1]), k[1:], strings.ReplaceAll(strings.TrimSpace(string(y)), "\n", "\n  "))
	}
	return nil
}

// printEvents prints an object's events as kubectl describe does, oldest first.
func printEvents(w io.Writer, events []*corev1.Event, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	defer tw.Flush()
	if len(events) == 0 {
		fmt.Fprintln(tw, "Events:\t<none>")
		return
	}
	sort.SliceStable(events, func(i, j int) bool { return lastSeen(events[i]).Before(lastSeen(events[j])) })
	fmt.Fprintln(tw, "Events:")
	fmt.Fprintln(tw, "  Type\tReason\tAge\tFrom\tMessage")
	fmt.Fprintln(tw, "  ----\t------\t----\t----\t-------")
	for _, e := range events {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, eventInterval(e, now),
			cmp.Or(e.Source.Component, e.ReportingController), strings.TrimSpace(e.Message))
	}
}
