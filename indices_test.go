package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestInstallationRule checks which indices belong to the installation with prefix optimize,
// from the names Elasticsearch lists: a nested installation is seen by its metadata or its
// import indices (even half-restored, even when its metadata cannot be read), a foreign index
// that merely starts with the prefix is nobody's, and a dynamic index named like a marker
// stays the installation's own.
func TestInstallationRule(t *testing.T) {
	for _, tc := range []struct {
		name    string
		names   []string
		aliases []string
		others  []string
		part1   []string
		part2   []string
	}{
		{"one installation and a foreign index",
			[]string{"optimize-import-index_v3", "optimize-metadata_v3", "optimize-logs-2026.11", "optimize-dashboard_v8", "optimize-process-instance-invoice_v8-000001"},
			[]string{"optimize-metadata"}, nil, []string{"optimize-import-index_v3"}, []string{"optimize-dashboard_v8", "optimize-metadata_v3", "optimize-process-instance-invoice_v8-000001"}},
		{"a nested installation with its metadata",
			[]string{"optimize-import-index_v3", "optimize-metadata_v3", "optimize-east-metadata_v3", "optimize-east-import-index_v3", "optimize-east-dashboard_v8"},
			nil, []string{"optimize-east"}, []string{"optimize-import-index_v3"}, []string{"optimize-metadata_v3"}},
		{"a nested installation restored only up to part 1 (no metadata yet)",
			[]string{"optimize-metadata_v3", "optimize-east-import-index_v3", "optimize-east-position-based-import-index_v2"},
			nil, []string{"optimize-east"}, nil, []string{"optimize-metadata_v3"}},
		{"a nested installation seen by its alias only",
			[]string{"optimize-metadata_v3", "optimize-west-dashboard_v8"},
			[]string{"optimize-west-metadata"}, []string{"optimize-west"}, nil, []string{"optimize-metadata_v3"}},
		{"dynamic indices named like markers stay the installation's",
			[]string{"optimize-process-instance-x-metadata_v8", "optimize-decision-instance-y-import-index_v4", "optimize-metadata_v3"},
			nil, nil, nil, []string{"optimize-decision-instance-y-import-index_v4", "optimize-metadata_v3", "optimize-process-instance-x-metadata_v8"}},
		{"an installation nested two deep",
			[]string{"optimize-east-west-metadata_v3", "optimize-east-west-dashboard_v8", "optimize-east-metadata_v3", "optimize-dashboard_v8"},
			nil, []string{"optimize-east", "optimize-east-west"}, nil, []string{"optimize-dashboard_v8"}},
		{"a foreign index named like a marker, without Optimize's version suffix, hides nothing",
			[]string{"optimize-process-metadata", "optimize-process-definition_v6", "optimize-metadata_v3"},
			nil, nil, nil, []string{"optimize-metadata_v3", "optimize-process-definition_v6"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			others := otherInstallations("optimize", tc.names, tc.aliases)
			if diff := cmp.Diff(tc.others, others); diff != "" {
				t.Errorf("other installations (-want +got):\n%s", diff)
			}
			part1, part2, _ := newInstallation("optimize", others).split(tc.names)
			if diff := cmp.Diff(tc.part1, part1); diff != "" {
				t.Errorf("part 1 (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.part2, part2); diff != "" {
				t.Errorf("part 2 (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOwnSnapshots checks which backups a DELETE may remove in a repository that two
// installations share: by the prefix in the snapshot metadata, else (Optimize's own backups
// carry none) by the indices the snapshots hold.
func TestOwnSnapshots(t *testing.T) {
	srv := newTestServer(t, testConfig("http://127.0.0.1:1"))
	snap := func(prefix string, indices ...string) snapshot {
		s := snapshot{Name: "camunda_optimize_1_3.9.0_part_1_of_2", Indices: indices}
		if prefix != "" {
			s.Metadata = map[string]any{"indexPrefix": prefix}
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		snaps []snapshot
		ours  bool
	}{
		{"our metadata", []snapshot{snap("optimize", "optimize-import-index_v3")}, true},
		{"another prefix in the metadata", []snapshot{snap("optimize-east", "optimize-east-import-index_v3")}, false},
		{"made by Optimize, our indices", []snapshot{snap("", "optimize-import-index"), snap("", "optimize-metadata_v3")}, true},
		{"made by Optimize, the nested installation's indices", []snapshot{snap("", "optimize-east-import-index_v3", "optimize-east-metadata_v3")}, false},
		{"no index listed", []snapshot{snap("")}, true},
	} {
		_, err := srv.ownSnapshots("1", tc.snaps)
		if ours := err == nil; ours != tc.ours {
			t.Errorf("%s: got %v; want ours %t", tc.name, err, tc.ours)
		}
	}
}
