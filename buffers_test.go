package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// allocated is how many bytes f allocates.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// An answer near or over maxAnswerBytes costs what io.ReadAll makes of it, not the double a
// pooled bytes.Buffer grows to (found in review: 64 MiB for a refused 16 MiB answer). The
// bound is relative, as -race changes what anything allocates.
func TestLargeAnswerReadCostsWhatReadAllDoes(t *testing.T) {
	for _, size := range []int{maxAnswerBytes - 1000, maxAnswerBytes + 1} {
		body := bytes.Repeat([]byte{' '}, size)
		copy(body, `{"snapshots":[]}`)
		es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Elastic-Product", "Elasticsearch")
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		}))
		srv := newTestServer(t, testConfig(es.URL))
		var err error
		read := allocated(func() {
			var page getSnapshotsAnswer
			err = srv.read(context.Background(), esapi.SnapshotGetRequest{Repository: "test-repo", Snapshot: []string{"x"}}, &page)
		})
		readAll := allocated(func() { io.ReadAll(io.LimitReader(bytes.NewReader(body), maxAnswerBytes+1)) })
		es.Close()
		if size > maxAnswerBytes && !errors.Is(err, errAnswerTooLarge) {
			t.Fatalf("a %d-byte answer: %v; want errAnswerTooLarge", size, err)
		}
		if limit := readAll + readAll/4 + 4<<20; read > limit {
			t.Errorf("reading a %d-byte answer allocated %.1f MiB; io.ReadAll allocates %.1f MiB for it", size, float64(read)/(1<<20), float64(readAll)/(1<<20))
		}
	}
}
