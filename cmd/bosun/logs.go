package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newLogsCmd(g *globalFlags) *cobra.Command {
	var (
		container, namespace string
		follow, previous     bool
		tail                 int64
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
			if container == "" {
				pod, err := cs.CoreV1().Pods(namespace).Get(ctx, args[0], metav1.GetOptions{})
				if err != nil {
					return err
				}
				if len(pod.Spec.Containers) != 1 || len(pod.Spec.InitContainers) != 0 {
					return fmt.Errorf("pod %s has several containers: pass -c with one of %v", pod.Name, containerNames(pod))
				}
				container = pod.Spec.Containers[0].Name
			}
			opts := &corev1.PodLogOptions{Container: container, Follow: follow, Previous: previous}
			if tail >= 0 {
				opts.TailLines = &tail
			}
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
	f.StringVarP(&namespace, "namespace", "n", "default", "namespace")
	f.BoolVarP(&follow, "follow", "f", false, "stream new lines")
	f.BoolVarP(&previous, "previous", "p", false, "the previous run of the container")
	f.Int64Var(&tail, "tail", -1, "only the last N lines")
	return cmd
}

func containerNames(p *corev1.Pod) []string {
	var out []string
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		out = append(out, c.Name)
	}
	return out
}
