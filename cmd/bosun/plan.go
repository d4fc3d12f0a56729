package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/bosun-gitops/bosun/operator/apiserver"
	"github.com/bosun-gitops/bosun/operator/plan"
	"github.com/spf13/cobra"
)

func newPlanCmd(g *globalFlags) *cobra.Command {
	var ref, sha, output string
	cmd := &cobra.Command{
		Use:   "plan [--ref REF | DIR]",
		Short: "Show what a sync would change: creates, updates (field diff), prunes and validation errors",
		Long: `Plan loads and validates the manifests at a Git ref of the synced repository (--ref: a
branch, refs/pull/N/head or a commit) or in a local directory (default .), and compares them with
what is live, with exactly the rules a sync applies. Secret values are masked.

A directory is a work tree of the synced repository or a directory in it: when the operator
syncs a sub-path (--path apps), plan the work tree's root or its apps directory.

Exit code: 0 no change, 1 changes, 2 invalid or error.`,
		Example: `  bosun plan                      # the working tree in .
  bosun plan --ref feature/scale  # a branch of the synced repository
  bosun plan --ref refs/pull/7/head -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ref != "" && len(args) > 0 {
				return usageExit(cmd, "give either --ref or a directory, not both")
			}
			c, err := g.client()
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "error:", err)
				return exitError{plan.ExitInvalid}
			}
			var rep *plan.Report
			if ref != "" {
				rep, err = c.planRef(cmd.Context(), ref, sha)
			} else {
				dir := "."
				if len(args) == 1 {
					dir = args[0]
				}
				rep, err = c.planDir(cmd.Context(), dir)
			}
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "error:", err)
				return exitError{plan.ExitInvalid}
			}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				enc.Encode(rep)
			case "markdown":
				fmt.Fprint(cmd.OutOrStdout(), rep.Markdown(0))
			default:
				fmt.Fprint(cmd.OutOrStdout(), rep.Text())
				for _, e := range rep.Errors {
					fmt.Fprintln(cmd.ErrOrStderr(), e)
				}
			}
			if code := rep.ExitCode(); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&ref, "ref", "", "plan this ref of the synced repository instead of a directory")
	cmd.Flags().StringVar(&sha, "sha", "", "with --ref: the commit expected at the ref")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or markdown")
	return cmd
}

func usageExit(cmd *cobra.Command, msg string) error {
	fmt.Fprintln(cmd.ErrOrStderr(), "error:", msg)
	return exitError{plan.ExitInvalid}
}

func (c *apiClient) planRef(ctx context.Context, ref, sha string) (*plan.Report, error) {
	var rep plan.Report
	if err := c.do(ctx, http.MethodPost, apiserver.PlansPath, nil, plan.Request{Ref: ref, SHA: sha}, "", &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}

func (c *apiClient) planDir(ctx context.Context, dir string) (*plan.Report, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	var buf bytes.Buffer
	if err := plan.Tar(&buf, dir); err != nil {
		return nil, err
	}
	target := c.base + apiserver.PlansPath
	if p, ok := pathInRepository(dir); ok {
		target += "?" + url.Values{plan.PathParam: {p}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, &buf)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", plan.ContentTypeTarball)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("contacting the operator at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var st struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(data, &st) == nil && st.Message != "" {
			return nil, fmt.Errorf("plan: %s", st.Message)
		}
		return nil, fmt.Errorf("plan: %s", resp.Status)
	}
	var rep plan.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("decoding the plan: %w", err)
	}
	return &rep, nil
}

// pathInRepository returns where dir is in the Git work tree that contains it ("." for its
// root), so that the operator plans the path it syncs; false outside a work tree.
func pathInRepository(dir string) (string, bool) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false
	}
	abs, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return "", false
	}
	for root := abs; ; {
		if _, err := os.Lstat(filepath.Join(root, ".git")); err == nil {
			rel, err := filepath.Rel(root, abs)
			if err != nil {
				return "", false
			}
			return filepath.ToSlash(rel), true
		}
		parent := filepath.Dir(root)
		if parent == root {
			return "", false
		}
		root = parent
	}
}
