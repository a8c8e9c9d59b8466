package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gotest.tools/v3/assert"
)

// holdingProxy forwards every request to Elasticsearch and counts those whose path ends with
// path; once armed, it holds back the next such answer (Elasticsearch has computed it) until
// released, as a slow network would.
type holdingProxy struct {
	url      string
	path     string
	reads    atomic.Int32
	armed    atomic.Bool
	held     chan struct{} // closed once an answer is held
	release  chan struct{}
	holdOnce sync.Once
}

func newHoldingProxy(t *testing.T, esURL, path string) *holdingProxy {
	p := &holdingProxy{path: path, held: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		out, _ := http.NewRequest(r.Method, esURL+r.URL.RequestURI(), bytes.NewReader(body))
		out.Header = r.Header.Clone()
		res, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		answer, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if r.Method == "GET" && strings.HasSuffix(r.URL.Path, p.path) {
			p.reads.Add(1)
			if p.armed.CompareAndSwap(true, false) {
				p.holdOnce.Do(func() { close(p.held) })
				<-p.release
			}
		}
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		w.Write(answer)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { p.releaseOnce() })
	p.url = srv.URL
	return p
}

func (p *holdingProxy) releaseOnce() {
	select {
	case <-p.release:
	default:
		close(p.release)
	}
}

// TestIntegrationConcurrentGetsShareReads: on the real node, a GET's read of backup 1 is
// answered by Elasticsearch and held on its way back; the backup is deleted directly in
// Elasticsearch; 16 more GETs arrive. They must all say 404 (a read made before the delete
// would say COMPLETED), from one shared read, not 16; the first GET answers what its read saw.
func TestIntegrationConcurrentGetsShareReads(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("it-shared-reads")
	proxy := newHoldingProxy(t, es.url, "/camunda_optimize_1_*")
	env := es.sidecarEnv(repo)
	env["OPTIMIZE_ELASTICSEARCH_URLS"] = proxy.url
	sc := startSidecar(t, env)
	sc.backupNow("1")

	proxy.armed.Store(true)
	first := make(chan int)
	go func() { status, _ := sc.call("GET", "/actuator/backups/1", ""); first <- status }()
	select {
	case <-proxy.held:
	case <-time.After(30 * time.Second):
		t.Fatal("the first GET's read never reached Elasticsearch")
	}
	readsBefore := proxy.reads.Load()
	es.must("DELETE", "/_snapshot/"+repo+"/camunda_optimize_1_3.9.0_part_1_of_2,camunda_optimize_1_3.9.0_part_2_of_2", "")

	const later = 16
	var wg sync.WaitGroup
	statuses := make(chan int, later)
	for range later {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _ := sc.call("GET", "/actuator/backups/1", "")
			statuses <- status
		}()
	}
	// The later GETs wait inside the sidecar for the read after the held one: none of them
	// may reach Elasticsearch while it is held. (The sidecar is in this process, so a second
	// is plenty for 16 local requests to arrive; one that came later would only read alone.)
	time.Sleep(time.Second)
	assert.Equal(t, proxy.reads.Load(), readsBefore, "a GET read Elasticsearch while another read of the same backup was under way")
	proxy.releaseOnce()

	assert.Equal(t, <-first, http.StatusOK, "the first GET's read was made before the delete")
	wg.Wait()
	close(statuses)
	for status := range statuses {
		assert.Equal(t, status, http.StatusNotFound, "a GET that arrived after the delete was answered from a read made before it")
	}
	shared := proxy.reads.Load() - readsBefore
	t.Logf("16 GETs made %d Elasticsearch reads", shared)
	assert.Assert(t, shared >= 1 && shared <= 2, "16 concurrent GETs made %d reads of the backup; want one shared read (two if one GET arrived late)", shared)
}
