package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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

// FuzzJSONDecodersAgree checks that decodeAnswer, which reads get-snapshots pages with
// segmentio's decoder (esCallWithin), gives exactly what encoding/json gives, and refuses what
// encoding/json refuses: DELETE, restore and retention decide by these snapshots. Seeded with
// every recorded answer.
func FuzzJSONDecodersAgree(f *testing.F) {
	recordings, _ := filepath.Glob("testdata/es/*.json")
	for _, name := range recordings {
		var rec struct{ Body json.RawMessage }
		if raw, err := os.ReadFile(name); err == nil && json.Unmarshal(raw, &rec) == nil {
			f.Add([]byte(rec.Body))
		}
	}
	f.Add([]byte(`{"snapshots":[{"snapshot":"camunda_optimize_1_3.9.0_part_1_of_2","start_time_in_millis":1e3}]}`))
	f.Add([]byte(`{"snapshots":[{"SNAPSHOT":"a","snapshot":"b","metadata":{"n":1.5,"n":[null],"s":"\"[{"}}],"next":"\ud800x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var want, got getSnapshotsAnswer
		wantErr, gotErr := json.Unmarshal(body, &want), decodeAnswer(body, &got)
		if (wantErr == nil) != (gotErr == nil) {
			t.Fatalf("%q: encoding/json says %v, decodeAnswer says %v", body, wantErr, gotErr)
		}
		if wantErr == nil {
			// A page may come back with an empty slice of snapshots where encoding/json leaves
			// nil (decodeAnswer sizes it before decoding): every reader takes len or range.
			// Only that slice: anything else nil on one side and empty on the other differs.
			if len(got.Snapshots) == 0 && want.Snapshots == nil {
				got.Snapshots = nil
			}
			if diff := cmp.Diff(want, got, cmp.Exporter(func(reflect.Type) bool { return true })); diff != "" {
				t.Fatalf("%q decodes differently (-encoding/json +decodeAnswer):\n%s", body, diff)
			}
		}
	})
}

// A page nested deeper than Elasticsearch ever writes is refused as encoding/json refuses it,
// not given to segmentio's decoder, whose recursion has no limit: 4 million levels (8 MB, under
// maxAnswerBytes) would overflow the stack, a fatal error no recover catches.
func TestDecodeAnswerDeepNesting(t *testing.T) {
	deep := []byte(`{"snapshots":[{"metadata":{"x":` + strings.Repeat("[", 4<<20) + strings.Repeat("]", 4<<20) + `}}]}`)
	var page getSnapshotsAnswer
	if err := decodeAnswer(deep, &page); err == nil || !strings.Contains(err.Error(), "exceeded max depth") {
		t.Fatalf("decodeAnswer of 4 million levels: %v; want encoding/json's depth error", err)
	}
	for _, c := range []struct {
		text  string
		limit int
		want  bool
	}{
		{`{"a":[1,{"b":2}]}`, 3, false},
		{`{"a":[1,{"b":2}]}`, 2, true},
		{`{"a":"[[[[{{{{"}`, 1, false},
		{`{"a":"\"[[[["}`, 1, false},
		{`{"a":"\\","b":[[]]}`, 2, true},
	} {
		if got := nestedDeeperThan([]byte(c.text), c.limit); got != c.want {
			t.Errorf("nestedDeeperThan(%s, %d) = %t; want %t", c.text, c.limit, got, c.want)
		}
	}
}

// FuzzNestedDeeperThan holds nestedDeeperThan, which skips strings with bytes.IndexByte, to
// the plain byte-by-byte scan it replaced, on any text: escaped quotes, runs of backslashes,
// unterminated strings, unbalanced brackets.
func FuzzNestedDeeperThan(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":2}]}`), 2)
	f.Add([]byte(`{"a":"\\\"[[","b":[[[]]]}`), 3)
	f.Add([]byte(`["\\"[[`), 1)
	f.Add([]byte(`"unterminated [[[`), 0)
	f.Fuzz(func(t *testing.T, text []byte, limit int) {
		if got, want := nestedDeeperThan(text, limit), nestedDeeperThanByteByByte(text, limit); got != want {
			t.Fatalf("nestedDeeperThan(%q, %d) = %t; the byte-by-byte scan says %t", text, limit, got, want)
		}
	})
}

// nestedDeeperThanByteByByte is the reference: one byte at a time, a state per byte.
func nestedDeeperThanByteByByte(text []byte, limit int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range text {
		switch {
		case escaped:
			escaped = false
		case inString:
			escaped = c == '\\'
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > limit {
				return true
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return false
}

// FuzzJSONEncodersAgree checks that appendAnswer (segmentio), which writes every answer
// (writeJSON), writes a backup's answer byte for byte as encoding/json does, whatever the
// strings Elasticsearch reported (invalid UTF-8, control characters, HTML).
func FuzzJSONEncodersAgree(f *testing.F) {
	f.Add("1", "camunda_optimize_1_3.9.0_part_1_of_2", "SUCCESS", "", int64(1764131027098), false)
	f.Add("nightly", "a<b>&\u2028\x00\xff", "FAILED", "[i][0] IndexShardSnapshotFailedException \"x\"", int64(-5), true)
	f.Add("2", "camunda_optimize_2_3.9.0_part_1_of_2", "SUCCESS", "", int64(253402300800000), false) // year 10000
	f.Fuzz(func(t *testing.T, id, name, state, reason string, millis int64, legacy bool) {
		snaps := []snapshot{
			{Name: name, State: state, Reason: reason, StartMillis: millis, EndMillis: millis + 1,
				Failures: []snapshotFailure{{Index: reason, Reason: name, NodeID: id, Status: state}}},
			{Name: snapshotName(id, "3.9.0", 2), State: "SUCCESS", StartMillis: millis},
		}
		info := backupState(id, snaps, false, time.UnixMilli(millis), time.Minute).wire(legacy)
		for _, v := range []any{info, []wireBackupInfo{info, info}, apiError{ErrorCode: state, ErrorMessage: name, DetailedMessage: reason}} {
			var want strings.Builder
			stdEnc := json.NewEncoder(&want)
			stdEnc.SetEscapeHTML(false)
			wantErr := stdEnc.Encode(v)
			got, gotErr := appendAnswer(nil, v)
			if (wantErr == nil) != (gotErr == nil) || want.String() != string(got) {
				t.Fatalf("%T encodes differently:\nencoding/json: %q %v\nappendAnswer:  %q %v", v, want.String(), wantErr, got, gotErr)
			}
		}
	})
}
