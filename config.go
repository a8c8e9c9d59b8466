package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// config is everything the sidecar reads from its environment. Where Optimize has a variable for
// the same thing, the sidecar uses Optimize's name, so one Kubernetes env block serves both.
type config struct {
	// Repository is the Elasticsearch snapshot repository backups go to. Not required to start
	// (health, info and liveness work without it), but every backup call answers 400 until set.
	Repository string `env:"CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME"`

	// ESHost and ESPort address one Elasticsearch node; ESURLs overrides both.
	ESHost string `env:"OPTIMIZE_ELASTICSEARCH_HOST" envDefault:"localhost"`
	ESPort int    `env:"OPTIMIZE_ELASTICSEARCH_HTTP_PORT" envDefault:"9200"`
	// ESURLs is a comma-separated list of node URLs such as http://es-0:9200,http://es-1:9200.
	ESURLs []string `env:"OPTIMIZE_ELASTICSEARCH_URLS" envSeparator:","`

	// ESUsername and ESPassword are basic-auth credentials; backups need the create_snapshot
	// privilege, listing monitor_snapshot.
	ESUsername string `env:"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME"`
	ESPassword string `env:"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_PASSWORD"`

	// ESAPIKey is an Elasticsearch API key, sent as Authorization: ApiKey instead of basic auth
	// (the usual credential on Elastic Cloud): the "encoded" value Elasticsearch's create API key
	// answer holds, or its id:api_key. ESAPIKeyFile names a file holding it (a mounted secret).
	ESAPIKey     string `env:"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY"`
	ESAPIKeyFile string `env:"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE"`

	// RestoreESUsername and RestoreESPassword are used for restores, which need the manage
	// privilege on the Optimize indices; without them the main credentials are used.
	RestoreESUsername string `env:"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_USERNAME"`
	RestoreESPassword string `env:"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_PASSWORD"`
	// RestoreESAPIKey (or the file RestoreESAPIKeyFile) is an API key for restores instead of
	// RestoreESUsername and RestoreESPassword.
	RestoreESAPIKey     string `env:"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY"`
	RestoreESAPIKeyFile string `env:"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY_FILE"`

	// ESSSLEnabled switches host/port addressing to https.
	ESSSLEnabled bool `env:"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_ENABLED" envDefault:"false"`
	// ESCAFile is a PEM file with the CA that signed Elasticsearch's certificate.
	ESCAFile string `env:"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES"`

	// IndexPrefix is Optimize's index prefix: its indices are {prefix}-{name}.
	IndexPrefix string `env:"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX" envDefault:"optimize"`

	// Port is the management port the sidecar serves on (Optimize's actuator port).
	Port int `env:"MANAGEMENT_SERVER_PORT" envDefault:"8092"`
	// ListenAddress is the interface to bind; empty means all interfaces.
	ListenAddress string `env:"OPTIMIZE_BACKUP_LISTEN_ADDRESS"`

	// OptimizeVersion is the version tag of new backups; when empty it is read from the
	// schemaVersion of the {prefix}-metadata index at each backup.
	OptimizeVersion string `env:"OPTIMIZE_VERSION"`

	// OptimizeHealthURL is an Optimize URL (e.g. http://localhost:8090/api/readyz); when set,
	// a restore is refused while anything answers there.
	OptimizeHealthURL string `env:"OPTIMIZE_HEALTH_URL"`

	// AdminToken guards DELETE and restore; AdminTokenFile names a file holding it (a mounted secret).
	AdminToken     string `env:"OPTIMIZE_BACKUP_ADMIN_TOKEN"`
	AdminTokenFile string `env:"OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE"`

	// ESTimeout bounds every single Elasticsearch request, so a hung node never hangs a caller.
	ESTimeout time.Duration `env:"OPTIMIZE_BACKUP_ELASTICSEARCH_TIMEOUT" envDefault:"30s"`
	// PollInterval is the longest wait between two reads of running work (a restore's
	// progress, a safety backup); reads come sooner while the work is young (pollWait), and
	// part 1 of a backup is read at least every 50 ms so that part 2 follows it promptly.
	PollInterval time.Duration `env:"OPTIMIZE_BACKUP_POLL_INTERVAL" envDefault:"1s"`
	// Part2Grace is how long after part 1 ended a backup without part 2 still counts as
	// IN_PROGRESS, so that every replica reports the same state while part 2 is being started.
	Part2Grace time.Duration `env:"OPTIMIZE_BACKUP_PART2_GRACE" envDefault:"2m"`
	// ShutdownTimeout is how long a stopping sidecar lets requests and part-2 starts finish.
	ShutdownTimeout time.Duration `env:"OPTIMIZE_BACKUP_SHUTDOWN_TIMEOUT" envDefault:"20s"`

	// JobsIndex is the index that holds each installation's restore job, so that every replica
	// and a restarted sidecar see it. It is no installation's index (no {prefix}-{name}_v{N}).
	JobsIndex string `env:"OPTIMIZE_BACKUP_JOBS_INDEX" envDefault:"camunda-optimize-backup-jobs"`
	// RestoreWaitTimeout bounds each wait of a restore (the safety backup's snapshots, each
	// part's recovery); the default fits 100 GB on slow disks.
	RestoreWaitTimeout time.Duration `env:"OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT" envDefault:"6h"`

	// Schedule is a cron expression (minute hour day-of-month month day-of-week, or @daily and
	// the like) at whose slots the sidecar takes a backup by itself; empty: no schedule. A
	// leading sixth field of seconds is accepted for tests and drills.
	Schedule string `env:"OPTIMIZE_BACKUP_SCHEDULE"`
	// ScheduleTimezone is the IANA time zone the schedule is read in (02:00 is 02:00 there).
	ScheduleTimezone string `env:"OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE" envDefault:"UTC"`
	// RetentionKeep keeps the N newest COMPLETED scheduled backups (0: no count limit).
	RetentionKeep int `env:"OPTIMIZE_BACKUP_RETENTION_KEEP"`
	// RetentionMaxAge deletes COMPLETED scheduled backups whose slot is older (0: no age limit);
	// the newest COMPLETED one is always kept.
	RetentionMaxAge time.Duration `env:"OPTIMIZE_BACKUP_RETENTION_MAX_AGE"`
	// VerifyScheduled runs a restore drill (POST .../verify) on each scheduled backup that
	// completed.
	VerifyScheduled bool `env:"OPTIMIZE_BACKUP_VERIFY_SCHEDULED" envDefault:"false"`
}

// minAdminTokenLength is the shortest admin token accepted: shorter ones can be guessed.
const minAdminTokenLength = 16

// versionPattern is what a version tag must look like after reduction: plain X.Y.Z.
var versionPattern = regexp.MustCompile(`^\d+\.\d+\.\d+`)

// loadConfig reads the configuration through getenv (os.Getenv in production, a map in tests)
// and returns every problem at once, one line each, naming the variable and what to set.
func loadConfig(getenv func(string) string) (config, error) {
	params, err := env.GetFieldParams(&config{})
	if err != nil {
		return config{}, err
	}
	vars := map[string]string{}
	for _, p := range params {
		if v := getenv(p.Key); v != "" {
			vars[p.Key] = v
		}
	}
	cfg, err := env.ParseAsWithOptions[config](env.Options{Environment: vars})
	var problems []error
	unparsable := map[string]bool{}
	if err != nil {
		var agg env.AggregateError
		if !errors.As(err, &agg) {
			return config{}, err
		}
		for _, e := range agg.Errors {
			var pe env.ParseError
			if errors.As(e, &pe) {
				key := envKey(pe.Name)
				unparsable[key] = true
				problems = append(problems, configProblem{key, fmt.Sprintf("cannot read %q as %s; set a valid value or unset it to use the default", vars[key], pe.Type)})
			} else {
				problems = append(problems, e)
			}
		}
	}
	for _, p := range cfg.validate() {
		if !unparsable[p.Var] { // a variable that could not be parsed already has its line
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return config{}, errors.Join(problems...)
	}
	if cfg.AdminTokenFile != "" {
		b, err := os.ReadFile(cfg.AdminTokenFile)
		if err != nil {
			return config{}, fmt.Errorf("OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE: cannot read %s: %v; mount the secret there or unset the variable", cfg.AdminTokenFile, err)
		}
		cfg.AdminToken = strings.TrimSpace(string(b))
		if cfg.AdminToken == "" {
			return config{}, fmt.Errorf("OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE: %s is empty; put the admin token in it", cfg.AdminTokenFile)
		}
		if len(cfg.AdminToken) < minAdminTokenLength {
			return config{}, fmt.Errorf("OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE: the token in %s has %d characters; use at least %d (e.g. openssl rand -hex 32)", cfg.AdminTokenFile, len(cfg.AdminToken), minAdminTokenLength)
		}
	}
	cfg.AdminToken = strings.TrimSpace(cfg.AdminToken)
	for _, k := range []struct {
		key  *string
		file string
		name string
	}{
		{&cfg.ESAPIKey, cfg.ESAPIKeyFile, "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY_FILE"},
		{&cfg.RestoreESAPIKey, cfg.RestoreESAPIKeyFile, "OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY_FILE"},
	} {
		if k.file == "" {
			*k.key = strings.TrimSpace(*k.key)
			continue
		}
		key, err := readAPIKeyFile(k.name, k.file)
		if err != nil {
			return config{}, err
		}
		*k.key = key
	}
	if cfg.OptimizeVersion != "" {
		cfg.OptimizeVersion = versionPattern.FindString(cfg.OptimizeVersion)
	}
	return cfg, nil
}

// readAPIKeyFile reads the API key in the file that the variable name points at (a mounted
// secret) and checks it as validate checks a key given directly; the error never shows the key.
func readAPIKeyFile(name, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: cannot read %s: %v; mount the secret there or unset the variable", name, path, err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("%s: %s is empty; put the API key in it (the \"encoded\" value of Elasticsearch's create API key answer)", name, path)
	}
	if msg := apiKeyProblem(key); msg != "" {
		return "", fmt.Errorf("%s: the key in %s %s", name, path, msg)
	}
	return key, nil
}

// apiKeyProblem says what is wrong with an API key ("" if nothing): it goes into an
// Authorization header as it is, so it must be one token, either the base64 "encoded" value or
// id:api_key. The answer never shows the key.
func apiKeyProblem(key string) string {
	if key == "" {
		return "is blank; set the \"encoded\" value of Elasticsearch's create API key answer (or id:api_key), or unset the variable"
	}
	if scheme, _, ok := strings.Cut(key, " "); ok && strings.EqualFold(scheme, "ApiKey") {
		return `starts with "ApiKey "; set the key alone, without the scheme`
	}
	for _, c := range key {
		if c <= ' ' || c > '~' {
			return "holds spaces or characters that cannot go into an HTTP header; set the \"encoded\" value of Elasticsearch's create API key answer (or id:api_key)"
		}
	}
	if id, secret, ok := strings.Cut(key, ":"); ok && (id == "" || secret == "") {
		return "has an empty id or secret around its colon; set id:api_key or the \"encoded\" value of Elasticsearch's create API key answer"
	}
	return ""
}

// encodedAPIKey is the key as the Authorization: ApiKey header carries it: base64 of
// id:api_key. A key given as id:api_key is encoded here (base64 has no colon, so the two forms
// cannot be confused).
func encodedAPIKey(key string) string {
	if strings.Contains(key, ":") {
		return base64.StdEncoding.EncodeToString([]byte(key))
	}
	return key
}

// envKey is the variable behind a config field.
func envKey(field string) string {
	f, ok := reflect.TypeOf(config{}).FieldByName(field)
	if !ok {
		return field
	}
	key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
	return key
}

// configProblem is one problem of the configuration: the variable, and what is wrong and what
// to set.
type configProblem struct {
	Var string
	Msg string
}

func (p configProblem) Error() string { return p.Var + ": " + p.Msg }

// validate returns one problem per configuration problem that parsing alone does not catch.
func (c config) validate() []configProblem {
	var problems []configProblem
	bad := func(variable, format string, args ...any) {
		problems = append(problems, configProblem{variable, fmt.Sprintf(format, args...)})
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("MANAGEMENT_SERVER_PORT", "%d is not a TCP port; set 1-65535 (default 8092; 0 picks a free port)", c.Port)
	}
	if c.ESPort < 1 || c.ESPort > 65535 {
		bad("OPTIMIZE_ELASTICSEARCH_HTTP_PORT", "%d is not a TCP port; set 1-65535 (default 9200)", c.ESPort)
	}
	for _, u := range c.ESURLs {
		parsed, err := url.Parse(strings.TrimSpace(u))
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			shown := "an entry"
			if err == nil {
				shown = fmt.Sprintf("%q", parsed.Redacted())
			}
			bad("OPTIMIZE_ELASTICSEARCH_URLS", "%s is not an http(s) URL; set a comma-separated list such as http://elasticsearch:9200", shown)
		}
	}
	if c.Repository != "" && strings.ContainsAny(c.Repository, `/\*?"<>| ,#`) {
		bad("CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME", "%q is not a valid repository name; set the name the repository was registered with in Elasticsearch", c.Repository)
	}
	if c.IndexPrefix == "" || strings.ContainsAny(c.IndexPrefix, `/\*?"<>| ,#`) || strings.ToLower(c.IndexPrefix) != c.IndexPrefix {
		bad("CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX", "%q is not a valid index prefix; set Optimize's prefix (default optimize)", c.IndexPrefix)
	}
	if c.OptimizeVersion != "" && !versionPattern.MatchString(c.OptimizeVersion) {
		bad("OPTIMIZE_VERSION", "%q is not a version; set Optimize's version such as 3.9.0, or unset it to read it from Elasticsearch", c.OptimizeVersion)
	}
	if t := strings.TrimSpace(c.AdminToken); c.AdminToken != "" && len(t) < minAdminTokenLength {
		bad("OPTIMIZE_BACKUP_ADMIN_TOKEN", "the token has %d characters; use at least %d (e.g. openssl rand -hex 32)", len(t), minAdminTokenLength)
	}
	if c.JobsIndex == "" || strings.ContainsAny(c.JobsIndex, `/\*?"<>| ,#`) || strings.ToLower(c.JobsIndex) != c.JobsIndex || strings.HasPrefix(c.JobsIndex, c.IndexPrefix+"-") {
		bad("OPTIMIZE_BACKUP_JOBS_INDEX", "%q is not a valid index name outside the prefix [%s-]; set a lowercase index name such as camunda-optimize-backup-jobs", c.JobsIndex, c.IndexPrefix)
	}
	if c.AdminToken != "" && c.AdminTokenFile != "" {
		bad("OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE", "OPTIMIZE_BACKUP_ADMIN_TOKEN is set too; set only one")
	}
	c.validateCredentials(bad)
	if c.ESCAFile != "" {
		if _, err := os.Stat(c.ESCAFile); err != nil {
			bad("CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES", "%v; point it at a PEM file with Elasticsearch's CA", err)
		}
	}
	for name, d := range map[string]time.Duration{
		"OPTIMIZE_BACKUP_ELASTICSEARCH_TIMEOUT": c.ESTimeout,
		"OPTIMIZE_BACKUP_POLL_INTERVAL":         c.PollInterval,
		"OPTIMIZE_BACKUP_SHUTDOWN_TIMEOUT":      c.ShutdownTimeout,
		"OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT":  c.RestoreWaitTimeout,
	} {
		if d <= 0 {
			bad(name, "%v must be positive; set a duration such as 30s", d)
		}
	}
	problems = append(problems, c.validateSchedule()...)
	if c.Part2Grace < 0 {
		bad("OPTIMIZE_BACKUP_PART2_GRACE", "%v must not be negative; set a duration such as 2m", c.Part2Grace)
	}
	return problems
}

// validateCredentials reports, through bad, Elasticsearch credentials that contradict each
// other: an API key and basic auth (a user name or password, or one in an Elasticsearch URL)
// are mutually exclusive, and a key is given in the variable or in the file, not both. Which
// one the client would pick is not something an operator should have to know.
func (c config) validateCredentials(bad func(variable, format string, args ...any)) {
	urlUser := false
	for _, u := range c.ESURLs {
		if parsed, err := url.Parse(strings.TrimSpace(u)); err == nil && parsed.User != nil {
			urlUser = true
		}
	}
	for _, set := range []struct {
		key, keyFile, user, password string
		keyVar, userVars             string
		urlUser                      bool
	}{
		{c.ESAPIKey, c.ESAPIKeyFile, c.ESUsername, c.ESPassword, "OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY",
			"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME/_PASSWORD", urlUser},
		{c.RestoreESAPIKey, c.RestoreESAPIKeyFile, c.RestoreESUsername, c.RestoreESPassword, "OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY",
			"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_USERNAME/_PASSWORD", urlUser}, // URL credentials win over any key
	} {
		keyVar := set.keyVar
		if set.key != "" && set.keyFile != "" {
			bad(keyVar+"_FILE", "%s is set too; set only one", keyVar)
		} else if set.keyFile != "" {
			keyVar += "_FILE"
		}
		if set.key == "" && set.keyFile == "" {
			continue
		}
		if set.user != "" || set.password != "" {
			bad(keyVar, "%s is set too; an API key and basic auth are mutually exclusive: unset %s or %s", set.userVars, keyVar, set.userVars)
		}
		if set.urlUser {
			bad(keyVar, "OPTIMIZE_ELASTICSEARCH_URLS holds a user name; an API key and basic auth are mutually exclusive: remove user:password@ from the URLs or unset %s", keyVar)
		}
		if msg := apiKeyProblem(strings.TrimSpace(set.key)); set.key != "" && msg != "" {
			bad(keyVar, "the key %s", msg)
		}
	}
}

// esAddresses is the list of Elasticsearch URLs the client connects to.
func (c config) esAddresses() []string {
	if len(c.ESURLs) > 0 {
		out := make([]string, 0, len(c.ESURLs))
		for _, u := range c.ESURLs {
			out = append(out, strings.TrimSpace(u))
		}
		return out
	}
	scheme := "http"
	if c.ESSSLEnabled {
		scheme = "https"
	}
	return []string{scheme + "://" + c.ESHost + ":" + strconv.Itoa(c.ESPort)}
}

// esAddressesRedacted is esAddresses with passwords in URLs replaced by xxxxx: for answers and
// logs, which unauthenticated callers and log readers see.
func (c config) esAddressesRedacted() []string {
	out := c.esAddresses()
	for i, a := range out {
		if u, err := url.Parse(a); err == nil {
			out[i] = u.Redacted()
		} else {
			out[i] = "(unparsable URL)"
		}
	}
	return out
}
