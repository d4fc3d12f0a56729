package runtime

import "fmt"

// PrivateContainerdConfig is the config.toml of a containerd of Bosun's own (`bosun up` on a
// machine without one, the tests' harness): its root, state and sockets at the given paths, no
// CRI plugin, no debug or metrics listeners.
func PrivateContainerdConfig(root, state, socket string) string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
`, root, state, socket, socket+".ttrpc")
}
