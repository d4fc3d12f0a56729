package bootstrap

import "path"

// Layout is where the agent's files live on a machine. Retirement removes exactly these.
type Layout struct {
	// Binary is the bosun executable.
	Binary string
	// DataDir is the agent's data directory: agent.yaml, pki/, the supervisor script, state.
	DataDir string
	// RunDir holds the pid files of the no-systemd supervisor.
	RunDir string
	// LogFile receives the agent's output under the supervisor.
	LogFile string
	// UnitFile is the systemd unit.
	UnitFile string
}

// DefaultLayout is the layout on real machines.
func DefaultLayout() Layout {
	return Layout{
		Binary:   "/usr/local/bin/bosun",
		DataDir:  "/var/lib/bosun/agent",
		RunDir:   "/run/bosun",
		LogFile:  "/var/log/bosun-agent.log",
		UnitFile: "/etc/systemd/system/" + UnitName,
	}
}

// UnitName is the agent's systemd unit.
const UnitName = "bosun-agent.service"

// Paths derived from the layout.
func (l Layout) ConfigFile() string       { return path.Join(l.DataDir, "agent.yaml") }
func (l Layout) PKIDir() string           { return path.Join(l.DataDir, "pki") }
func (l Layout) SupervisorScript() string { return path.Join(l.DataDir, "supervise.sh") }
func (l Layout) SupervisorPID() string    { return path.Join(l.RunDir, "supervisor.pid") }
func (l Layout) AgentPID() string         { return path.Join(l.RunDir, "agent.pid") }

// GenerationFile records which binary, configuration and credentials the running agent was
// started with; the service step restarts the agent when it differs.
func (l Layout) GenerationFile() string { return path.Join(l.RunDir, "generation") }
