package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bosun-gitops/bosun/internal/resource"
	"google.golang.org/protobuf/encoding/protowire"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Stored values have the form kube-apiserver gives them, so that tools which read Kubernetes'
// etcd data (auger, etcdhelper) read Bosun's too:
//
//   - Kinds with a protobuf encoding (all of k8s.io/api's) are stored as the four bytes "k8s\x00"
//     followed by a runtime.Unknown message: apiVersion and kind, then the object's own protobuf
//     encoding in its raw field.
//   - Kinds without one (Bosun's own, bosun.dev/v1alpha1) are stored as JSON with apiVersion and
//     kind, as kube-apiserver stores custom resources.
//
// Protobuf is what keeps the store's hot paths cheap: a pod encodes and decodes about 4 times
// faster than in JSON, and its value is half the size in etcd (see BenchmarkCodec). Decoding reads either form, so values written as JSON by earlier versions of
// Bosun stay readable and become protobuf at their next write.
var protobufPrefix = []byte("k8s\x00")

// The media types values can be written in (Options.MediaType), named as kube-apiserver's
// --storage-media-type names them.
const (
	MediaTypeProtobuf = "application/vnd.kubernetes.protobuf"
	MediaTypeJSON     = "application/json"
)

// CheckMediaType returns an error unless mediaType is one values can be written in.
func CheckMediaType(mediaType string) error {
	if mediaType != MediaTypeProtobuf && mediaType != MediaTypeJSON {
		return fmt.Errorf("storage media type %q: must be %s or %s", mediaType, MediaTypeProtobuf, MediaTypeJSON)
	}
	return nil
}

// marshal returns the stored form of obj in mediaType, whose TypeMeta must be set. Kinds
// without a protobuf encoding are JSON whatever mediaType says.
func marshal(obj resource.Object, mediaType string) ([]byte, error) {
	pb, ok := obj.(resource.ProtobufObject)
	if !ok || mediaType == MediaTypeJSON {
		return json.Marshal(obj)
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	apiVersion, kind := gvk.ToAPIVersionAndKind()
	unk := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: apiVersion, Kind: kind}}
	size := uint64(pb.Size())
	// The Unknown's own fields, then the raw field: one tag byte, its length, the object.
	data := make([]byte, len(protobufPrefix)+unk.Size()+1+protowire.SizeVarint(size)+int(size))
	copy(data, protobufPrefix)
	n, err := unk.NestedMarshalTo(data[len(protobufPrefix):], pb, size)
	if err != nil {
		return nil, err
	}
	return data[:len(protobufPrefix)+n], nil
}

// unmarshal decodes a stored value, in either form, into obj.
func unmarshal(data []byte, obj resource.Object) error {
	raw, isProtobuf, err := protobufRaw(data)
	if err != nil {
		return err
	}
	if !isProtobuf {
		return json.Unmarshal(data, obj)
	}
	pb, ok := obj.(resource.ProtobufObject)
	if !ok {
		return fmt.Errorf("stored value is protobuf, but %T has no protobuf encoding", obj)
	}
	return pb.Unmarshal(raw)
}

// protobufRaw returns the object's encoding inside a protobuf stored value, and whether data is
// one; it does not copy.
func protobufRaw(data []byte) (raw []byte, isProtobuf bool, err error) {
	if !bytes.HasPrefix(data, protobufPrefix) {
		return nil, false, nil
	}
	raw, err = protobufField(data[len(protobufPrefix):], 2) // runtime.Unknown's raw
	return raw, true, err
}

// protobufField returns the bytes of the last length-delimited field number num of message msg,
// or nil if it has none.
func protobufField(msg []byte, num protowire.Number) ([]byte, error) {
	var out []byte
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return nil, errCorrupt
		}
		msg = msg[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(msg)
			if l < 0 {
				return nil, errCorrupt
			}
			out, msg = v, msg[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, msg)
		if l < 0 {
			return nil, errCorrupt
		}
		msg = msg[l:]
	}
	return out, nil
}

var errCorrupt = errors.New("stored value is not valid protobuf")

// decodeMetadata decodes only the metadata of a stored value, in either form: for callers that
// need the names, annotations and resourceVersions of many objects (Git sync's inventory), it
// costs a fraction of a full decode.
func decodeMetadata(data []byte, meta *metav1.ObjectMeta) error {
	raw, isProtobuf, err := protobufRaw(data)
	if err != nil {
		return err
	}
	if !isProtobuf {
		return decodeJSONMetadata(data, meta)
	}
	// metadata is field 1 of every k8s.io/api object.
	m, err := protobufField(raw, 1)
	if err != nil {
		return err
	}
	return meta.Unmarshal(m)
}

// decodeJSONMetadata decodes the metadata of a JSON value. Objects are stored with kind,
// apiVersion and metadata first (typed objects marshal in that order), so it reads tokens up to
// "metadata" and stops there: the spec and status, most of the bytes, are not even scanned.
func decodeJSONMetadata(data []byte, meta *metav1.ObjectMeta) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("stored value is not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if key, _ := tok.(string); key == "metadata" {
			return dec.Decode(meta)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil // no metadata
}

// Encode returns the value a store with default options writes for obj, which it does not
// modify: for benchmarks whose ceiling writes the same values straight to etcd.
func Encode(res *resource.Resource, obj resource.Object) ([]byte, error) {
	obj = copyObject(obj)
	res.SetTypeMeta(obj)
	obj.SetResourceVersion("")
	return marshal(obj, MediaTypeProtobuf)
}
