// Command optimize-backup is a sidecar that gives Camunda Optimize a backup and restore API on
// Elasticsearch snapshots, on the management port (Optimize 3.9's /actuator/backup and 3.10+'s
// /actuator/backups). It keeps no state beyond the work it is running and reads everything
// else from Elasticsearch, so any replica, or a restarted one, answers the same.
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
	"sync/atomic"
	"syscall"
	"time"
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
	es  esClients
	cfg config
	log *slog.Logger
	now func() time.Time
	// owner names this process in the restore jobs it runs (stored in Elasticsearch).
	owner string
	// backups holds the backups whose part 2 this process is still going to start; restores
	// and drills the restore job and the drill it runs.
	backups, restores, drills *registry
	// watches holds the part 2s this process follows until they end (see watchPart2).
	watches *registry
	// drillsSeen tells that this installation has run a drill: only then does GET of a backup
	// also read the backup's last drill (a second Elasticsearch request).
	drillsSeen atomic.Bool
	// stateReads and drillReads share reads among concurrent GETs of a backup (see sharedReads).
	stateReads sharedReads[[]snapshot]
	drillReads sharedReads[*drillResult]
	// repositoryReads shares the scrape's read of the repository among concurrent scrapes.
	repositoryReads sharedReads[repositoryView]
	metrics         *metrics
	// facts keeps what finished snapshots' details say, for reads of the catalogue (catalogue.go).
	facts factsCache
}

// newServer builds a server around an Elasticsearch client.
func newServer(cfg config, es esClients, log *slog.Logger) *server {
	s := &server{
		es:       es,
		cfg:      cfg,
		log:      log,
		now:      time.Now,
		owner:    ownerID(),
		backups:  newRegistry(),
		restores: newRegistry(),
		drills:   newRegistry(),
		watches:  newRegistry(),
	}
	s.metrics = newMetrics(s.backups.count)
	return s
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
	es, err := newESClients(ctx, cfg)
	if err != nil {
		return fmt.Errorf("optimize-backup: %w", err)
	}
	srv := newServer(cfg, es, log)
	if err := srv.checkProduct(ctx); err != nil {
		return fmt.Errorf("optimize-backup: %w", err)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.ListenAddress, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("optimize-backup: cannot listen on port %d: %w; set MANAGEMENT_SERVER_PORT to a free port", cfg.Port, err)
	}
	httpServer := newHTTPServer(srv.routes(), log)
	log.Info("serving", "addr", ln.Addr().String(), "database", cfg.Database, "elasticsearch", cfg.esAddressesRedacted(), "repository", cfg.Repository, "index_prefix", cfg.IndexPrefix)

	serveErr := make(chan error, 1)
	go func() { serveErr <- httpServer.Serve(ln) }()
	if cfg.Repository != "" {
		// A restore or drill whose sidecar stopped mid-way (this one before a restart, another
		// replica) is taken over here.
		go srv.watchRestoreJobs(ctx)
		go srv.watchDrills(ctx)
	}
	scheduleDone := make(chan struct{})
	if cfg.Schedule != nil {
		go srv.runSchedule(ctx, scheduleDone)
	} else {
		close(scheduleDone)
	}
	select {
	case err := <-serveErr:
		return fmt.Errorf("optimize-backup: serving: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	if err := srv.shutdown(ctx, httpServer, scheduleDone); err != nil {
		return fmt.Errorf("optimize-backup: shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// newHTTPServer is the management port's server, with a timeout for every phase of a request.
func newHTTPServer(handler http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler: handler,
		// Slow or stuck clients must not hold connections (and memory) forever.
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Listing thousands of backups reads several Elasticsearch pages; leave room for that.
		WriteTimeout: 5 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		// No request of this API needs large headers; bound what a client can make us hold.
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// shutdown stops the server after ctx ended: requests, part-2 starts and the scheduler's slot
// get OPTIMIZE_BACKUP_SHUTDOWN_TIMEOUT to finish; a restore or drill stops at once.
func (s *server) shutdown(ctx context.Context, httpServer *http.Server, scheduleDone <-chan struct{}) error {
	// A fresh deadline: ctx is already cancelled, but requests and part-2 starts get time.
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	// A restore or drill takes far longer than a shutdown: stop it at once (ctx has ended),
	// while requests drain, so that it hands itself over (a drill deletes its temporary
	// indices) within Kubernetes' grace period.
	restoreStopped := make(chan struct{})
	go func() {
		s.restores.shutdown(ctx)
		s.drills.shutdown(ctx)
		// Following a part 2 is only for a note should it vanish: it stops at once too.
		s.watches.shutdown(ctx)
		close(restoreStopped)
	}()
	err := httpServer.Shutdown(shutdownCtx)
	// The scheduler returns once its slot's create (and the hand-over of its part 2), its
	// record and its current retention delete are done: before the part-2 registry closes.
	select {
	case <-scheduleDone:
	case <-shutdownCtx.Done():
		s.log.Warn("the scheduler did not finish within OPTIMIZE_BACKUP_SHUTDOWN_TIMEOUT; its slot's backup may end INCOMPLETE")
	}
	s.backups.shutdown(shutdownCtx)
	// A restore POST still draining cannot start a job now: the registry refuses once closed.
	<-restoreStopped
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}
