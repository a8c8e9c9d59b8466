package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test Elasticsearch runs without security (the integ-test distribution has none), so a
// secured one is played by a proxy in front of it: it terminates TLS with a certificate of a
// CA made for the test, accepts exactly one credential (an API key or basic auth) and answers
// everything else as a secured Elasticsearch does, and it can refuse privileges with
// Elasticsearch's own 403.

// testTLS is a CA made for one test and a server certificate it signed for 127.0.0.1.
type testTLS struct {
	caFile string // the CA certificate, PEM, as the sidecar's CA variable takes it
	server tls.Certificate
}

// newTestTLS makes a CA and a certificate for 127.0.0.1 signed by it, valid for an hour.
func newTestTLS(t *testing.T) testTLS {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "optimize-backup test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serverTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "elasticsearch"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	serverDER, err := x509.CreateCertificate(rand.Reader, serverTemplate, ca, &serverKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return testTLS{caFile: caFile, server: tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}}
}

// securedES is the proxy playing a secured Elasticsearch.
type securedES struct {
	url string
	mu  sync.Mutex
	// accepted and refused count the requests that passed the credential check and those
	// that did not; privileged counts those refused for a missing privilege.
	accepted, refused, privileged int
}

// privilegeRefusal is a refused action: the action name and the privileges that grant it, as
// Elasticsearch names them in its 403.
type privilegeRefusal struct{ action, privileges string }

// startSecuredES starts the proxy on 127.0.0.1 in front of the test Elasticsearch: TLS with
// certificate, authorization accepted by authorized, and refuse (if not nil) deciding which
// authorized requests lack a privilege.
func startSecuredES(t *testing.T, es realES, cert tls.Certificate, authorized func(string) bool, refuse func(*http.Request) *privilegeRefusal) *securedES {
	t.Helper()
	target, err := url.Parse(es.url)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(target)
	p := &securedES{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		if !authorized(r.Header.Get("Authorization")) {
			p.count(&p.refused)
			// Elasticsearch's answer to a wrong or missing credential.
			w.Header().Set("WWW-Authenticate", `ApiKey, Basic realm="security" charset="UTF-8"`)
			writeESError(w, http.StatusUnauthorized, "unable to authenticate with provided credentials")
			return
		}
		if refuse != nil {
			if no := refuse(r); no != nil {
				p.count(&p.privileged)
				writeESError(w, http.StatusForbidden, fmt.Sprintf("action [%s] is unauthorized for API key id [sidecar-key] of user [optimize-backup], this action is granted by the cluster privileges [%s]", no.action, no.privileges))
				return
			}
		}
		p.count(&p.accepted)
		r.Header.Del("Authorization") // the node behind runs without security
		forward.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.url = srv.URL
	if !strings.HasPrefix(p.url, "https://127.0.0.1:") {
		t.Fatalf("proxy at %s; want https on 127.0.0.1", p.url)
	}
	return p
}

// count adds one to a counter of p.
func (p *securedES) count(n *int) {
	p.mu.Lock()
	*n++
	p.mu.Unlock()
}

// counts returns accepted, refused and privileged.
func (p *securedES) counts() (int, int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted, p.refused, p.privileged
}

// writeESError writes Elasticsearch's security_exception body with this status and reason.
func writeESError(w http.ResponseWriter, status int, reason string) {
	cause := map[string]string{"type": "security_exception", "reason": reason}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"error":  map[string]any{"root_cause": []any{cause}, "type": "security_exception", "reason": reason},
		"status": status,
	})
}

// apiKeyHeader accepts exactly Authorization: ApiKey <encoded> (the scheme in any case, as
// Elasticsearch does).
func apiKeyHeader(encoded ...string) func(string) bool {
	return func(h string) bool {
		scheme, key, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "ApiKey") {
			return false
		}
		for _, e := range encoded {
			if key == e {
				return true
			}
		}
		return false
	}
}

// basicHeader accepts exactly basic auth with this user and password.
func basicHeader(user, password string) func(string) bool {
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	return func(h string) bool { return h == want }
}

// snapshotCreatePath and snapshotRestorePath are the requests the refusing proxy refuses:
// PUT or POST /_snapshot/{repository}/{snapshot}, and POST .../{snapshot}/_restore.
var (
	snapshotCreatePath  = regexp.MustCompile(`^/_snapshot/[^/]+/[^/_][^/]*$`)
	snapshotRestorePath = regexp.MustCompile(`^/_snapshot/[^/]+/[^/]+/_restore$`)
)

// refuseSnapshotWrites refuses snapshot create and restore as Elasticsearch refuses an API key
// whose role lacks create_snapshot, and manage.
func refuseSnapshotWrites(r *http.Request) *privilegeRefusal {
	switch {
	case (r.Method == "PUT" || r.Method == "POST") && snapshotCreatePath.MatchString(r.URL.Path):
		return &privilegeRefusal{"cluster:admin/snapshot/create", "create_snapshot,manage,all"}
	case r.Method == "POST" && snapshotRestorePath.MatchString(r.URL.Path):
		return &privilegeRefusal{"cluster:admin/snapshot/restore", "manage,all"}
	}
	return nil
}

// errorDetail is the detailedMessage of an error answer.
func errorDetail(body []byte) string {
	var e apiError
	json.Unmarshal(body, &e)
	return e.DetailedMessage
}

// TestIntegrationSecuredElasticsearch runs sidecars against a TLS-terminating,
// credential-checking Elasticsearch (the proxy above, its CA given in
// CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES): with an API key from a
// mounted file (given as id:api_key, sent encoded) a backup is created, read to COMPLETED and
// listed; with basic auth it is listed too; a wrong key, and no CA, get the clear errors a
// user reads; and a key whose role lacks create_snapshot, and restore credentials that lack
// manage, get errors naming the action and the privileges that grant it.
func TestIntegrationSecuredElasticsearch(t *testing.T) {
	es := needES(t)
	elasticsearchOnly(t, "the proxy plays Elasticsearch's security: API keys, and its 401 and 403 answers")
	repo := es.newRepo("secured")
	certs := newTestTLS(t)

	keyFile := filepath.Join(t.TempDir(), "api-key")
	os.WriteFile(keyFile, []byte("sidecar-key:s3cret-api-key\n"), 0o600)
	backupKey := base64.StdEncoding.EncodeToString([]byte("sidecar-key:s3cret-api-key"))
	restoreKey := base64.StdEncoding.EncodeToString([]byte("restore-key:an0ther-s3cret"))
	byKey := startSecuredES(t, es, certs.server, apiKeyHeader(backupKey), nil)
	env := func(proxy *securedES, extra ...string) map[string]string {
		m := map[string]string{"OPTIMIZE_ELASTICSEARCH_URLS": proxy.url, "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME": repo,
			"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES": certs.caFile}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}

	t.Run("api key", func(t *testing.T) {
		sc := startSidecar(t, env(byKey, "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE", keyFile))
		if status, body := sc.call("POST", "/actuator/backups", `{"backupId": 41}`); status != 202 {
			t.Fatalf("create: got %d %s; want 202", status, body)
		}
		sc.waitState("41", stateCompleted)
		status, body, infos := sc.infos("/actuator/backups")
		if status != 200 || len(infos) != 1 || infos[0].BackupID != "41" || infos[0].State != stateCompleted {
			t.Errorf("list: got %d %s; want backup 41 COMPLETED", status, body)
		}
		if accepted, refused, _ := byKey.counts(); accepted < 4 || refused != 0 {
			t.Errorf("proxy: got %d requests with the key and %d refused; want every request with the key", accepted, refused)
		}
	})

	t.Run("basic auth", func(t *testing.T) {
		byPassword := startSecuredES(t, es, certs.server, basicHeader("optimize-backup", "pass word:1"), nil)
		sc := startSidecar(t, env(byPassword, "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME", "optimize-backup",
			"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_PASSWORD", "pass word:1"))
		if status, body, infos := sc.infos("/actuator/backups"); status != 200 || len(infos) != 1 || infos[0].State != stateCompleted {
			t.Errorf("list: got %d %s; want backup 41 COMPLETED", status, body)
		}
		if status, body := sc.call("GET", "/actuator/health", ""); status != 200 {
			t.Errorf("health: got %d %s; want 200", status, body)
		}
		if _, refused, _ := byPassword.counts(); refused != 0 {
			t.Errorf("proxy: got %d refused requests; want none", refused)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		wrong := base64.StdEncoding.EncodeToString([]byte("sidecar-key:not-the-key"))
		sc := startSidecar(t, env(byKey, "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY", wrong))
		for _, call := range [][2]string{{"GET", "/actuator/backups"}, {"POST", "/actuator/backups"}} {
			status, body := sc.call(call[0], call[1], `{"backupId": 42}`)
			t.Logf("%s %s: the user reads: %d %s", call[0], call[1], status, errorDetail(body))
			want := "Elasticsearch refused the sidecar's credentials (the API key in OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY) with 401 security_exception: unable to authenticate with provided credentials."
			if status != 500 || !strings.Contains(errorDetail(body), want) {
				t.Errorf("%s %s: got %d %s; want 500 saying %q", call[0], call[1], status, body, want)
			}
		}
		if status, body := sc.call("GET", "/actuator/health", ""); status != 503 || !strings.Contains(string(body), "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY") {
			t.Errorf("health: got %d %s; want 503 naming the key's variable", status, body)
		}
		if strings.Contains(sc.logs(), wrong) {
			t.Errorf("the sidecar logged the API key")
		}
	})

	t.Run("no CA", func(t *testing.T) {
		e := env(byKey, "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY", backupKey)
		delete(e, "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES")
		sc := startSidecar(t, e)
		status, body := sc.call("GET", "/actuator/backups/41", "")
		t.Logf("the user reads: %d %s", status, errorDetail(body))
		if status != 502 || !strings.Contains(errorDetail(body), "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES") {
			t.Errorf("got %d %s; want 502 naming the CA variable", status, body)
		}
	})

	t.Run("missing privileges", func(t *testing.T) {
		refusing := startSecuredES(t, es, certs.server, apiKeyHeader(backupKey, restoreKey), refuseSnapshotWrites)
		sc := startSidecar(t, env(refusing, "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY", backupKey))
		status, body := sc.call("POST", "/actuator/backups", `{"backupId": 43}`)
		detail := errorDetail(body)
		t.Logf("the user reads: %d %s", status, detail)
		for _, want := range []string{"Elasticsearch refused the action [cluster:admin/snapshot/create]",
			"the sidecar's credentials (the API key in OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY) lack the cluster privilege create_snapshot",
			"one of the cluster privileges [create_snapshot,manage,all]"} {
			if status != 500 || !strings.Contains(detail, want) {
				t.Errorf("create: got %d %s; want 500 saying %q", status, body, want)
			}
		}
		if got := es.snapshots(repo, "camunda_optimize_43_*"); len(got) != 0 {
			t.Errorf("got %d snapshots of backup 43; want none", len(got))
		}
	})

	t.Run("restore lacks manage", func(t *testing.T) {
		// Its own installation (prefix), so that nothing of the shared test data is touched:
		// backed up, deleted, then restored through credentials that lack manage.
		const prefix = "securedtest"
		for _, ix := range []string{prefix + "-import-index_v1", prefix + "-report_v1"} {
			es.must("PUT", "/"+ix, `{"settings":{"number_of_shards":1,"number_of_replicas":0}}`)
			es.must("POST", "/"+ix+"/_doc?refresh=true", `{"a":1}`)
			t.Cleanup(func() { es.do("DELETE", "/"+ix, "") })
		}
		t.Cleanup(func() { es.do("DELETE", "/camunda-optimize-backup-jobs/_doc/restore-"+prefix, "") })
		base := env(byKey, "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY", backupKey,
			"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX", prefix, "OPTIMIZE_VERSION", "3.9.0")
		sc := startSidecar(t, base)
		if status, body := sc.call("POST", "/actuator/backups", `{"backupId": 44}`); status != 202 {
			t.Fatalf("create: got %d %s; want 202", status, body)
		}
		sc.waitState("44", stateCompleted)
		sc.stop()
		es.must("DELETE", "/"+prefix+"-import-index_v1,"+prefix+"-report_v1", "")

		refusing := startSecuredES(t, es, certs.server, apiKeyHeader(backupKey, restoreKey), refuseSnapshotWrites)
		e := env(refusing, "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY", backupKey, "OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY", restoreKey,
			"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX", prefix, "OPTIMIZE_VERSION", "3.9.0")
		restorer := startSidecar(t, e)
		if status, body := restorer.call("POST", "/actuator/backups/44/restore", ""); status != 202 {
			t.Fatalf("restore: got %d %s; want 202", status, body)
		}
		var job restoreJob
		deadline := time.Now().Add(15 * time.Second)
		for job.State != restoreFailed {
			status, body := restorer.call("GET", "/actuator/backups/44/restore", "")
			if status != 200 || json.Unmarshal(body, &job) != nil || job.State == restoreCompleted || time.Now().After(deadline) {
				t.Fatalf("restore status: got %d %s; want FAILED within 15 s", status, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		reason := ""
		if job.FailureReason != nil {
			reason = *job.FailureReason
		}
		t.Logf("GET .../44/restore: failureReason %s", reason)
		for _, want := range []string{"Elasticsearch refused the action [cluster:admin/snapshot/restore]",
			"the sidecar's credentials (the API key in OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY) lack the cluster privilege manage",
			"one of the cluster privileges [manage,all]"} {
			if !strings.Contains(reason, want) {
				t.Errorf("got failureReason %q; want it to say %q", reason, want)
			}
		}
		if _, _, privileged := refusing.counts(); privileged != 1 {
			t.Errorf("proxy: got %d refused restore requests; want exactly 1 (a missing privilege is not retried)", privileged)
		}
		if status, _ := es.do("GET", "/"+prefix+"-report_v1", ""); status != 404 {
			t.Errorf("index %s-report_v1: got %d; want 404 (nothing restored)", prefix, status)
		}
	})
}
