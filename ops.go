package main

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// sidecarVersion is set at build time with -ldflags "-X main.sidecarVersion=...".
var sidecarVersion = "dev"

// handleAlive answers liveness and readiness: up whenever the process serves HTTP, so a slow
// Elasticsearch never makes the Optimize pod unready.
func (s *server) handleAlive(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "UP"})
}

// component is one part of the health answer.
type component struct {
	Status  string            `json:"status"`
	Details map[string]string `json:"details,omitempty"`
}

// handleHealth reports whether Elasticsearch answers and the repository exists; 503 if not.
func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	components := map[string]component{}
	// A red cluster is DOWN, as Spring Boot's own Elasticsearch health indicator says: some
	// index has a primary shard that no node holds (Optimize cannot start on it).
	status, err := s.clusterStatus(r.Context())
	switch {
	case err != nil:
		components["elasticsearch"] = component{"DOWN", map[string]string{"error": err.Error()}}
	case status == "red":
		components["elasticsearch"] = component{"DOWN", map[string]string{"clusterStatus": status, "error": "the cluster is red: a primary shard is unassigned (GET _cluster/allocation/explain says why)"}}
	default:
		components["elasticsearch"] = component{"UP", map[string]string{"clusterStatus": status}}
	}
	switch {
	case s.cfg.Repository == "":
		components["repository"] = component{"DOWN", map[string]string{"error": "set CAMUNDA_OPTIMIZE_BACKUP_REPOSITORY_NAME"}}
	case err != nil:
		components["repository"] = component{"UNKNOWN", nil}
	default:
		if err := s.checkRepository(r.Context()); err != nil {
			components["repository"] = component{"DOWN", map[string]string{"name": s.cfg.Repository, "error": err.Error()}}
		} else {
			components["repository"] = component{"UP", map[string]string{"name": s.cfg.Repository}}
		}
	}
	status, code := "UP", http.StatusOK
	if components["elasticsearch"].Status != "UP" || components["repository"].Status != "UP" {
		status, code = "DOWN", http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"status": status, "components": components})
}

// handleInfo reports the versions involved and the repository.
func (s *server) handleInfo(w http.ResponseWriter, r *http.Request) {
	info := map[string]any{
		"sidecarVersion": sidecarVersion,
		"repository":     s.cfg.Repository,
		"indexPrefix":    s.cfg.IndexPrefix,
	}
	if v, err := s.optimizeVersion(r.Context()); err == nil {
		info["optimizeVersion"] = v
	} else {
		info["optimizeVersion"] = nil
		info["optimizeVersionError"] = err.Error()
	}
	if version, err := s.elasticsearchVersion(r.Context()); err == nil {
		info["elasticsearchVersion"] = version
	} else {
		info["elasticsearchVersion"] = nil
		info["elasticsearchError"] = err.Error()
	}
	writeJSON(w, http.StatusOK, info)
}

// metrics are the process's own metrics, on a registry of the server's (not client_golang's
// global one, so that two servers in one process count apart): the request counter, the
// backups in flight, and the Go runtime's and the process's standard go_* and process_*.
type metrics struct {
	registry *prometheus.Registry
	requests *prometheus.CounterVec
}

// newMetrics registers the process's metrics; inFlight counts the backups whose part 2 this
// process is still going to start.
func newMetrics(inFlight func() int) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "optimize_backup_http_requests_total",
			Help: "HTTP requests answered, by method, route and status.",
		}, []string{"method", "route", "status"}),
	}
	m.registry.MustRegister(
		m.requests,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "optimize_backup_backups_in_flight",
			Help: "Backups whose part 2 this process is still going to start.",
		}, func() float64 { return float64(inFlight()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// knownMethods are the HTTP methods counted under their own name; any other is "other".
var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}

// count counts one answered request; pattern is the route the mux matched ("" for none).
func (m *metrics) count(method, pattern string, status int) {
	route := pattern
	if route == "" || route == "/" {
		route = "unknown"
	} else if _, path, ok := strings.Cut(route, " "); ok {
		route = path
	}
	// Labels come from fixed sets only: a client's made-up methods must not grow the counter.
	if !slices.Contains(knownMethods, method) {
		method = "other"
	}
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
}

// handlePrometheus writes the process's metrics and the repository's (read now, within
// repositoryMetricsTimeout, see repositoryCollector) in the format the scraper asks for.
func (s *server) handlePrometheus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), repositoryMetricsTimeout)
	defer cancel()
	repository := prometheus.NewRegistry()
	repository.MustRegister(s.repositoryCollector(ctx))
	promhttp.HandlerFor(prometheus.Gatherers{s.metrics.registry, repository}, promhttp.HandlerOpts{
		// A metric that cannot be gathered is logged and left out; the others are still served.
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	}).ServeHTTP(w, r)
}
