package apiserver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/yaml"
)

// Media types of request bodies. Responses are JSON, which every client accepts, except watch
// streams of Kubernetes' own kinds for clients that prefer protobuf: client-go's generated
// clients send built-in kinds as protobuf and ask for it first.
const (
	mediaJSON          = "application/json"
	mediaProtobuf      = "application/vnd.kubernetes.protobuf"
	mediaProtobufWatch = mediaProtobuf + ";stream=watch"
)

// codec decodes request bodies in JSON or, for Kubernetes' own kinds, protobuf, and encodes
// protobuf watch events.
type codec struct {
	proto *protobuf.Serializer
}

func newCodec() (*codec, error) {
	scheme := runtime.NewScheme()
	for _, gv := range resource.Groups() {
		metav1.AddToGroupVersion(scheme, gv) // DeleteOptions, WatchEvent and friends
	}
	for _, res := range resource.All {
		scheme.AddKnownTypes(res.GroupVersion(), res.New(), res.NewList())
	}
	if err := metav1.AddMetaToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building API scheme: %w", err)
	}
	return &codec{proto: protobuf.NewSerializer(scheme, scheme)}, nil
}

func bodyMediaType(r *http.Request) string {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return mediaJSON
	}
	return mt
}

// decode reads a request body into a new object of res.
func (c *codec) decode(r *http.Request, res *resource.Resource, data []byte) (resource.Object, error) {
	switch mt := bodyMediaType(r); mt {
	case mediaProtobuf:
		obj := res.New()
		if err := c.decodeProto(data, obj); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("decoding %s from protobuf: %v", res.Kind, err))
		}
		res.SetTypeMeta(obj)
		return obj, nil
	case mediaJSON, "":
		return decodeObject(res, data)
	case "application/yaml":
		js, err := yaml.YAMLToJSON(data)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("decoding YAML body: %v", err))
		}
		return decodeObject(res, js)
	default:
		return nil, statusError(http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType,
			fmt.Sprintf("the body of the request was in an unknown format %q - accepted media types include: %s, %s", mt, mediaJSON, mediaProtobuf))
	}
}

func (c *codec) decodeProto(data []byte, into runtime.Object) error {
	out, _, err := c.proto.Decode(data, nil, into)
	if err != nil {
		return err
	}
	if out != into {
		return fmt.Errorf("body holds %T, want %T", out, into)
	}
	return nil
}

// hasProtobuf reports whether objects of res have a protobuf encoding: Kubernetes' own kinds
// do, Bosun's are JSON only.
func hasProtobuf(res *resource.Resource) bool {
	_, ok := res.New().(interface {
		Size() int
		MarshalToSizedBuffer([]byte) (int, error)
	})
	return ok
}

// prefersProtobuf reports whether the Accept header of r lists protobuf (without a Table or
// other conversion) before JSON, as client-go's typed clients do.
func prefersProtobuf(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || params["q"] == "0" {
			continue
		}
		switch mt {
		case mediaProtobuf:
			if _, conversion := params["as"]; !conversion {
				return true
			}
		case mediaJSON, "application/*", "*/*":
			return false
		}
	}
	return false
}

// protoWatchFrame encodes one event of a protobuf watch stream, as client-go reads it: a
// metav1.WatchEvent whose object is in Kubernetes' protobuf envelope, prefixed with its length
// (4 bytes, big-endian).
func (c *codec) protoWatchFrame(eventType watch.EventType, obj runtime.Object) ([]byte, error) {
	var raw bytes.Buffer
	if err := c.proto.Encode(obj, &raw); err != nil {
		return nil, err
	}
	ev := metav1.WatchEvent{Type: string(eventType), Object: runtime.RawExtension{Raw: raw.Bytes()}}
	size := ev.Size()
	frame := make([]byte, 4+size)
	binary.BigEndian.PutUint32(frame, uint32(size))
	if _, err := ev.MarshalToSizedBuffer(frame[4:]); err != nil {
		return nil, err
	}
	return frame, nil
}
