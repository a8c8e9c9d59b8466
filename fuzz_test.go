package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// FuzzBackupID checks, for any ID a client can send, that a valid ID names exactly its own
// snapshots: the snapshot name parses back to the same ID, and the escaped name reaches
// Elasticsearch as given (no wildcard, list separator or decodable escape survives). Seeded
// with the hostile IDs the issue tracker reported.
func FuzzBackupID(f *testing.F) {
	for _, seed := range []string{"1", "12", "nightly-1", "acc-p%5fx", "%2a", "%252a", "%2c%5fall", "a%zz", "_all", "nightly_1", "a_", "_", "a,b", "a*", "-1", "a b", "A", "a#b", "é"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if validateBackupID(id) != nil {
			return
		}
		for part := 1; part <= partCount; part++ {
			name := snapshotName(id, "3.9.0", part)
			got, version, gotPart, of, ok := parseSnapshotName(name)
			if !ok || got != id || version != "3.9.0" || gotPart != part || of != partCount {
				t.Fatalf("parseSnapshotName(%q) = %q %q %d %d %t; want %q 3.9.0 %d %d", name, got, version, gotPart, of, ok, id, part, partCount)
			}
			// What Elasticsearch decodes from the path is exactly the name.
			decoded, err := url.PathUnescape(seg(name))
			if err != nil || decoded != name {
				t.Fatalf("seg(%q) = %q decodes to %q, %v; want the name itself", name, seg(name), decoded, err)
			}
			if strings.ContainsAny(seg(name), "*,/?#") {
				t.Fatalf("seg(%q) = %q holds a character Elasticsearch reads as syntax", name, seg(name))
			}
		}
		// The pattern for the backup's snapshots: only the trailing * is a wildcard.
		pattern := seg(snapshotPrefix(id)) + "*"
		if strings.Count(pattern, "*") != 1 || strings.Contains(pattern, ",") {
			t.Fatalf("pattern %q for ID %q is not one prefix wildcard", pattern, id)
		}
		// The JSON form of the ID parses back to the same ID on the 3.9 route, which creates
		// every ID the paths accept.
		raw, _ := json.Marshal(id)
		if got, err := parseCreateID(legacy, raw); err != nil || got != id {
			t.Fatalf("parseCreateID(legacy, %s) = %q, %v; want %q", raw, got, err, id)
		}
	})
}

// snapshotNameRule is the naming scheme as a regular expression, the ID as long as it can be:
// parseSnapshotName must accept exactly the names it matches, and split them alike.
var snapshotNameRule = regexp.MustCompile(`^camunda_optimize_(.+)_(\d+\.\d+\.\d+)_part_([1-9]\d{0,8})_of_([1-9]\d{0,8})$`)

// FuzzParseSnapshotName checks that the parser accepts and splits exactly what the naming rule
// (snapshotNameRule) matches, and that any name it accepts is rebuilt exactly from its parts,
// so two different backups can never claim one snapshot.
func FuzzParseSnapshotName(f *testing.F) {
	for _, seed := range []string{"camunda_optimize_1_3.9.0_part_1_of_2", "camunda_optimize_a_b_3.9.0_part_2_of_2", "camunda_optimize_1_3.9.0_3.9.0_part_1_of_2",
		"camunda_optimize__3.9.0_part_1_of_2", "camunda_optimize_1_3.9_part_1_of_2", "nightly", "camunda_optimize_12_3.10.1_part_02_of_2",
		// Where a parser without the regular expression could differ from it: a line break (not
		// matched by '.'), the scheme's words inside the ID, non-ASCII digits, too many digits,
		// a trailing line break, an empty field.
		"camunda_optimize_a\nb_3.9.0_part_1_of_2", "camunda_optimize_x_3.9.0_part_1_of_2_3.9.0_part_2_of_2", "camunda_optimize_1_\u0663.9.0_part_1_of_2",
		"camunda_optimize_1_3.9.0_part_1234567890_of_2", "camunda_optimize_1_3.9.0_part_1_of_2\n", "camunda_optimize_1_3..0_part_1_of_2", "camunda_optimize__part_1_of_2"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id, version, part, of, ok := parseSnapshotName(name)
		if m := snapshotNameRule.FindStringSubmatch(name); (m != nil) != ok || ok && (m[1] != id || m[2] != version || m[3] != strconv.Itoa(part) || m[4] != strconv.Itoa(of)) {
			t.Fatalf("parseSnapshotName(%q) = %q %q %d %d %v; the rule matches %q", name, id, version, part, of, ok, m)
		}
		if !ok {
			return
		}
		if id == "" {
			t.Fatalf("parseSnapshotName(%q) accepted an empty ID", name)
		}
		if !strings.HasPrefix(name, snapshotPrefix(id)) {
			t.Fatalf("parseSnapshotName(%q) = ID %q, but the name does not start with %q", name, id, snapshotPrefix(id))
		}
		if rebuilt := fmt.Sprintf("%s%s_part_%d_of_%d", snapshotPrefix(id), version, part, of); rebuilt != name {
			t.Fatalf("parseSnapshotName(%q) = %q %q %d %d does not rebuild the name", name, id, version, part, of)
		}
	})
}
