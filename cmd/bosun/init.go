package main

import (
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/spf13/cobra"

	repolayout "github.com/bosun-gitops/bosun/repo-layout"
)

func newInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init DIR",
		Short: "Write a starter Bosun repository into DIR (new or empty)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runInit(cmd, args[0])
		},
	}
}

func runInit(cmd *cobra.Command, dir string) error {
	if err := repolayout.Init(dir); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "wrote a starter repository to %s:\n", dir)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  %s\n", filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	fmt.Fprintf(out, "\nnext: edit machines/example.yaml (a real address and host key), check with\n"+
		"  bosun validate %s\nthen git init, commit, then bosun up --repo %s\n", dir, dir)
	return nil
}
