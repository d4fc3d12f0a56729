package repolayout

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// starter is the repository that Init writes; LoadDir accepts it (a test checks).
//
//go:embed all:examples/starter
var starter embed.FS

const starterRoot = "examples/starter"

// Init writes a starter repository into dir (must be empty or absent) that LoadDir accepts.
func Init(dir string) error {
	des, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("init %s: %w", dir, err)
	case len(des) > 0:
		return fmt.Errorf("init %s: directory is not empty; choose a new or empty directory", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("init %s: %w", dir, err)
	}
	return fs.WalkDir(starter, starterRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(starterRoot, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("init %s: %w", dir, err)
			}
			return nil
		}
		data, err := starter.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("init %s: %w", dir, err)
		}
		return nil
	})
}
