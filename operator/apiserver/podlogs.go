package apiserver

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/internal/pki"
	"github.com/bosun-gitops/bosun/internal/resource"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OperatorClientUser is the identity the operator presents to agents' HTTPS endpoints (the logs
// proxy); agents accept only this CN, signed by the cluster CA.
const OperatorClientUser = "system:bosun-operator"

// nodeProxy reaches agents' HTTPS endpoints with the operator's client certificate, verifying
// their serving certificates against the cluster CA.
type nodeProxy struct {
	client *http.Client
}

// newNodeProxy issues the operator's client certificate (in memory, a new one each start).
func newNodeProxy(ca *pki.CA) (*nodeProxy, error) {
	certPEM, keyPEM, err := ca.IssueClient(OperatorClientUser, nil, pki.CertValidity)
	if err != nil {
		return nil, fmt.Errorf("issuing the operator's client certificate for agents: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the operator's client certificate: %w", err)
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			RootCAs:      ca.Pool(),
			Certificates: []tls.Certificate{pair},
		},
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}
	return &nodeProxy{client: &http.Client{Transport: tr}}, nil
}

// servePodLog is GET /api/v1/namespaces/{ns}/pods/{name}/log: it finds the pod's node and
// streams the container's log from the agent's endpoint
// (https://<InternalIP>:<daemonEndpoints.kubeletEndpoint.port>/containerLogs/{ns}/{pod}/{container}).
// Nodes may not read logs, not even of their own pods, through the API.
func (s *Server) servePodLog(w http.ResponseWriter, r *http.Request, ri *requestInfo, u *userInfo) {
	if _, isNode := u.nodeName(); isNode && !u.inGroup(groupMasters) {
		writeError(w, forbidden(u, ri))
		return
	}
	if ri.Verb != verbGet {
		writeError(w, apierrors.NewMethodNotSupported(ri.Resource.GroupResource(), ri.Verb))
		return
	}
	ctx := r.Context()
	obj, err := s.cfg.Store.Get(ctx, resource.Pods, ri.Namespace, ri.Name)
	if err != nil {
		writeError(w, err)
		return
	}
	pod := obj.(*corev1.Pod)
	q := r.URL.Query()
	container, err := logContainer(pod, q.Get("container"))
	if err != nil {
		writeError(w, err)
		return
	}
	if pod.Spec.NodeName == "" {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("pod %s is not scheduled to a node yet", pod.Name)))
		return
	}
	target, err := s.nodeLogURL(r, pod, container)
	if err != nil {
		writeError(w, err)
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		writeError(w, apierrors.NewInternalError(err))
		return
	}
	resp, err := s.nodes.client.Do(req)
	if err != nil {
		writeError(w, apierrors.NewServiceUnavailable(fmt.Sprintf("reading logs from node %s: %v", pod.Spec.NodeName, err)))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		writeError(w, statusError(int32(resp.StatusCode), metav1.StatusReasonUnknown, strings.TrimSpace(string(msg))))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	streamCopy(w, resp.Body)
}

// logContainer picks the container as kubectl expects: the named one, or the only one.
func logContainer(pod *corev1.Pod, name string) (string, error) {
	var names []string
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if name != "" && c.Name == name {
			return name, nil
		}
		names = append(names, c.Name)
	}
	if name != "" {
		return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
	}
	if len(pod.Spec.Containers) == 1 && len(pod.Spec.InitContainers) == 0 {
		return pod.Spec.Containers[0].Name, nil
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s, choose one of: [%s]",
		pod.Name, strings.Join(names, " ")))
}

// nodeLogURL builds the agent URL for the pod's container log, passing through the log options.
func (s *Server) nodeLogURL(r *http.Request, pod *corev1.Pod, container string) (string, error) {
	obj, err := s.cfg.Store.Get(r.Context(), resource.Nodes, "", pod.Spec.NodeName)
	if err != nil {
		return "", err
	}
	node := obj.(*corev1.Node)
	var ip string
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			ip = a.Address
			break
		}
	}
	port := node.Status.DaemonEndpoints.KubeletEndpoint.Port
	if ip == "" || port == 0 {
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf(
			"node %s publishes no log endpoint (InternalIP and daemonEndpoints.kubeletEndpoint.port): is its agent running?", node.Name))
	}
	in := r.URL.Query()
	out := url.Values{}
	for _, k := range []string{"follow", "previous", "timestamps"} {
		if v := in.Get(k); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return "", apierrors.NewBadRequest(fmt.Sprintf("%s=%q: not a boolean", k, v))
			}
			out.Set(k, strconv.FormatBool(b))
		}
	}
	if v := in.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return "", apierrors.NewBadRequest(fmt.Sprintf("tailLines=%q: must be a number >= 0", v))
		}
		out.Set("tailLines", strconv.FormatInt(n, 10))
	}
	out.Set("podUID", string(pod.UID))
	u := url.URL{
		Scheme:   "https",
		Host:     net.JoinHostPort(ip, strconv.Itoa(int(port))),
		Path:     "/containerLogs/" + url.PathEscape(pod.Namespace) + "/" + url.PathEscape(pod.Name) + "/" + url.PathEscape(container),
		RawQuery: out.Encode(),
	}
	return u.String(), nil
}

// streamCopy copies a (possibly endless) log stream, flushing after every read so that followed
// lines arrive at once; it ends when either side goes away.
func streamCopy(w http.ResponseWriter, r io.Reader) {
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			return // io.EOF: the agent ended the stream; anything else: it went away
		}
	}
}
