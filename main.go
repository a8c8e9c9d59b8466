// Command optimize-backup is a sidecar that gives Camunda Optimize a backup and restore API on
// top of Elasticsearch snapshots. It serves Optimize's documented backup API on the management
// port (both the 3.9 /actuator/backup and the 3.10+ /actuator/backups routes), keeps no state
// of its own beyond the backups it is still starting, and reads everything else from
// Elasticsearch, so any replica, or a restarted one, answers the same.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
)

func main() {
	if err := run(context.Background(), os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// server holds what every handler needs: the Elasticsearch client, the configuration, the
// logger, and the little state this process has in flight.
type server struct {
	es *elasticsearch.Client
	// restoreES changes indices during a restore; it has its own credentials when configured.
	restoreES *elasticsearch.Client
	cfg       config
	log       *slog.Logger
	now       func() time.Time
	inflight  *inflight
	restores  *restores
	metrics   *metrics
	// listPageSize is how many snapshots one Elasticsearch page holds when listing backups.
	listPageSize int
}

// newServer builds a server around an Elasticsearch client.
func newServer(cfg config, es, restoreES *elasticsearch.Client, log *slog.Logger) *server {
	return &server{
		es:        es,
		restoreES: restoreES,
		restores:  &restores{},
		cfg:       cfg,
		log:       log,
		now:       time.Now,
		inflight:  newInflight(),
		metrics:   &metrics{requests: map[string]int{}},

		listPageSize: defaultListPageSize,
	}
}

// run reads the configuration through getenv, serves until ctx ends or SIGINT/SIGTERM
// arrives, then shuts down, letting requests and part-2 starts finish for a while.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewJSONHandler(stdout, nil))

	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("optimize-backup: invalid configuration:\n%w", err)
	}
	es, err := newESClient(cfg, cfg.ESUsername, cfg.ESPassword)
	if err != nil {
		return fmt.Errorf("optimize-backup: %w", err)
	}
	restoreES := es
	if cfg.RestoreESUsername != "" {
		if restoreES, err = newESClient(cfg, cfg.RestoreESUsername, cfg.RestoreESPassword); err != nil {
			return fmt.Errorf("optimize-backup: %w", err)
		}
	}
	srv := newServer(cfg, es, restoreES, log)

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.ListenAddress, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("optimize-backup: cannot listen on port %d: %w; set MANAGEMENT_SERVER_PORT to a free port", cfg.Port, err)
	}
	httpServer := &http.Server{
		Handler: srv.routes(),
		// Slow or stuck clients must not hold connections (and memory) forever.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Listing thousands of backups reads several Elasticsearch pages; leave room for that.
		WriteTimeout: 5 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("serving", "addr", ln.Addr().String(), "elasticsearch", cfg.esAddresses(), "repository", cfg.Repository, "index_prefix", cfg.IndexPrefix)

	serveErr := make(chan error, 1)
	go func() { serveErr <- httpServer.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("optimize-backup: serving: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	// A fresh deadline: ctx is already cancelled, but requests and part-2 starts get time.
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	err = httpServer.Shutdown(shutdownCtx)
	srv.inflight.shutdown(shutdownCtx)
	srv.restores.shutdown(shutdownCtx)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("optimize-backup: shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// newESClient builds an Elasticsearch client from the configuration with these credentials.
func newESClient(cfg config, username, password string) (*elasticsearch.Client, error) {
	esCfg := elasticsearch.Config{
		Addresses: cfg.esAddresses(),
		Username:  username,
		Password:  password,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 5 * time.Second,
			// Up to 64 concurrent clients share a few keep-alive connections.
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	if cfg.ESCAFile != "" {
		ca, err := os.ReadFile(cfg.ESCAFile)
		if err != nil {
			return nil, fmt.Errorf("reading CAMUNDA_OPTIMIZE_ELASTICSEARCH_SSL_CERTIFICATE_AUTHORITIES %s: %w", cfg.ESCAFile, err)
		}
		esCfg.CACert = ca
		esCfg.Transport = nil // the client builds a TLS transport with the CA
	}
	return elasticsearch.NewClient(esCfg)
}
