package gitsync

import (
	"fmt"

	repolayout "github.com/bosun-gitops/bosun/repo-layout"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// controlledAdoptions lists, as errors at the manifests' file:line, the adoptions of a plan whose
// live object a controller owns (an ownerReference with controller: true, such as a ReplicaSet's
// pod). Git taking such an object over would fight the controller for it, so the commit is
// refused; adopting an unowned object, one made by hand, stays allowed.
func controlledAdoptions(p *plan) repolayout.ErrorList {
	var errs repolayout.ErrorList
	for _, ph := range p.phases {
		for _, c := range ph {
			if c.action != actAdopt {
				continue
			}
			owner := metav1.GetControllerOfNoCopy(c.live)
			if owner == nil {
				continue
			}
			name := c.live.GetName()
			if ns := c.live.GetNamespace(); ns != "" {
				name = ns + "/" + name
			}
			errs = append(errs, repolayout.Error{
				File: c.want.file, Line: c.want.line, Field: "metadata.name",
				Reason: fmt.Sprintf("%s is owned by %s %s (controller); rename the object in Git or remove it",
					name, owner.Kind, owner.Name),
			})
		}
	}
	return errs
}
