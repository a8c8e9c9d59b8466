package main

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
)

// The repository as the scrape and a list with ?limit see it, at a cost that does not grow
// with the repository: its catalogue (names, UUIDs and states from the repository's index,
// free), and for each finished snapshot the few facts only its details hold (times, state,
// whose it is), read from the blob store once per process and kept by UUID. Those facts never
// change once a snapshot has finished, so keeping them changes no answer: every replica, cold
// or warm, computes the same. Only a process's first read pays for every snapshot, as every
// read did before; later reads pay only for the snapshots that are new since.

// snapshotFacts are what a finished snapshot's details say that the catalogue does not.
type snapshotFacts struct {
	state      string
	start, end int64
	// own is isOwnSnapshot's verdict, decided on the metadata and index list of the details.
	own bool
}

// factsFields are the fields a facts read asks for: what snapshotFacts holds, and what
// isOwnSnapshot reads to decide own (the metadata's indexPrefix, the index list).
var factsFields = []string{
	"snapshots.snapshot", "snapshots.uuid", "snapshots.state", "snapshots.start_time_in_millis",
	"snapshots.end_time_in_millis", "snapshots.metadata.indexPrefix", "snapshots.indices", "failures",
}

// factsCache holds the facts of the finished snapshots of the last catalogue read, by UUID (a
// snapshot deleted and taken again under its name has a new one). At 20,000 snapshots it holds
// about 2 MB.
type factsCache struct {
	mu     sync.Mutex
	byUUID map[string]snapshotFacts
}

// get returns the facts of the snapshot with this UUID, if they are known.
func (c *factsCache) get(uuid string) (snapshotFacts, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.byUUID[uuid]
	return f, ok
}

// put keeps the facts of a snapshot that has finished; a running snapshot's state and end are
// still to come, and an INCOMPATIBLE one is SUCCESS once Elasticsearch is upgraded.
func (c *factsCache) put(uuid string, f snapshotFacts) {
	if f.state == "IN_PROGRESS" || f.state == "INCOMPATIBLE" || uuid == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byUUID == nil {
		c.byUUID = map[string]snapshotFacts{}
	}
	c.byUUID[uuid] = f
}

// keepOnly forgets the snapshots that are not in the catalogue any more (deleted), so that the
// cache holds no more than the repository does. It looks only when the cache holds more
// snapshots than the catalogue lists: then some must be gone.
func (c *factsCache) keepOnly(catalogue []catalogueEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.byUUID) <= len(catalogue) {
		return
	}
	present := make(map[string]struct{}, len(catalogue))
	for _, sn := range catalogue {
		present[sn.UUID] = struct{}{}
	}
	for uuid := range c.byUUID {
		if _, ok := present[uuid]; !ok {
			delete(c.byUUID, uuid)
		}
	}
}

// catalogued is one backup as the catalogue and the facts show it: its snapshots with name,
// UUID, state and times, without reason, failures, index lists or metadata.
type catalogued struct {
	snaps []snapshot
	// foreign tells that some snapshot is not this installation's (isOwnSnapshot).
	foreign bool
	// newest is the start of its newest snapshot, the list's sort key (as backupInfo.newest).
	newest int64
}

// cataloguedBackups returns every backup in the repository by ID, from the catalogue and the
// facts: known ones from the cache, the others (new snapshots, running ones) from one read of
// exactly their names. A snapshot that is gone by the time its facts are read is left out.
func (s *server) cataloguedBackups(ctx context.Context) (map[string]*catalogued, error) {
	all, err := s.catalogue(ctx)
	if err != nil {
		return nil, err
	}
	s.facts.keepOnly(all)
	// Only the snapshots the cache does not know are read: all of them in a process's first
	// read, the new and the running ones after it.
	var unknown []string
	for _, sn := range all {
		if _, _, _, _, ok := parseSnapshotName(sn.Name); !ok {
			continue
		}
		if _, ok := s.facts.get(sn.UUID); !ok || sn.State == "IN_PROGRESS" {
			unknown = append(unknown, sn.Name)
		}
	}
	slices.Sort(unknown)
	fresh := make(map[string]snapshotFacts, len(unknown))
	// Batch by batch, each kept at once: a first read that a slow blob store makes outlast the
	// scrape's deadline still leaves what it learned for the next scrape.
	for _, batch := range batches(unknown) {
		read, err := s.snapshotsNamed(ctx, batch, factsFields)
		if err != nil {
			return nil, err
		}
		for _, sn := range read {
			f := snapshotFacts{state: sn.State, start: sn.StartMillis, end: sn.EndMillis, own: s.isOwnSnapshot(sn)}
			s.facts.put(sn.UUID, f)
			fresh[sn.Name] = f
		}
	}
	byID := map[string]*catalogued{}
	for _, sn := range all {
		id, _, _, _, parsed := parseSnapshotName(sn.Name)
		f, ok := fresh[sn.Name]
		if !ok && sn.State != "IN_PROGRESS" {
			f, ok = s.facts.get(sn.UUID)
		}
		if !parsed || !ok {
			continue // not Optimize's name, or gone before its facts were read
		}
		b := byID[id]
		if b == nil {
			b = &catalogued{snaps: make([]snapshot, 0, partCount)}
			byID[id] = b
		}
		b.snaps = append(b.snaps, snapshot{Name: sn.Name, UUID: sn.UUID, State: f.state, StartMillis: f.start, EndMillis: f.end})
		b.foreign = b.foreign || !f.own
		b.newest = max(b.newest, f.start)
	}
	return byID, nil
}

// newestFirst orders backups as the list shows them: the newest start of a backup's snapshots
// first, and among equal starts (Elasticsearch's clock ticks every 200 ms) the greater ID.
func newestFirst(newestA, newestB int64, idA, idB string) int {
	return cmp.Or(cmp.Compare(newestB, newestA), strings.Compare(idB, idA))
}

// newestBackups returns the limit newest backups, newest first (as newestFirst), with every
// field the list shows: the facts pick them, one read of exactly their snapshots reports them.
// It costs one snapshot_meta task per finished snapshot of those backups, plus one per
// snapshot the facts cache does not know yet.
func (s *server) newestBackups(ctx context.Context, limit int) (map[string][]snapshot, error) {
	byID, err := s.cataloguedBackups(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int { return newestFirst(byID[a].newest, byID[b].newest, a, b) })
	ids = ids[:min(limit, len(ids))]
	var names []string
	for _, id := range ids {
		for _, sn := range byID[id].snaps {
			names = append(names, sn.Name)
		}
	}
	slices.Sort(names)
	read, err := s.snapshotsNamed(ctx, names, listFields)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]snapshot, len(ids))
	for _, sn := range read {
		if id, _, _, _, ok := parseSnapshotName(sn.Name); ok {
			out[id] = append(out[id], sn)
		}
	}
	return out, nil
}
