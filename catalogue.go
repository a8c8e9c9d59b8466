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
// whose it is), kept by UUID in the process and in the jobs index (factstore.go). Those facts
// never change once a snapshot has finished, so keeping them changes no answer: every replica,
// cold or warm, computes the same. Each snapshot's details are read from the blob store once for
// the installation, by whichever replica sees it first; a replica that starts reads the stored
// facts instead, and later reads pay only for the snapshots that are new since.

// snapshotFacts are what a finished snapshot's details say that the catalogue does not.
type snapshotFacts struct {
	state      string
	start, end int64
	// own is isOwnSnapshot's verdict, decided on the metadata and index list of the details.
	own bool
}

// factsOf are the facts of a snapshot read with factsFields.
func (s *server) factsOf(sn snapshot) snapshotFacts {
	return snapshotFacts{state: sn.State, start: sn.StartMillis, end: sn.EndMillis, own: s.isOwnSnapshot(sn)}
}

// stored is the facts document of snapshot sn (factstore.go).
func (f snapshotFacts) stored(sn snapshot) storedFacts {
	return storedFacts{Format: factsFormat, Snapshot: sn.Name, UUID: sn.UUID, State: f.state, Start: f.start, End: f.end, Own: f.own}
}

// factsFields are the fields a facts read asks for: what snapshotFacts holds, and what
// isOwnSnapshot reads to decide own (the metadata's indexPrefix, the index list).
var factsFields = []string{
	"snapshots.snapshot", "snapshots.uuid", "snapshots.state", "snapshots.start_time_in_millis",
	"snapshots.end_time_in_millis", "snapshots.metadata.indexPrefix", "snapshots.indices", "failures",
}

// factsCache holds the facts of the finished snapshots of the last catalogue read, by UUID (a
// snapshot deleted and taken again under its name has a new one), and what the jobs index still
// has to be told of them (factstore.go). At 20,000 snapshots it holds about 2 MB.
type factsCache struct {
	mu     sync.Mutex
	byUUID map[string]snapshotFacts
	// unsaved are facts read from snapshots and not yet stored in the jobs index; gone are the
	// UUIDs of snapshots deleted whose documents are not deleted yet. Each read of the
	// catalogue sends them until the jobs index took them (or refused them for good).
	unsaved map[string]storedFacts
	gone    map[string]struct{}
}

// get returns the facts of the snapshot with this UUID, if they are known.
func (c *factsCache) get(uuid string) (snapshotFacts, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.byUUID[uuid]
	return f, ok
}

// finished tells whether the facts are final: a running snapshot's state and end are still to
// come, and an INCOMPATIBLE one is SUCCESS once Elasticsearch is upgraded.
func (f snapshotFacts) finished() bool { return f.state != "IN_PROGRESS" && f.state != "INCOMPATIBLE" }

// put keeps the facts of a snapshot that has finished; unsaved tells they were read from the
// snapshot, not from the jobs index, which is still to store them.
func (c *factsCache) put(uuid string, f snapshotFacts, unsaved *storedFacts) {
	if !f.finished() || uuid == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byUUID == nil {
		c.byUUID, c.unsaved, c.gone = map[string]snapshotFacts{}, map[string]storedFacts{}, map[string]struct{}{}
	}
	c.byUUID[uuid] = f
	if unsaved != nil {
		c.unsaved[uuid] = *unsaved
	}
}

// keepOnly forgets the snapshots that are not in the catalogue any more (deleted), so that the
// cache holds no more than the repository does, and notes their documents for deletion.
func (c *factsCache) keepOnly(catalogue []catalogueEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	present := make(map[string]struct{}, len(catalogue))
	for _, sn := range catalogue {
		present[sn.UUID] = struct{}{}
	}
	for uuid := range c.byUUID {
		if _, ok := present[uuid]; !ok {
			delete(c.byUUID, uuid)
			delete(c.unsaved, uuid)
			c.gone[uuid] = struct{}{}
		}
	}
}

// toSync returns what the jobs index is still to be told: facts to store, UUIDs whose documents
// to delete, each sorted.
func (c *factsCache) toSync() (save []storedFacts, gone []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.unsaved {
		save = append(save, f)
	}
	slices.SortFunc(save, func(a, b storedFacts) int { return strings.Compare(a.Snapshot, b.Snapshot) })
	for uuid := range c.gone {
		gone = append(gone, uuid)
	}
	slices.Sort(gone)
	return save, gone
}

// synced forgets what the jobs index has been told of these snapshots (UUIDs).
func (c *factsCache) synced(uuids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, uuid := range uuids {
		delete(c.unsaved, uuid)
		delete(c.gone, uuid)
	}
	// A map never shrinks: once a first read's 20,000 facts are stored, let their room go.
	if len(c.unsaved) == 0 {
		c.unsaved = map[string]storedFacts{}
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
// facts: known ones from the cache, the others from the jobs index (factstore.go), and the rest
// (new snapshots, running ones) from one read of exactly their names. A snapshot that is gone by
// the time its facts are read is left out.
func (s *server) cataloguedBackups(ctx context.Context) (map[string]*catalogued, error) {
	all, err := s.catalogue(ctx)
	if err != nil {
		return nil, err
	}
	s.facts.keepOnly(all)
	fresh, indexExists, err := s.learnFacts(ctx, all)
	// Even after an error: what was learned is kept, and stored for the next replica.
	s.syncFacts(ctx, indexExists)
	if err != nil {
		return nil, err
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

// learnFacts reads the facts the cache does not know: a running snapshot's always, a finished
// one's from the jobs index if stored there, else from the snapshot, batch by batch, each kept at
// once (a first read that a slow blob store makes outlast the scrape's deadline still leaves what
// it learned for the next scrape). It returns what it read from snapshots, by name, and whether
// the jobs index is known to exist.
func (s *server) learnFacts(ctx context.Context, all []catalogueEntry) (fresh map[string]snapshotFacts, indexExists bool, err error) {
	var finished []catalogueEntry
	var unknown []string
	for _, sn := range all {
		if _, _, _, _, ok := parseSnapshotName(sn.Name); !ok {
			continue
		}
		if _, known := s.facts.get(sn.UUID); known && sn.State != "IN_PROGRESS" {
			continue
		}
		if sn.State == "IN_PROGRESS" {
			unknown = append(unknown, sn.Name)
		} else {
			finished = append(finished, sn)
		}
	}
	stored := map[string]snapshotFacts{}
	if len(finished) > 0 {
		stored, indexExists = s.loadStoredFacts(ctx, finished)
	}
	for _, sn := range finished {
		if f, ok := stored[sn.UUID]; ok {
			s.facts.put(sn.UUID, f, nil)
		} else {
			unknown = append(unknown, sn.Name)
		}
	}
	slices.Sort(unknown)
	fresh = make(map[string]snapshotFacts, len(unknown))
	for _, batch := range batches(unknown) {
		read, err := s.snapshotsNamed(ctx, batch, factsFields)
		if err != nil {
			return nil, indexExists, err
		}
		for _, sn := range read {
			f := s.factsOf(sn)
			doc := f.stored(sn)
			s.facts.put(sn.UUID, f, &doc)
			fresh[sn.Name] = f
		}
	}
	return fresh, indexExists, nil
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
	return groupByBackup(read), nil
}
