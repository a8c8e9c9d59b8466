package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The ID rules, per route family (README, "Backup IDs"):
//   - /actuator/backup (Optimize 3.9) creates with a JSON string or a non-negative JSON integer,
//     by Optimize 3.9's rule ((?![A-Z "*\<|,>/?]).){0,3996}, not blank, plus what
//     Elasticsearch refuses in a snapshot name.
//   - /actuator/backups (Optimize 3.10+) creates only with a non-negative JSON integer that
//     fits Optimize's Java long.
//   - Every path ({base}/{id}, on both families) accepts every ID either family can create.

// maxIDChars is Optimize 3.9's limit: {0,3996} characters (code points, as Java's regex counts
// them); a long ID may still not fit Elasticsearch's request line (see backupSnapshots).
const maxIDChars = 3996

// forbiddenNameChars are the characters Elasticsearch refuses in snapshot, repository and index
// names; Optimize 3.9 refuses all but '#' in a backup ID (and A-Z).
const forbiddenNameChars = ` "*\<|,>/?#`

// maxLong is the largest ID Optimize 3.10+ accepts: its IDs are Java longs (2^63-1).
const maxLong = "9223372036854775807"

// isDecimalInteger tells whether s is a non-negative integer in plain decimal digits, as JSON
// writes it (no leading zero); no regular expression, as every listed backup's ID comes here.
func isDecimalInteger(s string) bool {
	return allDigits(s) && (len(s) == 1 || s[0] != '0')
}

// fitsLong tells whether a decimal integer is at most 2^63-1, the largest Optimize 3.10+ ID.
func fitsLong(digits string) bool {
	return isDecimalInteger(digits) && (len(digits) < len(maxLong) || len(digits) == len(maxLong) && digits <= maxLong)
}

// parseCreateID reads the backupId of a create request on route family f and returns the ID
// in the form it takes in snapshot names (integers in decimal).
func parseCreateID(f family, raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		if f == legacy {
			return "", badRequest(`The backupId is missing; send {"backupId": "<id>"} with a string or a non-negative integer.`)
		}
		return "", badRequest(`The backupId is missing; send {"backupId": <id>} with a non-negative integer.`)
	}
	if raw[0] == '"' {
		var id string
		if err := json.Unmarshal(raw, &id); err != nil {
			return "", badRequest("The backupId %s is not a valid JSON string.", raw)
		}
		if f == current {
			if fitsLong(id) {
				return "", badRequest(`The backupId %s is a string, but /actuator/backups (Optimize 3.10+) takes integer IDs only: send {"backupId": %s}. String IDs are created on /actuator/backup (Optimize 3.9).`, raw, id)
			}
			return "", badRequest(`The backupId %s is a string, but /actuator/backups (Optimize 3.10+) takes integer IDs only, such as {"backupId": 5}. To create a backup with a string ID, POST it to /actuator/backup (Optimize 3.9), which takes strings.`, raw)
		}
		return id, validateBackupID(id)
	}
	orString := "" // the family's alternative to an integer ID, if any
	if f == legacy {
		orString = ", or a string"
	}
	switch {
	case isDecimalInteger(string(raw)):
		if f == current && !fitsLong(string(raw)) {
			return "", badRequest("The backupId %s is larger than %s, the largest ID Optimize 3.10+ accepts (a Java long); use a smaller integer.", raw, maxLong)
		}
		return string(raw), validateBackupID(string(raw))
	case raw[0] == '-':
		return "", badRequest("The backupId %s is negative; use a non-negative integer%s.", raw, orString)
	case raw[0] >= '0' && raw[0] <= '9':
		return "", badRequest("The backupId %s is not a whole number; use a non-negative integer written in plain digits%s.", raw, orString)
	case f == current:
		return "", badRequest(`The backupId %s is not an integer: /actuator/backups (Optimize 3.10+) takes integer IDs only, such as {"backupId": 5}; /actuator/backup (Optimize 3.9) takes strings.`, raw)
	default:
		return "", badRequest("The backupId %s is neither a string nor a non-negative integer.", raw)
	}
}

// validateBackupID checks a backup ID given as a string (a 3.9 create, or any path) by the rules
// above, and refuses control characters; each violation names the rule it broke.
func validateBackupID(id string) error {
	if id == "" {
		return badRequest("The backupId is empty; use a non-empty ID such as 1 or nightly-2024-01-01.")
	}
	if !utf8.ValidString(id) {
		return badRequest("The backupId is not valid UTF-8; Elasticsearch would store another name than the one sent. Use an ID of UTF-8 text.")
	}
	if n := utf8.RuneCountInString(id); n > maxIDChars {
		return badRequest("The backupId is %d characters long; it must be at most %d (Optimize's limit).", n, maxIDChars)
	}
	for _, r := range id {
		switch {
		case unicode.ToLower(r) != r:
			// Optimize refuses A-Z; Elasticsearch refuses every name that lowercasing changes.
			return badRequest("The backupId [%s] contains the uppercase letter %q; backup IDs must be lowercase (Elasticsearch refuses uppercase in snapshot names).", id, r)
		case strings.ContainsRune(forbiddenNameChars, r):
			return badRequest("The backupId [%s] contains the forbidden character %q; a backupId may contain none of: space \" * \\ < | , > / ? #.", id, r)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			return badRequest("The backupId [%s] contains the control character or line break %U; remove it.", id, r)
		}
	}
	return nil
}
