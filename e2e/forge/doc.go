// Package forge is the end-to-end test of pull-request driven deploys against a real Gitea
// (built and cached by `make gitea`): webhooks, plans as commit statuses and comments, and the
// deploy status of merged commits. Run it with `make e2e-forge` (build tag e2e).
package forge
