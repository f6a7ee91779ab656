package ship

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/gateway/accesslog/spool"
	"github.com/meshgate/meshgate/internal/await"
)

// stuckPublisher never answers its first Publish (a broker that accepted the connection but
// sends no acks) and records what later ones deliver. A real nats-server cannot be made to
// withhold acks, which is why this one test uses a stand-in.
type stuckPublisher struct {
	entered chan struct{}
	mu      sync.Mutex
	calls   int
	got     []string
}

func (p *stuckPublisher) Publish(ctx context.Context, msgs []Message) error {
	p.mu.Lock()
	p.calls++
	first := p.calls == 1
	p.mu.Unlock()
	if first {
		close(p.entered)
		<-ctx.Done()
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range msgs {
		p.got = append(p.got, m.ID)
	}
	return nil
}

func (p *stuckPublisher) Close() error { return nil }

func (p *stuckPublisher) delivered() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

// TestStuckSinkSpillsInsteadOfDropping: while a batch waits for acks that never come, the
// shipper keeps taking lines off its queue, holds up to QueueSize of them and then spills the
// batch and the rest to the spool; nothing is dropped and the replay is in order.
func TestStuckSinkSpillsInsteadOfDropping(t *testing.T) {
	t.Parallel()
	p := &stuckPublisher{entered: make(chan struct{})}
	s, err := New(Options{
		Name: "stuck", Publisher: p, Spool: spool.Options{Dir: t.TempDir()},
		QueueSize: 32, BatchSize: 8, FlushInterval: time.Millisecond, AckTimeout: 300 * time.Millisecond, RetryInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	id := func(i int) string { return fmt.Sprintf("req-%04d", i) }
	line := func(i int) []byte { return fmt.Appendf(nil, `{"ts":"x","request_id":"%s"}`+"\n", id(i)) }
	for i := range 8 {
		s.Offer(line(i))
	}
	<-p.entered // the first batch is in flight and will not be acknowledged
	const n = 200
	for i := 8; i < n; i++ {
		s.Offer(line(i))
		// One line at a time, so the queue itself never overflows: what is under test is
		// what the shipper does with lines while it waits.
		await.Until(t, 10*time.Second, "the shipper to take the line", func() bool { return len(s.ch) == 0 })
	}
	await.Until(t, 10*time.Second, "every line delivered", func() bool { return len(p.delivered()) >= n })
	got := p.delivered()
	for i, g := range got {
		if g, _, _ = strings.Cut(g, "."); g != id(i) { // the request id, without the line's hash
			t.Fatalf("delivery %d is %s, want %s", i, g, id(i))
		}
	}
	if len(got) != n {
		t.Fatalf("%d deliveries, want %d", len(got), n)
	}
}
