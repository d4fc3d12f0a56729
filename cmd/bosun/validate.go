package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	repolayout "github.com/bosun-gitops/bosun/repo-layout"
)

func newValidateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check a Bosun repository: exit 0 if valid, 1 with every error as FILE:LINE: field: reason",
		Long: `Load the repository work tree at DIR (default ".") exactly as the operator loads a commit:
strict decoding, defaults and validation. Every error is printed on stderr as
"FILE:LINE: field: reason"; the exit status is 1 if there is any.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			return runValidate(cmd, dir)
		},
	}
}

func runValidate(cmd *cobra.Command, dir string) error {
	set, err := repolayout.LoadDir(dir)
	var list repolayout.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(cmd.ErrOrStderr(), e.Error())
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "invalid: %d %s\n", len(list), plural(len(list), "error", "errors"))
		return exitError{code: 1}
	}
	if err != nil {
		return fmt.Errorf("validating %s: %w", dir, err)
	}
	st := set.Stats()
	fmt.Fprintf(cmd.OutOrStdout(), "valid: %d %s in %d %s\n",
		st.Objects, plural(st.Objects, "object", "objects"), st.Files, plural(st.Files, "file", "files"))
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
