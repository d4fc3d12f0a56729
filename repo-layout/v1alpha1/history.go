package v1alpha1

import (
	"strings"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxHistory is how many commits GitSyncStatus.History keeps.
const MaxHistory = 10

// Lengths that keep a history entry, and so the GitSync object, small.
const (
	maxHistoryMessage = 72
	maxHistoryReason  = 200
)

// RecordSync records in the history how the sync of commit c ended (Synced or Failed, with the
// reason of a failure); c moves to the front. A commit synced again keeps the health recorded
// for it, unless its sync state changed.
func (s *GitSyncStatus) RecordSync(c CommitInfo, sync SyncStatusCode, reason string, now metav1.Time) {
	if c.SHA == "" {
		return
	}
	rec := CommitRecord{SHA: c.SHA, Author: c.Author, Message: clip(firstLine(c.Message), maxHistoryMessage),
		Time: &now, Sync: sync, Reason: clip(reason, maxHistoryReason)}
	for i, old := range s.History {
		if old.SHA != c.SHA {
			continue
		}
		if old.Sync == sync && sync == SyncStatusSynced {
			rec.Health, rec.Reason = old.Health, old.Reason
		}
		s.History = append(s.History[:i:i], s.History[i+1:]...)
		break
	}
	s.History = append([]CommitRecord{rec}, s.History...)
	if len(s.History) > MaxHistory {
		s.History = s.History[:MaxHistory]
	}
}

// RecordHealth records h in the history entry of its commit; a commit that is not in the
// history (its sync was recorded before histories were kept) is left out.
func (s *GitSyncStatus) RecordHealth(h CommitHealth) {
	for i := range s.History {
		if s.History[i].SHA == h.Commit {
			s.History[i].Health = h.Status
			s.History[i].Reason = clip(h.Message, maxHistoryReason)
			return
		}
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// clip shortens s to at most n bytes, at a rune boundary, marking the cut with "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
