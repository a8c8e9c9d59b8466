package main

import (
	"cmp"
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

	"github.com/elastic/elastic-transport-go/v8/elastictransport"
	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// How the sidecar talks to Elasticsearch: the clients, the one call helper and the escaping of
// names that go into URLs. The requests are in snapshots.go, indices.go and jobstore.go; an answer
// struct may leave out the tag of a key that differs from its field's name only in case, which
// encoding/json ignores.

// maxAnswerBytes bounds what is read of one Elasticsearch answer: a list page of 1,000
// snapshots is well under 1 MiB, and reading far more whole would break the memory target.
const maxAnswerBytes = 16 << 20

// esClients are the sidecar's Elasticsearch clients, by what their requests may do. Only reads
// are retried: a retried snapshot create, index delete or restore could act twice.
type esClients struct {
	// read sends requests that change nothing, retried on 502/503/504 and network errors.
	read esapi.Transport
	// write sends requests that change Elasticsearch (snapshots, job documents), once.
	write esapi.Transport
	// restore sends the restore's changes (write blocks, index delete, snapshot restore), once,
	// with the restore credentials when configured.
	restore esapi.Transport
	// root reads GET / at start with the main credentials, without the product check of
	// go-elasticsearch's client, so checkProduct can name whatever answers.
	root esapi.Transport
	// mainCreds and restoreCreds name the variables that set the credentials of read and write,
	// and of restore: when Elasticsearch refuses them, the error says which ones to fix.
	mainCreds, restoreCreds string
}

// credentials are what one client authenticates with (an API key or basic auth, never both),
// and the variables they come from ("" when none are set).
type credentials struct {
	username, password, apiKey string
	vars                       string
}

// mainCredentials are the credentials of the read and write clients.
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

// restoreCredentials are the restore's own credentials and true, or (none configured) the main
// ones and false.
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

// newESClients builds the clients over one net/http Transport: one pool of keep-alive
// connections serves them all (credentials go in each request's headers), with the CA.
func newESClients(ctx context.Context, cfg config) (esClients, error) {
	transport, err := newHTTPTransport(cfg)
	if err != nil {
		return esClients{}, err
	}
	// Signing (Amazon OpenSearch Service) is the last step before the wire: everything the
	// clients add or rewrite (headers, cluster_manager_timeout) is signed with the request.
	signed, err := awsSigning(ctx, cfg, transport)
	if err != nil {
		return esClients{}, err
	}
	return newESClientsOver(cfg, signed)
}

// newHTTPTransport is the net/http Transport every client sends through, trusting the
// configured CA.
func newHTTPTransport(cfg config) (*http.Transport, error) {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		// 64 concurrent clients, each with a read and perhaps a write in flight, keep their
		// connections instead of dialing anew under load.
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		// Elasticsearch is next door: gzip would cost both sides CPU to save loopback bytes.
		DisableCompression: true,
	}
	if cfg.ESCAFile != "" {
		// The CA goes into this transport, so TLS keeps its dialer and idle settings.
		caVar := cfg.connVar("CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES")
		ca, err := os.ReadFile(cfg.ESCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading %s %s: %w", caVar, cfg.ESCAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate; point it at %s's CA certificate", caVar, cfg.ESCAFile, cfg.product())
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return transport, nil
}

// newESClientsOver builds the clients over rt, through which every request to the database
// leaves the sidecar: a RoundTripper that must see each request (such as one that signs it for
// Amazon OpenSearch Service) wraps rt before it is passed here.
func newESClientsOver(cfg config, rt http.RoundTripper) (esClients, error) {
	main := cfg.mainCredentials()
	restoreCreds, own := cfg.restoreCredentials()
	read, err1 := newESClient(cfg, rt, main, true)
	write, err2 := newESClient(cfg, rt, main, false)
	restore, err3 := write, error(nil)
	if own {
		restore, err3 = newESClient(cfg, rt, restoreCreds, false)
	}
	root, err4 := newTransportClient(cfg, rt, main, true)
	if err := cmp.Or(err1, err2, err3, err4); err != nil {
		return esClients{}, err
	}
	return esClients{read: read, write: write, restore: restore, root: root, mainCreds: main.vars, restoreCreds: restoreCreds.vars}, nil
}

// newESClient builds one client of the configured product with these credentials over rt;
// retry tells whether the client may resend a request that got no usable answer. Both run the
// same esapi requests: go-elasticsearch's client for Elasticsearch; for OpenSearch its
// transport alone (elastic-transport-go), as the client refuses every server that does not
// say it is Elasticsearch (the X-Elastic-Product header). checkProduct makes sure at start
// that the server is the configured one.
func newESClient(cfg config, rt http.RoundTripper, creds credentials, retry bool) (esapi.Transport, error) {
	if cfg.openSearch() {
		return newTransportClient(cfg, clusterManagerTimeout{rt}, creds, retry)
	}
	client, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses:    cfg.ESURLs,
		Username:     creds.username,
		Password:     creds.password,
		APIKey:       encodedAPIKey(creds.apiKey), // "" for none
		Transport:    opaqueID{rt},
		DisableRetry: !retry,
	})
	if err != nil {
		return nil, err
	}
	return client, nil
}

// newTransportClient is an elastic-transport-go client with these credentials over rt, which
// does no product check of its own: the OpenSearch clients, and the one that reads GET / to
// tell which product answers.
func newTransportClient(cfg config, rt http.RoundTripper, creds credentials, retry bool) (esapi.Transport, error) {
	urls := make([]*url.URL, 0, len(cfg.ESURLs))
	for _, a := range cfg.ESURLs {
		u, err := url.Parse(a) // loadConfig checked each
		if err != nil {
			return nil, err
		}
		urls = append(urls, u)
	}
	opts := []elastictransport.Option{elastictransport.WithURLs(urls...), elastictransport.WithTransport(opaqueID{rt})}
	if creds.username != "" || creds.password != "" {
		opts = append(opts, elastictransport.WithBasicAuth(creds.username, creds.password))
	}
	if creds.apiKey != "" {
		opts = append(opts, elastictransport.WithAPIKey(encodedAPIKey(creds.apiKey)))
	}
	if !retry {
		opts = append(opts, elastictransport.WithDisableRetry())
	}
	return elastictransport.NewClient(opts...)
}

// clusterManagerTimeout sends OpenSearch the master_timeout that esapi's requests carry (the
// only name Elasticsearch knows) as cluster_manager_timeout: OpenSearch 2 deprecated
// master_timeout (its answers warn of it) and OpenSearch 3 removed it.
type clusterManagerTimeout struct{ next http.RoundTripper }

// RoundTrip renames the parameter, on a copy as RoundTrippers must not change the request.
func (c clusterManagerTimeout) RoundTrip(r *http.Request) (*http.Response, error) {
	if q := r.URL.Query(); q.Has("master_timeout") {
		q.Set("cluster_manager_timeout", q.Get("master_timeout"))
		q.Del("master_timeout")
		r = r.Clone(r.Context())
		r.URL.RawQuery = q.Encode()
	}
	return c.next.RoundTrip(r)
}

// opaqueID sends the request ID of the sidecar request an Elasticsearch request serves as
// X-Opaque-Id, which Elasticsearch shows in its tasks and slow logs, so an operator can follow
// one X-Request-Id into Elasticsearch. Background work (the registry's) carries none.
type opaqueID struct{ next http.RoundTripper }

// RoundTrip adds the header, on a copy as RoundTrippers must not change the request.
func (o opaqueID) RoundTrip(r *http.Request) (*http.Response, error) {
	if id := accessEntryOf(r).id; id != "" && r.Header.Get("X-Opaque-Id") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("X-Opaque-Id", id)
	}
	return o.next.RoundTrip(r)
}

// esCall runs one Elasticsearch request through client within timeout, closes its body, turns
// error answers into *esError and transport failures into errESUnreachable, and decodes a
// successful JSON answer into target (unless target is nil).
func (s *server) esCall(ctx context.Context, timeout time.Duration, client esapi.Transport, req esapi.Request, target any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := req.Do(ctx, client)
	if err != nil {
		// Both wrapped: answerOf tells an untrusted certificate from a node that is down.
		return fmt.Errorf("%w: %w", errESUnreachable, err)
	}
	defer res.Body.Close()
	// One byte more than the bound tells an answer that is too large.
	body, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes+1))
	if err != nil {
		return fmt.Errorf("%w: reading the answer: %v", errESUnreachable, err)
	}
	if len(body) > maxAnswerBytes {
		return fmt.Errorf("%w: more than %d MiB; ask for less (e.g. ?limit=) or raise Elasticsearch's filter", errAnswerTooLarge, maxAnswerBytes>>20)
	}
	if res.IsError() {
		// Elasticsearch's error shape; anything else (a gateway's page) is kept as it came.
		var eb struct {
			Error struct{ Type, Reason string } `json:"error"`
		}
		ee := &esError{Status: res.StatusCode, Type: http.StatusText(res.StatusCode), Reason: strings.TrimSpace(string(body))}
		if json.Unmarshal(body, &eb) == nil && eb.Error.Type != "" {
			ee.Type, ee.Reason = eb.Error.Type, eb.Error.Reason
		}
		if refusedCredentials(ee) {
			creds := s.es.mainCreds
			if client == s.es.restore {
				creds = s.es.restoreCreds // the main ones when the restore has none of its own
			}
			return &esAuthError{es: ee, creds: creds}
		}
		return ee
	}
	if target == nil {
		return nil
	}
	if err := json.Unmarshal(body, target); err != nil {
		return fmt.Errorf("decoding Elasticsearch's answer: %w", err)
	}
	return nil
}

// refusedCredentials tells whether Elasticsearch (or a gateway) refused the credentials or a
// privilege: any 401, a gateway's 403, and a security_exception. Other 403s (such as the
// cluster_block_exception of a write-blocked index) are not about credentials.
func refusedCredentials(e *esError) bool {
	return e.Status == http.StatusUnauthorized ||
		e.Status == http.StatusForbidden && (e.Type == "security_exception" || e.Type == http.StatusText(http.StatusForbidden))
}

// read, write and restoreWrite are esCall through the client for that kind of request.
func (s *server) read(ctx context.Context, req esapi.Request, target any) error {
	return s.esCall(ctx, s.cfg.ESTimeout, s.es.read, req, target)
}

func (s *server) write(ctx context.Context, req esapi.Request, target any) error {
	return s.esCall(ctx, s.cfg.ESTimeout, s.es.write, req, target)
}

func (s *server) restoreWrite(ctx context.Context, req esapi.Request, target any) error {
	return s.esCall(ctx, s.cfg.ESTimeout, s.es.restore, req, target)
}

// answerLost tells whether a request may have been carried out although its answer did not
// arrive: no answer at all, or a gateway's 502/503/504 instead of Elasticsearch's own.
func answerLost(err error) bool {
	var ee *esError
	if errors.As(err, &ee) {
		return ee.Status == http.StatusBadGateway || ee.Status == http.StatusServiceUnavailable || ee.Status == http.StatusGatewayTimeout
	}
	return errors.Is(err, errESUnreachable)
}

// seg escapes one name for a URL path segment: esapi puts names into paths as they are, and
// Elasticsearch URL-decodes them (the ID a%5fb would reach it as a_b, and %2a as a wildcard).
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
	size := 0
	for _, n := range names {
		l := len(seg(n)) + 1
		if len(out) == 0 || size+l > maxNamesBytes {
			out, size = append(out, nil), 0
		}
		out[len(out)-1] = append(out[len(out)-1], n)
		size += l
	}
	return out
}

// clusterStatus is the cluster's health status (green, yellow, red).
func (s *server) clusterStatus(ctx context.Context) (string, error) {
	var cluster struct{ Status string }
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
		Nodes map[string]struct{ Version string }
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

// checkProduct reads GET / and fails, with one sentence naming both products and the variable
// to change, when the server is not the product CAMUNDA_OPTIMIZE_DATABASE names: with the other
// product every request would fail later, or (OpenSearch's list answers) mean something else.
// Elasticsearch says what it is in the X-Elastic-Product header of every answer (an error too:
// a role without cluster:monitor/main), OpenSearch in the root's version.distribution. When
// neither can be read (the node is down) it logs why and lets the sidecar start: health then
// tells what is wrong.
func (s *server) checkProduct(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ESTimeout)
	defer cancel()
	res, err := esapi.InfoRequest{}.Do(ctx, s.es.root)
	if err != nil {
		s.log.Warn("cannot read the database's root (GET /) to check it is "+s.cfg.product()+"; starting anyway", "err", err)
		return nil
	}
	defer res.Body.Close()
	var root struct {
		Version struct{ Distribution, Number string } `json:"version"`
	}
	if body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20)); err == nil && !res.IsError() {
		_ = json.Unmarshal(body, &root) // an answer that is not the root names no product
	}
	server := ""
	switch {
	case res.Header.Get("X-Elastic-Product") == "Elasticsearch":
		server = "Elasticsearch"
	case root.Version.Distribution == databaseOpenSearch:
		server = "OpenSearch"
	default:
		s.log.Warn("the database's root (GET /) names no product the sidecar knows; starting anyway", "configured", s.cfg.product(), "status", res.StatusCode)
		return nil
	}
	if server == s.cfg.product() {
		return nil
	}
	at, version := strings.Join(s.cfg.esAddressesRedacted(), ","), ""
	if root.Version.Number != "" {
		version = " " + root.Version.Number
	}
	if s.cfg.openSearch() {
		return fmt.Errorf("the server at %s is Elasticsearch%s, but CAMUNDA_OPTIMIZE_DATABASE is opensearch; unset CAMUNDA_OPTIMIZE_DATABASE (or set it to elasticsearch) and set Optimize's Elasticsearch variables, as Optimize has them", at, version)
	}
	return fmt.Errorf("the server at %s is OpenSearch%s, but CAMUNDA_OPTIMIZE_DATABASE is elasticsearch (the default); set CAMUNDA_OPTIMIZE_DATABASE=opensearch and Optimize's OpenSearch variables (CAMUNDA_OPTIMIZE_OPENSEARCH_HOST, ...), as Optimize has them", at, version)
}
