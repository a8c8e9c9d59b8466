package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxIDBytes keeps snapshot names within Elasticsearch's 4096-byte limit on index-like names
// once the prefix and suffix are added, as Optimize does.
const maxIDBytes = 3996

// forbiddenIDChars are characters Elasticsearch refuses in snapshot names, plus '_', which
// keeps "camunda_optimize_{id}_" prefixes unambiguous: ID a never matches the snapshots of a_b.
const forbiddenIDChars = `\/*?"<>|,#_`

// decimalInteger is a non-negative JSON integer written in plain decimal digits.
var decimalInteger = regexp.MustCompile(`^(0|[1-9][0-9]*)$`)

// badRequestError is input the sidecar refuses; its message says what to change.
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &badRequestError{msg: fmt.Sprintf(format, args...)}
}

// parseBackupIDJSON reads a backup ID given in a JSON body: a string (Optimize 3.9) or a
// non-negative integer (3.10+), which is used in decimal form.
func parseBackupIDJSON(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) == 0 || string(raw) == "null":
		return "", badRequest("The backupId is missing; send {\"backupId\": <id>} with a string or a non-negative integer.")
	case raw[0] == '"':
		var id string
		if err := json.Unmarshal(raw, &id); err != nil {
			return "", badRequest("The backupId %s is not a valid JSON string.", raw)
		}
		return id, validateBackupID(id)
	case decimalInteger.Match(raw):
		return string(raw), validateBackupID(string(raw))
	case raw[0] == '-':
		return "", badRequest("The backupId %s is negative; use a non-negative integer or a string.", raw)
	case raw[0] >= '0' && raw[0] <= '9':
		return "", badRequest("The backupId %s is not a whole number; use a non-negative integer written in digits, or a string.", raw)
	default:
		return "", badRequest("The backupId %s is neither a string nor a non-negative integer.", raw)
	}
}

// validateBackupID checks the rules of a backup ID, before anything is sent to Elasticsearch.
// Each violation names the rule it broke.
func validateBackupID(id string) error {
	if id == "" {
		return badRequest("The backupId is empty; use a non-empty ID such as 1 or backup-2024-01-01.")
	}
	if !utf8.ValidString(id) {
		return badRequest("The backupId is not valid UTF-8; Elasticsearch snapshot names are UTF-8 text.")
	}
	if len(id) > maxIDBytes {
		return badRequest("The backupId is %d bytes long; it must be at most %d bytes.", len(id), maxIDBytes)
	}
	for _, r := range id {
		switch {
		case unicode.IsUpper(r):
			return badRequest("The backupId [%s] contains the uppercase letter %q; Elasticsearch snapshot names must be lowercase.", id, r)
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return badRequest("The backupId [%s] contains whitespace or a control character (%U); remove it.", id, r)
		case strings.ContainsRune(forbiddenIDChars, r):
			return badRequest("The backupId [%s] contains the forbidden character %q; none of %s may appear in a backupId.", id, r, forbiddenIDChars)
		}
	}
	return nil
}
