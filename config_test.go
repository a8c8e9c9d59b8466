package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// mapEnv turns a map into a getenv.
func mapEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestConfigDefaults checks that an empty environment gives Optimize's defaults.
func TestConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(mapEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"http://localhost:9200"}, cfg.ESURLs); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if cfg.Port != 8092 || cfg.IndexPrefix != "optimize" || cfg.Part2Grace != 2*time.Minute {
		t.Errorf("got port %d prefix %q grace %v; want 8092, optimize, 2m", cfg.Port, cfg.IndexPrefix, cfg.Part2Grace)
	}
}

// TestConfigValues checks Optimize's variable names, URL lists, version reduction and the
// token file.
func TestConfigValues(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("  s3cret-s3cret-s3cret\n"), 0o600)
	cfg, err := loadConfig(mapEnv(map[string]string{
		"CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME":              "backups",
		"OPTIMIZE_ELASTICSEARCH_URLS":                          "http://es-0:9200, https://es-1:9200",
		"OPTIMIZE_VERSION":                                     "3.9.0-SNAPSHOT",
		"OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE":                     tokenFile,
		"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX": "zeebe-optimize",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"http://es-0:9200", "https://es-1:9200"}, cfg.ESURLs); diff != "" {
		t.Errorf("addresses (-want +got):\n%s", diff)
	}
	if cfg.OptimizeVersion != "3.9.0" || cfg.AdminToken != "s3cret-s3cret-s3cret" || cfg.Repository != "backups" || cfg.IndexPrefix != "zeebe-optimize" {
		t.Errorf("got version %q token %q repository %q prefix %q", cfg.OptimizeVersion, cfg.AdminToken, cfg.Repository, cfg.IndexPrefix)
	}
}

// TestConfigErrors checks that every problem is reported at once, one line each naming its
// variable: values that do not parse, values that parse but are wrong, secret files that
// cannot be read or are empty, and a schedule whose expression and time zone are both wrong.
func TestConfigErrors(t *testing.T) {
	emptyKey := filepath.Join(t.TempDir(), "key")
	os.WriteFile(emptyKey, []byte("\n"), 0o600)
	_, err := loadConfig(mapEnv(map[string]string{
		"MANAGEMENT_SERVER_PORT":                     "80000",
		"OPTIMIZE_ELASTICSEARCH_HTTP_PORT":           "nine",
		"OPTIMIZE_ELASTICSEARCH_URLS":                "es-0:9200",
		"OPTIMIZE_VERSION":                           "latest",
		"OPTIMIZE_BACKUP_POLL_INTERVAL":              "0s",
		"OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE":           "/nonexistent",
		"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE": emptyKey,
		"CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME":    "a/b",
		"OPTIMIZE_BACKUP_SCHEDULE":                   "daily at 2",
		"OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE":          "Mars/Base",
		"OPTIMIZE_HEALTH_URL":                        "localhost:8090/api/readyz",
	}))
	if err == nil {
		t.Fatal("got no error; want one per problem")
	}
	want := []string{
		"MANAGEMENT_SERVER_PORT: 80000 is not a TCP port",
		`OPTIMIZE_ELASTICSEARCH_HTTP_PORT: cannot read "nine"`,
		`OPTIMIZE_ELASTICSEARCH_URLS: "es-0:9200" is not an http(s) URL`,
		`OPTIMIZE_VERSION: "latest" is not a version`,
		"OPTIMIZE_BACKUP_POLL_INTERVAL: 0s must be positive",
		"OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE: cannot read /nonexistent",
		"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE: " + emptyKey + " is empty",
		`CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME: "a/b" is not a valid repository name`,
		`OPTIMIZE_BACKUP_SCHEDULE: "daily at 2" is not a cron expression`,
		`OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE: "Mars/Base" is not a time zone`,
		"OPTIMIZE_HEALTH_URL: the value is not an http(s) URL",
	}
	// One line each: an unparsable port has no second line about its zero value.
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("got %d lines:\n%s\nwant %d", len(lines), err, len(want))
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("got:\n%s\nwant a line with %q", err, w)
		}
	}
}

// TestConfigElasticsearchHost checks the URL built from host, port and SSL switch: an IPv6
// address gets its brackets (given bare or already bracketed), and a host that cannot go into
// a URL is refused at start rather than by the client later.
func TestConfigElasticsearchHost(t *testing.T) {
	for _, tc := range []struct {
		host, port, ssl, want string
	}{
		{"::1", "", "", "http://[::1]:9200"},
		{"[::1]", "", "", "http://[::1]:9200"},
		{"fd00::9", "9201", "true", "https://[fd00::9]:9201"},
		{"10.0.0.7", "", "", "http://10.0.0.7:9200"},
		{"elasticsearch", "", "", "http://elasticsearch:9200"},
		{"es-0:9200", "", "", ""},
		{"es/0", "", "", ""},
		{"[::1", "", "", ""},
	} {
		cfg, err := loadConfig(mapEnv(map[string]string{"OPTIMIZE_ELASTICSEARCH_HOST": tc.host,
			"OPTIMIZE_ELASTICSEARCH_HTTP_PORT": tc.port, "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_ENABLED": tc.ssl}))
		switch {
		case tc.want == "" && (err == nil || !strings.Contains(err.Error(), "OPTIMIZE_ELASTICSEARCH_HOST: ")):
			t.Errorf("host %q: got %v; want a problem naming OPTIMIZE_ELASTICSEARCH_HOST", tc.host, err)
		case tc.want != "" && err != nil:
			t.Errorf("host %q: got %v; want %s", tc.host, err, tc.want)
		case tc.want != "" && (len(cfg.ESURLs) != 1 || cfg.ESURLs[0] != tc.want):
			t.Errorf("host %q: got URLs %q; want %s", tc.host, cfg.ESURLs, tc.want)
		}
	}
}

// TestConfigSecrets checks the rules that keep secrets in: an admin token is trimmed and must
// have 16 characters or more (from the variable and from the file), and a password in an
// Elasticsearch URL shows redacted in what the sidecar prints.
func TestConfigSecrets(t *testing.T) {
	cfg, err := loadConfig(mapEnv(map[string]string{
		"OPTIMIZE_BACKUP_ADMIN_TOKEN": "  0123456789abcdef\n",
		"OPTIMIZE_ELASTICSEARCH_URLS": "http://elastic:hunter2-password@es-0:9200",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminToken != "0123456789abcdef" {
		t.Errorf("got token %q; want it trimmed", cfg.AdminToken)
	}
	if got := strings.Join(cfg.esAddressesRedacted(), ","); strings.Contains(got, "hunter2") {
		t.Errorf("got redacted addresses %q; want no password", got)
	}

	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("short\n"), 0o600)
	for name, env := range map[string]map[string]string{
		"variable": {"OPTIMIZE_BACKUP_ADMIN_TOKEN": " short-token "},
		"file":     {"OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE": tokenFile},
	} {
		_, err := loadConfig(mapEnv(env))
		if err == nil || !strings.Contains(err.Error(), "at least 16") {
			t.Errorf("%s: got %v; want an error asking for at least 16 characters", name, err)
		}
	}
	_, err = loadConfig(mapEnv(map[string]string{"OPTIMIZE_ELASTICSEARCH_URLS": "ftp://elastic:hunter2-password@es-0:9200"}))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("got %v; want an error that does not show the password", err)
	}
}

// TestConfigOpenSearch checks that CAMUNDA_OPTIMIZE_DATABASE=opensearch reads Optimize's own
// OpenSearch variables (and ignores its Elasticsearch ones, as Optimize does), that problems
// name the OpenSearch variable that was set, and that an unknown database or an Elasticsearch
// API key with OpenSearch is refused.
func TestConfigOpenSearch(t *testing.T) {
	cfg, err := loadConfig(mapEnv(map[string]string{
		"CAMUNDA_OPTIMIZE_DATABASE":                         "OpenSearch",
		"CAMUNDA_OPTIMIZE_OPENSEARCH_HOST":                  "opensearch",
		"CAMUNDA_OPTIMIZE_OPENSEARCH_HTTP_PORT":             "9201",
		"CAMUNDA_OPTIMIZE_OPENSEARCH_SSL_ENABLED":           "true",
		"CAMUNDA_OPTIMIZE_OPENSEARCH_SECURITY_USERNAME":     "optimize",
		"CAMUNDA_OPTIMIZE_OPENSEARCH_SECURITY_PASSWORD":     "secret",
		"CAMUNDA_OPTIMIZE_OPENSEARCH_SETTINGS_INDEX_PREFIX": "os-optimize",
		"OPTIMIZE_ELASTICSEARCH_HOST":                       "elasticsearch",
		"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME":  "elastic",
	}))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{cfg.Database, strings.Join(cfg.ESURLs, ","), cfg.ESUsername, cfg.ESPassword, cfg.IndexPrefix}
	if diff := cmp.Diff([]string{"opensearch", "https://opensearch:9201", "optimize", "secret", "os-optimize"}, got); diff != "" {
		t.Errorf("database, URLs, user, password, prefix (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"CAMUNDA_OPTIMIZE_DATABASE": "postgres"}, `CAMUNDA_OPTIMIZE_DATABASE: "postgres" is not a database Optimize runs on`},
		{map[string]string{"CAMUNDA_OPTIMIZE_DATABASE": "opensearch", "CAMUNDA_OPTIMIZE_OPENSEARCH_HTTP_PORT": "0"}, "CAMUNDA_OPTIMIZE_OPENSEARCH_HTTP_PORT: 0 is not a TCP port"},
		{map[string]string{"CAMUNDA_OPTIMIZE_DATABASE": "opensearch", "CAMUNDA_OPTIMIZE_OPENSEARCH_SETTINGS_INDEX_PREFIX": "Optimize"}, `CAMUNDA_OPTIMIZE_OPENSEARCH_SETTINGS_INDEX_PREFIX: "Optimize" is not a valid index prefix`},
		{map[string]string{"CAMUNDA_OPTIMIZE_DATABASE": "opensearch", "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY": "id:key"}, "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY: OpenSearch has no Elasticsearch API keys"},
	} {
		_, err := loadConfig(mapEnv(tc.env))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v; want a line with %q", tc.env, err, tc.want)
		}
	}
}
