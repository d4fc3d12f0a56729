package memtrim

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Span is one read-only mapping of the executable.
type Span struct {
	Start, End uintptr
}

// ErrNotPermitted is ReleaseExecutable's error when the kernel would not page out the
// executable's pages for this process.
var ErrNotPermitted = errors.New("the kernel pages out a file's pages only for a process that owns the file or may write it (root does)")

// ReleaseExecutable gives back the executable's read-only pages that no other process maps, and
// keeps later faults small. It returns the bytes of mappings it covered (not the bytes freed: the
// kernel does not say).
//
// In order: the file is flushed (reclaim skips dirty pages, and an agent often starts right after
// its binary was written); the mappings are marked MADV_RANDOM, so a later fault reads the one
// page it needs instead of a read-ahead window that the kernel would cache, and map, as one large
// folio; MADV_PAGEOUT unmaps and reclaims the pages this process alone maps; FADV_DONTNEED drops
// the file's remaining unmapped cache, the large folios left from writing the file, which a fault
// would otherwise map whole. A process that may not page out the file (see ErrNotPermitted), or a
// kernel without MADV_PAGEOUT (before 5.4), changes nothing.
func ReleaseExecutable() (int, error) {
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	defer exe.Close()
	if !mayPageOut(exe) {
		return 0, ErrNotPermitted
	}
	spans, err := ExecutableSpans()
	if err != nil {
		return 0, err
	}
	// A file system that cannot flush (read-only, say) has nothing dirty to flush.
	_ = unix.Fdatasync(int(exe.Fd()))
	if _, err := advise(spans, unix.MADV_RANDOM); err != nil {
		return 0, err
	}
	n, err := advise(spans, unix.MADV_PAGEOUT)
	if err != nil {
		_, _ = advise(spans, unix.MADV_NORMAL) // keep read-ahead when nothing was released
		return n, err
	}
	if err := unix.Fadvise(int(exe.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return n, fmt.Errorf("dropping the executable's cache: %w", err)
	}
	return n, nil
}

// mayPageOut is the kernel's condition for paging out a file's pages (can_do_file_pageout): the
// process owns the file, has CAP_FOWNER (root), or may open it for writing.
func mayPageOut(f *os.File) bool {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	euid := uint32(os.Geteuid())
	if euid == 0 || st.Uid == euid {
		return true
	}
	return unix.Faccessat(unix.AT_FDCWD, "/proc/self/exe", unix.W_OK, unix.AT_EACCESS) == nil
}

// advise applies advice to spans and returns the bytes it covered.
func advise(spans []Span, advice int) (int, error) {
	n := 0
	for _, s := range spans {
		// The spans are not Go memory: madvise takes them as plain addresses.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, s.Start, s.End-s.Start, uintptr(advice)); errno != 0 {
			return n, fmt.Errorf("madvise %#x-%#x: %w", s.Start, s.End, errno)
		}
		n += int(s.End - s.Start)
	}
	return n, nil
}

// ExecutableSpans lists the private read-only mappings of this process's executable, from
// /proc/self/maps.
func ExecutableSpans() ([]Span, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMaps(bufio.NewScanner(f), exe)
}

// parseMaps picks the lines of a maps file that map exe privately without write permission.
// A line is "start-end perms offset dev inode path"; the path may contain spaces (and ends in
// " (deleted)" once the file was replaced, as readlink of /proc/self/exe does too).
func parseMaps(sc *bufio.Scanner, exe string) ([]Span, error) {
	var spans []Span
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), " ", 6)
		if len(fields) < 6 || strings.TrimLeft(fields[5], " ") != exe {
			continue
		}
		perms := fields[1]
		if len(perms) != 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
			continue
		}
		var start, end uintptr
		if _, err := fmt.Sscanf(fields[0], "%x-%x", &start, &end); err != nil || end <= start {
			return nil, fmt.Errorf("reading /proc/self/maps: bad range %q", fields[0])
		}
		spans = append(spans, Span{Start: start, End: end})
	}
	return spans, sc.Err()
}
