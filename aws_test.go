package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awscredentials "github.com/aws/aws-sdk-go-v2/credentials"
)

// testAWSRegion and testAWSCreds are the region and identity the signature-checking proxy knows,
// as an Amazon OpenSearch Service domain knows its region and the IAM principal's key.
const testAWSRegion = "eu-west-1"

var testAWSCreds = aws.Credentials{AccessKeyID: "AKIDOPTIMIZEBACKUP", SecretAccessKey: "test-secret-key", SessionToken: "test-session-token", Source: "test"}

// sigV4Proxy stands in for Amazon OpenSearch Service in front of a backend: it recomputes each
// request's signature with the AWS SDK's own signer from what arrived (the headers the request
// says it signed, its path and query, the body as received, its x-amz-date) and the one
// identity it knows, and answers 403, as AWS does, when the Authorization header differs. So a
// test proves the signing against AWS's signer, not against a second copy of our own code.
type sigV4Proxy struct {
	creds   aws.Credentials
	region  string
	backend http.Handler

	mu       sync.Mutex
	verified []string // "METHOD path" of each request that passed
	refused  []string // why each refused request was refused
}

// ServeHTTP verifies r and hands it, with its body, to the backend, or answers 403.
func (p *sigV4Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = p.verify(r, body)
	}
	p.mu.Lock()
	if err != nil {
		p.refused = append(p.refused, err.Error())
	} else {
		p.verified = append(p.verified, r.Method+" "+r.URL.Path)
	}
	p.mu.Unlock()
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `{"message":%q}`, err.Error())
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	p.backend.ServeHTTP(w, r)
}

// verify recomputes r's signature and compares it with the one it carries.
func (p *sigV4Proxy) verify(r *http.Request, body []byte) error {
	auth := r.Header.Get("Authorization")
	signedHeaders, ok := authField(auth, "SignedHeaders=")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 ") || !ok {
		return fmt.Errorf("no SigV4 Authorization header: %q", auth)
	}
	signedAt, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil || time.Since(signedAt).Abs() > 5*time.Minute {
		return fmt.Errorf("x-amz-date %q is not within 5 minutes of now", r.Header.Get("X-Amz-Date"))
	}
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if got := r.Header.Get("X-Amz-Content-Sha256"); got != payloadHash {
		return fmt.Errorf("x-amz-content-sha256 %q is not the hash of the body received (%s)", got, payloadHash)
	}
	check := &http.Request{
		Method:        r.Method,
		URL:           &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Host:          r.Host,
		Header:        http.Header{},
		ContentLength: int64(len(body)),
	}
	for _, name := range strings.Split(signedHeaders, ";") {
		if name != "host" && name != "content-length" {
			check.Header[http.CanonicalHeaderKey(name)] = r.Header.Values(name)
		}
	}
	if err := v4.NewSigner().SignHTTP(r.Context(), p.creds, check, payloadHash, awsService, p.region, signedAt); err != nil {
		return err
	}
	if want := check.Header.Get("Authorization"); auth != want {
		return fmt.Errorf("signature mismatch: got %q; want %q", auth, want)
	}
	return nil
}

// authField returns the value of one field (such as "SignedHeaders=") of a SigV4 Authorization.
func authField(auth, field string) (string, bool) {
	_, rest, ok := strings.Cut(auth, field)
	value, _, _ := strings.Cut(rest, ",")
	return value, ok
}

// requests returns what passed and what was refused so far.
func (p *sigV4Proxy) requests() (verified, refused []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.verified...), append([]string(nil), p.refused...)
}

// newSigV4Proxy starts a proxy that checks signatures for testAWSCreds before backend.
func newSigV4Proxy(t testing.TB, backend http.Handler) (*sigV4Proxy, *httptest.Server) {
	t.Helper()
	p := &sigV4Proxy{creds: testAWSCreds, region: testAWSRegion, backend: backend}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv
}

// testSigner is a sigV4Transport with these credentials in front of http.DefaultTransport.
func testSigner(creds aws.Credentials, next http.RoundTripper) *sigV4Transport {
	static := awscredentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)
	return &sigV4Transport{next: next, signer: v4.NewSigner(), credentials: aws.NewCredentialsCache(static), region: testAWSRegion}
}

// echoBackend answers each request with its method, path, query and body, so a test sees
// what reached the node after the proxy.
var echoBackend = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	fmt.Fprintf(w, "%s %s?%s %s", r.Method, r.URL.EscapedPath(), r.URL.RawQuery, body)
})

// roundTripperFunc makes a function a RoundTripper.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestSigV4Transport sends requests of every method the sidecar uses, with and without bodies,
// odd path segments and queries, through the signing transport to the checking proxy: each
// passes and reaches the backend unchanged. A wrong secret, a body changed after signing and a
// request sent unsigned are refused with 403, and never reach the backend.
func TestSigV4Transport(t *testing.T) {
	proxy, srv := newSigV4Proxy(t, echoBackend)
	signing := &http.Client{Transport: testSigner(testAWSCreds, http.DefaultTransport)}
	wrongSecret := testAWSCreds
	wrongSecret.SecretAccessKey = "not-the-secret"
	tamper := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		r.Body = io.NopCloser(strings.NewReader(`{"indices":"optimize-b_v1"}`)) // after signing, same length
		return http.DefaultTransport.RoundTrip(r)
	})
	cases := []struct {
		name, method, path, body string
		client                   *http.Client
		wantStatus               int
		refusal                  string // what the proxy says when it refuses
	}{
		{"GET without body", "GET", "/_snapshot/repo/camunda_optimize_1_*?filter_path=snapshots.snapshot,snapshots.state", "", signing, 200, ""},
		{"GET with body", "GET", "/optimize-*/_search", `{"size":0}`, signing, 200, ""},
		{"PUT with body", "PUT", "/_snapshot/repo/camunda_optimize_1_3.9.0_part_1_of_2?wait_for_completion=false", `{"indices":"optimize-a_v1","include_global_state":false}`, signing, 200, ""},
		{"POST with body", "POST", "/_snapshot/repo/snap/_restore", `{"indices":"optimize-a_v1","rename_pattern":"(.+)","rename_replacement":"drill-$1"}`, signing, 200, ""},
		{"POST without body", "POST", "/optimize-a_v1/_refresh", "", signing, 200, ""},
		{"DELETE with body", "DELETE", "/_search/point_in_time", `{"id":"abc"}`, signing, 200, ""},
		{"DELETE without body", "DELETE", "/_snapshot/repo/" + seg("a%2ab") + "," + seg("c d"), "", signing, 200, ""},
		{"query needing escapes", "GET", "/_cat/indices?h=index,health&s=index:desc&expand_wildcards=open,closed", "", signing, 200, ""},
		{"wrong secret", "PUT", "/_snapshot/repo/snap", `{"indices":"optimize-a_v1"}`, &http.Client{Transport: testSigner(wrongSecret, http.DefaultTransport)}, 403, "signature mismatch"},
		{"body changed after signing", "PUT", "/_snapshot/repo/snap", `{"indices":"optimize-a_v1"}`, &http.Client{Transport: testSigner(testAWSCreds, tamper)}, 403, "is not the hash of the body received"},
		{"unsigned", "GET", "/", "", http.DefaultClient, 403, "no SigV4 Authorization header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, refusedBefore := proxy.requests()
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			res, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			got, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.wantStatus {
				t.Fatalf("got %d %s; want %d", res.StatusCode, got, tc.wantStatus)
			}
			_, refused := proxy.requests()
			if tc.wantStatus == 403 {
				if len(refused) != len(refusedBefore)+1 || !strings.Contains(refused[len(refused)-1], tc.refusal) {
					t.Errorf("got refusals %q; want one more, saying %q", refused[len(refusedBefore):], tc.refusal)
				}
				return
			}
			u, _ := url.Parse(srv.URL + tc.path)
			if want := fmt.Sprintf("%s %s?%s %s", tc.method, u.EscapedPath(), u.RawQuery, tc.body); !sameRequest(string(got), want) {
				t.Errorf("backend got %q; want %q", got, want)
			}
		})
	}
}

// sameRequest compares two echoes, the query compared as sorted values: the signer puts the
// query into SigV4's canonical order, which names the same parameters.
func sameRequest(got, want string) bool {
	split := func(s string) (string, url.Values, string) {
		head, rest, _ := strings.Cut(s, "?")
		query, body, _ := strings.Cut(rest, " ")
		values, _ := url.ParseQuery(query)
		return head, values, body
	}
	gh, gq, gb := split(got)
	wh, wq, wb := split(want)
	return gh == wh && gb == wb && gq.Encode() == wq.Encode()
}

// TestSigV4TransportResend checks that a signed request can be sent again (GetBody), as the
// client's retry does, and that the resend is signed again and passes: a retried read after a
// 502 must not arrive with a stale date or an empty body.
func TestSigV4TransportResend(t *testing.T) {
	var calls atomic.Int32
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		io.Copy(w, r.Body)
	})
	_, srv := newSigV4Proxy(t, backend)
	signer := testSigner(testAWSCreds, http.DefaultTransport)
	const body = `{"query":{"match_all":{}}}`
	req, _ := http.NewRequest("POST", srv.URL+"/optimize-*/_count", strings.NewReader(body))
	for attempt := 1; attempt <= 2; attempt++ {
		if attempt == 2 {
			b, err := req.GetBody() // as a retrying client rewinds the body
			if err != nil {
				t.Fatal(err)
			}
			req.Body = b
		}
		res, err := signer.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if want := []int{502, 200}[attempt-1]; res.StatusCode != want || attempt == 2 && string(got) != body {
			t.Errorf("attempt %d: got %d %q; want %d", attempt, res.StatusCode, got, want)
		}
	}
}

// isolateAWSEnv gives the AWS SDK's default chain an environment of the test's own: no shared
// files, no instance metadata (never a request to 169.254.169.254 from a test), and these
// variables.
func isolateAWSEnv(t *testing.T, vars map[string]string) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
		"AWS_SESSION_TOKEN": "", "AWS_ROLE_ARN": "", "AWS_WEB_IDENTITY_TOKEN_FILE": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "", "AWS_REGION": "", "AWS_DEFAULT_REGION": "",
	} {
		t.Setenv(k, v)
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
}

// TestAWSSigning checks the one function the clients are wrapped with: off, it changes
// nothing; on, it signs with the credentials of the SDK's default chain (here the environment)
// and the configured region; with no credentials anywhere it stops the start with a sentence
// naming what to set.
func TestAWSSigning(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		base := &http.Transport{}
		rt, err := awsSigning(t.Context(), config{}, base)
		if err != nil || rt != base {
			t.Errorf("got %T, %v; want the transport unchanged", rt, err)
		}
	})
	t.Run("credentials from the environment", func(t *testing.T) {
		isolateAWSEnv(t, map[string]string{"AWS_ACCESS_KEY_ID": testAWSCreds.AccessKeyID, "AWS_SECRET_ACCESS_KEY": testAWSCreds.SecretAccessKey, "AWS_SESSION_TOKEN": testAWSCreds.SessionToken})
		rt, err := awsSigning(t.Context(), config{AWSEnabled: true, AWSRegion: testAWSRegion}, http.DefaultTransport)
		if err != nil {
			t.Fatal(err)
		}
		proxy, srv := newSigV4Proxy(t, echoBackend)
		res, err := (&http.Client{Transport: rt}).Post(srv.URL+"/_snapshot/repo/snap", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if verified, refused := proxy.requests(); res.StatusCode != 200 || len(verified) != 1 {
			t.Errorf("got %d, refusals %q; want 200", res.StatusCode, refused)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		isolateAWSEnv(t, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		_, err := awsSigning(ctx, config{AWSEnabled: true, AWSRegion: testAWSRegion}, http.DefaultTransport)
		for _, want := range []string{"CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED: the AWS SDK found no credentials", "AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v; want an error containing %q", err, want)
			}
		}
	})
}

// TestConfigAWS checks the configuration of Amazon OpenSearch: the switch with its region
// (AWS_REGION before AWS_DEFAULT_REGION), a Serverless collection refused whether or not
// signing is on, a missing region, and credentials that would need the Authorization header
// the signature takes.
func TestConfigAWS(t *testing.T) {
	cfg, err := loadConfig(mapEnv(map[string]string{"CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED": "true", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "eu-west-1",
		"OPTIMIZE_ELASTICSEARCH_URLS": "https://search-camunda-abc123.eu-west-1.es.amazonaws.com:443"}))
	if err != nil || !cfg.AWSEnabled || cfg.AWSRegion != "eu-west-1" {
		t.Fatalf("got %v, enabled %v region %q; want no error, true, eu-west-1", err, cfg.AWSEnabled, cfg.AWSRegion)
	}
	if cfg, _ := loadConfig(mapEnv(map[string]string{"CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"})); cfg.AWSRegion != "us-east-1" {
		t.Errorf("got region %q; want AWS_DEFAULT_REGION's us-east-1", cfg.AWSRegion)
	}
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"serverless URL", map[string]string{"OPTIMIZE_ELASTICSEARCH_URLS": "https://abc123.eu-west-1.aoss.amazonaws.com"},
			[]string{"OPTIMIZE_ELASTICSEARCH_URLS: abc123.eu-west-1.aoss.amazonaws.com is an Amazon OpenSearch Serverless collection, which has no snapshot API to back up with; point the sidecar at an Amazon OpenSearch Service domain (its endpoint ends in .es.amazonaws.com) instead"}},
		{"serverless host, signed", map[string]string{"OPTIMIZE_ELASTICSEARCH_HOST": "ABC123.eu-west-1.AOSS.amazonaws.com.", "CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED": "true", "AWS_REGION": "eu-west-1"},
			[]string{"OPTIMIZE_ELASTICSEARCH_HOST: ABC123.eu-west-1.AOSS.amazonaws.com. is an Amazon OpenSearch Serverless collection"}},
		{"no region", map[string]string{"CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED": "true"},
			[]string{"CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED: requests to Amazon OpenSearch Service are signed for the domain's region, and none is set; set AWS_REGION (or AWS_DEFAULT_REGION) to it, such as eu-west-1"}},
		{"basic auth too", map[string]string{"CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED": "true", "AWS_REGION": "eu-west-1", "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME": "optimize",
			"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY": "id:key", "OPTIMIZE_ELASTICSEARCH_URLS": "https://u:p@search-x.eu-west-1.es.amazonaws.com"},
			[]string{"CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED: CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME/_PASSWORD is set too; an AWS-signed request carries its signature in the Authorization header",
				"CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED: the API key in OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY is set too",
				"CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED: OPTIMIZE_ELASTICSEARCH_URLS holds a user name"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(mapEnv(tc.env))
			for _, want := range tc.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("got %v; want a line containing %q", err, want)
				}
			}
		})
	}
}
