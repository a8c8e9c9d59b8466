package main

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gotest.tools/v3/assert"
)

// TestIntegrationConcurrentGetsShareReads: on the real node, a GET's read of backup 1 is
// answered by Elasticsearch and held on its way back; the backup is deleted directly in
// Elasticsearch; 16 more GETs arrive. They must all say 404 (a read made before the delete
// would say COMPLETED), from one shared read, not 16; the first GET answers what its read saw.
func TestIntegrationConcurrentGetsShareReads(t *testing.T) {
	es := needES(t)
	repo := es.newRepo("it-shared-reads")
	// The proxy counts the reads of backup 1 and, once armed, holds the next one's answer.
	var reads atomic.Int32
	var armed atomic.Bool
	answered, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	releaseHeld := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseHeld)
	env, _ := es.proxiedEnv(t, repo, func(method, path string) fault {
		if method != "GET" || !strings.HasSuffix(path, "/camunda_optimize_1_*") {
			return fault{}
		}
		reads.Add(1)
		if armed.CompareAndSwap(true, false) {
			return fault{answered: answered, release: release}
		}
		return fault{}
	})
	sc := startSidecar(t, env)
	sc.backupNow("1")

	armed.Store(true)
	first := make(chan int)
	go func() { status, _ := sc.call("GET", "/actuator/backups/1", ""); first <- status }()
	select {
	case <-answered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first GET's read never reached Elasticsearch")
	}
	readsBefore := reads.Load()
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
	assert.Equal(t, reads.Load(), readsBefore, "a GET read Elasticsearch while another read of the same backup was under way")
	releaseHeld()

	assert.Equal(t, <-first, http.StatusOK, "the first GET's read was made before the delete")
	wg.Wait()
	close(statuses)
	for status := range statuses {
		assert.Equal(t, status, http.StatusNotFound, "a GET that arrived after the delete was answered from a read made before it")
	}
	shared := reads.Load() - readsBefore
	t.Logf("16 GETs made %d Elasticsearch reads", shared)
	assert.Assert(t, shared >= 1 && shared <= 2, "16 concurrent GETs made %d reads of the backup; want one shared read (two if one GET arrived late)", shared)
}
