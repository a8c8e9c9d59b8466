package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics read from the repository and the jobs index, not from this process: every replica
// reports the same, so a staleness alert fires whichever one is scraped.

// repositoryView is what the scrape reports of the repository and the jobs index.
type repositoryView struct {
	// counts are this installation's backups by state.
	counts map[string]int
	// lastSuccess is when the newest COMPLETED backup of this installation ended, Unix ms (0:
	// none).
	lastSuccess int64
	// lastDrill is the last finished drill, or nil.
	lastDrill *drillOutcome
}

// readRepositoryView reads the repository through its catalogue and the facts of its finished
// snapshots (cataloguedBackups): once the process knows the repository, a scrape costs
// Elasticsearch no snapshot_meta task but for snapshots new since the last one. Concurrent
// scrapes share one read (sharedReads), so many Prometheus servers do not multiply it.
func (s *server) readRepositoryView(ctx context.Context) (repositoryView, error) {
	return s.repositoryReads.do(ctx, "repository", func(ctx context.Context) (repositoryView, error) {
		byID, err := s.cataloguedBackups(ctx)
		if err != nil {
			return repositoryView{}, err
		}
		view := repositoryView{counts: map[string]int{}}
		now := s.now()
		for id, b := range byID {
			if b.foreign {
				continue // not every snapshot is this installation's, as DELETE tells it
			}
			// The catalogued snapshots carry no reasons: the state is right, failureReason not.
			info := backupState(id, b.snaps, s.backups.has(id), now, s.cfg.Part2Grace)
			view.counts[info.State]++
			if info.State == stateCompleted {
				for _, sn := range b.snaps {
					view.lastSuccess = max(view.lastSuccess, sn.EndMillis)
				}
			}
		}
		view.lastDrill = s.lastDrillOutcome(ctx)
		return view, nil
	})
}

// lastDrillOutcome is the last finished drill of this installation, or nil (none, or the jobs
// index cannot be read). While a drill runs, the one before it is the last result: the metric
// does not flap.
func (s *server) lastDrillOutcome(ctx context.Context) *drillOutcome {
	var drill drillDoc
	if _, found, err := s.loadDoc(ctx, s.drillDocID(), &drill); err != nil || !found {
		return nil
	}
	if drill.State != drillRunning && drill.EndTime != nil {
		return &drillOutcome{BackupID: drill.BackupID, State: drill.State, EndTime: *drill.EndTime}
	}
	return drill.Previous
}

// The repository metrics' descriptions. Metric names and labels are those of the README's alert
// rules: they must not change.
var (
	nextSlotDesc = prometheus.NewDesc("optimize_backup_schedule_next_slot_timestamp_seconds",
		"When the next scheduled backup is due.", nil, nil)
	repositoryUpDesc = prometheus.NewDesc("optimize_backup_repository_up",
		"1 when the repository could be read for these metrics (read at each scrape; concurrent scrapes share one read).", nil, nil)
	backupsDesc = prometheus.NewDesc("optimize_backup_backups",
		"Backups of this installation in the repository, by state (read at each scrape; concurrent scrapes share one read).", []string{"state"}, nil)
	lastSuccessDesc = prometheus.NewDesc("optimize_backup_last_success_timestamp_seconds",
		"When the newest COMPLETED backup of this installation ended (read at each scrape; concurrent scrapes share one read).", nil, nil)
	verificationSuccessDesc = prometheus.NewDesc("optimize_backup_last_verification_success",
		"1 when the last restore drill passed, 0 when it failed.", nil, nil)
	verificationInfoDesc = prometheus.NewDesc("optimize_backup_last_verification_info",
		"The backup the last restore drill verified (always 1).", []string{"backup_id"}, nil)
	verificationTimeDesc = prometheus.NewDesc("optimize_backup_last_verification_timestamp_seconds",
		"When the last restore drill ended.", nil, nil)
)

// repositoryCollector is the repository as one scrape sees it, a prometheus.Collector: the view
// is read when it is made (readRepositoryView, with the request's deadline), not in Collect,
// which has no context.
type repositoryCollector struct {
	nextSlot time.Time // zero: no schedule
	// read tells that a repository is configured and was read: then err, or view.
	read bool
	view repositoryView
	err  error
}

// repositoryCollector reads the repository view for one scrape.
func (s *server) repositoryCollector(ctx context.Context) repositoryCollector {
	var c repositoryCollector
	if s.cfg.Schedule != nil {
		c.nextSlot = s.cfg.Schedule.next(s.now())
	}
	if s.cfg.Repository == "" {
		return c
	}
	c.read = true
	c.view, c.err = s.readRepositoryView(ctx)
	if c.err != nil {
		s.log.Warn("metrics: cannot read the repository", "repository", s.cfg.Repository, "err", c.err)
	}
	return c
}

// Describe sends every metric the collector may send.
func (c repositoryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{nextSlotDesc, repositoryUpDesc, backupsDesc, lastSuccessDesc, verificationSuccessDesc, verificationInfoDesc, verificationTimeDesc} {
		ch <- d
	}
}

// Collect sends the metrics of the view, as whole seconds for times.
func (c repositoryCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, value float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, value, labels...)
	}
	if !c.nextSlot.IsZero() {
		gauge(nextSlotDesc, float64(c.nextSlot.Unix()))
	}
	if !c.read {
		return
	}
	if c.err != nil {
		gauge(repositoryUpDesc, 0)
		return
	}
	gauge(repositoryUpDesc, 1)
	for _, state := range []string{stateCompleted, stateInProgress, stateFailed, stateIncomplete, stateIncompatible} {
		gauge(backupsDesc, float64(c.view.counts[state]), state)
	}
	if c.view.lastSuccess > 0 {
		gauge(lastSuccessDesc, float64(c.view.lastSuccess/1000))
	}
	if last := c.view.lastDrill; last != nil {
		passed := 0.0
		if last.State == drillPassed {
			passed = 1
		}
		gauge(verificationSuccessDesc, passed)
		gauge(verificationInfoDesc, 1, last.BackupID)
		gauge(verificationTimeDesc, float64(last.EndTime.Unix()))
	}
}

// timeout for the repository metrics: a scrape must answer even when Elasticsearch hangs.
const repositoryMetricsTimeout = 10 * time.Second
