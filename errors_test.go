package main

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

// TestIDTakenIsToldApart checks that the 409 of a taken backup ID carries errIDTaken through
// wrapping (the scheduler tells a taken slot from a failed start by it), answers 409 conflict
// with its own sentence, and that because leaves the error it was called on as it was.
func TestIDTakenIsToldApart(t *testing.T) {
	err := fmt.Errorf("scheduled backup: %w", idTaken("1", []string{"camunda_optimize_1_3.9.0_part_1_of_2"}))
	if !errors.Is(err, errIDTaken) {
		t.Errorf("got %v without errIDTaken in its chain; want it there", err)
	}
	srv := newTestServer(t, testConfig("http://127.0.0.1:9"))
	status, body := srv.describeError(inFamilyRequest(current), err)
	want := "A backup with ID [1] already exists. Found snapshots: [camunda_optimize_1_3.9.0_part_1_of_2]"
	if status != http.StatusConflict || body.ErrorCode != "conflict" || body.DetailedMessage != want {
		t.Errorf("got %d %s %q; want 409 conflict %q", status, body.ErrorCode, body.DetailedMessage, want)
	}
	if copied := errStopping.because(errIDTaken); !errors.Is(copied, errIDTaken) || errors.Is(errStopping, errIDTaken) {
		t.Errorf("got because changing the shared errStopping (or no cause in its copy); want only the copy to carry it")
	}
}
