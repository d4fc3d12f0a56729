// Command cleanup removes what crashed or killed end-to-end runs left behind: the namespace
// machine labs (e2e/machines) whose owning process is gone, with their processes, network
// namespaces, host links, mounts and directories. Labs of running tests are left alone.
// `make e2e-clean` runs it; it needs root.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/bosun-gitops/bosun/e2e/machines"
)

func main() {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e-clean: needs root (labs are network namespaces and mounts)")
		os.Exit(2)
	}
	cleaned, err := machines.CleanupStale()
	if len(cleaned) == 0 {
		fmt.Println("e2e-clean: no stale lab")
	} else {
		fmt.Printf("e2e-clean: removed %d stale lab(s): %s\n", len(cleaned), strings.Join(cleaned, " "))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e-clean:", err)
		os.Exit(1)
	}
}
