// Package bench measures the real `bosun operator` (BOSUN_BIN) from the outside, as a user sees
// it: a Git repository pushed with the git CLI, `bosun sync` run as a command, and objects seen
// through the API with client-go watches. Build tag e2e; `make bench-e2e` runs it.
//
//	git push ──> bare repo <──fetch── bosun operator (embedded etcd, --interval 1h)
//	bosun sync ──PATCH gitsync──────────────┘        │ API (HTTPS)
//	benchmark: client-go watches ConfigMaps, Services, Deployments <─┘
//
// It prints, for 1 000 and 10 000 objects, the time from `git push` to every object seen ADDED
// through the API, next to the ceiling measured in the same run (the same objects, encoded as the
// store stores them (store.Encode), written straight to a fresh etcd in batches of
// store.DefaultMaxTxnOps, store.DefaultBatchConcurrency transactions at a time); the operator's
// sync phases from its log; what the store holds once the controllers are quiet; the operator's
// RSS with 10 000 objects, its file-backed part split between the executable and etcd's database
// file (from /proc/PID/smaps), with the Go runtime's account of it and the operator's CPU time so
// far from /metrics (heap spans in use against the live heap after the last collection shows
// fragmentation: spans a collection cannot free while one object in them lives); and the latency
// of one changed object after `bosun sync`.
//
// BOSUN_BENCH_REPLICAS sets the Deployments' replicas (default 1; 0 keeps Pods and their Events
// out of the store); BOSUN_BENCH_ETCD=external runs etcd in the benchmark's process instead of
// embedded in the operator, to tell the operator's own memory from etcd's;
// BOSUN_BENCH_HEAP_PROFILE=FILE saves the operator's heap profile as FILE-<objects> when its RSS
// is measured (through --debug-listen); BOSUN_BENCH_CPU_PROFILE=FILE saves its CPU profile of the
// 2 s from each push as FILE-<objects>.
package bench
