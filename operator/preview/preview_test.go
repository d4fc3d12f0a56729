package preview

import (
	"testing"

	"github.com/bosun-gitops/bosun/operator/webhook"
	"github.com/google/go-cmp/cmp"
)

// TestDesiredFor checks which events ask for a preview and which remove it.
func TestDesiredFor(t *testing.T) {
	m := New(Config{Branch: "main", Label: "deploy-preview", Repo: "o/fleet"})
	open := webhook.PullRequest{Number: 7, Action: webhook.ActionOpened, HeadSHA: "h1", Base: "main", Labels: []string{"bug", "deploy-preview"}}
	tests := []struct {
		name string
		edit func(ev *webhook.PullRequest)
		want desired
	}{
		{"opened with the label", func(*webhook.PullRequest) {}, desired{deploy: true, head: "h1", repo: "o/fleet"}},
		{"new head", func(ev *webhook.PullRequest) {
			ev.Action, ev.HeadSHA, ev.Repo = webhook.ActionUpdated, "h2", "fork/fleet"
		},
			desired{deploy: true, head: "h2", repo: "fork/fleet"}},
		{"label added later (an edit event)", func(ev *webhook.PullRequest) { ev.Action = webhook.ActionOther }, desired{deploy: true, head: "h1", repo: "o/fleet"}},
		{"without the label", func(ev *webhook.PullRequest) { ev.Labels = []string{"bug", "preview"} },
			desired{head: "h1", repo: "o/fleet", reason: `the "deploy-preview" label was removed`}},
		{"into another branch", func(ev *webhook.PullRequest) { ev.Base = "release" },
			desired{head: "h1", repo: "o/fleet", reason: "the pull request targets release, not main"}},
		{"closed", func(ev *webhook.PullRequest) { ev.Action, ev.Closed = webhook.ActionClosed, true },
			desired{head: "h1", repo: "o/fleet", reason: "the pull request was closed"}},
		{"merged", func(ev *webhook.PullRequest) { ev.Action, ev.Closed, ev.Merged = webhook.ActionClosed, true, true },
			desired{head: "h1", repo: "o/fleet", reason: "the pull request was merged"}},
		{"label changed on a closed pull request", func(ev *webhook.PullRequest) { ev.Action, ev.Closed = webhook.ActionOther, true },
			desired{head: "h1", repo: "o/fleet", reason: "the pull request was closed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := open
			ev.Labels = append([]string(nil), open.Labels...)
			tt.edit(&ev)
			if diff := cmp.Diff(tt.want, m.desiredFor(ev), cmp.AllowUnexported(desired{})); diff != "" {
				t.Errorf("desired state (-want +got):\n%s", diff)
			}
		})
	}
}
