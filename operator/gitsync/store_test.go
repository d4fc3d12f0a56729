package gitsync

import (
	"context"
	"fmt"
	"testing"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFullLive checks both ways of reading the objects a plan updates (a Get each, a List of
// the kind) against listLive's metadata: each change gets the full stored object, and an object
// deleted since the metadata list becomes a create.
func TestFullLive(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewStore(t)
	const n = 5
	for i := range n {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("cm-%d", i),
				Annotations: map[string]string{resource.AnnotationSource: "a.yaml", resource.AnnotationAppliedHash: "old"}},
			Data: map[string]string{"i": fmt.Sprint(i)},
		}
		if _, err := st.Create(ctx, resource.ConfigMaps, cm); err != nil {
			t.Fatal(err)
		}
	}
	var want []*desired
	for i := range n {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("cm-%d", i)}}
		want = append(want, &desired{res: resource.ConfigMaps, obj: cm, file: "a.yaml", line: 1, hash: "new"})
	}
	for _, tt := range []struct {
		name string
		read func(context.Context, Reader, *resource.Resource, []*change) error
	}{
		{"get", fullByGet},
		{"list", fullByList},
	} {
		t.Run(tt.name, func(t *testing.T) {
			live, err := listLive(ctx, st, nil)
			if err != nil {
				t.Fatal(err)
			}
			p := computePlan(want, live)
			// cm-0 goes away between the metadata list and the full read.
			if _, err := st.Delete(ctx, resource.ConfigMaps, "default", "cm-0", store.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			var changes []*change
			for i := range p.phases[1] {
				changes = append(changes, &p.phases[1][i])
			}
			if err := tt.read(ctx, st, resource.ConfigMaps, changes); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, c := range p.phases[1] {
				k := changeKey(c)
				switch cm, ok := c.live.(*corev1.ConfigMap); {
				case c.action == actCreate && c.live == nil:
					got[k.name] = "create"
				case ok:
					got[k.name] = fmt.Sprintf("%s data=%s", c.action, cm.Data["i"])
				default:
					got[k.name] = fmt.Sprintf("%s with %T", c.action, c.live)
				}
			}
			wantGot := map[string]string{"cm-0": "create"}
			for i := 1; i < n; i++ {
				wantGot[fmt.Sprintf("cm-%d", i)] = fmt.Sprintf("update data=%d", i)
			}
			if diff := cmp.Diff(wantGot, got); diff != "" {
				t.Errorf("changes after the full read (-want +got):\n%s", diff)
			}
			// Put cm-0 back for the next case.
			if _, err := st.Create(ctx, resource.ConfigMaps, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cm-0",
				Annotations: map[string]string{resource.AnnotationSource: "a.yaml", resource.AnnotationAppliedHash: "old"}},
				Data: map[string]string{"i": "0"}}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
