package memtrim

import (
	"bufio"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMapsPicksReadOnlyPrivateMappingsOfTheExecutable(t *testing.T) {
	const maps = `00400000-0191d000 r--p 00000000 fe:01 123 /usr/bin/bosun
0191d000-03f65000 r-xp 0151d000 fe:01 123 /usr/bin/bosun
03f65000-06d4a000 r--p 03b65000 fe:01 123 /usr/bin/bosun
06d4a000-06d4b000 rw-p 0694a000 fe:01 123 /usr/bin/bosun
06d4b000-06d50000 r--s 0694b000 fe:01 123 /usr/bin/bosun
07000000-07001000 r-xp 00000000 fe:01 124 /usr/bin/bosun-other
c000000000-c000400000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 fe:01 125 /usr/lib/my lib.so
7f0000002000-7f0000003000 r-xp 00000000 fe:01 126 /opt/my bosun (deleted)
`
	for _, tc := range []struct {
		exe  string
		want []Span
	}{
		{"/usr/bin/bosun", []Span{{0x400000, 0x191d000}, {0x191d000, 0x3f65000}, {0x3f65000, 0x6d4a000}}},
		{"/opt/my bosun (deleted)", []Span{{0x7f0000002000, 0x7f0000003000}}},
		{"/usr/bin/missing", nil},
	} {
		got, err := parseMaps(bufio.NewScanner(strings.NewReader(maps)), tc.exe)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: got %x, want %x", tc.exe, got, tc.want)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("%s: got %x, want %x", tc.exe, got, tc.want)
			}
		}
	}
	if _, err := parseMaps(bufio.NewScanner(strings.NewReader("zz-yy r--p 0 0:0 1 /x\n")), "/x"); err == nil {
		t.Fatal("a bad range was accepted")
	}
}

// TestReleaseShrinksTheFileBackedRSS runs against this test binary: its init touched the
// executable's pages; ReleaseExecutable gives back the ones nothing touches again.
func TestReleaseShrinksTheFileBackedRSS(t *testing.T) {
	var fs unix.Statfs_t
	if err := unix.Statfs("/proc/self/exe", &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC {
		t.Skip("this test binary lives in memory (tmpfs): its pages are the file, and cannot be released")
	}
	before := rssFile(t)
	n, err := ReleaseExecutable()
	switch {
	case errors.Is(err, ErrNotPermitted):
		t.Skipf("this test binary is not the test user's: %v", err)
	case errors.Is(err, unix.EINVAL):
		t.Skipf("the kernel has no MADV_PAGEOUT (Linux 5.4): %v", err)
	case err != nil:
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("released %d bytes of mappings: RssFile %d → %d kB", n, before, after)
	if n == 0 {
		t.Fatal("no mapping of the executable was found")
	}
	if after >= before {
		t.Fatalf("RssFile did not shrink: %d → %d kB", before, after)
	}
}

// rssFile is this process's file-backed resident memory in kB.
func rssFile(t *testing.T) int64 {
	t.Helper()
	n, err := StatusBytes(0, "RssFile")
	if err != nil {
		t.Fatal(err)
	}
	return n >> 10
}
