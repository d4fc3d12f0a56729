package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newLogsCmd(g *globalFlags) *cobra.Command {
	var (
		container, namespace string
		follow, previous     bool
		tail, limitBytes     int64
	)
	cmd := &cobra.Command{
		Use:   "logs POD",
		Short: "Print a container's log (kubectl logs semantics)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, _, err := g.clientset()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			namespace = g.namespace(namespace)
			if container == "" {
				pod, err := cs.CoreV1().Pods(namespace).Get(ctx, args[0], metav1.GetOptions{})
				if err != nil {
					return err
				}
				container = defaultContainer(pod, cmd.ErrOrStderr())
				if container == "" {
					return fmt.Errorf("pod %s has no containers", pod.Name)
				}
			}
			opts := podLogOptions(container, follow, previous, tail, limitBytes)
			rc, err := cs.CoreV1().Pods(namespace).GetLogs(args[0], opts).Stream(ctx)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(cmd.OutOrStdout(), rc)
			if ctx.Err() != nil {
				return nil // Ctrl-C ends a followed log
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&container, "container", "c", "", "container name (optional for single-container pods)")
	f.StringVarP(&namespace, "namespace", "n", "", "namespace (default: the kubeconfig context's, else default)")
	f.BoolVarP(&follow, "follow", "f", false, "stream new lines")
	f.BoolVarP(&previous, "previous", "p", false, "the previous run of the container")
	f.Int64Var(&tail, "tail", -1, "only the last N lines")
	f.Int64Var(&limitBytes, "limit-bytes", 0, "stop after N bytes (0: no limit)")
	return cmd
}

// podLogOptions are the API's options for the flags: a negative tail and a limit of 0 are unset.
func podLogOptions(container string, follow, previous bool, tail, limitBytes int64) *corev1.PodLogOptions {
	opts := &corev1.PodLogOptions{Container: container, Follow: follow, Previous: previous}
	if tail >= 0 {
		opts.TailLines = &tail
	}
	if limitBytes > 0 {
		opts.LimitBytes = &limitBytes
	}
	return opts
}

// defaultContainerAnnotation names the container that commands pick when none is given.
const defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// defaultContainer returns the container kubectl logs picks without -c: the one the pod's
// default-container annotation names, else its first app container; with several containers it
// says which on w, as kubectl does.
func defaultContainer(p *corev1.Pod, w io.Writer) string {
	names := make([]string, 0, len(p.Spec.Containers)+len(p.Spec.InitContainers))
	var chosen string
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
		if c.Name == p.Annotations[defaultContainerAnnotation] {
			chosen = c.Name
		}
	}
	for _, c := range p.Spec.InitContainers {
		names = append(names, c.Name+" (init)")
		if c.Name == p.Annotations[defaultContainerAnnotation] {
			chosen = c.Name
		}
	}
	if chosen == "" && len(p.Spec.Containers) > 0 {
		chosen = p.Spec.Containers[0].Name
	}
	if len(names) > 1 && chosen != "" {
		fmt.Fprintf(w, "Defaulted container %q out of: %s\n", chosen, strings.Join(names, ", "))
	}
	return chosen
}
