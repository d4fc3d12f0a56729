package pods

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGRPCProbe probes a real gRPC server that implements the standard health service, and one
// that does not, the way the kubelet's gRPC prober would.
func TestGRPCProbe(t *testing.T) {
	serve := func(register func(*grpc.Server)) string {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		register(srv)
		go func() { _ = srv.Serve(lis) }()
		t.Cleanup(srv.Stop)
		return lis.Addr().String()
	}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("db", healthpb.HealthCheckResponse_NOT_SERVING)
	withHealth := serve(func(s *grpc.Server) { healthpb.RegisterHealthServer(s, hs) })
	without := serve(func(*grpc.Server) {})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name, addr, service string
		wantErr             string // "" = success
	}{
		{"serving", withHealth, "", ""},
		{"not serving", withHealth, "db", `service unhealthy (responded with "NOT_SERVING")`},
		{"unknown service", withHealth, "nope", "NotFound"},
		{"no health service", without, "", "does not implement the grpc.health.v1.Health service"},
		{"nothing listening", nobody, "", "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := grpcProbe(context.Background(), tt.addr, tt.service, 5*time.Second)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("probe failed: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("probe succeeded, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	// A status change is seen by the next probe.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if err := grpcProbe(context.Background(), withHealth, "", 5*time.Second); err == nil {
		t.Fatal("probe succeeded after the server reported NOT_SERVING")
	}
}
