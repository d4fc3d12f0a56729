package resource

import (
	"strings"
	"testing"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		in   string
		want *Resource
	}{
		{"pods", Pods}, {"pod", Pods}, {"po", Pods}, {"Pod", Pods},
		{"deploy", Deployments}, {"deployments.apps", Deployments}, {"Deployment", Deployments},
		{"svc", Services}, {"ns", Namespaces}, {"rc", ReplicationControllers}, {"rs", ReplicaSets},
		{"ds", DaemonSets}, {"ep", Endpoints}, {"endpoints", Endpoints}, {"ev", Events},
		{"leases", Leases}, {"machines", Machines}, {"mach", Machines}, {"gitsync", GitSyncs},
	}
	for _, tt := range tests {
		got, err := Lookup(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Lookup(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	if _, err := Lookup("deployments.core"); err == nil {
		t.Error("Lookup(deployments.core) found something; want an error")
	}
	_, err := Lookup("podz")
	if err == nil || !strings.Contains(err.Error(), "known types") {
		t.Errorf("Lookup(podz) error = %v; want one listing the known types", err)
	}
}

func TestTableIsConsistent(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range All {
		key := r.APIVersion() + "/" + r.Resource
		if seen[key] {
			t.Errorf("%s listed twice", key)
		}
		seen[key] = true
		obj := r.New()
		r.SetTypeMeta(obj)
		if got := obj.GetObjectKind().GroupVersionKind(); got != r.GroupVersionKind() {
			t.Errorf("%s: SetTypeMeta gave %v", r, got)
		}
		if r.NewList() == nil {
			t.Errorf("%s: NewList returned nil", r)
		}
		if found, ok := ForKind(r.APIVersion(), r.Kind); !ok || found != r {
			t.Errorf("ForKind(%s, %s) = %v", r.APIVersion(), r.Kind, found)
		}
		if found, ok := ForResource(r.Group, r.Version, r.Resource); !ok || found != r {
			t.Errorf("ForResource(%s) = %v", r, found)
		}
	}
	if v := KindKnown("Deployment"); len(v) != 1 || v[0] != "apps/v1" {
		t.Errorf("KindKnown(Deployment) = %v", v)
	}
}

// TestHasProtobuf: Kubernetes' kinds have a protobuf encoding, Bosun's own do not.
func TestHasProtobuf(t *testing.T) {
	for _, r := range All {
		want := r.Group != "bosun.dev"
		if got := r.HasProtobuf(); got != want {
			t.Errorf("%s: HasProtobuf() = %v, want %v", r, got, want)
		}
	}
}
