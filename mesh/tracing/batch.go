package tracing

import "sync"

// spanBatch is one export request's worth of spans, and the attributes they point into. It
// cycles free → filling → full → exported → free, so once the buffers have grown a sampled
// span costs no allocation to queue.
type spanBatch struct {
	spans []SpanData
	attrs []Attr // arena: each span's Attrs is a window of it
}

// batcher is the export queue. Spans are appended to the batch being filled under a mutex
// held for one append; the exporter is handed a batch when it is full (or takes the partial
// one when its ticker fires), so it wakes once per batch rather than once per span, which at
// 100% sampling was most of what tracing cost: a channel send per span that woke the parked
// exporter goroutine. The queue is bounded by the number of batches: when every one is full
// or being exported, new spans are dropped and counted.
type batcher struct {
	size int             // spans per batch
	free chan *spanBatch // batches ready to fill
	full chan *spanBatch // batches for the exporter; as many slots as batches, never blocks
	mu   sync.Mutex      // guards cur
	cur  *spanBatch      // being filled; nil: take one from free
}

// newBatcher makes room for queue spans waiting (at least one batch) plus the batch in export.
func newBatcher(queue, size int) *batcher {
	size = max(1, min(size, queue))
	n := (queue+size-1)/size + 1
	b := &batcher{size: size, free: make(chan *spanBatch, n), full: make(chan *spanBatch, n)}
	for range n {
		b.free <- &spanBatch{}
	}
	return b
}

// add appends sp's data, finished at end; false: every batch is taken (the span is dropped).
func (b *batcher) add(sp *Span, sd SpanData) bool {
	b.mu.Lock()
	cur := b.cur
	if cur == nil {
		select {
		case cur = <-b.free:
			b.cur = cur
		default:
			b.mu.Unlock()
			return false
		}
	}
	lo := len(cur.attrs)
	cur.attrs = append(cur.attrs, sp.attrs...)
	sd.Attrs = cur.attrs[lo:len(cur.attrs):len(cur.attrs)]
	cur.spans = append(cur.spans, sd)
	if len(cur.spans) >= b.size {
		b.cur = nil
		b.full <- cur // cannot block: there are as many slots as batches
	}
	b.mu.Unlock()
	return true
}

// partial takes the batch being filled, if it holds any span (the exporter's ticker).
func (b *batcher) partial() *spanBatch {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.cur
	if cur == nil || len(cur.spans) == 0 {
		return nil
	}
	b.cur = nil
	return cur
}

// release empties an exported batch and returns it for filling. The strings it held are let
// go; the encoded request had copies of them.
func (b *batcher) release(sb *spanBatch) {
	clear(sb.spans)
	clear(sb.attrs)
	sb.spans, sb.attrs = sb.spans[:0], sb.attrs[:0]
	b.free <- sb // cannot block: a batch is in exactly one place
}
