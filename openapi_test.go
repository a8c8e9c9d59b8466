package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The OpenAPI document (openapi.json) is checked two ways: TestOpenAPIRoutes compares its
// operations with the routes register puts on the mux, and every answer a golden test
// compares with testdata/golden is validated against the schema the document gives for its
// route and status (assertGolden calls checkOpenAPI). TestMain fails a complete run in which
// some golden file was not validated so. A new route therefore needs only its entry in
// openapi.json, and its golden tests going through serve and assertGolden.

// TestMain runs the tests, then, when every test ran (no -run, -skip or -short), fails if a
// golden file was compared by no test that validated its answer against openapi.json, or if a
// recording in testdata/es was served by no fake Elasticsearch (a recording nobody replays
// proves nothing, and rots).
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if code == 0 && completeRun() {
		if missing := goldensNotValidated(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: golden files whose answer no test validated against openapi.json: %s\n"+
				"compare them through serve and assertGolden, or delete them if no test writes them\n", strings.Join(missing, ", "))
			code = 1
		}
		if missing := recordingsNotServed(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: recordings in testdata/es that no fake Elasticsearch served: %s\n"+
				"serve them in a test that checks what the sidecar makes of them, or stop recording them\n", strings.Join(missing, ", "))
			code = 1
		}
	}
	os.Exit(code)
}

// completeRun tells whether this run runs every test, so that every golden file and every
// recording is used.
func completeRun() bool {
	for _, name := range []string{"test.run", "test.skip"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" {
			return false
		}
	}
	return !testing.Short()
}

// validatedGoldens are the golden files whose answers were validated against openapi.json.
var validatedGoldens sync.Map

// goldensNotValidated lists the golden files no test validated, sorted.
func goldensNotValidated() []string {
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.golden"))
	var missing []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".golden")
		if _, ok := validatedGoldens.Load(name); !ok {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	return missing
}

// servedRequests maps each answer serve produced to its request, so that assertGolden can
// find the route the answer is documented under.
var servedRequests sync.Map // *httptest.ResponseRecorder -> *http.Request

// patternRecorder is a registrar that keeps the patterns registered, in order.
type patternRecorder struct{ patterns []string }

// HandleFunc records the pattern.
func (p *patternRecorder) HandleFunc(pattern string, _ func(http.ResponseWriter, *http.Request)) {
	p.patterns = append(p.patterns, pattern)
}

// registeredRoutes are the patterns ("METHOD /path") register puts on the sidecar's mux.
func registeredRoutes(t *testing.T) []string {
	t.Helper()
	var rec patternRecorder
	newTestServer(t, testConfig("http://127.0.0.1:9")).register(&rec)
	return rec.patterns
}

// openAPIDoc is the part of openapi.json the tests read: each path's operations and their
// responses' content types.
type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]json.RawMessage
}

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// loadOpenAPI decodes the embedded document.
func loadOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	var doc openAPIDoc
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	return doc
}

// documentedRoutes are the operations of openapi.json as mux patterns ("METHOD /path").
func documentedRoutes(t *testing.T) []string {
	t.Helper()
	var routes []string
	for path, item := range loadOpenAPI(t).Paths {
		for _, m := range openAPIMethods {
			if _, ok := item[m]; ok {
				routes = append(routes, strings.ToUpper(m)+" "+path)
			}
		}
	}
	return routes
}

// TestOpenAPIRoutes checks that openapi.json documents every route the server registers, and
// nothing else: a route added without its documentation (or documentation of a route that
// was removed or renamed) fails here.
func TestOpenAPIRoutes(t *testing.T) {
	if got := loadOpenAPI(t).OpenAPI; got != "3.1.0" {
		t.Errorf("got openapi %q; want 3.1.0", got)
	}
	registered, documented := registeredRoutes(t), documentedRoutes(t)
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is registered but not in openapi.json; document it", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("openapi.json documents %s, which the server does not register; remove it", d)
		}
	}
	if len(registered) < 18 {
		t.Errorf("got %d registered routes; want at least the 18 routes register had when this test was written: is the recorder still used?", len(registered))
	}
}

// TestOpenAPIDocumentValid checks that openapi.json is an OpenAPI 3.1 document, by the
// OpenAPI Initiative's schema of such documents (testdata/openapi, see its README), and that
// every schema in components compiles as JSON Schema 2020-12.
func TestOpenAPIDocumentValid(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "openapi", "oas-3.1-schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	meta, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("https://spec.openapis.org/oas/3.1/schema/2022-10-07", meta); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("https://spec.openapis.org/oas/3.1/schema/2022-10-07")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPIDocument))
	if err != nil {
		t.Fatalf("openapi.json is not valid JSON: %v", err)
	}
	if err := schema.Validate(doc); err != nil {
		t.Errorf("openapi.json is not a valid OpenAPI 3.1 document: %v", err)
	}
	var components struct {
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDocument, &components); err != nil {
		t.Fatal(err)
	}
	for name := range components.Components.Schemas {
		c, err := openAPICompiler()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Compile("file:///openapi.json#/components/schemas/" + pointerEscape(name)); err != nil {
			t.Errorf("components.schemas.%s is not a valid JSON Schema 2020-12: %v", name, err)
		}
	}
}

// TestOpenAPIServed checks that GET /actuator/openapi answers the document byte for byte, as
// JSON, without the admin token.
func TestOpenAPIServed(t *testing.T) {
	srv := newTestServer(t, testConfig("http://127.0.0.1:9"))
	res := serve(t, srv, "GET", "/actuator/openapi", "", nil)
	if res.Code != http.StatusOK || !bytes.Equal(res.Body.Bytes(), openAPIDocument) {
		t.Fatalf("got %d with %d bytes; want 200 with openapi.json (%d bytes)", res.Code, res.Body.Len(), len(openAPIDocument))
	}
	if ct := res.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("got Content-Type %q; want application/json", ct)
	}
}

// TestOpenAPIRejectsWrongAnswers checks that the validation of golden answers can fail: an
// answer with a missing field, a wrong type, an undocumented status or a body where none is
// documented is refused. Without this, a schema that accepts everything would pass every test.
func TestOpenAPIRejectsWrongAnswers(t *testing.T) {
	for _, tc := range []struct {
		name, method, path string
		status             int
		body, contentType  string
	}{
		{"no state", "GET", "/actuator/backups/1", 200, `{"backupId":1,"failureReason":null,"details":[]}`, "application/json"},
		{"unknown state", "GET", "/actuator/backups/1", 200, `{"backupId":1,"state":"DONE","failureReason":null,"details":[]}`, "application/json"},
		{"string ID of an integer on 3.10+", "GET", "/actuator/backups/1", 200, `{"backupId":"1","state":"COMPLETED","failureReason":null,"details":[]}`, "application/json"},
		{"number ID on 3.9", "GET", "/actuator/backup/1", 200, `{"backupId":1,"state":"COMPLETED","failureReason":null,"details":[]}`, "application/json"},
		{"extra field", "GET", "/actuator/health/liveness", 200, `{"status":"UP","extra":1}`, "application/json"},
		{"undocumented status", "GET", "/actuator/backups/1", 418, `{}`, "application/json"},
		{"502 on 3.9", "GET", "/actuator/backup/1", 502, `{"errorCode":"elasticsearchConnectionError","errorMessage":"x","detailedMessage":"y"}`, "application/json"},
		{"unknown error code", "GET", "/actuator/backups/1", 404, `{"errorCode":"gone","errorMessage":"x","detailedMessage":"y"}`, "application/json"},
		{"body on 204", "DELETE", "/actuator/backups/1", 204, `{}`, "application/json"},
		{"wrong content type", "GET", "/actuator/info", 200, `{}`, "text/plain"},
		{"no-route answer not an error", "GET", "/actuator/nothing", 404, `{"status":"UP"}`, "application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := httptest.NewRecorder()
			res.Header().Set("Content-Type", tc.contentType)
			res.WriteHeader(tc.status)
			res.WriteString(tc.body)
			if err := openAPIProblem(t, httptest.NewRequest(tc.method, tc.path, nil), res); err == nil {
				t.Errorf("got the answer %d %s accepted; want it refused", tc.status, tc.body)
			}
		})
	}
}

// checkOpenAPI validates an answer that serve produced, and that assertGolden compares with
// the golden file name, against openapi.json, and marks the golden file validated.
func checkOpenAPI(t *testing.T, name string, res *httptest.ResponseRecorder) {
	t.Helper()
	req, ok := servedRequests.Load(res)
	if !ok {
		t.Errorf("golden %s: the answer was not produced by serve, so its route is unknown; send the request through serve", name)
		return
	}
	if err := openAPIProblem(t, req.(*http.Request), res); err != nil {
		t.Errorf("golden %s: the answer does not match openapi.json: %v", name, err)
		return
	}
	validatedGoldens.Store(name, true)
}

// openAPIProblem returns why the answer to req does not match openapi.json, or nil: the route
// (as the sidecar's mux matches it) must document the status; the answer must have the
// documented content type and validate against its schema, or have no body where none is
// documented. An answer of no route (404, 405) must be the documented Error body.
func openAPIProblem(t *testing.T, req *http.Request, res *httptest.ResponseRecorder) error {
	t.Helper()
	mux := http.NewServeMux()
	for _, p := range registeredRoutes(t) {
		mux.HandleFunc(p, func(http.ResponseWriter, *http.Request) {})
	}
	_, pattern := mux.Handler(req)
	if pattern == "" {
		if res.Code != http.StatusNotFound && res.Code != http.StatusMethodNotAllowed {
			return fmt.Errorf("%s %s matches no route but answered %d; only 404 and 405 are documented there", req.Method, req.URL.Path, res.Code)
		}
		return validateJSON(t, "#/components/schemas/Error", res.Body.Bytes())
	}
	method, path, _ := strings.Cut(pattern, " ")
	responsePtr := "/paths/" + pointerEscape(path) + "/" + strings.ToLower(method) + "/responses/" + strconv.Itoa(res.Code)
	var response struct {
		Content map[string]json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(lookupPointer(t, responsePtr), &response); err != nil {
		return fmt.Errorf("%s answered %d, which openapi.json does not document", pattern, res.Code)
	}
	if len(response.Content) == 0 {
		if res.Body.Len() > 0 {
			return fmt.Errorf("%s answered %d with a body; openapi.json documents none", pattern, res.Code)
		}
		return nil
	}
	got, _, err := mime.ParseMediaType(res.Header().Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("%s answered %d without a valid Content-Type", pattern, res.Code)
	}
	if _, ok := response.Content[got]; !ok {
		return fmt.Errorf("%s answered %d as %s; openapi.json documents %v", pattern, res.Code, got, keys(response.Content))
	}
	if got != "application/json" {
		return nil // text: nothing to validate beyond the type
	}
	return validateJSON(t, "#"+responsePtr+"/content/"+pointerEscape(got)+"/schema", res.Body.Bytes())
}

// keys are a map's keys, sorted.
func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// pointerEscape escapes one JSON pointer token (RFC 6901).
func pointerEscape(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}

// lookupPointer returns the JSON at a pointer into openapi.json, or nil when there is none.
func lookupPointer(t *testing.T, ptr string) json.RawMessage {
	t.Helper()
	var node any
	if err := json.Unmarshal(openAPIDocument, &node); err != nil {
		t.Fatal(err)
	}
	for _, token := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		token = strings.ReplaceAll(strings.ReplaceAll(token, "~1", "/"), "~0", "~")
		obj, ok := node.(map[string]any)
		if !ok {
			return nil
		}
		if node, ok = obj[token]; !ok {
			return nil
		}
	}
	out, _ := json.Marshal(node)
	return out
}

// openAPICompiler compiles schemas out of openapi.json (JSON Schema 2020-12, OpenAPI 3.1's
// dialect), with formats such as date-time asserted, once per test binary.
var openAPICompiler = sync.OnceValues(func() (*jsonschema.Compiler, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPIDocument))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("file:///openapi.json", doc); err != nil {
		return nil, err
	}
	return c, nil
})

// compiledSchemas caches compiled schemas by their location in openapi.json.
var compiledSchemas sync.Map // fragment -> *jsonschema.Schema

// validateJSON validates body against the schema at fragment ("#/json/pointer") of
// openapi.json.
func validateJSON(t *testing.T, fragment string, body []byte) error {
	t.Helper()
	var schema *jsonschema.Schema
	if cached, ok := compiledSchemas.Load(fragment); ok {
		schema = cached.(*jsonschema.Schema)
	} else {
		c, err := openAPICompiler()
		if err != nil {
			t.Fatalf("openapi.json cannot be read as JSON Schema: %v", err)
		}
		if schema, err = c.Compile("file:///openapi.json" + fragment); err != nil {
			t.Fatalf("openapi.json: the schema at %s does not compile: %v", fragment, err)
		}
		compiledSchemas.Store(fragment, schema)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("the body is not JSON: %v", err)
	}
	if err := schema.Validate(inst); err != nil {
		return fmt.Errorf("the body does not validate against %s: %v", fragment, err)
	}
	return nil
}
