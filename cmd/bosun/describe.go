package main

import (
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
			obj, err := c.get(cmd.Context(), res, o.namespace, args[1])
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
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
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
		describePod(tw, o)
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

func describePod(tw *tabwriter.Writer, p *corev1.Pod) {
	kv := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	kv("Node", orNone(p.Spec.NodeName))
	_, status, _ := podStatus(p)
	kv("Status", status)
	kv("IP", orNone(p.Status.PodIP))
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
			cs, ok := statuses[c.Name]
			if !ok {
				continue
			}
			switch {
			case cs.State.Running != nil:
				fmt.Fprintf(tw, "    State:\tRunning (since %s)\n", cs.State.Running.StartedAt.Format(time.RFC3339))
			case cs.State.Waiting != nil:
				fmt.Fprintf(tw, "    State:\tWaiting (%s) %s\n", cs.State.Waiting.Reason, cs.State.Waiting.Message)
			case cs.State.Terminated != nil:
				fmt.Fprintf(tw, "    State:\tTerminated (%s, exit code %d)\n", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
			}
			fmt.Fprintf(tw, "    Ready:\t%v\n", cs.Ready)
			fmt.Fprintf(tw, "    Restart Count:\t%d\n", cs.RestartCount)
		}
	}
	var conds []condition
	for _, c := range p.Status.Conditions {
		conds = append(conds, condition{string(c.Type), string(c.Status), c.Reason, c.Message})
	}
	describeConditions(tw, conds)
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

func printEvents(w io.Writer, events []*corev1.Event, now time.Time) {
	if len(events) == 0 {
		fmt.Fprintln(w, "Events:\t<none>")
		return
	}
	sort.Slice(events, func(i, j int) bool { return events[i].LastTimestamp.Before(&events[j].LastTimestamp) })
	fmt.Fprintln(w, "Events:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  Type\tReason\tAge\tFrom\tMessage")
	for _, e := range events {
		last := e.LastTimestamp
		if last.IsZero() {
			last = e.CreationTimestamp
		}
		a := age(last, now)
		if e.Count > 1 {
			a += fmt.Sprintf(" (x%d)", e.Count)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, a, e.Source.Component, e.Message)
	}
	tw.Flush()
}
