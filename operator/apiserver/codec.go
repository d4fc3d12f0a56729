package apiserver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/bosun-gitops/bosun/internal/resource"
	"google.golang.org/protobuf/encoding/protowire"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/yaml"
)

// Media types of request and response bodies. Responses are JSON, which every client accepts,
// or, for Kubernetes' own kinds, protobuf to the clients that prefer it: client-go's generated
// clients send built-in kinds as protobuf and ask for it first. Errors (metav1.Status) are JSON,
// which client-go reads whatever it asked for.
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

// answersInProtobuf reports whether the answer to r, about objects of res, is protobuf: res has
// a protobuf encoding and r prefers it.
func answersInProtobuf(r *http.Request, res *resource.Resource) bool {
	return res.HasProtobuf() && prefersProtobuf(r)
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

// writeProtoList writes res's <Kind>List holding meta and items as a protobuf response: the
// prefix "k8s\x00", then a runtime.Unknown naming the list's kind whose raw field is the list:
// its metadata (field 1), then each item (field 2). The items are encoded one at a time, after
// their sizes are summed for the length of the raw field.
func writeProtoList(w io.Writer, res *resource.Resource, meta metav1.ListMeta, items []resource.Object) error {
	metaBytes, err := meta.Marshal()
	if err != nil {
		return err
	}
	sizes := make([]int, len(items))
	listSize := 1 + protowire.SizeBytes(len(metaBytes))
	for i, item := range items {
		pb, ok := item.(runtime.ProtobufReverseMarshaller)
		if !ok {
			return fmt.Errorf("%T has no protobuf encoding", item)
		}
		sizes[i] = pb.Size()
		listSize += 1 + protowire.SizeBytes(sizes[i])
	}
	typeMeta, err := (&runtime.TypeMeta{APIVersion: res.APIVersion(), Kind: res.ListKind}).Marshal()
	if err != nil {
		return err
	}
	buf := []byte("k8s\x00")
	buf = protowire.AppendTag(buf, 1, protowire.BytesType) // Unknown.typeMeta
	buf = protowire.AppendBytes(buf, typeMeta)
	buf = protowire.AppendTag(buf, 2, protowire.BytesType) // Unknown.raw: the list
	buf = protowire.AppendVarint(buf, uint64(listSize))
	buf = protowire.AppendTag(buf, 1, protowire.BytesType) // list.metadata
	buf = protowire.AppendBytes(buf, metaBytes)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	for i, item := range items {
		buf = protowire.AppendTag(buf[:0], 2, protowire.BytesType) // list.items
		buf = protowire.AppendVarint(buf, uint64(sizes[i]))
		n := len(buf)
		buf = slices.Grow(buf, sizes[i])[:n+sizes[i]]
		if written, err := item.(runtime.ProtobufReverseMarshaller).MarshalToSizedBuffer(buf[n:]); err != nil {
			return err
		} else if written != sizes[i] {
			return fmt.Errorf("%T encoded in %d bytes, its Size said %d", item, written, sizes[i])
		}
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	// Unknown.contentEncoding and Unknown.contentType, empty, as the protobuf serializer writes them.
	_, err = w.Write([]byte{3<<3 | 2, 0, 4<<3 | 2, 0})
	return err
}
