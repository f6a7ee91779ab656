package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Drop reasons passed to Options.OnDrop.
const (
	ReasonMaxBytes = "max_bytes" // the oldest segment went to keep the spool under MaxBytes
	ReasonMaxAge   = "max_age"   // a segment's newest record was older than MaxAge
	ReasonCorrupt  = "corrupt"   // a record did not check out (torn write, disk damage)
)

const (
	headerSize = 8 // length + CRC32, both uint32 big-endian
	// MaxRecordBytes bounds one record. Access-log lines are well under 4 KiB; a length field
	// above this is damage, not a record, and must not make the reader allocate gigabytes.
	MaxRecordBytes = 1 << 20
	// DefaultSegmentBytes is the segment size when MaxBytes does not call for smaller ones.
	DefaultSegmentBytes = 16 << 20
	// segmentsPerCap: the size cap drops whole segments, so segments are at most a quarter of
	// MaxBytes; the spool then stays within MaxBytes while losing at most a quarter at a time.
	segmentsPerCap  = 4
	minSegmentBytes = 4 << 10
	segSuffix       = ".seg"
	checkpointName  = "checkpoint"
	checkpointSize  = 20 // segment uint64, offset uint64, CRC32 of the 16 bytes
	dirMode         = 0o750
	fileMode        = 0o640
)

// ErrRecordTooLarge is returned by Append for a record over MaxRecordBytes.
var ErrRecordTooLarge = errors.New("spool: record too large")

// Options configures a Spool.
type Options struct {
	// Dir holds the segments and the checkpoint; it is created if missing. One Spool per Dir.
	Dir string
	// MaxBytes caps the segments' total size; 0 means no cap.
	MaxBytes int64
	// MaxAge drops segments whose newest record is older; 0 means no cap. Checked by Expire.
	MaxAge time.Duration
	// SegmentBytes is when a new segment is started. Default: DefaultSegmentBytes, or a quarter
	// of MaxBytes if that is smaller.
	SegmentBytes int64
	// OnDrop, if set, is told about records lost to a cap or to corruption.
	OnDrop func(reason string, records int)
	// Now is the clock for MaxAge (tests). Default time.Now.
	Now func() time.Time
}

// Position is a place in the spool: a segment number and a byte offset in it.
type Position struct {
	Segment uint64
	Offset  int64
}

// Batch is what ReadBatch returned: the records and where the spool continues after them.
type Batch struct {
	Records [][]byte
	next    Position
	nextN   int // records before next.Offset in next.Segment
}

type segment struct {
	seq     uint64
	size    int64     // bytes of valid records; the file is never longer once opened
	records int       // valid records in the file
	last    time.Time // when the newest record was appended (file mtime after a restart)
}

// Spool is a disk-backed FIFO of records. It is owned by one goroutine.
type Spool struct {
	opts    Options
	segs    []*segment // ascending by seq; the last one is where Append writes
	active  *os.File   // open for appending to segs[len-1], nil until the next Append
	nextSeq uint64     // number of the next segment to create
	ckpt    Position   // first record not yet acknowledged
	ckptN   int        // records of ckpt.Segment before ckpt.Offset
	bytes   int64

	reader    *os.File
	readerSeq uint64
	hdr       [headerSize]byte
}

// Open opens or creates the spool in opts.Dir. It truncates every segment at the first record
// whose length or checksum does not check out (a torn last write), reports those as corrupt
// drops, and resumes from the checkpoint, removing segments it says were acknowledged.
func Open(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: dir is required")
	}
	if opts.MaxBytes < 0 || opts.MaxAge < 0 || opts.SegmentBytes < 0 {
		return nil, errors.New("spool: caps must not be negative")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = DefaultSegmentBytes
		if opts.MaxBytes > 0 {
			opts.SegmentBytes = max(min(opts.SegmentBytes, opts.MaxBytes/segmentsPerCap), minSegmentBytes)
		}
	}
	if err := os.MkdirAll(opts.Dir, dirMode); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{opts: opts, nextSeq: 1}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Spool) load() error {
	ents, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), segSuffix)
		if !ok || e.IsDir() {
			continue
		}
		seq, err := strconv.ParseUint(name, 10, 64)
		if err != nil || seq == 0 {
			continue // not ours
		}
		seg, err := s.scan(seq)
		if err != nil {
			return err
		}
		s.segs = append(s.segs, seg)
		s.bytes += seg.size
		s.nextSeq = max(s.nextSeq, seq+1)
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmpSeq(a.seq, b.seq) })

	ck, ok := s.readCheckpoint()
	switch {
	case !ok && len(s.segs) > 0:
		ck = Position{Segment: s.segs[0].seq} // no checkpoint: replay everything (at least once)
	case !ok:
		ck = Position{Segment: s.nextSeq}
	}
	s.nextSeq = max(s.nextSeq, ck.Segment)
	s.ckpt = ck
	// Segments before the checkpoint were acknowledged; a crash kept them only because it came
	// between the checkpoint's rename and their removal.
	for len(s.segs) > 0 && s.segs[0].seq < ck.Segment {
		s.removeFirst()
	}
	switch {
	case len(s.segs) == 0:
		// The checkpoint's segment is gone (dropped by a cap, or a crash came between removing
		// it and rewriting the checkpoint): the next segment created gets its number and must
		// be read from its start.
		s.ckpt.Offset = 0
	case s.segs[0].seq > ck.Segment:
		s.ckpt = Position{Segment: s.segs[0].seq}
	}
	if len(s.segs) > 0 && s.segs[0].seq == s.ckpt.Segment {
		off, n, err := s.boundary(s.segs[0], s.ckpt.Offset)
		if err != nil {
			return err
		}
		s.ckpt.Offset, s.ckptN = off, n
	}
	return nil
}

// scan validates a segment's records, truncating the file at the first bad one.
func (s *Spool) scan(seq uint64) (*segment, error) {
	p := s.segPath(seq)
	f, err := os.OpenFile(p, os.O_RDWR, 0) //nolint:gosec // our own directory
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	seg := &segment{seq: seq, last: st.ModTime()}
	var buf []byte
	for {
		n, data, err := readRecord(f, seg.size, st.Size(), buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A torn or damaged record: nothing after it can be framed, so it goes. The length
			// of what is lost is unknown; one drop says it happened.
			if terr := f.Truncate(seg.size); terr != nil {
				return nil, fmt.Errorf("spool: truncate %s: %w", p, terr)
			}
			s.drop(ReasonCorrupt, 1)
			break
		}
		buf = data[:0]
		seg.size += n
		seg.records++
	}
	return seg, nil
}

// boundary returns the offset of the last record boundary at or before off in seg, and how
// many records precede it.
func (s *Spool) boundary(seg *segment, off int64) (int64, int, error) {
	f, err := s.open(seg.seq)
	if err != nil {
		return 0, 0, err
	}
	var pos int64
	n := 0
	for pos < off && pos < seg.size {
		if _, err := f.ReadAt(s.hdr[:], pos); err != nil {
			return 0, 0, fmt.Errorf("spool: %w", err)
		}
		next := pos + headerSize + int64(binary.BigEndian.Uint32(s.hdr[0:4]))
		if next > off {
			break
		}
		pos, n = next, n+1
	}
	return pos, n, nil
}

// readRecord reads the record at off in a file of size bytes into buf. It returns the record's
// size on disk and its payload, io.EOF at the end, or an error for a torn or damaged record.
func readRecord(f *os.File, off, size int64, buf []byte) (int64, []byte, error) {
	if off >= size {
		return 0, nil, io.EOF
	}
	if size-off < headerSize {
		return 0, nil, errors.New("torn header")
	}
	var hdr [headerSize]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return 0, nil, fmt.Errorf("header: %w", err)
	}
	n := int64(binary.BigEndian.Uint32(hdr[0:4]))
	if n > MaxRecordBytes || off+headerSize+n > size {
		return 0, nil, errors.New("torn record")
	}
	data := slices.Grow(buf[:0], int(n))[:n]
	if _, err := f.ReadAt(data, off+headerSize); err != nil {
		return 0, nil, fmt.Errorf("record: %w", err)
	}
	if crc32.ChecksumIEEE(data) != binary.BigEndian.Uint32(hdr[4:8]) {
		return 0, nil, errors.New("checksum mismatch")
	}
	return headerSize + n, data, nil
}

// Append adds rec at the end of the spool, then applies MaxBytes.
func (s *Spool) Append(rec []byte) error {
	if len(rec) > MaxRecordBytes {
		return ErrRecordTooLarge
	}
	n := int64(headerSize + len(rec))
	if s.active == nil || s.segs[len(s.segs)-1].size+n > s.opts.SegmentBytes {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	seg := s.segs[len(s.segs)-1]
	var hdr [headerSize]byte
	binary.BigEndian.PutUint32(hdr[0:4], uint32(len(rec))) //nolint:gosec // bounded by MaxRecordBytes
	binary.BigEndian.PutUint32(hdr[4:8], crc32.ChecksumIEEE(rec))
	// One write per record, so a crash tears at most the record being written.
	buf := make([]byte, 0, n)
	buf = append(append(buf, hdr[:]...), rec...)
	if _, err := s.active.Write(buf); err != nil {
		// The file may now end in a partial record; stop appending to it so the next record
		// starts a clean segment. Open truncates the partial one.
		_ = s.active.Close()
		s.active = nil
		return fmt.Errorf("spool: append: %w", err)
	}
	seg.size += n
	seg.records++
	seg.last = s.opts.Now()
	s.bytes += n
	for s.opts.MaxBytes > 0 && s.bytes > s.opts.MaxBytes && len(s.segs) > 1 {
		s.dropFirst(ReasonMaxBytes)
	}
	return nil
}

// rotate closes the segment being appended to and starts the next one.
func (s *Spool) rotate() error {
	if s.active != nil {
		_ = s.active.Close() // written with plain writes; nothing is buffered
		s.active = nil
	}
	seq := s.nextSeq
	f, err := os.OpenFile(s.segPath(seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, fileMode)
	if err != nil {
		return fmt.Errorf("spool: new segment: %w", err)
	}
	s.nextSeq++
	s.active = f
	s.segs = append(s.segs, &segment{seq: seq, last: s.opts.Now()})
	return nil
}

// Expire applies MaxAge: it drops the oldest segments whose newest record is older than that.
func (s *Spool) Expire() {
	if s.opts.MaxAge <= 0 {
		return
	}
	cutoff := s.opts.Now().Add(-s.opts.MaxAge)
	for len(s.segs) > 0 && s.segs[0].last.Before(cutoff) {
		s.dropFirst(ReasonMaxAge)
	}
}

// dropFirst removes the oldest segment before it was acknowledged, counting its unacknowledged
// records, and moves the checkpoint past it.
func (s *Spool) dropFirst(reason string) {
	seg := s.segs[0]
	lost := 0
	switch {
	case seg.seq == s.ckpt.Segment:
		lost = seg.records - s.ckptN
	case seg.seq > s.ckpt.Segment:
		lost = seg.records
	}
	s.removeFirst()
	if seg.seq >= s.ckpt.Segment {
		next := s.nextSeq
		if len(s.segs) > 0 {
			next = s.segs[0].seq
		}
		s.ckpt, s.ckptN = Position{Segment: next}, 0
		_ = s.writeCheckpoint() // best effort: an old checkpoint only means more replay
	}
	s.drop(reason, lost)
}

// removeFirst deletes the oldest segment's file.
func (s *Spool) removeFirst() {
	seg := s.segs[0]
	if len(s.segs) == 1 && s.active != nil {
		_ = s.active.Close()
		s.active = nil
	}
	if s.reader != nil && s.readerSeq == seg.seq {
		_ = s.reader.Close()
		s.reader = nil
	}
	_ = os.Remove(s.segPath(seg.seq)) // a leftover file is removed at the next Open
	s.segs = s.segs[1:]
	s.bytes -= seg.size
}

func (s *Spool) drop(reason string, records int) {
	if records > 0 && s.opts.OnDrop != nil {
		s.opts.OnDrop(reason, records)
	}
}

// ReadBatch returns up to maxRecords records (and about maxBytes) from the checkpoint on,
// without moving it: call Commit once the sink acknowledged them, or ReadBatch again to retry
// the same records.
func (s *Spool) ReadBatch(maxRecords int, maxBytes int64) (Batch, error) {
	b := Batch{next: s.ckpt, nextN: s.ckptN}
	var size int64
	for i := 0; i < len(s.segs) && len(b.Records) < maxRecords && size < maxBytes; {
		seg := s.segs[i]
		switch {
		case seg.seq < b.next.Segment:
			i++
			continue
		case seg.seq > b.next.Segment:
			b.next, b.nextN = Position{Segment: seg.seq}, 0
		}
		if b.next.Offset >= seg.size {
			if i == len(s.segs)-1 {
				break
			}
			b.next, b.nextN = Position{Segment: s.segs[i+1].seq}, 0
			i++
			continue
		}
		f, err := s.open(seg.seq)
		if err != nil {
			return Batch{}, err
		}
		n, data, err := readRecord(f, b.next.Offset, seg.size, nil)
		if err != nil {
			// Damaged after Open checked it (the disk, or someone else): skip the rest of the
			// segment, and append to a fresh one so new records stay readable.
			s.drop(ReasonCorrupt, max(seg.records-b.nextN, 1))
			seg.size, seg.records = b.next.Offset, b.nextN
			if i == len(s.segs)-1 && s.active != nil {
				_ = s.active.Close()
				s.active = nil
			}
			continue
		}
		b.Records = append(b.Records, data)
		b.next.Offset += n
		b.nextN++
		size += n
	}
	return b, nil
}

func (s *Spool) open(seq uint64) (*os.File, error) {
	if s.reader != nil && s.readerSeq == seq {
		return s.reader, nil
	}
	if s.reader != nil {
		_ = s.reader.Close()
		s.reader = nil
	}
	f, err := os.Open(s.segPath(seq))
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s.reader, s.readerSeq = f, seq
	return f, nil
}

// Commit records that b's records were acknowledged: the checkpoint moves past them and is
// persisted, and segments wholly before it are removed. When that empties the spool, its last
// segment goes too, so a healthy sink leaves nothing on disk.
func (s *Spool) Commit(b Batch) error {
	if len(b.Records) == 0 {
		return nil
	}
	// A cap may have dropped the batch's segments while it was in flight and moved the
	// checkpoint past them; it never moves back.
	if b.next.Segment > s.ckpt.Segment || b.next.Segment == s.ckpt.Segment && b.next.Offset > s.ckpt.Offset {
		s.ckpt, s.ckptN = b.next, b.nextN
	}
	if s.Empty() {
		s.ckpt, s.ckptN = Position{Segment: s.nextSeq}, 0 // past every segment: all go
	}
	// The checkpoint first, then the files: a crash in between leaves acknowledged segments
	// that Open removes, never a checkpoint into a segment that is gone.
	err := s.writeCheckpoint()
	for len(s.segs) > 0 && s.segs[0].seq < s.ckpt.Segment {
		s.removeFirst()
	}
	return err
}

// Empty reports whether every record was committed (or dropped).
func (s *Spool) Empty() bool {
	for _, seg := range s.segs {
		switch {
		case seg.seq > s.ckpt.Segment && seg.size > 0:
			return false
		case seg.seq == s.ckpt.Segment && seg.size > s.ckpt.Offset:
			return false
		}
	}
	return true
}

// Bytes is the segments' total size on disk.
func (s *Spool) Bytes() int64 { return s.bytes }

// Checkpoint is the position of the first unacknowledged record.
func (s *Spool) Checkpoint() Position { return s.ckpt }

// Close closes the spool's files. The checkpoint is already on disk.
func (s *Spool) Close() error {
	var err error
	if s.active != nil {
		err = s.active.Close()
		s.active = nil
	}
	if s.reader != nil {
		_ = s.reader.Close()
		s.reader = nil
	}
	if err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}

func (s *Spool) writeCheckpoint() error {
	var buf [checkpointSize]byte
	binary.BigEndian.PutUint64(buf[0:8], s.ckpt.Segment)
	binary.BigEndian.PutUint64(buf[8:16], uint64(s.ckpt.Offset)) //nolint:gosec // offsets are never negative
	binary.BigEndian.PutUint32(buf[16:20], crc32.ChecksumIEEE(buf[:16]))
	tmp := filepath.Join(s.opts.Dir, checkpointName+".tmp")
	if err := os.WriteFile(tmp, buf[:], fileMode); err != nil {
		return fmt.Errorf("spool: checkpoint: %w", err)
	}
	// Rename is atomic: a crash leaves the old checkpoint or the new one, never half of one.
	if err := os.Rename(tmp, filepath.Join(s.opts.Dir, checkpointName)); err != nil {
		return fmt.Errorf("spool: checkpoint: %w", err)
	}
	return nil
}

// readCheckpoint returns the persisted checkpoint; false when there is none or it is damaged,
// in which case the spool replays from its oldest segment.
func (s *Spool) readCheckpoint() (Position, bool) {
	buf, err := os.ReadFile(filepath.Join(s.opts.Dir, checkpointName))
	if err != nil || len(buf) != checkpointSize || crc32.ChecksumIEEE(buf[:16]) != binary.BigEndian.Uint32(buf[16:20]) {
		return Position{}, false
	}
	off := binary.BigEndian.Uint64(buf[8:16])
	if off > 1<<62 {
		return Position{}, false
	}
	return Position{Segment: binary.BigEndian.Uint64(buf[0:8]), Offset: int64(off)}, true
}

func (s *Spool) segPath(seq uint64) string {
	return filepath.Join(s.opts.Dir, fmt.Sprintf("%020d%s", seq, segSuffix))
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
