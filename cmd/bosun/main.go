// Command bosun is Bosun's one binary: the operator, the node agent and the CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a specific exit code (for example 1 from `bosun validate` on an invalid repo)
// out of a command without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	var ee exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// globalFlags are accepted by every command.
type globalFlags struct {
	kubeconfig string
	// contextNamespace is the namespace of the kubeconfig's current context ("default" when it
	// names none), set when the kubeconfig is loaded.
	contextNamespace string
}

// namespace returns the namespace a command works in: the -n flag's, else the kubeconfig
// context's, as kubectl does. Call it after the client is made.
func (g *globalFlags) namespace(flag string) string {
	switch {
	case flag != "":
		return flag
	case g.contextNamespace != "":
		return g.contextNamespace
	}
	return metav1.NamespaceDefault
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "bosun",
		Short:         "Bosun: a GitOps operator for fleets of VM and bare-metal machines",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.kubeconfig, "kubeconfig", "",
		"kubeconfig file (default $BOSUN_KUBECONFIG, then $KUBECONFIG, then .bosun/admin.kubeconfig)")
	root.AddCommand(
		newVersionCmd(),
		newValidateCmd(), newInitCmd(),
		newGetCmd(g),
		newDescribeCmd(g),
		newStatusCmd(g),
		newSyncCmd(g),
		newEventsCmd(g),
		newOperatorCmd(),
		newUpCmd(),
		newAgentCmd(),
		newTokenCmd(g),
		newLogsCmd(g),
		newPlanCmd(g),
		newSSHKeyCmd(),
	)
	return root
}
