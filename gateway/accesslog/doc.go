// Package accesslog owns the per-request access log: one JSON object per line, written without
// ever blocking the request path.
//
// The request goroutine encodes its Entry into a pooled byte buffer (hand-written JSON appends,
// no reflection, no allocation once the pool is warm) and offers the finished line to a bounded
// channel. If the channel is full the line is dropped and counted instead of waiting: a slow
// disk or a stuck stdout pipe must cost log lines, never latency. One writer goroutine owns the
// output and is the only code that touches the file or the bufio.Writer.
//
//	request goroutines                        writer goroutine
//	──────────────────                        ────────────────
//	Log(&Entry) ─ encode into pooled []byte
//	            ─ select { ch <- line          ──▶ bufio.Writer (64 KiB) ──▶ file / stdout
//	                       default: drop++ }      drained every 20 ms while lines come;
//	                                              written when full or when its oldest line
//	                                              waited FlushInterval (1s); return buffer
//	                                              to the pool
//	                                              nothing queued or buffered: sleep until
//	                                              the next line (no ticks while idle)
//	Reopen() ── open new file ───────────────────▶ swap output, close old (log rotation)
//	Close()  ── stop ────────────────────────────▶ drain ch, flush, exit (bounded wait)
//
// Because encoding finishes before Log returns, Entry's byte-slice fields may alias fasthttp's
// request buffers: nothing of the Entry is retained after the call.
package accesslog
