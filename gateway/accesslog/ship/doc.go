// Package ship owns access-log shipping: it takes the lines the access logger writes and
// delivers them, in batches and in order, to a sink (NATS JetStream or an OTLP/HTTP logs
// collector), keeping them in a
// disk spool (package accesslog/spool) while the sink is failing.
//
// The request path never sees this package. The logger's writer goroutine hands each line to
// Shipper.Offer, which copies it into a bounded queue and returns; a full queue drops the line
// and counts it (reason queue_full). One goroutine per sink owns the queue, the spool and the
// connection:
//
//	Offer ─▶ queue ─▶ direct: batch ─▶ publish async, wait for every ack (ack_timeout)
//	                     │  all acked ─▶ shipped
//	                     └─ any failure ─▶ the whole batch to the spool, switch to spooling
//	                  spooling: every line ─▶ spool (after the failed batch, so order holds)
//	                     every retry_interval: replay from the checkpoint, batch by batch,
//	                     commit the checkpoint after each acknowledged batch;
//	                     spool empty ─▶ back to direct
//
// The Publisher runs on a goroutine of its own while the shipper waits for acks, so a broker
// that accepts messages but does not acknowledge them does not stop the queue from draining:
// lines that arrive meanwhile are held (up to QueueSize) for the next batch, and past that the
// batch in flight and the held lines are spilled to the spool, in that order.
//
// Once spilling starts everything goes through the spool until it has drained: a line that
// skipped the spool while older ones waited in it would reach the broker out of order.
// Delivery is at least once: a batch whose acks did not all arrive is sent again, and a restart
// replays from the last checkpoint. Each message carries the line's request id as its JetStream
// message id (Nats-Msg-Id), so the stream's duplicate window drops the copies; a line without a
// request id gets a hash of the line instead. Request ids a client reuses within the window
// de-duplicate too, which is the price of this scheme.
//
// A spool that is not empty when the Shipper starts (meshgate was stopped or crashed during an
// outage) puts it in spooling mode from the start, so the backlog goes out first.
//
// Two Publishers exist. NATS (nats.go) publishes asynchronously and waits for every ack. OTLP
// (otlp.go) POSTs a batch as one ExportLogsServiceRequest to /v1/logs, hand-encoded with
// protowire on the publish goroutine (one LogRecord per line: the line's time, a severity from
// its status, the line as the body, its key fields as attributes). OTLP has no message id, so
// its copies are not de-duplicated by the collector; the meshgate.request_id attribute is what
// de-duplicates downstream.
//
// A sink that answers but will never take some lines (an OTLP partial success, or a 400 for the
// whole request) says so with *Rejected: the Shipper counts those lines as dropped with its
// reason and moves on, because retrying them could only hold every later line behind them.
// Every other error is a failure to retry through the spool.
//
// Kafka is not implemented; a Publisher for it would slot in beside these.
package ship
