// Package memtrim hands memory a Bosun process no longer uses back to the system: the pages of
// its executable that only start-up touched, and the heap's free memory once the process goes
// idle after a burst of work.
//
// Bosun is one binary: an agent carries the operator, etcd and the CLI with it. Go runs every
// linked package's init function before main, which touches code and read-only data of hundreds
// of packages the agent never runs again; the kernel keeps them mapped, and they count in the
// process's RSS (and in its cgroup's memory) until memory runs short. Kernels that cache a file
// in large folios map a whole folio (up to 2 MB) at the first touch of any page in it, so a
// freshly installed binary costs more still. ReleaseExecutable, called once the process is
// ready, reclaims those pages: an agent's RSS at rest goes from about 100 MB to under 20 MB.
//
// Between collections the Go runtime lets the heap grow to twice what is live (GOGC=100), and at
// rest nothing triggers the next collection, so the resident size stays at the peak of the last
// burst. ReleaseWhenIdle collects and returns the free memory on the first quiet interval after
// a burst, once per burst.
//
// Both change memory use, never behaviour: pages released are read again from the file when
// touched, and a collection frees only garbage. The price of the first is paid once, in time:
// after the release the executable is read without read-ahead, one 4 KiB page per first touch
// (read-ahead would cache, and map, large folios again), so code a process runs for the first
// time after it waits for those reads: an agent's first pod start made about 1 500 of them and
// took 40 ms longer on a virtual disk (its next ones did not); a spinning disk takes longer.
package memtrim
