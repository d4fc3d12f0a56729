package main

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
)

func newEventsCmd(g *globalFlags) *cobra.Command {
	o := &getOptions{}
	var forObj string
	cmd := &cobra.Command{
		Use:   "events [--for KIND/NAME]",
		Short: "List events, oldest first, as `kubectl events` does",
		Example: `  bosun events -A
  bosun events -n shop --for deployment/web`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ns := g.namespace(o.namespace)
			if o.allNamespaces {
				ns = ""
			}
			q := url.Values{}
			var kind string
			if forObj != "" {
				k, name, ok := strings.Cut(forObj, "/")
				if !ok {
					return fmt.Errorf("--for %q: want KIND/NAME, for example deployment/web", forObj)
				}
				res, err := resource.Lookup(k)
				if err != nil {
					return err
				}
				kind = res.Kind
				q.Set("fieldSelector", "involvedObject.name="+name)
			}
			objs, err := c.list(cmd.Context(), resource.Events, ns, q)
			if err != nil {
				return err
			}
			var evs []*corev1.Event
			for _, o := range objs {
				ev := o.(*corev1.Event)
				if kind == "" || ev.InvolvedObject.Kind == kind {
					evs = append(evs, ev)
				}
			}
			if len(evs) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "No events found.")
				return nil
			}
			sort.SliceStable(evs, func(i, j int) bool { return lastSeen(evs[i]).Before(lastSeen(evs[j])) })
			printEventTable(cmd.OutOrStdout(), evs, o.allNamespaces, time.Now())
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&forObj, "for", "", "only events about this object, as KIND/NAME")
	return cmd
}

// lastSeen orders events as kubectl events does: the series' last observation, else
// lastTimestamp, else eventTime.
func lastSeen(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// eventInterval is the LAST SEEN column of `kubectl events` (and the Age column of
// `kubectl describe`): when it happened, or "last (xN over first)" for a repeated event.
func eventInterval(e *corev1.Event, now time.Time) string {
	first := microAge(e.EventTime, now)
	if e.EventTime.IsZero() {
		first = age(e.FirstTimestamp, now)
	}
	switch {
	case e.Series != nil:
		return fmt.Sprintf("%s (x%d over %s)", microAge(e.Series.LastObservedTime, now), e.Series.Count, first)
	case e.Count > 1:
		return fmt.Sprintf("%s (x%d over %s)", age(e.LastTimestamp, now), e.Count, first)
	}
	return first
}

// printEventTable prints events as `kubectl events` does.
func printEventTable(w io.Writer, evs []*corev1.Event, withNS bool, now time.Time) {
	tw := newTableWriter(w)
	if withNS {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "LAST SEEN\tTYPE\tREASON\tOBJECT\tMESSAGE")
	for _, e := range evs {
		if withNS {
			fmt.Fprintf(tw, "%s\t", e.Namespace)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s\n", eventInterval(e, now), e.Type, e.Reason,
			e.InvolvedObject.Kind, e.InvolvedObject.Name, strings.TrimSpace(e.Message))
	}
	tw.Flush()
}
