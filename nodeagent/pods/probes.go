package pods

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type probeKind string

const (
	probeStartup   probeKind = "Startup"
	probeLiveness  probeKind = "Liveness"
	probeReadiness probeKind = "Readiness"
)

// probeState counts consecutive results of one probe of one container run.
type probeState struct {
	next      time.Time
	successes int32
	failures  int32
	ok        bool // the probe's current verdict
}

// probeSettings applies Kubernetes' defaults: period 10 s, timeout 1 s, success 1, failure 3.
func probeSettings(p *corev1.Probe) (period, timeout time.Duration, success, failure int32) {
	period, timeout, success, failure = 10*time.Second, time.Second, 1, 3
	if p.PeriodSeconds > 0 {
		period = time.Duration(p.PeriodSeconds) * time.Second
	}
	if p.TimeoutSeconds > 0 {
		timeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	if p.SuccessThreshold > 0 {
		success = p.SuccessThreshold
	}
	if p.FailureThreshold > 0 {
		failure = p.FailureThreshold
	}
	return period, timeout, success, failure
}

// probeResult says what a due probe concluded.
type probeResult int

const (
	probeNotDue probeResult = iota
	probeUnchanged
	probeSucceeded // reached the success threshold
	probeFailed    // reached the failure threshold
)

// probeIfDue runs the probe when it is due and updates its counters.
func (w *podWorker) probeIfDue(ctx context.Context, pod *corev1.Pod, c *corev1.Container, r *ctrRun, kind probeKind, p *corev1.Probe) probeResult {
	now := w.m.clock.Now()
	st := r.probes[kind]
	if st == nil {
		st = &probeState{next: r.status.StartedAt.Add(time.Duration(p.InitialDelaySeconds) * time.Second)}
		if st.next.IsZero() || r.status.StartedAt.IsZero() {
			st.next = now.Add(time.Duration(p.InitialDelaySeconds) * time.Second)
		}
		r.probes[kind] = st
	}
	period, timeout, successThreshold, failureThreshold := probeSettings(p)
	if now.Before(st.next) {
		w.wakeAt(st.next)
		return probeNotDue
	}
	err := w.runProbe(ctx, pod, c, r, p, timeout)
	st.next = now.Add(period)
	w.wakeAt(st.next)
	if err == nil {
		st.failures = 0
		st.successes++
		if st.successes >= successThreshold && !st.ok {
			st.ok = true
			return probeSucceeded
		}
		return probeUnchanged
	}
	st.successes = 0
	st.failures++
	w.event(pod, corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %v", kind, err)
	if st.failures >= failureThreshold {
		st.ok = false
		st.failures = 0
		return probeFailed
	}
	return probeUnchanged
}

// runProbe performs one exec, HTTP GET or TCP probe; nil means success.
func (w *podWorker) runProbe(ctx context.Context, pod *corev1.Pod, c *corev1.Container, r *ctrRun, p *corev1.Probe, timeout time.Duration) error {
	switch {
	case p.Exec != nil:
		code, out, err := w.m.cfg.Runtime.Exec(ctx, r.id, p.Exec.Command, timeout)
		if err != nil {
			return fmt.Errorf("exec: %w", err)
		}
		if code != 0 {
			return fmt.Errorf("command %q exited with %d: %s", strings.Join(p.Exec.Command, " "), code, strings.TrimSpace(string(out)))
		}
		return nil
	case p.HTTPGet != nil:
		return httpGet(ctx, c, p.HTTPGet, w.podIP, timeout)
	case p.TCPSocket != nil:
		port, err := resolvePort(c, p.TCPSocket.Port)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = w.podIP
		}
		d := net.Dialer{Timeout: timeout}
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	case p.GRPC != nil:
		service := ""
		if p.GRPC.Service != nil {
			service = *p.GRPC.Service
		}
		return grpcProbe(ctx, net.JoinHostPort(w.podIP, strconv.Itoa(int(p.GRPC.Port))), service, timeout)
	}
	return nil
}

// grpcProbe asks the gRPC Health Checking Protocol (grpc.health.v1.Health/Check) at addr about
// service, over plain text like the kubelet's prober; only SERVING succeeds.
func grpcProbe(ctx context.Context, addr, service string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent("kube-probe/bosun"))
	if err != nil {
		return fmt.Errorf("gRPC probe of %s: %w", addr, err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		switch status.Code(err) {
		case codes.Unimplemented:
			return fmt.Errorf("gRPC probe of %s: the server does not implement the grpc.health.v1.Health service", addr)
		case codes.DeadlineExceeded:
			return fmt.Errorf("gRPC probe of %s: timeout: health rpc did not complete within %v", addr, timeout)
		}
		return fmt.Errorf("gRPC probe of %s: %w", addr, err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("gRPC probe of %s: service unhealthy (responded with %q)", addr, resp.GetStatus())
	}
	return nil
}

// httpGet succeeds on a status from 200 to 399, like the kubelet's prober.
func httpGet(ctx context.Context, c *corev1.Container, g *corev1.HTTPGetAction, podIP string, timeout time.Duration) error {
	port, err := resolvePort(c, g.Port)
	if err != nil {
		return err
	}
	host := g.Host
	if host == "" {
		host = podIP
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	if p, q, ok := strings.Cut(path, "?"); ok {
		u.Path, u.RawQuery = p, q
	} else {
		u.Path = path
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/bosun")
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet does not verify probe certificates either
		DisableKeepAlives: true,
		Proxy:             nil,
	}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

// resolvePort turns a number or a named container port into a port number.
func resolvePort(c *corev1.Container, p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, p.StrVal)
}

// runProbes evaluates the due probes of the running app containers: a startup probe gates the
// others, a failed startup or liveness probe restarts the container, readiness sets Ready.
func (w *podWorker) runProbes(ctx context.Context, pod *corev1.Pod) {
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		r := w.ctrs[c.Name]
		if r == nil || r.id == "" || r.status.State != StateRunning {
			continue
		}
		if c.StartupProbe != nil && !r.started {
			switch w.probeIfDue(ctx, pod, c, r, probeStartup, c.StartupProbe) {
			case probeSucceeded:
				r.started = true
			case probeFailed:
				w.killContainer(ctx, pod, r, gracePeriod(pod), fmt.Sprintf("Container %s failed startup probe, will be restarted", c.Name))
				continue
			}
			if !r.started {
				continue
			}
		}
		r.started = true
		if c.LivenessProbe != nil {
			if w.probeIfDue(ctx, pod, c, r, probeLiveness, c.LivenessProbe) == probeFailed {
				w.killContainer(ctx, pod, r, gracePeriod(pod), fmt.Sprintf("Container %s failed liveness probe, will be restarted", c.Name))
				continue
			}
		}
		if c.ReadinessProbe == nil {
			r.ready = true
			continue
		}
		w.probeIfDue(ctx, pod, c, r, probeReadiness, c.ReadinessProbe)
		r.ready = r.probes[probeReadiness].ok
	}
}
