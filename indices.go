package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// Which indices are this installation's, and the requests that act on a list of them.
//
// The rule (README, "Which indices a backup holds"): an index belongs to the installation with
// prefix P when its name is P-{name}_v{N}, optionally with a rollover suffix -NNNNNN (Optimize
// names every index it creates so), and it does not belong to another installation whose longer
// prefix Q starts with P- and that has its own Q-metadata index (optimize-east next to
// optimize). An index that merely starts with P- (optimize-logs-2026.11) is nobody's.

// importIndexNames are the Optimize indices that go into part 1 of a backup.
var importIndexNames = []string{"import-index", "timestamp-based-import-index", "position-based-import-index"}

// metadataName matches a metadata index or alias, Q-metadata or Q-metadata_v{N}: Q is the
// prefix of an installation.
var metadataName = regexp.MustCompile(`^(.+)-metadata(?:_v\d+)?$`)

// installation decides which index names belong to one Optimize installation.
type installation struct {
	prefix string
	// others are the prefixes of other installations that start with prefix + "-".
	others  []string
	own     *regexp.Regexp
	imports *regexp.Regexp
}

// newInstallation is the installation with this prefix, next to the installations with the
// prefixes others (any that do not start with prefix + "-" are irrelevant and dropped).
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
	if !in.own.MatchString(name) {
		return false
	}
	for _, o := range in.others {
		if strings.HasPrefix(name, o+"-") {
			return false
		}
	}
	return true
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

// metadataCandidates returns the prefixes Q (longer than prefix, starting with prefix + "-")
// for which names hold a Q-metadata index or alias.
func metadataCandidates(prefix string, names []string) []string {
	var out []string
	for _, n := range names {
		if m := metadataName.FindStringSubmatch(n); m != nil && strings.HasPrefix(m[1], prefix+"-") && !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	slices.Sort(out)
	return out
}

// installationIndices resolves the indices of the prefix as they exist now and returns this
// installation (with the other installations nested in its prefix) and its indices split into
// the two parts. Two requests at most: resolve, and reading the candidates' metadata.
func (s *server) installationIndices(ctx context.Context) (in installation, part1, part2 []string, err error) {
	req := esapi.IndicesResolveIndexRequest{
		Name:            []string{seg(s.cfg.IndexPrefix) + "-*"},
		ExpandWildcards: "all",
		FilterPath:      []string{"indices.name", "aliases.name"},
	}
	var answer struct {
		Indices []struct {
			Name string `json:"name"`
		} `json:"indices"`
		Aliases []struct {
			Name string `json:"name"`
		} `json:"aliases"`
	}
	if err := s.read(ctx, req, &answer); err != nil {
		return installation{}, nil, nil, fmt.Errorf("resolve indices %s-*: %w", s.cfg.IndexPrefix, err)
	}
	var indices, all []string
	for _, ix := range answer.Indices {
		indices = append(indices, ix.Name)
		all = append(all, ix.Name)
	}
	for _, a := range answer.Aliases {
		all = append(all, a.Name)
	}
	others, err := s.confirmInstallations(ctx, metadataCandidates(s.cfg.IndexPrefix, all))
	if err != nil {
		return installation{}, nil, nil, err
	}
	in = newInstallation(s.cfg.IndexPrefix, others)
	part1, part2, _ = in.split(indices)
	return in, part1, part2, nil
}

// confirmInstallations keeps the candidate prefixes Q whose Q-metadata holds Optimize's
// metadata document (id 1 with a schemaVersion). A dynamic index of this installation can be
// named like a metadata index (process definition key "x-metadata"); its documents are not
// Optimize's metadata, so it does not split off an installation.
func (s *server) confirmInstallations(ctx context.Context, candidates []string) ([]string, error) {
	if len(candidates) == 0 {
		return nil, nil
	}
	type doc struct {
		Index  string   `json:"_index"`
		ID     string   `json:"_id"`
		Source []string `json:"_source"`
	}
	var body struct {
		Docs []doc `json:"docs"`
	}
	for _, c := range candidates {
		body.Docs = append(body.Docs, doc{Index: c + "-metadata", ID: "1", Source: []string{"schemaVersion"}})
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	var answer struct {
		Docs []struct {
			Found  bool `json:"found"`
			Source struct {
				SchemaVersion string `json:"schemaVersion"`
			} `json:"_source"`
		} `json:"docs"`
	}
	if err := s.read(ctx, esapi.MgetRequest{Body: bytes.NewReader(b)}, &answer); err != nil {
		return nil, fmt.Errorf("read the metadata of installations %v: %w", candidates, err)
	}
	var out []string
	for i, d := range answer.Docs {
		if i < len(candidates) && d.Found && d.Source.SchemaVersion != "" {
			out = append(out, candidates[i])
		}
	}
	return out, nil
}

// setWriteBlock puts (on) or lifts (off) a write block on exactly these indices, in batches.
// Lifting resets the setting, so the indices end as they were.
func (s *server) setWriteBlock(ctx context.Context, names []string, on bool) error {
	body := `{"index.blocks.write":null}`
	if on {
		body = `{"index.blocks.write":true}`
	}
	for _, batch := range batches(names) {
		req := esapi.IndicesPutSettingsRequest{Index: segs(batch), Body: strings.NewReader(body)}
		if err := s.restoreWrite(ctx, req, nil); err != nil {
			return fmt.Errorf("set write block %t on %s: %w", on, strings.Join(batch, ","), err)
		}
	}
	return nil
}

// deleteIndices deletes exactly these concrete indices, in batches; indices already gone are
// skipped, so a resumed restore can repeat it.
func (s *server) deleteIndices(ctx context.Context, names []string) error {
	ignore := true
	for _, batch := range batches(names) {
		req := esapi.IndicesDeleteRequest{Index: segs(batch), IgnoreUnavailable: &ignore, ExpandWildcards: "none"}
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
		ignore := true
		req := esapi.IndicesResolveIndexRequest{Name: segs(batch), ExpandWildcards: "all", IgnoreUnavailable: &ignore, FilterPath: []string{"indices.name"}}
		var answer struct {
			Indices []struct {
				Name string `json:"name"`
			} `json:"indices"`
		}
		if err := s.read(ctx, req, &answer); err != nil {
			return nil, fmt.Errorf("resolve indices %s: %w", strings.Join(batch, ","), err)
		}
		for _, ix := range answer.Indices {
			out = append(out, ix.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// recoveryShard is one shard of the _recovery answer, with what restore progress needs.
type recoveryShard struct {
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
	ignore := true
	for _, batch := range batches(names) {
		req := esapi.IndicesRecoveryRequest{Index: segs(batch), IgnoreUnavailable: &ignore,
			FilterPath: []string{"*.shards.type", "*.shards.stage", "*.shards.primary", "*.shards.source.snapshot", "*.shards.index.size"}}
		var answer recoveryShards
		if err := s.read(ctx, req, &answer); err != nil {
			return nil, fmt.Errorf("read the recovery of %s: %w", strings.Join(batch, ","), err)
		}
		for k, v := range answer {
			out[k] = v
		}
	}
	return out, nil
}
