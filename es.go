package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	fastjson "github.com/segmentio/encoding/json"
)

// This file holds how the sidecar talks to Elasticsearch: the clients, the one call helper and
// the escaping of names that go into URLs. The requests themselves are in snapshots.go,
// indices.go and jobstore.go.

// maxAnswerBytes bounds what is read of one Elasticsearch answer: a list page of 1,000
// snapshots is well under 1 MiB, so anything near this is not an answer the sidecar can use,
// and reading it whole would break the memory target.
const maxAnswerBytes = 16 << 20

// esClients are the sidecar's Elasticsearch clients, by what their requests may do. Only reads
// are retried: a retried snapshot create, index delete or restore could act twice.
type esClients struct {
	// read sends requests that change nothing; the client retries them on 502/503/504 and
	// network errors.
	read esapi.Transport
	// write sends requests that change Elasticsearch (snapshot create and delete, the restore
	// job document), exactly once.
	write esapi.Transport
	// restore sends the restore's changes (write blocks, index delete, snapshot restore), with
	// the restore credentials when configured, exactly once.
	restore esapi.Transport
	// mainCreds and restoreCreds name the variables that set the credentials of read and write,
	// and of restore: when Elasticsearch refuses them, the error says which ones to fix.
	mainCreds, restoreCreds string
}

// credentials are what one client authenticates with: an API key or basic auth (config
// validation allows only one), and the variables they come from ("" when none are set).
type credentials struct {
	username, password, apiKey string
	vars                       string
}

// mainCredentials and restoreCredentials are the credentials of the clients; the restore
// falls back to the main ones when none of its own are configured.
func (c config) mainCredentials() credentials {
	creds := credentials{username: c.ESUsername, password: c.ESPassword, apiKey: c.ESAPIKey}
	switch {
	case c.ESAPIKeyFile != "":
		creds.vars = "the API key in OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE"
	case c.ESAPIKey != "":
		creds.vars = "the API key in OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY"
	case c.ESUsername != "" || c.ESPassword != "":
		creds.vars = "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME/_PASSWORD"
	}
	return creds
}

// restoreCredentials are the restore's own credentials and true, or the main ones and false.
func (c config) restoreCredentials() (credentials, bool) {
	switch {
	case c.RestoreESAPIKeyFile != "":
		return credentials{apiKey: c.RestoreESAPIKey, vars: "the API key in OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY_FILE"}, true
	case c.RestoreESAPIKey != "":
		return credentials{apiKey: c.RestoreESAPIKey, vars: "the API key in OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY"}, true
	case c.RestoreESUsername != "":
		return credentials{username: c.RestoreESUsername, password: c.RestoreESPassword, vars: "OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_USERNAME/_PASSWORD"}, true
	}
	return c.mainCredentials(), false
}

// newESClients builds the clients from the configuration.
func newESClients(cfg config) (esClients, error) {
	main := cfg.mainCredentials()
	read, err := newESClient(cfg, main, true)
	if err != nil {
		return esClients{}, err
	}
	write, err := newESClient(cfg, main, false)
	if err != nil {
		return esClients{}, err
	}
	restore, restoreCreds := write, main
	if creds, own := cfg.restoreCredentials(); own {
		if restore, err = newESClient(cfg, creds, false); err != nil {
			return esClients{}, err
		}
		restoreCreds = creds
	}
	return esClients{read: read, write: write, restore: restore, mainCreds: main.vars, restoreCreds: restoreCreds.vars}, nil
}

// newESClient builds one Elasticsearch client with these credentials; retry tells whether the
// client may resend a request that got no usable answer.
func newESClient(cfg config, creds credentials, retry bool) (*elasticsearch.Client, error) {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		// 64 concurrent clients keep their connections instead of dialing anew under load.
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		// Elasticsearch is next door: gzip would cost both sides CPU to save loopback bytes.
		DisableCompression: true,
	}
	if cfg.ESCAFile != "" {
		// The CA goes into the tuned transport, so TLS keeps its dialer and idle settings.
		ca, err := os.ReadFile(cfg.ESCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES %s: %w", cfg.ESCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES: %s holds no PEM certificate; point it at Elasticsearch's CA certificate", cfg.ESCAFile)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	var send http.RoundTripper = transport
	if retry {
		// The read client's GETs skip net/http's connection goroutines (inlinetransport.go).
		send = &inlineTransport{fallback: transport, dialer: dialer, maxIdle: transport.MaxIdleConnsPerHost, idleTimeout: transport.IdleConnTimeout}
	}
	esCfg := elasticsearch.Config{
		Addresses:    cfg.ESURLs,
		Username:     creds.username,
		Password:     creds.password,
		Transport:    opaqueID{send},
		DisableRetry: !retry,
	}
	if creds.apiKey != "" {
		esCfg.APIKey = encodedAPIKey(creds.apiKey)
	}
	return elasticsearch.NewClient(esCfg)
}

// opaqueID sends the request ID of the sidecar request an Elasticsearch request serves as
// X-Opaque-Id, which Elasticsearch shows in its tasks, slow logs and deprecation logs: an
// operator can follow one X-Request-Id from the access log into Elasticsearch. Background
// work (part 2, a restore job's steps) runs on the registry's own context and carries none.
type opaqueID struct{ next http.RoundTripper }

// RoundTrip adds the header, on a copy as RoundTrippers must not change the request.
func (o opaqueID) RoundTrip(r *http.Request) (*http.Response, error) {
	if e, _ := r.Context().Value(accessKey{}).(*accessEntry); e != nil && r.Header.Get("X-Opaque-Id") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("X-Opaque-Id", e.id)
	}
	return o.next.RoundTrip(r)
}

// esCall runs one Elasticsearch request through client with the per-call deadline, closes its
// body, turns error answers into *esError and transport failures into errESUnreachable, and
// decodes a successful JSON answer into target (unless target is nil).
func (s *server) esCall(ctx context.Context, client esapi.Transport, req esapi.Request, target any) error {
	return s.esCallWithin(ctx, s.cfg.ESTimeout, client, req, target)
}

// esCallWithin is esCall with its own deadline, for the one request that waits on
// Elasticsearch's work (a drill's restore with wait_for_completion).
func (s *server) esCallWithin(ctx context.Context, timeout time.Duration, client esapi.Transport, req esapi.Request, target any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := req.Do(ctx, client)
	if err != nil {
		// Both wrapped: classifyError tells an untrusted certificate from a node that is down.
		return fmt.Errorf("%w: %w", errESUnreachable, err)
	}
	defer res.Body.Close()
	body, release, err := readAnswer(res.Body)
	defer release()
	if err != nil {
		return fmt.Errorf("%w: reading the answer: %v", errESUnreachable, err)
	}
	if len(body) > maxAnswerBytes {
		return fmt.Errorf("%w: more than %d MiB; ask for less (e.g. ?limit=) or raise Elasticsearch's filter", errAnswerTooLarge, maxAnswerBytes>>20)
	}
	if res.IsError() {
		var eb esErrorBody
		var ee *esError
		if json.Unmarshal(body, &eb) != nil || eb.Error.Type == "" {
			ee = &esError{Status: res.StatusCode, Type: http.StatusText(res.StatusCode), Reason: strings.TrimSpace(string(body))}
		} else {
			ee = &esError{Status: res.StatusCode, Type: eb.Error.Type, Reason: eb.Error.Reason}
		}
		if refusedCredentials(ee) {
			return &esAuthError{es: ee, creds: s.es.credsOf(client)}
		}
		return ee
	}
	if target == nil {
		return nil
	}
	if err := decodeAnswer(body, target); err != nil {
		return fmt.Errorf("decoding Elasticsearch's answer: %w", err)
	}
	return nil
}

// readAnswer reads an answer of up to maxAnswerBytes+1 bytes (one more tells it is too
// large). Answers the size of a list page are read into a pooled buffer: every value decoded
// from them is a copy (both decoders copy strings and raw messages), and release gives the
// buffer back once the caller is done with body. A larger answer is read as io.ReadAll reads
// it: a bytes.Buffer doubles as it fills, and 16 MiB must not cost 32.
func readAnswer(r io.Reader) (body []byte, release func(), err error) {
	buf := getBuffer()
	release = func() { putBuffer(buf) }
	const pooled = maxPooledBuffer - bytes.MinRead // what ReadFrom fills without growing past the pool's limit
	if _, err := buf.ReadFrom(io.LimitReader(r, pooled)); err != nil {
		return nil, release, err
	}
	if buf.Len() < pooled {
		return buf.Bytes(), release, nil
	}
	body, err = io.ReadAll(io.MultiReader(bytes.NewReader(buf.Bytes()), io.LimitReader(r, maxAnswerBytes+1-pooled)))
	return body, release, err
}

// decodeAnswer decodes an answer into target. Pages of get-snapshots, which every GET and list
// reads, go through segmentio's decoder: a page of 1,000 snapshots decodes about 5 times
// faster than with encoding/json, into the same values (FuzzJSONDecodersAgree). Every other
// answer, and a page nested deeper than any Elasticsearch writes (segmentio's decoder has no
// depth limit and would overflow the stack: a fatal error), goes through encoding/json.
func decodeAnswer(body []byte, target any) error {
	if page, ok := target.(*getSnapshotsAnswer); ok && !nestedDeeperThan(body, maxFastDepth) {
		// Sized once from the snapshot objects in the text, rather than doubled from 1 to
		// 1,000 snapshots with a copy at every step. The count is only room: the decoder
		// fills what is there and grows it as before should the count fall short.
		if n := bytes.Count(body, snapshotKey); n > 0 {
			page.Snapshots = make([]snapshot, 0, n)
		}
		return fastjson.Unmarshal(body, page)
	}
	return json.Unmarshal(body, target)
}

// snapshotKey starts every snapshot of a get-snapshots page (Elasticsearch writes the name
// first); its rare first byte keeps bytes.Count fast.
var snapshotKey = []byte(`{"snapshot":`)

// maxFastDepth is the deepest nesting decodeAnswer gives segmentio's decoder. A page is nested
// 5 deep (page, snapshots, snapshot, failures, failure) plus what snapshot metadata holds.
const maxFastDepth = 64

// nestedDeeperThan tells whether JSON text opens more than limit arrays or objects inside one
// another (outside strings). Malformed text is left to the decoder to refuse. Strings, which
// are most of a page, are skipped with bytes.IndexByte rather than byte by byte (a tenth of a
// list's CPU went into this check); FuzzNestedDeeperThan holds it to the plain byte loop.
func nestedDeeperThan(text []byte, limit int) bool {
	depth := 0
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case '"':
			i = stringEnd(text, i)
		case '[', '{':
			if depth++; depth > limit {
				return true
			}
		case ']', '}':
			depth--
		}
	}
	return false
}

// stringEnd returns the index of the quote that closes the string opening at text[open], or
// len(text) when none does. A quote preceded by an odd number of backslashes is escaped.
func stringEnd(text []byte, open int) int {
	for at := open + 1; ; at++ {
		next := bytes.IndexByte(text[at:], '"')
		if next < 0 {
			return len(text)
		}
		at += next
		backslashes := 0
		for text[at-1-backslashes] == '\\' { // stops at the opening quote at the latest
			backslashes++
		}
		if backslashes%2 == 0 {
			return at
		}
	}
}

// credsOf names the credentials client authenticates with, for errors that ask to fix them;
// "" when none are configured.
func (c esClients) credsOf(client esapi.Transport) string {
	creds := c.mainCreds
	if client == c.restore && c.restore != c.write {
		creds = c.restoreCreds
	}
	return creds
}

// refusedCredentials tells whether Elasticsearch (or a gateway in front of it) refused the
// credentials or a privilege they lack: any 401, a 403 that is not Elasticsearch's own (a
// gateway's), and Elasticsearch's security_exception. Other 403s, such as a
// cluster_block_exception of a write-blocked index, are not about credentials.
func refusedCredentials(e *esError) bool {
	switch {
	case e.Type == "security_exception":
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case e.Status == http.StatusUnauthorized:
		return true
	default:
		return e.Status == http.StatusForbidden && e.Type == http.StatusText(http.StatusForbidden)
	}
}

// read, write and restoreWrite are esCall through the client for that kind of request.
func (s *server) read(ctx context.Context, req esapi.Request, target any) error {
	return s.esCall(ctx, s.es.read, req, target)
}

func (s *server) write(ctx context.Context, req esapi.Request, target any) error {
	return s.esCall(ctx, s.es.write, req, target)
}

func (s *server) restoreWrite(ctx context.Context, req esapi.Request, target any) error {
	return s.esCall(ctx, s.es.restore, req, target)
}

// answerLost tells whether a request that changes something may have been carried out although
// its answer did not arrive: no answer at all, or a gateway's 502/503/504 instead of
// Elasticsearch's own.
func answerLost(err error) bool {
	var ee *esError
	if errors.As(err, &ee) {
		return ee.Status == http.StatusBadGateway || ee.Status == http.StatusServiceUnavailable || ee.Status == http.StatusGatewayTimeout
	}
	return errors.Is(err, errESUnreachable)
}

// seg escapes one name for a URL path segment. esapi puts names into paths as they are, and
// Elasticsearch URL-decodes them: unescaped, the ID a%5fb would reach it as a_b, and %2a as a
// wildcard. Escaped, every name reaches Elasticsearch exactly as given.
func seg(name string) string { return url.PathEscape(name) }

// segs escapes each name of a comma-separated path segment.
func segs(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = seg(n)
	}
	return out
}

// maxNamesBytes bounds the index names put into one URL: Elasticsearch refuses request lines
// over 4 KB, which about 100 dynamic index names exceed.
const maxNamesBytes = 3000

// batches splits names into groups whose escaped, comma-joined length stays under
// maxNamesBytes, so that no request line grows with the number of indices.
func batches(names []string) [][]string {
	var out [][]string
	var cur []string
	size := 0
	for _, n := range names {
		l := len(seg(n)) + 1
		if len(cur) > 0 && size+l > maxNamesBytes {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, n)
		size += l
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// clusterStatus is the cluster's health status (green, yellow, red).
func (s *server) clusterStatus(ctx context.Context) (string, error) {
	var cluster struct {
		Status string `json:"status"`
	}
	if err := s.read(ctx, esapi.ClusterHealthRequest{FilterPath: []string{"status"}}, &cluster); err != nil {
		return "", fmt.Errorf("cluster health: %w", err)
	}
	return cluster.Status, nil
}

// checkRepository fails unless the configured snapshot repository is registered.
func (s *server) checkRepository(ctx context.Context) error {
	req := esapi.SnapshotGetRepositoryRequest{Repository: []string{seg(s.cfg.Repository)}}
	if err := s.read(ctx, req, nil); err != nil {
		return fmt.Errorf("get repository %s: %w", s.cfg.Repository, err)
	}
	return nil
}

// elasticsearchVersion is the version of the node the client talks to.
func (s *server) elasticsearchVersion(ctx context.Context) (string, error) {
	var nodes struct {
		Nodes map[string]struct {
			Version string `json:"version"`
		} `json:"nodes"`
	}
	req := esapi.NodesInfoRequest{NodeID: []string{"_local"}, FilterPath: []string{"nodes.*.version"}}
	if err := s.read(ctx, req, &nodes); err != nil {
		return "", fmt.Errorf("nodes info: %w", err)
	}
	for _, n := range nodes.Nodes {
		return n.Version, nil
	}
	return "", errors.New("nodes info: no node in the answer")
}
