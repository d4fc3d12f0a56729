// Package childproc starts child processes that are killed when Bosun's process dies.
//
// Linux sends the parent-death signal (PR_SET_PDEATHSIG, exec.Cmd's SysProcAttr.Pdeathsig) when
// the thread that forked the child exits, not when the process does. Go ends an OS thread when a
// goroutine that locked it returns without unlocking, which Bosun does on purpose after a thread
// has changed network namespace (the agent pins a pod's namespace that way). A child forked from
// such a thread earlier would be killed at a random moment. Start forks every child from one
// thread that is locked for the life of the process and never changes namespace.
package childproc

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

type request struct {
	cmd  *exec.Cmd
	errc chan error
}

var (
	startOnce sync.Once
	requests  chan request
)

// Start starts cmd with SIGKILL as its parent-death signal, forked from the process's dedicated
// spawning thread, so that the child dies when this process dies and only then.
func Start(cmd *exec.Cmd) error {
	startOnce.Do(func() {
		requests = make(chan request)
		go func() {
			// Locked and never unlocked: no other goroutine runs on this thread, and it lives
			// as long as the process.
			runtime.LockOSThread()
			for r := range requests {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	requests <- request{cmd: cmd, errc: errc}
	return <-errc
}

// Run is Start followed by cmd.Wait.
func Run(cmd *exec.Cmd) error {
	if err := Start(cmd); err != nil {
		return err
	}
	return cmd.Wait()
}
