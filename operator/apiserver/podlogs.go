package apiserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

// nodeProxy reaches agents' HTTPS endpoints with the operator's client certificate. It accepts an
// agent's serving certificate only when it is for the node it dials (CN system:node:<name>, and
// the node's InternalIP as a SAN) and signed by the node serving CA — or, for serving
// certificates issued before the node serving CA existed, by the cluster CA (see verifyNode).
type nodeProxy struct {
	client    *http.Client
	tls       *tls.Config
	dialer    *net.Dialer
	clusterCA *x509.Certificate
	log       *slog.Logger
}

// proxyNodeKey is the context key of the name of the node a proxy request is for.
type proxyNodeKey struct{}

// newNodeProxy issues the operator's client certificate (in memory, a new one each start).
func newNodeProxy(clusterCA, nodeCA *pki.CA, log *slog.Logger) (*nodeProxy, error) {
	certPEM, keyPEM, err := clusterCA.IssueClient(OperatorClientUser, nil, pki.CertValidity)
	if err != nil {
		return nil, fmt.Errorf("issuing the operator's client certificate for agents: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the operator's client certificate: %w", err)
	}
	roots := nodeCA.Pool()
	roots.AddCert(clusterCA.Cert) // serving certificates issued before the node serving CA
	p := &nodeProxy{
		tls: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			RootCAs:      roots,
			Certificates: []tls.Certificate{pair},
		},
		dialer:    &net.Dialer{Timeout: 10 * time.Second},
		clusterCA: clusterCA.Cert,
		log:       log,
	}
	tr := &http.Transport{
		DialTLSContext:        p.dialNode,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		// Each connection is verified for one node (dialNode); a kept-alive one could be handed
		// to a request for another node that took over the same address.
		DisableKeepAlives: true,
	}
	p.client = &http.Client{Transport: tr}
	return p, nil
}

// get requests url from node's agent.
func (p *nodeProxy) get(ctx context.Context, node, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(context.WithValue(ctx, proxyNodeKey{}, node), http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return p.client.Do(req)
}

// dialNode opens a TLS connection to the agent of the node named in ctx, verifying that it is
// that node's.
func (p *nodeProxy) dialNode(ctx context.Context, network, addr string) (net.Conn, error) {
	node, _ := ctx.Value(proxyNodeKey{}).(string)
	if node == "" {
		return nil, errors.New("dialing an agent without knowing its node") // a bug: get sets it
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg := p.tls.Clone()
	cfg.ServerName = host
	cfg.VerifyConnection = func(cs tls.ConnectionState) error { return p.verifyNode(cs, node) }
	d := &tls.Dialer{NetDialer: p.dialer, Config: cfg}
	return d.DialContext(ctx, network, addr)
}

// verifyNode runs after the standard verification (a chain to one of the two CAs, the dialed IP
// as a SAN, server auth): the certificate must be the node's own, CN=system:node:<node>. The
// cluster CA signed nodes' serving certificates (with that CN) before the node serving CA existed;
// they are accepted until their agents replace them, which each agent does when it starts.
func (p *nodeProxy) verifyNode(cs tls.ConnectionState, node string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the agent presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if want := nodeUserPrefix + node; leaf.Subject.CommonName != want {
		return fmt.Errorf("the agent presented a certificate for %q, not %q: is another machine using node %s's address?",
			leaf.Subject.CommonName, want, node)
	}
	for _, chain := range cs.VerifiedChains {
		if len(chain) > 0 && chain[len(chain)-1].Equal(p.clusterCA) {
			p.log.Warn("the node's agent serves logs with a certificate from the cluster CA; restart the agent to replace it with one from the node serving CA",
				"node", node)
			break
		}
	}
	return nil
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
	agentQuery, limit, err := logOptions(q)
	if err != nil {
		writeError(w, err)
		return
	}
	target, err := s.nodeLogURL(ctx, pod, container, agentQuery)
	if err != nil {
		writeError(w, err)
		return
	}
	resp, err := s.nodes.get(ctx, pod.Spec.NodeName, target)
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
	var body io.Reader = resp.Body
	if limit > 0 {
		body = io.LimitReader(body, limit) // a followed log ends there too, as in Kubernetes
	}
	streamCopy(w, body)
}

// noLineTimes explains why the log options that need a time per line are refused.
const noLineTimes = "Bosun's container logs are the containers' output as written, with no time per line, so they cannot be %s; use tailLines (bosun logs --tail N) instead"

// logOptions reads the PodLogOptions of a log request: the query for the agent (follow,
// previous, tailLines) and limitBytes, which the operator applies itself (0: no limit).
// timestamps=true, sinceSeconds and sinceTime need a time for each line, which Bosun's log files
// do not record: they are refused rather than ignored, so that a client never takes the whole log
// for the part it asked for.
func logOptions(q url.Values) (url.Values, int64, error) {
	agent := url.Values{}
	for _, k := range []string{"follow", "previous"} {
		if v := q.Get(k); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, 0, apierrors.NewBadRequest(fmt.Sprintf("%s=%q: not a boolean", k, v))
			}
			agent.Set(k, strconv.FormatBool(b))
		}
	}
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, 0, apierrors.NewBadRequest(fmt.Sprintf("tailLines=%q: must be a number >= 0", v))
		}
		agent.Set("tailLines", strconv.FormatInt(n, 10))
	}
	if v := q.Get("timestamps"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, 0, apierrors.NewBadRequest(fmt.Sprintf("timestamps=%q: not a boolean", v))
		}
		if b {
			return nil, 0, apierrors.NewBadRequest("timestamps=true: " + fmt.Sprintf(noLineTimes, "printed with timestamps"))
		}
	}
	for _, k := range []string{"sinceSeconds", "sinceTime"} {
		if q.Get(k) != "" {
			return nil, 0, apierrors.NewBadRequest(k + ": " + fmt.Sprintf(noLineTimes, "cut by time"))
		}
	}
	v := q.Get("limitBytes")
	if v == "" {
		return agent, 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return nil, 0, apierrors.NewBadRequest(fmt.Sprintf("limitBytes=%q: must be a number greater than 0", v))
	}
	return agent, n, nil
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

// nodeLogURL builds the agent URL for the pod's container log: query (from logOptions) plus
// the pod's UID.
func (s *Server) nodeLogURL(ctx context.Context, pod *corev1.Pod, container string, query url.Values) (string, error) {
	obj, err := s.cfg.Store.Get(ctx, resource.Nodes, "", pod.Spec.NodeName)
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
	query.Set("podUID", string(pod.UID))
	u := url.URL{
		Scheme:   "https",
		Host:     net.JoinHostPort(ip, strconv.Itoa(int(port))),
		Path:     "/containerLogs/" + url.PathEscape(pod.Namespace) + "/" + url.PathEscape(pod.Name) + "/" + url.PathEscape(container),
		RawQuery: query.Encode(),
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
