package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

type drops map[string]int

func open(t *testing.T, opts Options, d drops) *Spool {
	t.Helper()
	opts.OnDrop = func(reason string, n int) { d[reason] += n }
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func appendN(t *testing.T, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Append(fmt.Appendf(nil, "record-%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// drain reads and commits everything, returning the records in order.
func drain(t *testing.T, s *Spool, batch int) []string {
	t.Helper()
	var out []string
	for range 100000 {
		b, err := s.ReadBatch(batch, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Records) == 0 {
			return out
		}
		for _, r := range b.Records {
			out = append(out, string(r))
		}
		if err := s.Commit(b); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("spool never drained")
	return nil
}

func want(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("record-%04d", i))
	}
	return out
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestSegmentsInOrderAndRemovedWhenDrained(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, SegmentBytes: 200}, drops{})
	appendN(t, s, 0, 50) // 19-byte records, 10 per segment
	if n := len(segFiles(t, dir)); n < 5 {
		t.Fatalf("%d segments for 50 records of 19 bytes with 200-byte segments, want at least 5", n)
	}
	if s.Empty() || s.Bytes() != 50*19 {
		t.Fatalf("empty=%v bytes=%d, want a full spool of %d bytes", s.Empty(), s.Bytes(), 50*19)
	}
	b, err := s.ReadBatch(7, 1<<20)
	if err != nil || len(b.Records) != 7 {
		t.Fatalf("ReadBatch: %d records, %v", len(b.Records), err)
	}
	// Without a Commit the same records come again: a failed publish retries them.
	again, _ := s.ReadBatch(7, 1<<20)
	if string(again.Records[0]) != "record-0000" {
		t.Fatalf("uncommitted batch not re-read: %q", again.Records[0])
	}
	if got := drain(t, s, 7); !slices.Equal(got, want(0, 50)) {
		t.Fatalf("drained %v", got)
	}
	if !s.Empty() || s.Bytes() != 0 || len(segFiles(t, dir)) != 0 {
		t.Fatalf("after draining: empty=%v bytes=%d files=%v", s.Empty(), s.Bytes(), segFiles(t, dir))
	}
	appendN(t, s, 50, 53) // appending after a drain starts a new segment
	if got := drain(t, s, 100); !slices.Equal(got, want(50, 53)) {
		t.Fatalf("after re-use: %v", got)
	}
}

func TestResumeFromCheckpointAfterRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, Options{Dir: dir, SegmentBytes: 200}, drops{})
	appendN(t, s, 0, 40)
	b, _ := s.ReadBatch(15, 1<<20) // crosses a segment boundary
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	b, _ = s.ReadBatch(5, 1<<20) // read but never acknowledged: must come back
	if len(b.Records) != 5 {
		t.Fatal("short read")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	d := drops{}
	s2 := open(t, Options{Dir: dir, SegmentBytes: 200}, d)
	if got := s2.Checkpoint(); got.Segment != 2 || got.Offset != 5*19 {
		t.Fatalf("checkpoint %+v, want segment 2 offset 95", got)
	}
	appendN(t, s2, 40, 45)
	if got := drain(t, s2, 4); !slices.Equal(got, want(15, 45)) {
		t.Fatalf("resumed %v", got)
	}
	if len(d) != 0 {
		t.Fatalf("drops %v on a clean restart", d)
	}
}

func TestTornTailTruncatedAndSkipped(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tear func(t *testing.T, path string, size int64)
	}{
		{"half a header", func(t *testing.T, p string, _ int64) {
			t.Helper()
			appendBytes(t, p, []byte{0, 0, 0})
		}},
		{"length beyond the end", func(t *testing.T, p string, _ int64) {
			t.Helper()
			appendBytes(t, p, []byte{0, 0, 0, 50, 1, 2, 3, 4, 'p', 'a', 'r'})
		}},
		{"checksum mismatch", func(t *testing.T, p string, size int64) {
			t.Helper()
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("X"), size-1); err != nil { // last byte of the last record
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := open(t, Options{Dir: dir}, drops{})
			appendN(t, s, 0, 10)
			_ = s.Close()
			files := segFiles(t, dir)
			st, _ := os.Stat(files[0])
			tc.tear(t, files[0], st.Size())

			d := drops{}
			s2 := open(t, Options{Dir: dir}, d)
			wantN := 10
			if tc.name == "checksum mismatch" {
				wantN = 9 // the damaged record itself is the torn one
			}
			if d[ReasonCorrupt] != 1 {
				t.Fatalf("corrupt drops %v, want 1", d)
			}
			if st, _ := os.Stat(files[0]); st.Size() != int64(wantN*19) {
				t.Fatalf("segment not truncated: %d bytes, want %d", st.Size(), wantN*19)
			}
			appendN(t, s2, 10, 12) // new records after the tear are readable
			got := drain(t, s2, 100)
			if w := append(want(0, wantN), want(10, 12)...); !slices.Equal(got, w) {
				t.Fatalf("after a torn tail: %v, want %v", got, w)
			}
		})
	}
}

func appendBytes(t *testing.T, p string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestDamagedCheckpointReplaysEverything(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, Options{Dir: dir}, drops{})
	appendN(t, s, 0, 10)
	b, _ := s.ReadBatch(4, 1<<20)
	_ = s.Commit(b)
	_ = s.Close()
	if err := os.WriteFile(filepath.Join(dir, checkpointName), []byte("garbage-garbage-garb"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, Options{Dir: dir}, drops{})
	if got := drain(t, s2, 100); !slices.Equal(got, want(0, 10)) {
		t.Fatalf("with a damaged checkpoint: %v (at least once means everything again)", got)
	}
}

func TestMaxBytesDropsOldestSegments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	d := drops{}
	// 19-byte records, 10 per 200-byte segment, at most 1000 bytes.
	s := open(t, Options{Dir: dir, SegmentBytes: 200, MaxBytes: 1000}, d)
	appendN(t, s, 0, 5)
	b, _ := s.ReadBatch(3, 1<<20) // 3 of the first segment acknowledged
	_ = s.Commit(b)
	appendN(t, s, 5, 100)
	if s.Bytes() > 1000 {
		t.Fatalf("spool holds %d bytes, cap 1000", s.Bytes())
	}
	got := drain(t, s, 100)
	if len(got) == 0 || got[len(got)-1] != "record-0099" {
		t.Fatalf("newest records lost: %v", got)
	}
	first := 100 - len(got)
	if !slices.Equal(got, want(first, 100)) {
		t.Fatalf("kept records are not the newest, in order: %v", got)
	}
	// Every record is accounted for: acknowledged (3), dropped, or drained.
	if d[ReasonMaxBytes] != first-3 {
		t.Fatalf("max_bytes drops %d, want %d (records lost before being acknowledged)", d[ReasonMaxBytes], first-3)
	}
}

func TestMaxAgeDropsOldSegments(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	d := drops{}
	s := open(t, Options{Dir: dir, SegmentBytes: 200, MaxAge: time.Minute, Now: clock}, d)
	appendN(t, s, 0, 25) // segments of 10, 10, 5
	now = now.Add(50 * time.Second)
	appendN(t, s, 25, 30) // the third segment is now fresh
	now = now.Add(30 * time.Second)
	s.Expire() // the first two were last written 80s ago
	if d[ReasonMaxAge] != 20 {
		t.Fatalf("max_age drops %v, want 20", d)
	}
	if got := drain(t, s, 100); !slices.Equal(got, want(20, 30)) {
		t.Fatalf("after expiry: %v", got)
	}
	now = now.Add(time.Hour)
	s.Expire() // nothing left to expire
	if d[ReasonMaxAge] != 20 {
		t.Fatalf("max_age drops %v after the spool drained", d)
	}
}

func TestRejectsOversizedRecordAndBadOptions(t *testing.T) {
	t.Parallel()
	s := open(t, Options{Dir: t.TempDir()}, drops{})
	if err := s.Append(make([]byte, MaxRecordBytes+1)); err == nil {
		t.Fatal("an oversized record was accepted")
	}
	if _, err := Open(Options{Dir: t.TempDir(), MaxBytes: -1}); err == nil {
		t.Fatal("negative max bytes accepted")
	}
	if _, err := Open(Options{}); err == nil {
		t.Fatal("empty dir accepted")
	}
}

// TestStaleCheckpointIntoMissingSegment: a checkpoint naming a segment that is gone, with an
// offset (a crash between removing the segment and rewriting the checkpoint), must not make
// the spool skip the first bytes of the next segment, which gets that number.
func TestStaleCheckpointIntoMissingSegment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, Options{Dir: dir}, drops{})
	appendN(t, s, 0, 10)
	drain(t, s, 100)
	s.ckpt = Position{Segment: 2, Offset: 5 * 19} // what the crash left
	if err := s.writeCheckpoint(); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s2 := open(t, Options{Dir: dir}, drops{})
	appendN(t, s2, 10, 20)
	if got := drain(t, s2, 100); !slices.Equal(got, want(10, 20)) {
		t.Fatalf("after a stale checkpoint: %v", got)
	}
}

// TestCommitAfterCapDroppedTheBatch: records read for a batch, then dropped by the size cap
// while the batch was in flight; committing the batch must not move the checkpoint back.
func TestCommitAfterCapDroppedTheBatch(t *testing.T) {
	t.Parallel()
	d := drops{}
	s := open(t, Options{Dir: t.TempDir(), SegmentBytes: 200, MaxBytes: 400}, d)
	appendN(t, s, 0, 5)
	b, _ := s.ReadBatch(5, 1<<20)
	appendN(t, s, 5, 40) // the first segments go to the cap meanwhile
	before := s.Checkpoint()
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if got := s.Checkpoint(); got != before {
		t.Fatalf("checkpoint moved from %+v to %+v", before, got)
	}
	got := drain(t, s, 100)
	if len(got) == 0 || got[len(got)-1] != "record-0039" || !slices.Equal(got, want(40-len(got), 40)) {
		t.Fatalf("after the cap: %v", got)
	}
}
