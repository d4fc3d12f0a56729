package preview

import (
	"context"
	"fmt"
	"strconv"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// A record is the stored state of one preview, the ConfigMap kube-system/bosun-preview-<n>: the
// head it is to run and how far it got. A leader that starts resumes every record, so a crash
// between an event and the end of its deploy (or removal) converges.
type record struct {
	Number int
	Repo   string
	// Head is the head to deploy; Applied the head applied last.
	Head, Applied string
	State         string
	Message       string

	resourceVersion string
}

// Record states.
const (
	StateDeploying = "Deploying"
	StateDeployed  = "Deployed"
	StateFailed    = "Failed" // the head was not applied (invalid, unreachable, refused)
	StateRemoving  = "Removing"
)

func recordName(number int) string { return "bosun-preview-" + strconv.Itoa(number) }

// Record data keys.
const (
	keyPullRequest = "pullRequest"
	keyRepo        = "repo"
	keyHead        = "head"
	keyApplied     = "applied"
	keyState       = "state"
	keyMessage     = "message"
	keyNamespace   = "namespace"
)

func (r *record) configMap() *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: metav1.NamespaceSystem, Name: recordName(r.Number), ResourceVersion: r.resourceVersion,
			Labels: map[string]string{resource.LabelPreview: strconv.Itoa(r.Number)},
		},
		Data: map[string]string{
			keyPullRequest: strconv.Itoa(r.Number), keyRepo: r.Repo, keyHead: r.Head, keyApplied: r.Applied,
			keyState: r.State, keyMessage: r.Message, keyNamespace: Namespace(r.Number),
		},
	}
	resource.ConfigMaps.SetTypeMeta(cm)
	return cm
}

func recordOf(cm *corev1.ConfigMap) (*record, error) {
	n, err := strconv.Atoi(cm.Data[keyPullRequest])
	if err != nil || n <= 0 {
		return nil, fmt.Errorf("preview record %s/%s: %s %q is not a pull request number", cm.Namespace, cm.Name, keyPullRequest, cm.Data[keyPullRequest])
	}
	return &record{Number: n, Repo: cm.Data[keyRepo], Head: cm.Data[keyHead], Applied: cm.Data[keyApplied],
		State: cm.Data[keyState], Message: cm.Data[keyMessage], resourceVersion: cm.ResourceVersion}, nil
}

// loadRecord returns the record of pull request number, nil when there is none.
func (m *Manager) loadRecord(ctx context.Context, number int) (*record, error) {
	obj, err := m.cfg.Store.Get(ctx, resource.ConfigMaps, metav1.NamespaceSystem, recordName(number))
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the preview record of #%d: %w", number, err)
	}
	return recordOf(obj.(*corev1.ConfigMap))
}

// saveRecord writes r (creating it when it has no resourceVersion) and keeps the new
// resourceVersion. Only the worker of r's pull request writes it, so a conflict means a
// previous leader wrote last: its record is overwritten.
func (m *Manager) saveRecord(ctx context.Context, r *record) error {
	for attempt := 0; ; attempt++ {
		var (
			out resource.Object
			err error
		)
		if r.resourceVersion == "" {
			out, err = m.cfg.Store.Create(ctx, resource.ConfigMaps, r.configMap())
		} else {
			out, err = m.cfg.Store.Update(ctx, resource.ConfigMaps, r.configMap())
		}
		if err == nil {
			r.resourceVersion = out.GetResourceVersion()
			return nil
		}
		if attempt >= 3 || !(apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err)) {
			return fmt.Errorf("writing the preview record of #%d: %w", r.Number, err)
		}
		cur, gerr := m.cfg.Store.Get(ctx, resource.ConfigMaps, metav1.NamespaceSystem, recordName(r.Number))
		switch {
		case apierrors.IsNotFound(gerr):
			r.resourceVersion = ""
		case gerr != nil:
			return fmt.Errorf("writing the preview record of #%d: %w", r.Number, gerr)
		default:
			r.resourceVersion = cur.GetResourceVersion()
		}
	}
}

func (m *Manager) deleteRecord(ctx context.Context, number int) error {
	_, err := m.cfg.Store.Delete(ctx, resource.ConfigMaps, metav1.NamespaceSystem, recordName(number), store.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the preview record of #%d: %w", number, err)
	}
	return nil
}

// listRecords returns every preview record.
func (m *Manager) listRecords(ctx context.Context) ([]*record, error) {
	req, err := labels.NewRequirement(resource.LabelPreview, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	l, err := m.cfg.Store.List(ctx, resource.ConfigMaps, metav1.NamespaceSystem, store.ListOptions{LabelSelector: labels.NewSelector().Add(*req)})
	if err != nil {
		return nil, fmt.Errorf("listing preview records: %w", err)
	}
	var out []*record
	for _, obj := range l.Items {
		r, err := recordOf(obj.(*corev1.ConfigMap))
		if err != nil {
			m.log.Warn("ignoring a preview record", "err", err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}
