package nodeagent_test

import (
	"testing"

	"github.com/bosun-gitops/bosun/nodeagent/agenttest"
)

// TestMain runs the tests in a private network namespace when root, and the agent itself when
// the integration tests re-execute the binary as the agent (agenttest).
func TestMain(m *testing.M) { agenttest.Main(m) }
