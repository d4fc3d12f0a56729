package v1alpha1

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestHistory(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	at := func(min int) metav1.Time { return metav1.NewTime(t0.Add(time.Duration(min) * time.Minute)) }
	commit := func(sha string) CommitInfo {
		return CommitInfo{SHA: sha, Author: "Ann", Message: "change " + sha + "\n\nbody"}
	}
	type step func(s *GitSyncStatus)
	synced := func(sha string, min int) step {
		return func(s *GitSyncStatus) { s.RecordSync(commit(sha), SyncStatusSynced, "", at(min)) }
	}
	failed := func(sha string, min int, reason string) step {
		return func(s *GitSyncStatus) { s.RecordSync(commit(sha), SyncStatusFailed, reason, at(min)) }
	}
	healthOf := func(sha string, h HealthStatusCode, msg string) step {
		return func(s *GitSyncStatus) { s.RecordHealth(CommitHealth{Commit: sha, Status: h, Message: msg}) }
	}
	rec := func(sha string, min int, sync SyncStatusCode, h HealthStatusCode, reason string) CommitRecord {
		tm := at(min)
		return CommitRecord{SHA: sha, Author: "Ann", Message: "change " + sha, Time: &tm, Sync: sync, Health: h, Reason: reason}
	}
	tests := []struct {
		name  string
		steps []step
		want  []CommitRecord
	}{
		{
			name:  "newest first, health on its own commit",
			steps: []step{synced("a", 1), healthOf("a", HealthHealthy, "ok"), synced("b", 2), healthOf("b", HealthProgressing, "1 of 2"), healthOf("a", HealthDegraded, "late")},
			want:  []CommitRecord{rec("b", 2, SyncStatusSynced, HealthProgressing, "1 of 2"), rec("a", 1, SyncStatusSynced, HealthDegraded, "late")},
		},
		{
			name:  "a re-sync of the same commit moves it up and keeps its health",
			steps: []step{synced("a", 1), healthOf("a", HealthHealthy, "ok"), synced("b", 2), synced("a", 3)},
			want:  []CommitRecord{rec("a", 3, SyncStatusSynced, HealthHealthy, "ok"), rec("b", 2, SyncStatusSynced, "", "")},
		},
		{
			name:  "a failed commit that later applies loses the failure",
			steps: []step{failed("a", 1, "fetch failed"), synced("a", 2)},
			want:  []CommitRecord{rec("a", 2, SyncStatusSynced, "", "")},
		},
		{
			name:  "health of a commit not in the history is dropped",
			steps: []step{failed("a", 1, "invalid"), healthOf("z", HealthHealthy, "ok")},
			want:  []CommitRecord{rec("a", 1, SyncStatusFailed, "", "invalid")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s GitSyncStatus
			for _, st := range tt.steps {
				st(&s)
			}
			if diff := cmp.Diff(tt.want, s.History); diff != "" {
				t.Errorf("history (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHistoryBounded(t *testing.T) {
	var s GitSyncStatus
	for i := range MaxHistory + 5 {
		s.RecordSync(CommitInfo{SHA: fmt.Sprintf("c%02d", i), Message: strings.Repeat("é", 100)}, SyncStatusFailed, strings.Repeat("x", 500), metav1.Now())
	}
	if len(s.History) != MaxHistory {
		t.Fatalf("%d entries, want %d", len(s.History), MaxHistory)
	}
	if s.History[0].SHA != fmt.Sprintf("c%02d", MaxHistory+4) || s.History[MaxHistory-1].SHA != "c05" {
		t.Errorf("kept %s … %s, want the newest %d", s.History[0].SHA, s.History[MaxHistory-1].SHA, MaxHistory)
	}
	for _, r := range s.History {
		if len(r.Message) > maxHistoryMessage || !strings.HasSuffix(r.Message, "…") || !utf8.ValidString(r.Message) {
			t.Errorf("message %q: want at most %d bytes of valid UTF-8 ending in …", r.Message, maxHistoryMessage)
		}
		if len(r.Reason) > maxHistoryReason {
			t.Errorf("reason of %d bytes, want at most %d", len(r.Reason), maxHistoryReason)
		}
	}
}
