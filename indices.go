package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// Which indices are this installation's, and the requests that act on a list of them. The rule
// (docs/installation-indices.md): an index belongs to the installation with prefix P when its
// name is P-{name}_v{N}, optionally with a rollover suffix -NNNNNN, and not to another
// installation whose longer prefix Q starts with P- (optimize-east next to optimize). Q shows by
// any of the four indices every installation has, even a half-restored one (Q-metadata or an
// import index), by names alone, so it fails closed; except where Q starts with one of P's
// dynamic index families (P-process-instance-x-metadata_v8 is P's own).

// importIndexNames are the Optimize indices that go into part 1 of a backup.
var importIndexNames = []string{"import-index", "timestamp-based-import-index", "position-based-import-index"}

// markerNames are the indices every installation has (Q-{marker}[_v{N}] shows prefix Q),
// longest first: position-based-import-index also ends in import-index.
var markerNames = []string{"timestamp-based-import-index", "position-based-import-index", "import-index", "metadata"}

// versionSuffix is the _v{N} (and rollover -NNNNNN) end of a physical index name.
var versionSuffix = regexp.MustCompile(`_v\d+(?:-\d{6})?$`)

// dynamicFamilies are the names of Optimize's indices that it creates per definition or per
// event source, {prefix}-{family}{key}: a key can make such a name look like a marker.
var dynamicFamilies = []string{"process-instance-", "decision-instance-", "event-process-instance-", "camunda-activity-event-", "event-sequence-count-", "event-trace-state-"}

// installation decides which index names belong to one Optimize installation.
type installation struct {
	prefix string
	// others are the prefixes of other installations that start with prefix + "-".
	others  []string
	own     *regexp.Regexp
	imports *regexp.Regexp
}

// newInstallation is the installation with this prefix, next to the installations with the
// prefixes others (those not starting with prefix + "-" are dropped).
func newInstallation(prefix string, others []string) installation {
	in := installation{
		prefix:  prefix,
		own:     regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-.+_v\d+(?:-\d{6})?$`),
		imports: regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-(?:` + strings.Join(importIndexNames, "|") + `)_v\d+(?:-\d{6})?$`),
	}
	for _, o := range others {
		if strings.HasPrefix(o, prefix+"-") && !slices.Contains(in.others, o) {
			in.others = append(in.others, o)
		}
	}
	slices.Sort(in.others)
	return in
}

// owns tells whether the index name is this installation's.
func (in installation) owns(name string) bool {
	return in.own.MatchString(name) && !slices.ContainsFunc(in.others, func(o string) bool { return strings.HasPrefix(name, o+"-") })
}

// isImport tells whether an index of this installation goes into part 1.
func (in installation) isImport(name string) bool { return in.imports.MatchString(name) }

// split returns the names this installation owns, part 1 (import indices) and part 2 (the
// rest), each sorted, and the names it does not own.
func (in installation) split(names []string) (part1, part2, foreign []string) {
	for _, n := range names {
		switch {
		case !in.owns(n):
			foreign = append(foreign, n)
		case in.isImport(n):
			part1 = append(part1, n)
		default:
			part2 = append(part2, n)
		}
	}
	slices.Sort(part1)
	slices.Sort(part2)
	slices.Sort(foreign)
	return part1, part2, foreign
}

// otherInstallations returns the prefixes Q (starting with prefix + "-") of the installations
// that names (indices and aliases) show by the markers above. An index counts only with
// Optimize's _v{N} suffix, an alias by its name: another application's index
// optimize-process-metadata must not make optimize-process-* vanish from this one's backups.
func otherInstallations(prefix string, indices, aliases []string) []string {
	var out []string
	for _, n := range slices.Concat(indices, aliases) {
		if !versionSuffix.MatchString(n) && !slices.Contains(aliases, n) {
			continue
		}
		rest, ok := strings.CutPrefix(versionSuffix.ReplaceAllString(n, ""), prefix+"-")
		if !ok || slices.Contains(markerNames, rest) {
			continue // not under the prefix, or one of the prefix's own markers
		}
		for _, marker := range markerNames {
			q, found := strings.CutSuffix(rest, "-"+marker)
			if !found {
				continue
			}
			own := slices.ContainsFunc(dynamicFamilies, func(f string) bool { return strings.HasPrefix(q+"-", f) })
			if q != "" && !own && !slices.Contains(out, prefix+"-"+q) {
				out = append(out, prefix+"-"+q)
			}
			break
		}
	}
	slices.Sort(out)
	return out
}

// installationIndices resolves the prefix's indices as they exist now (one request) and returns
// this installation and its indices split into the two parts.
func (s *server) installationIndices(ctx context.Context) (in installation, part1, part2 []string, err error) {
	req := esapi.IndicesResolveIndexRequest{
		Name:            []string{seg(s.cfg.IndexPrefix) + "-*"},
		ExpandWildcards: "all",
		FilterPath:      []string{"indices.name", "aliases.name"},
	}
	var answer struct{ Indices, Aliases []struct{ Name string } }
	if err := s.read(ctx, req, &answer); err != nil {
		return installation{}, nil, nil, fmt.Errorf("resolve indices %s-*: %w", s.cfg.IndexPrefix, err)
	}
	var indices, aliases []string
	for _, ix := range answer.Indices {
		indices = append(indices, ix.Name)
	}
	for _, a := range answer.Aliases {
		aliases = append(aliases, a.Name)
	}
	in = newInstallation(s.cfg.IndexPrefix, otherInstallations(s.cfg.IndexPrefix, indices, aliases))
	part1, part2, _ = in.split(indices)
	return in, part1, part2, nil
}

// setWriteBlock puts (on) or lifts (off, resetting the setting) a write block on exactly these
// indices, in batches. Before each batch, check (if not nil) may stop it: a restore job acts
// only while it holds its lease, and one batch can take an Elasticsearch deadline.
func (s *server) setWriteBlock(ctx context.Context, names []string, on bool, check func() error) error {
	var block *bool // null resets the setting
	if on {
		block = &on
	}
	body, err := json.Marshal(map[string]*bool{"index.blocks.write": block})
	if err != nil {
		return err
	}
	for _, batch := range batches(names) {
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		// IgnoreUnavailable: an index deleted meanwhile must not keep the others blocked.
		req := esapi.IndicesPutSettingsRequest{Index: segs(batch), Body: bytes.NewReader(body), IgnoreUnavailable: new(true), MasterTimeout: s.cfg.ESTimeout}
		if err := s.restoreWrite(ctx, req, nil); err != nil {
			return fmt.Errorf("set write block %t on %s: %w", on, strings.Join(batch, ","), err)
		}
	}
	return nil
}

// indexFacts is what a restore records of an index it will replace or has restored.
type indexFacts struct {
	UUID         string
	WriteBlocked bool
	// CreatedMillis is index.creation_date. A restore keeps the date the index had in the
	// snapshot, so an index restored from a snapshot was created before the snapshot began,
	// and one created since (by Optimize, by anyone) after: see jobRun.fromSnapshot.
	CreatedMillis int64
}

// indexSettings reads the UUID, write block and creation date of exactly these indices, in
// batches; indices that do not exist are left out.
func (s *server) indexSettings(ctx context.Context, names []string) (map[string]indexFacts, error) {
	out := map[string]indexFacts{}
	for _, batch := range batches(names) {
		req := esapi.IndicesGetSettingsRequest{Index: segs(batch), Name: []string{"index.uuid", "index.blocks.write", "index.creation_date"},
			IgnoreUnavailable: new(true), FlatSettings: new(true), ExpandWildcards: "all"}
		var answer map[string]struct {
			Settings map[string]string `json:"settings"`
		}
		if err := s.read(ctx, req, &answer); err != nil {
			return nil, fmt.Errorf("read the settings of %s: %w", strings.Join(batch, ","), err)
		}
		for name, ix := range answer {
			created, _ := strconv.ParseInt(ix.Settings["index.creation_date"], 10, 64) // 0, never a snapshot's, if unreadable
			out[name] = indexFacts{UUID: ix.Settings["index.uuid"], WriteBlocked: ix.Settings["index.blocks.write"] == "true", CreatedMillis: created}
		}
	}
	return out, nil
}

// checkUUIDs fails unless every index of the plan's Replace that exists now is the index that
// was checked (same UUID); with allowMissing, indices already gone are fine (a resumed delete).
func (s *server) checkUUIDs(ctx context.Context, plan restorePlan, allowMissing bool) error {
	now, err := s.indexSettings(ctx, plan.Replace)
	if err != nil {
		return err
	}
	var changed []string
	for _, ix := range plan.Replace {
		facts, exists := now[ix]
		if exists && facts.UUID != plan.ReplaceUUIDs[ix] || !exists && !allowMissing {
			changed = append(changed, ix)
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("indices %v are not the ones checked (deleted, or deleted and created again since: by Optimize?); nothing of them was deleted", changed)
	}
	return nil
}

// deleteIndices deletes exactly these concrete indices, in batches; indices already gone are
// skipped, so a resumed restore can repeat it. check, before each batch, as for setWriteBlock.
func (s *server) deleteIndices(ctx context.Context, names []string, check func() error) error {
	for _, batch := range batches(names) {
		if err := check(); err != nil {
			return err
		}
		req := esapi.IndicesDeleteRequest{Index: segs(batch), IgnoreUnavailable: new(true), ExpandWildcards: "none", MasterTimeout: s.cfg.ESTimeout}
		if err := s.restoreWrite(ctx, req, nil); err != nil {
			return fmt.Errorf("delete indices %s: %w", strings.Join(batch, ","), err)
		}
	}
	return nil
}

// existingIndices returns which of these names exist as indices now, in batches.
func (s *server) existingIndices(ctx context.Context, names []string) ([]string, error) {
	var out []string
	for _, batch := range batches(names) {
		found, err := s.resolve(ctx, segs(batch))
		if err != nil {
			return nil, fmt.Errorf("resolve indices %s: %w", strings.Join(batch, ","), err)
		}
		out = append(out, found...)
	}
	slices.Sort(out)
	return out, nil
}

// recoveryShard is one shard of the _recovery answer, with what restore progress needs.
type recoveryShard struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Stage   string `json:"stage"`
	Primary bool   `json:"primary"`
	Source  struct {
		Snapshot string `json:"snapshot"`
	} `json:"source"`
	Index struct {
		Size struct {
			Total     int64 `json:"total_in_bytes"`
			Recovered int64 `json:"recovered_in_bytes"`
		} `json:"size"`
	} `json:"index"`
}

// recoveryShards is the part of the _recovery answer restore progress is read from.
type recoveryShards map[string]struct {
	Shards []recoveryShard `json:"shards"`
}

// recovery reads the recovery of exactly these indices, in batches; indices that do not exist
// (yet) are left out of the answer.
func (s *server) recovery(ctx context.Context, names []string) (recoveryShards, error) {
	out := recoveryShards{}
	for _, batch := range batches(names) {
		req := esapi.IndicesRecoveryRequest{Index: segs(batch), IgnoreUnavailable: new(true),
			FilterPath: []string{"*.shards.id", "*.shards.type", "*.shards.stage", "*.shards.primary", "*.shards.source.snapshot", "*.shards.index.size"}}
		var answer recoveryShards
		if err := s.read(ctx, req, &answer); err != nil {
			return nil, fmt.Errorf("read the recovery of %s: %w", strings.Join(batch, ","), err)
		}
		maps.Copy(out, answer)
	}
	return out, nil
}

// indicesStartingWith resolves the indices whose names start with prefix.
func (s *server) indicesStartingWith(ctx context.Context, prefix string) ([]string, error) {
	out, err := s.resolve(ctx, []string{seg(prefix) + "*"})
	if err != nil {
		return nil, fmt.Errorf("resolve the indices %s*: %w", prefix, err)
	}
	return out, nil
}

// resolve returns the names of the indices these (escaped) names or patterns resolve to.
func (s *server) resolve(ctx context.Context, names []string) ([]string, error) {
	req := esapi.IndicesResolveIndexRequest{Name: names, ExpandWildcards: "all", IgnoreUnavailable: new(true), FilterPath: []string{"indices.name"}}
	var answer struct{ Indices []struct{ Name string } }
	if err := s.read(ctx, req, &answer); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(answer.Indices))
	for _, ix := range answer.Indices {
		out = append(out, ix.Name)
	}
	return out, nil
}

// countDocuments searches one index and returns its document count.
func (s *server) countDocuments(ctx context.Context, index string) (int64, error) {
	var answer struct {
		Hits   struct{ Total struct{ Value int64 } }
		Shards struct{ Failed int } `json:"_shards"`
	}
	req := esapi.SearchRequest{Index: []string{seg(index)}, Size: new(0), TrackTotalHits: true}
	if err := s.read(ctx, req, &answer); err != nil {
		return 0, err
	}
	if answer.Shards.Failed > 0 {
		return 0, fmt.Errorf("%d shards failed the search", answer.Shards.Failed)
	}
	return answer.Hits.Total.Value, nil
}

// dataNodesDisk is the disk of the data nodes: in all, and free.
func (s *server) dataNodesDisk(ctx context.Context) (total, available int64, err error) {
	var nodes struct {
		Nodes map[string]struct {
			FS struct {
				Total struct {
					Total     int64 `json:"total_in_bytes"`
					Available int64 `json:"available_in_bytes"`
				} `json:"total"`
			} `json:"fs"`
		} `json:"nodes"`
	}
	req := esapi.NodesStatsRequest{NodeID: []string{"data:true"}, Metric: []string{"fs"}, FilterPath: []string{"nodes.*.fs.total.total_in_bytes", "nodes.*.fs.total.available_in_bytes"}}
	if err := s.read(ctx, req, &nodes); err != nil {
		return 0, 0, fmt.Errorf("read the data nodes' free disk: %w", err)
	}
	for _, n := range nodes.Nodes {
		total += n.FS.Total.Total
		available += n.FS.Total.Available
	}
	return total, available, nil
}

// indexHealth is what the cluster state says of one index: its UUID, whether a restore in
// progress holds it, and why each of its unassigned primaries is (unassigned_info).
type indexHealth struct {
	UUID       string
	Restoring  bool
	Unassigned []unassignedInfo
	// Initializing counts its primaries being recovered (from a snapshot, their store, a peer).
	Initializing int
}

// unassignedInfo is why Elasticsearch has not assigned a shard.
type unassignedInfo struct {
	Reason  string `json:"reason"`
	Details string `json:"details"`
	// AllocationStatus is the outcome of Elasticsearch's last try: no_valid_shard_copy (no node
	// holds a usable copy), deciders_no (it will not try again: its retries are used up, or the
	// restore it came from has ended), or one that passes (throttled, fetching_shard_data, ...).
	AllocationStatus string `json:"allocation_status"`
	FailedAttempts   int    `json:"failed_attempts"`
	// At is when the shard became unassigned, by Elasticsearch's clock.
	At time.Time `json:"at"`
	// InSync is how many copies of the shard ever started and are in sync (the index's
	// in_sync_allocations): 0 for a primary that never finished its first recovery.
	InSync int `json:"-"`
}

// healthFields are the fields indicesHealth reads of the cluster state.
var healthFields = []string{"metadata.indices.*.settings.index.uuid", "metadata.indices.*.in_sync_allocations", "routing_table.indices.*.shards.*.state",
	"routing_table.indices.*.shards.*.primary", "routing_table.indices.*.shards.*.unassigned_info.reason",
	"routing_table.indices.*.shards.*.unassigned_info.details", "routing_table.indices.*.shards.*.unassigned_info.allocation_status",
	"routing_table.indices.*.shards.*.unassigned_info.failed_attempts", "routing_table.indices.*.shards.*.unassigned_info.at",
	"restore.snapshots.indices"}

// indicesHealth reads the indexHealth of these indices, one cluster-state request a batch; an
// index that does not exist is left out.
func (s *server) indicesHealth(ctx context.Context, names []string) (map[string]indexHealth, error) {
	out := map[string]indexHealth{}
	ignore := true
	for _, batch := range batches(names) {
		var answer struct {
			Metadata struct {
				Indices map[string]struct {
					Settings struct {
						Index struct {
							UUID string `json:"uuid"`
						} `json:"index"`
					} `json:"settings"`
					InSync map[string][]string `json:"in_sync_allocations"`
				} `json:"indices"`
			} `json:"metadata"`
			RoutingTable struct {
				Indices map[string]struct {
					Shards map[string][]struct {
						State          string          `json:"state"`
						Primary        bool            `json:"primary"`
						UnassignedInfo *unassignedInfo `json:"unassigned_info"`
					} `json:"shards"`
				} `json:"indices"`
			} `json:"routing_table"`
			Restore struct {
				Snapshots []struct {
					Indices []string `json:"indices"`
				} `json:"snapshots"`
			} `json:"restore"`
		}
		req := esapi.ClusterStateRequest{Metric: []string{"metadata", "routing_table", "customs"}, Index: segs(batch),
			IgnoreUnavailable: &ignore, AllowNoIndices: &ignore, ExpandWildcards: "open,closed,hidden",
			FilterPath: healthFields}
		if err := s.read(ctx, req, &answer); err != nil {
			return nil, fmt.Errorf("read the shards of %s from the cluster state: %w", strings.Join(batch, ","), err)
		}
		restoring := map[string]bool{}
		for _, r := range answer.Restore.Snapshots {
			for _, ix := range r.Indices {
				restoring[ix] = true
			}
		}
		for name, meta := range answer.Metadata.Indices {
			h := indexHealth{UUID: meta.Settings.Index.UUID, Restoring: restoring[name]}
			for shard, copies := range answer.RoutingTable.Indices[name].Shards {
				for _, c := range copies {
					if c.Primary && c.State == "INITIALIZING" {
						h.Initializing++
					}
					if c.Primary && c.State == "UNASSIGNED" {
						u := *cmp.Or(c.UnassignedInfo, &unassignedInfo{Reason: "UNKNOWN"})
						u.InSync = len(meta.InSync[shard])
						h.Unassigned = append(h.Unassigned, u)
					}
				}
			}
			out[name] = h
		}
	}
	return out, nil
}
