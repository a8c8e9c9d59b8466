package main

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // the binary is static and its image may have no zoneinfo: OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE must work anyway

	"github.com/caarlos0/env/v11"
	"github.com/robfig/cron/v3"
)

// config is everything the sidecar reads from its environment. Where Optimize has a variable for
// the same thing, the sidecar uses Optimize's name, so one Kubernetes env block serves both.
type config struct {
	// Database is the store Optimize keeps its indices in, read as Optimize reads it:
	// elasticsearch or opensearch. With opensearch the connection comes from Optimize's
	// OpenSearch variables (the OS* fields), which loadConfig puts into the ES* fields.
	Database string `env:"CAMUNDA_OPTIMIZE_DATABASE" envDefault:"elasticsearch"`

	// Repository is the Elasticsearch snapshot repository backups go to. Not required to start
	// (health, info and liveness work without it), but every backup call answers 400 until set.
	Repository string `env:"CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME"`

	// ESHost and ESPort address one Elasticsearch node (a name, an IPv4 address, or an IPv6
	// address with or without brackets); ESURLs overrides both.
	ESHost string `env:"OPTIMIZE_ELASTICSEARCH_HOST" envDefault:"localhost"`
	ESPort int    `env:"OPTIMIZE_ELASTICSEARCH_HTTP_PORT" envDefault:"9200"`
	// ESURLs is a comma-separated list of node URLs such as http://es-0:9200,http://es-1:9200.
	// loadConfig leaves in it the validated URLs the clients connect to: these, trimmed, or the
	// one it builds from ESHost, ESPort and ESSSLEnabled.
	ESURLs []string `env:"OPTIMIZE_ELASTICSEARCH_URLS" envSeparator:","`

	// ESUsername and ESPassword are basic-auth credentials; backups need the create_snapshot
	// privilege, listing monitor_snapshot.
	ESUsername string `env:"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME"`
	ESPassword string `env:"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_PASSWORD"`

	// ESAPIKey is an Elasticsearch API key, sent as Authorization: ApiKey instead of basic auth
	// (the usual credential on Elastic Cloud): the "encoded" value Elasticsearch's create API key
	// answer holds, or its id:api_key. ESAPIKeyFile names a file holding it (a mounted secret);
	// loadConfig leaves the key, trimmed, in ESAPIKey, whichever was set.
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

	// AWSEnabled signs every request with AWS Signature Version 4 for Amazon OpenSearch Service
	// (aws.go), with the credentials of the AWS SDK's default chain instead of basic auth:
	// Optimize's own variable, which the Camunda Helm chart sets from
	// optimize.database.opensearch.aws.enabled.
	AWSEnabled bool `env:"CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED" envDefault:"false"`
	// AWSRegion is the region requests are signed for, read as the AWS SDK reads it: AWS_REGION,
	// else AWS_DEFAULT_REGION. loadConfig leaves the one that applies in AWSRegion.
	AWSRegion        string `env:"AWS_REGION"`
	AWSDefaultRegion string `env:"AWS_DEFAULT_REGION"`

	// IndexPrefix is Optimize's index prefix: its indices are {prefix}-{name}.
	IndexPrefix string `env:"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX" envDefault:"optimize"`

	// OSHost, OSPort, OSUsername, OSPassword, OSSSLEnabled, OSCAFile and OSIndexPrefix are
	// Optimize's own OpenSearch variables, read only with CAMUNDA_OPTIMIZE_DATABASE=opensearch
	// (https://docs.camunda.io/docs/self-managed/components/optimize/configuration/system-configuration/):
	// the same settings as ESHost, ESPort, ESUsername, ESPassword, ESSSLEnabled, ESCAFile and
	// IndexPrefix, into which loadConfig copies them.
	OSHost        string `env:"CAMUNDA_OPTIMIZE_OPENSEARCH_HOST" envDefault:"localhost"`
	OSPort        int    `env:"CAMUNDA_OPTIMIZE_OPENSEARCH_HTTP_PORT" envDefault:"9200"`
	OSUsername    string `env:"CAMUNDA_OPTIMIZE_OPENSEARCH_SECURITY_USERNAME"`
	OSPassword    string `env:"CAMUNDA_OPTIMIZE_OPENSEARCH_SECURITY_PASSWORD"`
	OSSSLEnabled  bool   `env:"CAMUNDA_OPTIMIZE_OPENSEARCH_SSL_ENABLED" envDefault:"false"`
	OSCAFile      string `env:"CAMUNDA_OPTIMIZE_OPENSEARCH_SECURITY_SSL_CERTIFICATE_AUTHORITIES"`
	OSIndexPrefix string `env:"CAMUNDA_OPTIMIZE_OPENSEARCH_SETTINGS_INDEX_PREFIX" envDefault:"optimize"`

	// Port is the management port the sidecar serves on (Optimize's actuator port).
	Port int `env:"MANAGEMENT_SERVER_PORT" envDefault:"8092"`
	// ListenAddress is the interface to bind; empty means all interfaces.
	ListenAddress string `env:"OPTIMIZE_BACKUP_LISTEN_ADDRESS"`

	// OptimizeVersion is the version tag of new backups; when empty it is read from the
	// schemaVersion of the {prefix}-metadata index at each backup.
	OptimizeVersion string `env:"OPTIMIZE_VERSION"`

	// OptimizeHealthURL is an http(s) Optimize URL (e.g. http://localhost:8090/api/readyz);
	// when set, a restore is refused while anything answers there.
	OptimizeHealthURL string `env:"OPTIMIZE_HEALTH_URL"`

	// AdminToken guards DELETE and restore; AdminTokenFile names a file holding it (a mounted
	// secret). loadConfig leaves the token, trimmed, in AdminToken, whichever was set.
	AdminToken     string `env:"OPTIMIZE_BACKUP_ADMIN_TOKEN"`
	AdminTokenFile string `env:"OPTIMIZE_BACKUP_ADMIN_TOKEN_FILE"`

	// ESTimeout bounds every single Elasticsearch request, so a hung node never hangs a caller.
	ESTimeout time.Duration `env:"OPTIMIZE_BACKUP_ELASTICSEARCH_TIMEOUT" envDefault:"30s"`
	// PollInterval is the longest wait between two reads of running work (a restore's
	// progress, a safety backup); reads come sooner while the work is young (pollWait).
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
	// RestoreStallTimeout ends a restore's (or a drill's) wait for the recovery of its indices
	// when it has made no progress for that long, before RestoreWaitTimeout.
	RestoreStallTimeout time.Duration `env:"OPTIMIZE_BACKUP_RESTORE_STALL_TIMEOUT" envDefault:"10m"`
	// RestoreRepairs is how often a restore deletes and restores again an index it created
	// that Elasticsearch cannot recover (e.g. after a node crashed mid-restore); 0: never.
	RestoreRepairs int `env:"OPTIMIZE_BACKUP_RESTORE_REPAIRS" envDefault:"3"`
	// RestoreNoCopyWait is how long a restored primary of which no node holds a copy waits for
	// one to come back (its node restarting) before it is repaired (see failedIndices).
	RestoreNoCopyWait time.Duration `env:"OPTIMIZE_BACKUP_RESTORE_NO_COPY_WAIT" envDefault:"2m"`

	// ScheduleCron is a cron expression (minute hour day-of-month month day-of-week, or @daily
	// and the like) at whose slots the sidecar takes a backup by itself; empty: no schedule. A
	// leading sixth field of seconds is accepted for tests and drills.
	ScheduleCron string `env:"OPTIMIZE_BACKUP_SCHEDULE"`
	// ScheduleTimezone is the IANA time zone the schedule is read in (02:00 is 02:00 there).
	ScheduleTimezone string `env:"OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE" envDefault:"UTC"`
	// Schedule is ScheduleCron read in ScheduleTimezone, parsed by loadConfig; nil: no schedule.
	Schedule *backupSchedule `env:"-"`
	// RetentionKeep keeps the N newest COMPLETED scheduled backups (0: no count limit).
	RetentionKeep int `env:"OPTIMIZE_BACKUP_RETENTION_KEEP"`
	// RetentionMaxAge deletes COMPLETED scheduled backups whose slot is older (0: no age limit);
	// the newest COMPLETED one is always kept.
	RetentionMaxAge time.Duration `env:"OPTIMIZE_BACKUP_RETENTION_MAX_AGE"`
	// VerifyScheduled runs a restore drill (POST .../verify) on each scheduled backup that
	// completed.
	VerifyScheduled bool `env:"OPTIMIZE_BACKUP_VERIFY_SCHEDULED" envDefault:"false"`
}

// versionPattern is what a version tag must look like after reduction: plain X.Y.Z.
var versionPattern = regexp.MustCompile(`^\d+\.\d+\.\d+`)

// loadConfig reads the configuration through getenv and returns it parsed (secrets read from
// their files, the Elasticsearch URLs built, the schedule parsed), or every problem at once,
// one line each, naming the variable and what to set.
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
	p := problems{unparsable: map[string]bool{}}
	if err != nil {
		var agg env.AggregateError
		if !errors.As(err, &agg) {
			return config{}, err
		}
		for _, e := range agg.Errors {
			var pe env.ParseError
			if !errors.As(e, &pe) {
				p.errs = append(p.errs, e)
				continue
			}
			field, _ := reflect.TypeFor[config]().FieldByName(pe.Name)
			key, _, _ := strings.Cut(cmp.Or(field.Tag.Get("env"), pe.Name), ",")
			p.add(key, "cannot read %q as %s; set a valid value or unset it to use the default", vars[key], pe.Type)
			p.unparsable[key] = true
		}
	}
	const keyHint = `put the API key in it (the "encoded" value of Elasticsearch's create API key answer)`
	cfg.AdminToken = p.secret("OPTIMIZE_BACKUP_ADMIN_TOKEN", cfg.AdminToken, cfg.AdminTokenFile, "token", "put the admin token in it", adminTokenProblem)
	cfg.ESAPIKey = p.secret("OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY", cfg.ESAPIKey, cfg.ESAPIKeyFile, "key", keyHint, apiKeyProblem)
	cfg.RestoreESAPIKey = p.secret("OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY", cfg.RestoreESAPIKey, cfg.RestoreESAPIKeyFile, "key", keyHint, apiKeyProblem)
	cfg.useDatabase(&p)
	cfg.parseESURLs(&p)
	cfg.validate(&p)
	cfg.validateAWS(&p)
	if len(p.errs) > 0 {
		return config{}, errors.Join(p.errs...)
	}
	cfg.OptimizeVersion = versionPattern.FindString(cfg.OptimizeVersion)
	return cfg, nil
}

// problems collects what is wrong with the configuration, one line per problem.
type problems struct {
	errs []error
	// unparsable holds the variables whose value could not be parsed: each has its line, and
	// what its zero value would break is not reported again.
	unparsable map[string]bool
}

// add records a problem of variable: what is wrong and what to set.
func (p *problems) add(variable, format string, args ...any) {
	if !p.unparsable[variable] {
		p.errs = append(p.errs, errors.New(variable+": "+fmt.Sprintf(format, args...)))
	}
}

// addIf records the problem when bad.
func (p *problems) addIf(bad bool, variable, format string, args ...any) {
	if bad {
		p.add(variable, format, args...)
	}
}

// secret returns, trimmed, the secret that variable holds or, when its _FILE variable names a
// file (a mounted secret), the one in that file. It reports both set, a file unreadable or
// empty (emptyHint says what to put in it) and what problem finds; no line shows the secret.
func (p *problems) secret(variable, value, file, noun, emptyHint string, problem func(string) string) string {
	from, subject := variable, "the "+noun
	switch {
	case file == "" && value == "":
		return ""
	case file != "" && value != "":
		p.add(variable+"_FILE", "%s is set too; set only one", variable)
		return ""
	case file != "":
		from, subject = variable+"_FILE", subject+" in "+file
		b, err := os.ReadFile(file)
		if err != nil {
			p.add(from, "cannot read %s: %v; mount the secret there or unset the variable", file, err)
			return ""
		}
		if value = strings.TrimSpace(string(b)); value == "" {
			p.add(from, "%s is empty; %s", file, emptyHint)
			return ""
		}
	}
	value = strings.TrimSpace(value)
	if msg := problem(value); msg != "" {
		p.add(from, "%s %s", subject, msg)
	}
	return value
}

// adminTokenProblem says what is wrong with an admin token ("" if nothing).
func adminTokenProblem(token string) string {
	const minAdminTokenLength = 16 // shorter ones can be guessed
	if len(token) < minAdminTokenLength {
		return fmt.Sprintf("has %d characters; use at least %d (e.g. openssl rand -hex 32)", len(token), minAdminTokenLength)
	}
	return ""
}

// apiKeyProblem says what is wrong with an API key ("" if nothing), never showing it: it goes
// into an Authorization header as it is, so it must be one token ("encoded" or id:api_key).
func apiKeyProblem(key string) string {
	if key == "" {
		return "is blank; set the \"encoded\" value of Elasticsearch's create API key answer (or id:api_key), or unset the variable"
	}
	if scheme, _, ok := strings.Cut(key, " "); ok && strings.EqualFold(scheme, "ApiKey") {
		return `starts with "ApiKey "; set the key alone, without the scheme`
	}
	if strings.ContainsFunc(key, func(c rune) bool { return c <= ' ' || c > '~' }) {
		return "holds spaces or characters that cannot go into an HTTP header; set the \"encoded\" value of Elasticsearch's create API key answer (or id:api_key)"
	}
	if id, secret, ok := strings.Cut(key, ":"); ok && (id == "" || secret == "") {
		return "has an empty id or secret around its colon; set id:api_key or the \"encoded\" value of Elasticsearch's create API key answer"
	}
	return ""
}

// encodedAPIKey is the key as the Authorization: ApiKey header carries it, base64 of id:api_key
// (base64 has no colon, so the two forms cannot be confused).
func encodedAPIKey(key string) string {
	if strings.Contains(key, ":") {
		return base64.StdEncoding.EncodeToString([]byte(key))
	}
	return key
}

// The databases CAMUNDA_OPTIMIZE_DATABASE may name, as Optimize spells them.
const (
	databaseElasticsearch = "elasticsearch"
	databaseOpenSearch    = "opensearch"
)

// openSearch tells whether the sidecar talks to OpenSearch rather than Elasticsearch.
func (c config) openSearch() bool { return c.Database == databaseOpenSearch }

// product is the database's name as its vendor writes it, for sentences.
func (c config) product() string {
	if c.openSearch() {
		return "OpenSearch"
	}
	return "Elasticsearch"
}

// openSearchVars are the OpenSearch variables of Optimize's Elasticsearch connection variables.
var openSearchVars = map[string]string{
	"OPTIMIZE_ELASTICSEARCH_HOST":                                "CAMUNDA_OPTIMIZE_OPENSEARCH_HOST",
	"OPTIMIZE_ELASTICSEARCH_HTTP_PORT":                           "CAMUNDA_OPTIMIZE_OPENSEARCH_HTTP_PORT",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME/_PASSWORD": "CAMUNDA_OPTIMIZE_OPENSEARCH_SECURITY_USERNAME/_PASSWORD",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES": "CAMUNDA_OPTIMIZE_OPENSEARCH_SECURITY_SSL_CERTIFICATE_AUTHORITIES",
	"CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX":       "CAMUNDA_OPTIMIZE_OPENSEARCH_SETTINGS_INDEX_PREFIX",
}

// connVar is the variable that sets a connection setting with the configured database: the
// Elasticsearch variable esVar, or its OpenSearch twin.
func (c config) connVar(esVar string) string {
	if twin, ok := openSearchVars[esVar]; ok && c.openSearch() {
		return twin
	}
	return esVar
}

// useDatabase checks CAMUNDA_OPTIMIZE_DATABASE and, for OpenSearch, copies Optimize's
// OpenSearch variables into the fields the sidecar connects with: like Optimize, it then
// ignores the Elasticsearch ones. OpenSearch has no Elasticsearch API keys, so those are
// refused with it.
func (c *config) useDatabase(p *problems) {
	c.Database = strings.ToLower(strings.TrimSpace(c.Database))
	switch c.Database {
	case databaseElasticsearch:
		return
	case databaseOpenSearch:
	default:
		p.add("CAMUNDA_OPTIMIZE_DATABASE", "%q is not a database Optimize runs on; set elasticsearch (the default) or opensearch", c.Database)
		return
	}
	c.ESHost, c.ESPort, c.ESSSLEnabled, c.ESCAFile = c.OSHost, c.OSPort, c.OSSSLEnabled, c.OSCAFile
	c.ESUsername, c.ESPassword, c.IndexPrefix = c.OSUsername, c.OSPassword, c.OSIndexPrefix
	for variable, set := range map[string]bool{
		"OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY":         c.ESAPIKey != "" || c.ESAPIKeyFile != "",
		"OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY": c.RestoreESAPIKey != "" || c.RestoreESAPIKeyFile != "",
	} {
		p.addIf(set, variable, "OpenSearch has no Elasticsearch API keys; unset it (and its _FILE) and set user and password (%s)", c.connVar("CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME/_PASSWORD"))
	}
}

// parseESURLs checks the URLs set in ESURLs, or builds the one of the host, port and SSL switch.
func (c *config) parseESURLs(p *problems) {
	for i := range c.ESURLs {
		c.ESURLs[i] = strings.TrimSpace(c.ESURLs[i])
		if u, ok := httpURL(c.ESURLs[i]); !ok {
			shown := "an entry" // unparsable: its text may hold a password
			if u != nil {
				shown = strconv.Quote(u.Redacted())
			}
			p.add("OPTIMIZE_ELASTICSEARCH_URLS", "%s is not an http(s) URL; set a comma-separated list such as http://elasticsearch:9200", shown)
		}
	}
	if len(c.ESURLs) > 0 {
		return
	}
	scheme, host := "http", c.ESHost
	if c.ESSSLEnabled {
		scheme = "https"
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1] // an IPv6 address written as in a URL; JoinHostPort adds the brackets
	}
	hostPort := net.JoinHostPort(host, strconv.Itoa(c.ESPort))
	if u, err := url.Parse(scheme + "://" + hostPort); err != nil || u.Host != hostPort {
		p.add(c.connVar("OPTIMIZE_ELASTICSEARCH_HOST"), "%q is not a host name or IP address; set %s's host such as %s (default localhost)", c.ESHost, c.product(), c.Database)
	}
	c.ESURLs = []string{scheme + "://" + hostPort}
}

// httpURL parses s; ok tells whether it is an http(s) URL with a host.
func httpURL(s string) (u *url.URL, ok bool) {
	u, err := url.Parse(s)
	return u, err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// validate reports the problems that parsing alone does not catch, and parses the schedule into
// Schedule.
func (c *config) validate(p *problems) {
	badIndexName := func(name string) bool {
		return name == "" || strings.ContainsAny(name, forbiddenNameChars) || strings.ToLower(name) != name
	}
	_, healthURLOK := httpURL(c.OptimizeHealthURL)
	_, caErr := os.Stat(c.ESCAFile)
	p.addIf(c.Port < 0 || c.Port > 65535, "MANAGEMENT_SERVER_PORT", "%d is not a TCP port; set 1-65535 (default 8092; 0 picks a free port)", c.Port)
	p.addIf(c.ESPort < 1 || c.ESPort > 65535, c.connVar("OPTIMIZE_ELASTICSEARCH_HTTP_PORT"), "%d is not a TCP port; set 1-65535 (default 9200)", c.ESPort)
	p.addIf(c.Repository != "" && strings.ContainsAny(c.Repository, forbiddenNameChars), "CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME", "%q is not a valid repository name; set the name the repository was registered with in Elasticsearch", c.Repository)
	p.addIf(badIndexName(c.IndexPrefix), c.connVar("CAMUNDA_OPTIMIZE_ELASTICSEARCH_SETTINGS_INDEX_PREFIX"), "%q is not a valid index prefix; set Optimize's prefix (default optimize)", c.IndexPrefix)
	p.addIf(c.OptimizeVersion != "" && !versionPattern.MatchString(c.OptimizeVersion), "OPTIMIZE_VERSION", "%q is not a version; set Optimize's version such as 3.9.0, or unset it to read it from Elasticsearch", c.OptimizeVersion)
	p.addIf(badIndexName(c.JobsIndex) || strings.HasPrefix(c.JobsIndex, c.IndexPrefix+"-"), "OPTIMIZE_BACKUP_JOBS_INDEX", "%q is not a valid index name outside the prefix [%s-]; set a lowercase index name such as camunda-optimize-backup-jobs", c.JobsIndex, c.IndexPrefix)
	p.addIf(c.OptimizeHealthURL != "" && !healthURLOK, "OPTIMIZE_HEALTH_URL", "the value is not an http(s) URL; set Optimize's readiness URL such as http://localhost:8090/api/readyz, or unset it")
	p.addIf(c.ESCAFile != "" && caErr != nil, c.connVar("CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES"), "%v; point it at a PEM file with %s's CA", caErr, c.product())
	for name, d := range map[string]time.Duration{
		"OPTIMIZE_BACKUP_ELASTICSEARCH_TIMEOUT": c.ESTimeout,
		"OPTIMIZE_BACKUP_POLL_INTERVAL":         c.PollInterval,
		"OPTIMIZE_BACKUP_SHUTDOWN_TIMEOUT":      c.ShutdownTimeout,
		"OPTIMIZE_BACKUP_RESTORE_WAIT_TIMEOUT":  c.RestoreWaitTimeout,
		"OPTIMIZE_BACKUP_RESTORE_STALL_TIMEOUT": c.RestoreStallTimeout,
		"OPTIMIZE_BACKUP_RESTORE_NO_COPY_WAIT":  c.RestoreNoCopyWait,
	} {
		p.addIf(d <= 0, name, "%v must be positive; set a duration such as 30s", d)
	}
	p.addIf(c.RestoreRepairs < 0, "OPTIMIZE_BACKUP_RESTORE_REPAIRS", "%d must not be negative; set how often a restore may restore an index again, such as 3, or 0 for never", c.RestoreRepairs)
	p.addIf(c.Part2Grace < 0, "OPTIMIZE_BACKUP_PART2_GRACE", "%v must not be negative; set a duration such as 2m", c.Part2Grace)
	if c.ScheduleCron != "" {
		var err error
		if c.Schedule, err = parseSchedule(c.ScheduleCron, c.ScheduleTimezone); err != nil {
			p.errs = append(p.errs, err)
		}
	}
	p.addIf(c.ScheduleCron != "" && c.Repository == "", "OPTIMIZE_BACKUP_SCHEDULE", "scheduled backups need a repository; set CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME too")
	p.addIf(c.RetentionKeep < 0, "OPTIMIZE_BACKUP_RETENTION_KEEP", "%d is negative; set how many COMPLETED scheduled backups to keep, such as 7", c.RetentionKeep)
	p.addIf(c.RetentionMaxAge < 0, "OPTIMIZE_BACKUP_RETENTION_MAX_AGE", "%v is negative; set an age such as 720h", c.RetentionMaxAge)
	const scheduledOnly = "applies to scheduled backups only; set OPTIMIZE_BACKUP_SCHEDULE too, or unset it"
	p.addIf(c.ScheduleCron == "" && c.RetentionKeep != 0, "OPTIMIZE_BACKUP_RETENTION_KEEP", scheduledOnly)
	p.addIf(c.ScheduleCron == "" && c.RetentionMaxAge != 0, "OPTIMIZE_BACKUP_RETENTION_MAX_AGE", scheduledOnly)
	p.addIf(c.ScheduleCron == "" && c.VerifyScheduled, "OPTIMIZE_BACKUP_VERIFY_SCHEDULED", scheduledOnly)
	// An API key with basic auth (variables or a URL's user) is refused: which one the client
	// would pick is not something an operator should have to know.
	urlUser := slices.ContainsFunc(c.ESURLs, func(u string) bool {
		parsed, err := url.Parse(u)
		return err == nil && parsed.User != nil
	})
	exclusive := func(keyVar, keyFile, userVars string, key, basicAuth bool) {
		if keyFile != "" {
			keyVar += "_FILE"
		} else if !key {
			return
		}
		if basicAuth {
			p.add(keyVar, "%s is set too; an API key and basic auth are mutually exclusive: unset %s or %s", userVars, keyVar, userVars)
		}
		if urlUser { // URL credentials would win over any key, the restore's too
			p.add(keyVar, "OPTIMIZE_ELASTICSEARCH_URLS holds a user name; an API key and basic auth are mutually exclusive: remove user:password@ from the URLs or unset %s", keyVar)
		}
	}
	exclusive("OPTIMIZE_BACKUP_ELASTICSEARCH_API_KEY", c.ESAPIKeyFile, "CAMUNDA_OPTIMIZE_ELASTICSEARCH_SECURITY_USERNAME/_PASSWORD",
		c.ESAPIKey != "", c.ESUsername != "" || c.ESPassword != "")
	exclusive("OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_API_KEY", c.RestoreESAPIKeyFile, "OPTIMIZE_BACKUP_RESTORE_ELASTICSEARCH_USERNAME/_PASSWORD",
		c.RestoreESAPIKey != "", c.RestoreESUsername != "" || c.RestoreESPassword != "")
}

// validateAWS reports what stops the sidecar from backing up Amazon OpenSearch: a Serverless
// collection (no snapshot API), signing without a region, and signing with basic auth or an API
// key, which would need the one Authorization header the signature takes. It leaves the region
// that applies in AWSRegion.
func (c *config) validateAWS(p *problems) {
	c.AWSRegion = cmp.Or(strings.TrimSpace(c.AWSRegion), strings.TrimSpace(c.AWSDefaultRegion))
	for _, u := range c.ESURLs {
		parsed, err := url.Parse(u)
		if err != nil || !serverlessHost(parsed.Hostname()) {
			continue
		}
		variable := "OPTIMIZE_ELASTICSEARCH_URLS"
		if serverlessHost(c.ESHost) {
			variable = "OPTIMIZE_ELASTICSEARCH_HOST"
		}
		p.add(variable, "%s is an Amazon OpenSearch Serverless collection, which has no snapshot API to back up with; point the sidecar at an Amazon OpenSearch Service domain (its endpoint ends in .es.amazonaws.com) instead", parsed.Hostname())
		break
	}
	if !c.AWSEnabled {
		return
	}
	const awsVar = "CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED"
	p.addIf(c.AWSRegion == "", awsVar, "requests to Amazon OpenSearch Service are signed for the domain's region, and none is set; set AWS_REGION (or AWS_DEFAULT_REGION) to it, such as eu-west-1")
	const oneAuthorization = "%s is set too; an AWS-signed request carries its signature in the Authorization header, so it cannot carry other credentials: unset %s (the AWS role then needs the privileges, see docs/aws.md), or unset %s"
	if main := c.mainCredentials(); main.vars != "" {
		p.add(awsVar, oneAuthorization, main.vars, main.vars, awsVar)
	}
	if restore, own := c.restoreCredentials(); own {
		p.add(awsVar, oneAuthorization, restore.vars, restore.vars, awsVar)
	}
	urlUser := slices.ContainsFunc(c.ESURLs, func(u string) bool {
		parsed, err := url.Parse(u)
		return err == nil && parsed.User != nil
	})
	p.addIf(urlUser, awsVar, "OPTIMIZE_ELASTICSEARCH_URLS holds a user name; an AWS-signed request cannot carry basic auth too: remove user:password@ from the URLs, or unset %s", awsVar)
}

// parseSchedule parses a cron expression read in the named time zone, reporting a bad zone and
// a bad expression together. "@every 1h" is refused: its slots count from when each process
// started, so replicas would not agree on them.
func parseSchedule(expr, timezone string) (*backupSchedule, error) {
	loc, zoneErr := time.LoadLocation(timezone)
	if zoneErr != nil {
		zoneErr = fmt.Errorf("OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE: %q is not a time zone (%v); set an IANA name such as UTC or Europe/Berlin", timezone, zoneErr)
		loc = time.UTC // the expression is checked all the same
	}
	trimmed := strings.TrimSpace(expr)
	namesZone := strings.HasPrefix(trimmed, "CRON_TZ=") || strings.HasPrefix(trimmed, "TZ=")
	var parsed cron.Schedule
	var err error
	if !namesZone { // cron's parser panics on "TZ=UTC" with no space after it
		// Five fields or a descriptor (@daily), and a leading seconds field when there are six.
		parsed, err = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor).Parse(expr)
	}
	spec, isSpec := parsed.(*cron.SpecSchedule)
	switch {
	case namesZone:
		err = fmt.Errorf("OPTIMIZE_BACKUP_SCHEDULE: %q names a time zone; set it in OPTIMIZE_BACKUP_SCHEDULE_TIMEZONE and leave it out of the expression", expr)
	case err != nil:
		err = fmt.Errorf("OPTIMIZE_BACKUP_SCHEDULE: %q is not a cron expression (%v); set five fields such as \"0 2 * * *\" (02:00 every day)", expr, err)
	case !isSpec:
		err = fmt.Errorf("OPTIMIZE_BACKUP_SCHEDULE: %q counts from when the sidecar started, so replicas would disagree on its slots; set five cron fields such as \"0 */6 * * *\"", expr)
	case spec.Next(time.Now().In(loc)).IsZero():
		err = fmt.Errorf("OPTIMIZE_BACKUP_SCHEDULE: %q has no slot in the next five years; set five cron fields such as \"0 2 * * *\"", expr)
	}
	if zoneErr != nil || err != nil {
		return nil, errors.Join(zoneErr, err)
	}
	return &backupSchedule{expr: expr, spec: spec, loc: loc}, nil
}

// esAddressesRedacted is ESURLs with passwords replaced by xxxxx: for answers and logs, which
// unauthenticated callers and log readers see.
func (c config) esAddressesRedacted() []string {
	out := make([]string, len(c.ESURLs))
	for i, a := range c.ESURLs {
		out[i] = "(unparsable URL)"
		if u, err := url.Parse(a); err == nil {
			out[i] = u.Redacted()
		}
	}
	return out
}
