package apiserver

import (
	"context"
	"fmt"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
)

// nodeLeaseNamespace holds one Lease per node, renewed as a heartbeat.
const nodeLeaseNamespace = "kube-node-lease"

// authorize decides whether u may do ri. Resource requests return a Forbidden StatusError when
// refused; non-resource paths (discovery) are open to every authenticated user.
func (s *Server) authorize(ctx context.Context, u *userInfo, ri *requestInfo) error {
	if u.inGroup(groupMasters) {
		return nil
	}
	if ri.Resource == nil {
		if u.anonymous() {
			return apierrors.NewUnauthorized("Unauthorized")
		}
		return nil
	}
	if node, ok := u.nodeName(); ok {
		allowed, err := s.nodeMay(ctx, node, ri)
		if err != nil {
			return err
		}
		if allowed {
			return nil
		}
	}
	return forbidden(u, ri)
}

func forbidden(u *userInfo, ri *requestInfo) error {
	what := ri.resourceLabel()
	where := ""
	if ri.Namespace != "" {
		where = fmt.Sprintf(" in the namespace %q", ri.Namespace)
	}
	return apierrors.NewForbidden(ri.Resource.GroupResource(), ri.Name,
		fmt.Errorf("User %q cannot %s resource %q in API group %q%s", u.Name, ri.Verb, what, ri.Resource.Group, where))
}

// nodeMay is the node authorizer: a node reads everything but Secrets (only those its pods
// use), writes its own Node (and status) and Lease, the status of pods bound to it, and Events.
func (s *Server) nodeMay(ctx context.Context, node string, ri *requestInfo) (bool, error) {
	read := ri.Verb == verbGet || ri.Verb == verbList || ri.Verb == verbWatch
	switch ri.Resource {
	case resource.Secrets:
		if ri.Verb != verbGet {
			return false, nil
		}
		return s.nodeUsesSecret(ctx, node, ri.Namespace, ri.Name)
	case resource.Nodes:
		if read {
			return true, nil
		}
		switch ri.Verb {
		case verbCreate, verbUpdate, verbPatch:
			return ri.Name == node || (ri.Verb == verbCreate && ri.Name == ""), nil // create: body name checked in the handler
		}
		return false, nil
	case resource.Leases:
		if read {
			return true, nil
		}
		switch ri.Verb {
		case verbCreate, verbUpdate, verbPatch:
			return ri.Namespace == nodeLeaseNamespace && (ri.Name == node || ri.Verb == verbCreate), nil
		}
		return false, nil
	case resource.Pods:
		if read {
			return true, nil
		}
		// A node writes the status of the pods bound to it, and deletes them once it has
		// stopped them after a graceful deletion (as Kubernetes' NodeRestriction allows).
		if ri.Subresource == "status" && (ri.Verb == verbUpdate || ri.Verb == verbPatch) ||
			ri.Subresource == "" && ri.Verb == verbDelete && ri.Name != "" {
			pod, err := s.cfg.Store.Get(ctx, resource.Pods, ri.Namespace, ri.Name)
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			if err != nil {
				return false, err
			}
			p, ok := pod.(*corev1.Pod)
			return ok && p.Spec.NodeName == node, nil
		}
		return false, nil
	case resource.Events:
		return read || ri.Verb == verbCreate || ri.Verb == verbUpdate || ri.Verb == verbPatch, nil
	}
	return read, nil
}

// nodeUsesSecret reports whether a pod bound to node refers to the secret.
func (s *Server) nodeUsesSecret(ctx context.Context, node, namespace, name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	lr, err := s.cfg.Store.List(ctx, resource.Pods, namespace, store.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node),
	})
	if err != nil {
		return false, err
	}
	for _, o := range lr.Items {
		if p, ok := o.(*corev1.Pod); ok && p.Spec.NodeName == node && podUsesSecret(p, name) {
			return true, nil
		}
	}
	return false, nil
}

func podUsesSecret(p *corev1.Pod, name string) bool {
	for _, ref := range p.Spec.ImagePullSecrets {
		if ref.Name == name {
			return true
		}
	}
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == name {
					return true
				}
			}
		}
	}
	containers := append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...)
	for _, c := range containers {
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil && e.SecretRef.Name == name {
				return true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
				return true
			}
		}
	}
	return false
}
