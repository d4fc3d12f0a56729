package main

import (
	"fmt"
	"path/filepath"

	"github.com/bosun-gitops/bosun/bootstrap"
	"github.com/spf13/cobra"
)

func newSSHKeyCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "ssh-key",
		Short: "Print the operator's SSH public key, for the machines' authorized_keys",
		Long: `Print the operator's SSH public key (DATA-DIR/ssh/id_ed25519.pub). Add it to
~/.ssh/authorized_keys of root, or of the user with passwordless sudo named in a Machine's
spec.user, on every machine the operator bootstraps. The key is created if it does not exist yet.`,
		Example: `  bosun ssh-key --data-dir /var/lib/bosun | ssh root@192.0.2.10 'cat >> ~/.ssh/authorized_keys'`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			signer, err := bootstrap.LoadOrCreateIdentity(filepath.Join(dataDir, bootstrap.IdentityFile))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), bootstrap.AuthorizedKey(signer))
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "/var/lib/bosun", "the operator's data directory")
	return cmd
}
