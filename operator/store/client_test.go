package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/internal/resource"
	"github.com/bosun-gitops/bosun/operator/store"
	"github.com/bosun-gitops/bosun/operator/store/storetest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

func TestClientConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     store.ClientConfig
		wantErr string
	}{
		{"ok", store.ClientConfig{Endpoints: []string{"https://10.0.0.1:2379"}, CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}, ""},
		{"no endpoints", store.ClientConfig{}, "none given"},
		{"bad scheme", store.ClientConfig{Endpoints: []string{"ftp://x:1"}}, "scheme must be"},
		{"no host", store.ClientConfig{Endpoints: []string{"http://"}}, "no host"},
		{"cert without key", store.ClientConfig{Endpoints: []string{"https://x:1"}, CertFile: "c.pem"}, "CertFile and KeyFile"},
		{"negative timeout", store.ClientConfig{Endpoints: []string{"http://x:1"}, DialTimeout: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestConnectAndCompactor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := storetest.NewEtcd(t)
	client, err := store.Connect(ctx, store.ClientConfig{Endpoints: e.Endpoints(), Logger: storetest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s := store.New(client, store.Options{Logger: storetest.Logger(t)})
	first, err := s.Create(ctx, resource.Pods, pod("a", "p0", ""))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 10; i++ {
		p := pod("a", "p0", "")
		p.Spec.NodeName = strings.Repeat("n", i)
		if _, err := s.Update(ctx, resource.Pods, p); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.RunCompactor(ctx, 20*time.Millisecond, 2) }()
	// Wait until the old revision is compacted: a watch from it gets 410.
	for {
		ch, err := s.Watch(ctx, resource.Pods, "", store.WatchOptions{ResourceVersion: rvOf(t, first)})
		if err != nil {
			t.Fatal(err)
		}
		e := next(t, ch)
		if e.Err != nil && apierrors.IsResourceExpired(e.Err) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("RunCompactor returned %v", err)
	}
	if _, err := store.Connect(context.Background(), store.ClientConfig{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: 500 * time.Millisecond}); err == nil {
		t.Errorf("Connect to a closed port succeeded")
	}
}
