package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// An HTTP/2 request's streamed body is recorded for a retry when it may fit the retry buffer
// (unknown length, or a known one within it), and the recording is released once the
// response is written. HTTP/1.1 bodies are never recorded (TestServeBody: they are buffered
// up to the stream threshold instead).
func TestServeHTTPRecordsBody(t *testing.T) {
	t.Parallel()
	const bound = 100
	small, large := strings.Repeat("s", 60), strings.Repeat("l", 150) // both past streamThreshold
	for _, tt := range []struct {
		name     string
		body     string
		known    bool  // the request announces its length
		buffer   int64 // Options.RetryBufferBytes
		recorder bool  // Call.Recorder set
		complete bool  // and holding the whole body once it was read
	}{
		{name: "unknown length within the bound", body: small, buffer: bound, recorder: true, complete: true},
		{name: "unknown length past the bound", body: large, buffer: bound, recorder: true},
		{name: "known length within the bound", body: small, known: true, buffer: bound, recorder: true, complete: true},
		{name: "known length past the bound", body: large, known: true, buffer: bound},
		{name: "recording off", body: small, buffer: -1},
		{name: "default bound", body: large, buffer: 0, recorder: true, complete: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := &fakeUpstream{name: "svc"}
			e := newEngine(t, Options{RetryBufferBytes: tt.buffer}, routeWith(up))
			r := httptest.NewRequest(http.MethodPost, "http://app.example/up", io.NopCloser(strings.NewReader(tt.body)))
			r.ContentLength = -1
			if tt.known {
				r.ContentLength = int64(len(tt.body))
			}
			w := httptest.NewRecorder()
			e.h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			s := up.only(t)
			if string(s.body) != tt.body || !s.bodySet || s.call.Replayable {
				t.Fatalf("backend read %d bytes (streamed %v, replayable %v), want the %d streamed", len(s.body),
					s.bodySet, s.call.Replayable, len(tt.body))
			}
			rec := s.call.Recorder
			if (rec != nil) != tt.recorder {
				t.Fatalf("recorder set %v, want %v", rec != nil, tt.recorder)
			}
			if got := s.replay != nil; got != tt.complete {
				t.Fatalf("complete %v, want %v", got, tt.complete)
			}
			if tt.complete && string(s.replay) != tt.body {
				t.Fatalf("replay = %d bytes, want the body's %d", len(s.replay), len(tt.body))
			}
			if rec.Complete() {
				t.Fatal("recording not released after the response was written")
			}
		})
	}
}
