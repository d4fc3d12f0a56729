package operator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/bosun-gitops/bosun/internal/memtrim"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// newMetricsRegistry is the registry the API server serves on /metrics: its own request
// metrics plus the Go runtime's (heap, GC, goroutines) and the process's (RSS, CPU, open files).
func newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		memtrim.NewReleasesCounter())
	return reg
}

// validateDebugListen accepts "" (off) or a loopback host:port: the profiles show object
// contents and take no credentials, so they never leave the machine.
func validateDebugListen(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--debug-listen %q: want a loopback host:port, for example 127.0.0.1:6060", addr)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--debug-listen %q: the profiling endpoint takes no credentials, so it listens on loopback only; use 127.0.0.1:PORT or [::1]:PORT", addr)
	}
	return nil
}

// debugServer serves net/http/pprof on a loopback address until ctx ends.
type debugServer struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
}

func listenDebug(addr string, log *slog.Logger) (*debugServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-listen: listening on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return &debugServer{
		ln:  ln,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		log: log.With("component", "debug"),
	}, nil
}

// Addr is the address the endpoint listens on (useful with port 0).
func (d *debugServer) Addr() net.Addr { return d.ln.Addr() }

func (d *debugServer) Run(ctx context.Context) error {
	go func() { <-ctx.Done(); d.srv.Close() }()
	d.log.Info("profiling endpoint listening", "url", "http://"+d.ln.Addr().String()+"/debug/pprof/")
	if err := d.srv.Serve(d.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
