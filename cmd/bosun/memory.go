package main

import (
	"context"
	"log/slog"

	"github.com/bosun-gitops/bosun/internal/memtrim"
)

// releaseStartupPages gives back, once ready is closed (nil: now), the pages of the bosun
// executable that only start-up touched: the init code of the hundreds of packages that share the
// one binary (tens of MB of RSS an agent would otherwise keep; see package memtrim).
func releaseStartupPages(ctx context.Context, ready <-chan struct{}, log *slog.Logger) {
	if ready != nil {
		select {
		case <-ctx.Done():
			return
		case <-ready:
		}
	}
	before, _ := memtrim.StatusBytes(0, "VmRSS")
	if _, err := memtrim.ReleaseExecutable(); err != nil {
		log.Info("keeping the executable's start-up pages", "reason", err)
		return
	}
	after, _ := memtrim.StatusBytes(0, "VmRSS")
	log.Info("released the executable's start-up pages", "rssBefore", before, "rssAfter", after)
}
