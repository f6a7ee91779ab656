// Package spool owns the access-log shipper's disk spool: an append-only queue of records in
// segment files under one directory, read back in order from a persisted checkpoint.
//
// It exists so that a sink outage (the broker down, acks not coming back) costs disk space
// instead of log entries, and so that a crash or restart of meshgate loses neither the entries
// waiting in the spool nor their order.
//
// On disk:
//
//	DIR/00000000000000000001.seg   records, oldest first
//	DIR/00000000000000000002.seg   the segment being appended to (highest number)
//	DIR/checkpoint                 segment number + offset of the first unacknowledged record
//
// A record is a 4-byte big-endian payload length, a 4-byte big-endian CRC32 (IEEE) of the
// payload, then the payload. The checksum is what tells a torn write (the process died halfway
// through a record) from a record: Open truncates the newest segment at the first record that
// does not check out, and a reader skips the rest of an older segment that does not. The
// checkpoint is rewritten (temp file, then rename, so it is never half-written) only after the
// records before it were acknowledged by the sink, which makes delivery at-least-once: a crash
// between the acknowledgement and the rename replays one batch, and the sink de-duplicates it.
//
// Caps bound the spool: MaxBytes drops the oldest segments when the total would exceed it and
// MaxAge drops segments whose newest record is older than that. Dropped records are reported
// through Options.OnDrop with a reason, so the caller counts them.
//
// A Spool is not safe for concurrent use: the shipper goroutine owns it. It knows nothing of
// access logs or brokers; a record is an opaque byte string.
package spool
