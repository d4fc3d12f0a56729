package images

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteBusybox(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("skipping: %s missing (apt-get install busybox-static)", BusyboxPath)
	}
	var a, b bytes.Buffer
	if err := WriteBusybox(&a, "bosun.local/web:v1"); err != nil {
		t.Fatal(err)
	}
	if err := WriteBusybox(&b, "bosun.local/web:v1"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("archive is not reproducible")
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[h.Name] = data
	}
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(index.Manifests))
	}
	got := map[string]string{
		"name": index.Manifests[0].Annotations[AnnotationImageName],
		"tag":  index.Manifests[0].Annotations[annotationRefName],
	}
	if diff := cmp.Diff(map[string]string{"name": "bosun.local/web:v1", "tag": "v1"}, got); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) != 7 { // oci-layout, index.json, blobs/, blobs/sha256/, 3 blobs
		t.Errorf("archive entries %v", names)
	}
	if _, ok := files["blobs/sha256/"+index.Manifests[0].Digest[len("sha256:"):]]; !ok {
		t.Errorf("manifest blob missing: %v", names)
	}
}
