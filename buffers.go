package main

import (
	"bytes"
	"sync"
)

// Answers are read and written through pooled buffers: a list of 100 backups reads a 31 KB
// Elasticsearch answer and writes a 40 KB one, and growing a fresh buffer to that size for
// every request was a fifth of what a list allocated (and so of the garbage collector's work).

// maxPooledBuffer is the largest buffer kept for reuse: a list page of 1,000 snapshots fits;
// the rare larger answer is left to the garbage collector, not held by an idle sidecar.
const maxPooledBuffer = 1 << 20

var bufferPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// getBuffer returns an empty buffer; give it back with putBuffer once nothing refers to its
// bytes any more.
func getBuffer() *bytes.Buffer { return bufferPool.Get().(*bytes.Buffer) }

// putBuffer returns buf to the pool, unless it grew too large to keep.
func putBuffer(buf *bytes.Buffer) {
	if buf.Cap() > maxPooledBuffer {
		return
	}
	buf.Reset()
	bufferPool.Put(buf)
}
