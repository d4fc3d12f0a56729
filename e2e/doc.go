// Package e2e holds Bosun's end-to-end tests: they drive the built `bosun` binary (BOSUN_BIN,
// set by `make e2e`) against real Git repositories pushed with the git CLI, exactly as a user
// would, and kill and restart real operator processes.
package e2e
