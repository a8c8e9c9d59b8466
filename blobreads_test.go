package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// blobReads counts the snapshot details an fs repository gives out: Elasticsearch and
// OpenSearch open snap-{UUID}.dat, at the repository's root, once for each snapshot whose
// details they load (on S3, GCS or Azure a GET each). It watches the directory with inotify, so
// it counts on both products alike: OpenSearch has no snapshot_meta thread pool to count. Linux
// only, as testenv is.
type blobReads struct {
	t      testing.TB
	fd     int
	marker string
	mu     sync.Mutex
	opens  int
	// marks counts the opens of marker: sync opens it and waits until the watch has seen it, so
	// that every open before it has been counted.
	marks int
	seen  *sync.Cond
}

// watchBlobReads starts counting the snapshot details read from the fs repository in dir.
func watchBlobReads(t testing.TB, dir string) *blobReads {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	// A dot file: Elasticsearch's clean-up of stale blobs looks only at index-, snap- and meta-.
	marker := filepath.Join(dir, ".blob-reads-marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_OPEN); err != nil {
		t.Fatalf("inotify on %s: %v", dir, err)
	}
	b := &blobReads{t: t, fd: fd, marker: marker}
	b.seen = sync.NewCond(&b.mu)
	go b.watch()
	t.Cleanup(func() { syscall.Close(fd); os.Remove(marker) })
	return b
}

// watch reads inotify events until the descriptor is closed.
func (b *blobReads) watch() {
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(b.fd, buf)
		if err != nil || n <= 0 {
			return
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := string(bytes.TrimRight(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+int(ev.Len)], "\x00"))
			off += syscall.SizeofInotifyEvent + int(ev.Len)
			b.mu.Lock()
			switch {
			case name == filepath.Base(b.marker):
				b.marks++
				b.seen.Broadcast()
			case strings.HasPrefix(name, "snap-") && strings.HasSuffix(name, ".dat"):
				b.opens++
			}
			b.mu.Unlock()
		}
	}
}

// count is how many snapshot details were read so far: every read that ended before the call.
func (b *blobReads) count() int {
	b.mu.Lock()
	want := b.marks + 1
	b.mu.Unlock()
	f, err := os.Open(b.marker)
	if err != nil {
		b.t.Fatal(err)
	}
	f.Close()
	deadline := time.AfterFunc(5*time.Second, func() { b.seen.Broadcast() })
	defer deadline.Stop()
	started := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.marks < want {
		if time.Since(started) > 5*time.Second {
			b.t.Fatal("inotify did not report the marker's open within 5 s")
		}
		b.seen.Wait()
	}
	return b.opens
}
