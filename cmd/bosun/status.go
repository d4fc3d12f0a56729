package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/gitsync"
	bosunv1 "github.com/bosun-gitops/bosun/repo-layout/v1alpha1"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// defaultSync is the GitSync object of the operator's --repo.
const defaultSync = "default"

func newStatusCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show what is synced from Git: commit, state, counts and every validation error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			objs, err := c.list(cmd.Context(), resource.GitSyncs, "", nil)
			if err != nil {
				return err
			}
			if len(objs) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No Git source has been synced yet; the operator creates its status on its first sync.")
				return nil
			}
			for i, o := range objs {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				if err := describeGitSync(cmd.OutOrStdout(), o.(*bosunv1.GitSync), nil, time.Now()); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func commitLine(ci bosunv1.CommitInfo, now time.Time) string {
	if ci.SHA == "" {
		return "<none>"
	}
	msg := strings.SplitN(ci.Message, "\n", 2)[0]
	s := fmt.Sprintf("%s %q", shortSHA(ci.SHA), msg)
	if ci.Author != "" {
		s += " by " + ci.Author
	}
	if ci.Time != nil {
		s += ", " + age(*ci.Time, now) + " ago"
	}
	return s
}

func describeGitSync(w io.Writer, g *bosunv1.GitSync, events []*corev1.Event, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	kv := func(k string, v any) { fmt.Fprintf(tw, "%s:\t%v\n", k, v) }
	src := gitsync.RedactURL(g.Spec.Repo) // an older operator may have stored a password
	if g.Spec.Branch != "" {
		src += " (branch " + g.Spec.Branch
		if g.Spec.Path != "" && g.Spec.Path != "." {
			src += ", path " + g.Spec.Path
		}
		src += ")"
	}
	kv("Source", src)
	kv("State", orNone(string(g.Status.State)))
	if g.Status.Sync != "" {
		kv("Sync", g.Status.Sync)
	}
	if h := g.Status.Health; h != nil {
		kv("Health", fmt.Sprintf("%s (commit %s): %s", h.Status, shortSHA(h.Commit), h.Message))
	}
	kv("Commit", commitLine(g.Status.Commit, now))
	kv("Applied", commitLine(g.Status.Applied, now))
	if g.Status.LastSyncedTime != nil {
		kv("Last synced", age(*g.Status.LastSyncedTime, now)+" ago")
	}
	if g.Status.LastAttempt != nil {
		kv("Last attempt", age(*g.Status.LastAttempt, now)+" ago")
	}
	n := g.Status.Counts
	kv("Objects", fmt.Sprintf("%d created, %d updated, %d deleted, %d unchanged", n.Created, n.Updated, n.Deleted, n.Unchanged))
	if g.Status.Message != "" {
		kv("Message", g.Status.Message)
	}
	tw.Flush()
	if h := g.Status.Health; h != nil && len(h.Resources) > 0 {
		fmt.Fprintln(w, "Workloads changed by the applied commit:")
		for _, r := range h.Resources {
			name := r.Name
			if r.Namespace != "" {
				name = r.Namespace + "/" + r.Name
			}
			fmt.Fprintf(w, "  %-11s %s %s: %s\n", r.Status, strings.ToLower(r.Kind), name, r.Message)
		}
	}
	if len(g.Status.Errors) > 0 {
		fmt.Fprintf(w, "Errors (%d; nothing from this commit was applied):\n", len(g.Status.Errors))
		for _, e := range g.Status.Errors {
			fmt.Fprintf(w, "  %s\n", formatFileError(e))
		}
	}
	if len(g.Status.History) > 0 {
		printHistory(w, g.Status.History, now)
	}
	if events != nil {
		printEvents(w, events, now)
	}
	return nil
}

// printHistory prints the latest commits' sync and health, newest first; the reason of a failed
// sync or of a commit that is not healthy follows on a line of its own, under MESSAGE.
func printHistory(w io.Writer, hist []bosunv1.CommitRecord, now time.Time) {
	fmt.Fprintln(w, "History:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  COMMIT\tWHEN\tSYNC\tHEALTH\tMESSAGE")
	for _, r := range hist {
		when := "<unknown>"
		if r.Time != nil {
			when = age(*r.Time, now)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", shortSHA(r.SHA), when, r.Sync, orDash(string(r.Health)), r.Message)
		if r.Reason != "" && (r.Sync == bosunv1.SyncStatusFailed || r.Health != bosunv1.HealthHealthy) {
			fmt.Fprintf(tw, "  \t\t\t\t→ %s\n", r.Reason)
		}
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatFileError(e bosunv1.FileError) string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	s += ": "
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Message
}

func newSyncCmd(g *globalFlags) *cobra.Command {
	var wait bool
	var timeout time.Duration
	var acceptRewrite string
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Fetch the Git repository and apply its latest commit now",
		Long: `Ask the operator to fetch and apply the tracked branch at once instead of at its next poll.
With --wait (the default) it waits for the result and exits 1 if the commit failed to apply.

A branch whose history was rewritten (a force-push: the new head does not descend from the
applied commit) is refused and the last good commit stays live, unless the operator runs with
--follow-force-push. --accept-rewrite SHA accepts that head (the SHA the status names).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec := map[string]any{}
			if acceptRewrite != "" {
				if !isCommitPrefix(acceptRewrite) {
					return fmt.Errorf("--accept-rewrite %q: give the commit's SHA (at least 7 hex digits), as `bosun status` shows it", acceptRewrite)
				}
				spec["acceptRewrite"] = strings.ToLower(acceptRewrite)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			token := time.Now().UTC().Format(time.RFC3339Nano)
			spec["syncRequested"] = token
			patch := map[string]any{"spec": spec}
			err = c.do(ctx, http.MethodPatch, resourcePath(resource.GitSyncs, "", defaultSync), nil, patch, "application/merge-patch+json", nil)
			if isNotFound(err) {
				return errors.New("the operator has not created its sync status yet; is it running? (bosun operator --repo ...)")
			}
			if err != nil {
				return fmt.Errorf("requesting a sync: %w", err)
			}
			if !wait {
				fmt.Fprintln(cmd.OutOrStdout(), "sync requested")
				return nil
			}
			gs, err := waitSynced(ctx, c, token, timeout)
			if err != nil {
				return err
			}
			if err := describeGitSync(cmd.OutOrStdout(), gs, nil, time.Now()); err != nil {
				return err
			}
			if gs.Status.State == bosunv1.SyncStateFailed {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&acceptRewrite, "accept-rewrite", "", "apply this commit (SHA) although the branch's history was rewritten (force-push)")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait for the sync to finish and print its result")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait")
	return cmd
}

// waitSynced waits until the operator has acted on the request token. It reads the GitSync
// status once and then watches it, so it returns as soon as the operator writes the result; a
// watch that ends early (server timeout, compaction, operator restart) is followed by a fresh read.
func waitSynced(ctx context.Context, c *apiClient, token string, timeout time.Duration) (*bosunv1.GitSync, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	timedOut := fmt.Errorf("the operator did not finish the sync within %s; see `bosun status` and the operator's log", timeout)
	for {
		obj, err := c.get(ctx, resource.GitSyncs, "", defaultSync)
		if ctx.Err() != nil {
			return nil, timedOut
		}
		if err != nil {
			return nil, err
		}
		gs := obj.(*bosunv1.GitSync)
		if syncDone(gs, token) {
			return gs, nil
		}
		gs, err = c.watchGitSync(ctx, gs.ResourceVersion, token)
		if gs != nil {
			return gs, nil
		}
		if err != nil {
			// A watch the server refused or broke off: read again after a pause.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		if ctx.Err() != nil {
			return nil, timedOut
		}
	}
}

// syncDone tells whether the operator has finished the sync that request token asked for.
func syncDone(gs *bosunv1.GitSync, token string) bool {
	return gs.Status.ObservedSyncRequest == token && gs.Status.State != bosunv1.SyncStateSyncing
}

// watchGitSync watches the default GitSync from resourceVersion rv and returns it once syncDone
// holds; (nil, nil) when the server ended the watch first, (nil, err) when it failed.
func (c *apiClient) watchGitSync(ctx context.Context, rv, token string) (*bosunv1.GitSync, error) {
	q := url.Values{
		"watch":           {"true"},
		"fieldSelector":   {"metadata.name=" + defaultSync},
		"resourceVersion": {rv},
	}
	p := resourcePath(resource.GitSyncs, "", "")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+p+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("contacting the operator at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("watching %s: %s: %s", p, resp.Status, strings.TrimSpace(string(data)))
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev struct {
			Type   watch.EventType `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, nil
			}
			return nil, fmt.Errorf("reading the watch of %s: %w", p, err)
		}
		switch ev.Type {
		case watch.Added, watch.Modified:
			gs := &bosunv1.GitSync{}
			if err := json.Unmarshal(ev.Object, gs); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", resource.GitSyncs, err)
			}
			if syncDone(gs, token) {
				resource.GitSyncs.SetTypeMeta(gs)
				return gs, nil
			}
		case watch.Error:
			var st metav1.Status
			_ = json.Unmarshal(ev.Object, &st)
			return nil, fmt.Errorf("watching %s: %s", p, st.Message)
		}
	}
}

// isCommitPrefix reports whether s is a commit SHA or a prefix of one of at least 7 hex digits.
func isCommitPrefix(s string) bool {
	if len(s) < 7 || len(s) > 64 {
		return false
	}
	for _, r := range strings.ToLower(s) {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}
