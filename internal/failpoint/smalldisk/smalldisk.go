// Package smalldisk gives tests a small file system of their own, so that
// "disk full" is the kernel's ENOSPC, not a fake: a tmpfs mounted on a
// fresh directory and unmounted when the test ends. Fill it with
// failpoint.Fill.
package smalldisk

import (
	"fmt"
	"os"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new temporary directory and
// returns it. It needs root (CI runs as root); other users skip the test,
// saying so.
func Mount(tb testing.TB, size int64) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("mounting a tmpfs needs root; CI runs as root")
	}
	dir := tb.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		tb.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	tb.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Grow gives the file system at dir (from Mount) a new size: room freed,
// as an operator would free it.
func Grow(tb testing.TB, dir string, size int64) {
	tb.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		tb.Fatalf("remount tmpfs on %s: %v", dir, err)
	}
}
