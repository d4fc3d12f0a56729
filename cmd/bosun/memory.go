package main

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"

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
	before := procStatusBytes("VmRSS")
	if _, err := memtrim.ReleaseExecutable(); err != nil {
		log.Info("keeping the executable's start-up pages", "reason", err)
		return
	}
	log.Info("released the executable's start-up pages", "rssBefore", before, "rssAfter", procStatusBytes("VmRSS"))
}

// procStatusBytes reads one "kB" field of /proc/self/status in bytes, 0 when unreadable.
func procStatusBytes(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}
