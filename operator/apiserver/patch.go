package apiserver

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"

	"github.com/bosun-gitops/bosun/internal/resource"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// patchRetries bounds how often a patch without a resourceVersion is reapplied when the object
// changed between read and write.
const patchRetries = 5

func (s *Server) handlePatch(w http.ResponseWriter, r *http.Request, ri *requestInfo) {
	dry, err := dryRun(r)
	if err != nil {
		writeError(w, err)
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt = ""
	}
	pt := types.PatchType(mt)
	switch pt {
	case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType:
	default:
		writeError(w, statusError(http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType,
			fmt.Sprintf("the body of the request was in an unknown format %q - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json", mt)))
		return
	}
	patch, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	for attempt := 0; ; attempt++ {
		existing, err := s.cfg.Store.Get(r.Context(), ri.Resource, ri.Namespace, ri.Name)
		if err != nil {
			writeError(w, err)
			return
		}
		if ri.Subresource == "" {
			if err := gitRule(ri.Resource, existing); err != nil {
				writeError(w, err)
				return
			}
		}
		patched, err := applyPatch(ri.Resource, existing, pt, patch)
		if err != nil {
			writeError(w, err)
			return
		}
		if err := checkIdentity(ri, patched); err != nil {
			writeError(w, err)
			return
		}
		if ri.Subresource == "" {
			if err := reservedMetadata(ri.Resource, patched, existing); err != nil {
				writeError(w, err)
				return
			}
		}
		// A patch that names a resourceVersion is a precondition; otherwise it applies to the
		// version just read and is retried on a race.
		pinned := patched.GetResourceVersion() != existing.GetResourceVersion()
		if !pinned {
			patched.SetResourceVersion(existing.GetResourceVersion())
		}
		if dry {
			if pinned {
				writeError(w, conflictStale(ri))
				return
			}
			s.writeObject(w, r, http.StatusOK, ri.Resource, patched)
			return
		}
		updated, err := s.write(r, ri, patched)
		if apierrors.IsConflict(err) && !pinned && attempt < patchRetries {
			continue
		}
		if err != nil {
			writeError(w, err)
			return
		}
		s.writeObject(w, r, http.StatusOK, ri.Resource, updated)
		return
	}
}

// applyPatch applies a JSON, merge or strategic-merge patch to existing and decodes the result.
func applyPatch(res *resource.Resource, existing resource.Object, pt types.PatchType, patch []byte) (resource.Object, error) {
	res.SetTypeMeta(existing)
	original, err := json.Marshal(existing)
	if err != nil {
		return nil, fmt.Errorf("encoding %s for patching: %w", res.Kind, err)
	}
	var out []byte
	switch pt {
	case types.JSONPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("decoding JSON patch: %v", err))
		}
		out, err = p.Apply(original)
		if err != nil {
			return nil, statusError(http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, fmt.Sprintf("applying JSON patch: %v", err))
		}
	case types.MergePatchType:
		out, err = jsonpatch.MergePatch(original, patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("applying merge patch: %v", err))
		}
	case types.StrategicMergePatchType:
		out, err = strategicpatch.StrategicMergePatch(original, patch, res.New())
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("applying strategic merge patch: %v", err))
		}
	}
	obj, err := decodeObject(res, out)
	if err != nil {
		return nil, err
	}
	return obj, nil
}
