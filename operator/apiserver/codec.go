package apiserver

import (
	"fmt"
	"mime"
	"net/http"

	"github.com/bosun-gitops/bosun/internal/resource"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"sigs.k8s.io/yaml"
)

// Media types of request bodies. Responses are always JSON, which every client accepts;
// client-go's generated clients send built-in kinds as protobuf.
const (
	mediaJSON     = "application/json"
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
)

// codec decodes request bodies in JSON or, for Kubernetes' own kinds, protobuf.
type codec struct {
	proto runtime.Decoder
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
