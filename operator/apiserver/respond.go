package apiserver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// maxBodyBytes bounds request bodies; etcd refuses requests over 1.5 MiB anyway.
const maxBodyBytes = 3 << 20

// statusFor turns any error into a metav1.Status: StatusErrors keep their code and reason, other
// errors become 500 Internal Server Error.
func statusFor(err error) metav1.Status {
	var st metav1.Status
	var apiStatus apierrors.APIStatus
	if errors.As(err, &apiStatus) {
		st = apiStatus.Status()
	} else {
		st = apierrors.NewInternalError(err).Status()
	}
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	return st
}

func writeError(w http.ResponseWriter, err error) {
	st := statusFor(err)
	if rec, ok := w.(*recorder); ok {
		rec.errMsg = st.Message
	}
	writeJSON(w, int(st.Code), &st)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		data, _ = json.Marshal(statusFor(fmt.Errorf("encoding response: %w", err)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(data)
	w.Write([]byte("\n"))
}

// writeList answers with the <Kind>List of a store page, as encoding the typed list would, but
// item by item: a list of thousands of objects is never held in memory whole, encoded (the
// Kubernetes API server streams its list responses too). It is protobuf for the clients that
// prefer it and JSON for the others. An item that fails to encode ends the response early,
// which the client sees as a truncated body.
func (s *Server) writeList(w http.ResponseWriter, r *http.Request, res *resource.Resource, lr *store.ListResult) {
	meta := metav1.ListMeta{ResourceVersion: strconv.FormatInt(lr.ResourceVersion, 10), Continue: lr.Continue}
	if answersInProtobuf(r, res) {
		w.Header().Set("Content-Type", mediaProtobuf)
		w.WriteHeader(http.StatusOK)
		bw := bufio.NewWriterSize(w, 64<<10)
		if writeProtoList(bw, res, meta, lr.Items) == nil {
			bw.Flush()
		}
		return
	}
	head, err := json.Marshal(struct {
		metav1.TypeMeta
		metav1.ListMeta `json:"metadata"`
	}{metav1.TypeMeta{Kind: res.ListKind, APIVersion: res.APIVersion()}, meta})
	if err != nil {
		writeError(w, fmt.Errorf("encoding the %s: %w", res.ListKind, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(head[:len(head)-1]) // without its closing brace
	bw.WriteString(`,"items":[`)
	for i, item := range lr.Items {
		data, err := json.Marshal(item)
		if err != nil {
			return
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(data)
	}
	bw.WriteString("]}\n")
	bw.Flush()
}

// writeObject answers with obj, its apiVersion and kind set: in protobuf for the clients that
// prefer it (client-go's typed clients) when its kind has a protobuf encoding, else in JSON.
func (s *Server) writeObject(w http.ResponseWriter, r *http.Request, code int, res *resource.Resource, obj runtime.Object) {
	res.SetTypeMeta(obj)
	if answersInProtobuf(r, res) {
		var buf bytes.Buffer
		if err := s.codec.proto.Encode(obj, &buf); err != nil {
			writeError(w, fmt.Errorf("encoding the %s: %w", res.Kind, err))
			return
		}
		w.Header().Set("Content-Type", mediaProtobuf)
		w.WriteHeader(code)
		w.Write(buf.Bytes())
		return
	}
	writeJSON(w, code, obj)
}

// readBody reads a request body, refusing oversized ones.
func readBody(r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("reading request body: %v", err))
	}
	if len(data) > maxBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("request body exceeds %d bytes", maxBodyBytes))
	}
	return data, nil
}

// decodeObject decodes a request body into a new object of res, checking apiVersion and kind
// when the body sets them.
func decodeObject(res *resource.Resource, data []byte) (resource.Object, error) {
	if len(data) == 0 {
		return nil, apierrors.NewBadRequest("request body is empty; send a JSON object")
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("decoding request body: %v", err))
	}
	if (tm.APIVersion != "" && tm.APIVersion != res.APIVersion()) || (tm.Kind != "" && tm.Kind != res.Kind) {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the body is %s %s, but the request is for %s (apiVersion %s, kind %s)",
			tm.APIVersion, tm.Kind, res, res.APIVersion(), res.Kind))
	}
	obj := res.New()
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("decoding %s: %v", res.Kind, err))
	}
	res.SetTypeMeta(obj)
	return obj, nil
}

// decodeDeleteOptions reads optional DeleteOptions from a DELETE body.
func (c *codec) decodeDeleteOptions(r *http.Request) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if len(data) > 0 && bodyMediaType(r) == mediaProtobuf {
		if err := c.decodeProto(data, opts); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("decoding DeleteOptions from protobuf: %v", err))
		}
	} else if len(data) > 0 {
		if err := json.Unmarshal(data, opts); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("decoding DeleteOptions: %v", err))
		}
	}
	q := r.URL.Query()
	if v := q.Get("propagationPolicy"); v != "" {
		p := metav1.DeletionPropagation(v)
		opts.PropagationPolicy = &p
	}
	if v := q.Get("orphanDependents"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("orphanDependents %q: must be true or false", v))
		}
		opts.OrphanDependents = &b
	}
	if v, ok := q["dryRun"]; ok {
		opts.DryRun = v
	}
	if v := q.Get("gracePeriodSeconds"); v != "" {
		g, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("gracePeriodSeconds %q: must be a number of seconds", v))
		}
		opts.GracePeriodSeconds = &g
	}
	if g := opts.GracePeriodSeconds; g != nil && *g < 0 {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("gracePeriodSeconds %d: must not be negative", *g))
	}
	if opts.OrphanDependents != nil {
		// The deprecated field, as Kubernetes reads it: true is Orphan, false Background.
		if opts.PropagationPolicy != nil {
			return nil, apierrors.NewBadRequest("orphanDependents and propagationPolicy cannot both be set: use propagationPolicy only")
		}
		p := metav1.DeletePropagationBackground
		if *opts.OrphanDependents {
			p = metav1.DeletePropagationOrphan
		}
		opts.PropagationPolicy, opts.OrphanDependents = &p, nil
	}
	if opts.PropagationPolicy != nil {
		switch *opts.PropagationPolicy {
		case metav1.DeletePropagationForeground, metav1.DeletePropagationBackground, metav1.DeletePropagationOrphan:
		default:
			return nil, apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy %q: must be Foreground, Background or Orphan", *opts.PropagationPolicy))
		}
	}
	return opts, nil
}
