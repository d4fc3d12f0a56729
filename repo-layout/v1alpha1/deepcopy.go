package v1alpha1

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/runtime"
)

// These kinds are small and rarely copied, so a JSON round trip stands in for generated
// deep-copy functions. Every field is JSON-serialisable by construction.
func copyJSON[T any](in *T) *T {
	if in == nil {
		return nil
	}
	b, err := json.Marshal(in)
	if err != nil {
		panic("v1alpha1: deep copy: " + err.Error())
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		panic("v1alpha1: deep copy: " + err.Error())
	}
	return out
}

// DeepCopy returns a deep copy.
func (in *Cluster) DeepCopy() *Cluster { return copyJSON(in) }

// DeepCopyObject implements runtime.Object.
func (in *Cluster) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopy returns a deep copy.
func (in *ClusterList) DeepCopy() *ClusterList { return copyJSON(in) }

// DeepCopyObject implements runtime.Object.
func (in *ClusterList) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopy returns a deep copy.
func (in *Machine) DeepCopy() *Machine { return copyJSON(in) }

// DeepCopyObject implements runtime.Object.
func (in *Machine) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopy returns a deep copy.
func (in *MachineList) DeepCopy() *MachineList { return copyJSON(in) }

// DeepCopyObject implements runtime.Object.
func (in *MachineList) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopy returns a deep copy.
func (in *GitSync) DeepCopy() *GitSync { return copyJSON(in) }

// DeepCopyObject implements runtime.Object.
func (in *GitSync) DeepCopyObject() runtime.Object { return in.DeepCopy() }

// DeepCopy returns a deep copy.
func (in *GitSyncList) DeepCopy() *GitSyncList { return copyJSON(in) }

// DeepCopyObject implements runtime.Object.
func (in *GitSyncList) DeepCopyObject() runtime.Object { return in.DeepCopy() }
