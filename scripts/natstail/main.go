// Command natstail prints the messages of NATS JetStream streams, one per line as
// "<subject> <payload>", the way scripts/demo.sh shows the access logs that the edge and the
// sidecars ship (Debian's nats-server package comes without the `nats` CLI):
//
//	natstail -server nats://127.0.0.1:4222                        # what is there now
//	natstail -server nats://127.0.0.1:4222 -f                     # and follow
//	natstail ... -grep 5c1f0e -n 2 -timeout 10s   # wait for 2 lines containing 5c1f0e; exit 1 if not
//
// It reads every stream that captures subjects under -subjects (default meshgate.access.>; the
// demo gives each meshgate its own stream), or the one named by -stream. Without -f or -n it
// prints the messages stored when it started, stream by stream, and exits. With -n N it waits
// (for new messages and streams too) until N messages matched, then exits 0; -timeout bounds
// every mode and exits 1 when it ran out before -n was reached.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "natstail: %v\n", err)
		os.Exit(1)
	}
}

// tail is one run: its filters and the messages printed so far, shared by the streams' readers.
type tail struct {
	grep    string
	limit   int
	mu      sync.Mutex
	printed int
	done    context.CancelFunc // called once limit messages were printed
}

func run() error {
	server := flag.String("server", nats.DefaultURL, "NATS server URL(s), comma-separated")
	subjects := flag.String("subjects", "meshgate.access.>", "read every stream capturing subjects under this")
	stream := flag.String("stream", "", "read only this stream")
	follow := flag.Bool("f", false, "keep printing new messages (until Ctrl-C or -timeout)")
	grep := flag.String("grep", "", "print only messages whose subject or payload contains this")
	limit := flag.Int("n", 0, "exit 0 once this many messages were printed, waiting for new ones if needed (0: no limit)")
	timeout := flag.Duration("timeout", 0, "give up after this long (0: never); exits 1 if -n was not reached")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	ctx, done := context.WithCancel(ctx)
	defer done()
	t := &tail{grep: *grep, limit: *limit, done: done}

	nc, err := nats.Connect(*server, nats.Name("natstail"), nats.Timeout(2*time.Second))
	if err != nil {
		return fmt.Errorf("connect %s: %w", *server, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	waitForNew := *follow || *limit > 0
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	started := map[string]bool{}
	for {
		names, err := streamNames(ctx, js, *stream, *subjects)
		if err != nil && ctx.Err() == nil {
			return err
		}
		for _, name := range names {
			if started[name] {
				continue
			}
			started[name] = true
			st, err := js.Stream(ctx, name)
			if err != nil {
				return fmt.Errorf("stream %s: %w", name, err)
			}
			read := func() {
				defer wg.Done()
				if err := t.read(ctx, st, waitForNew); err != nil {
					select {
					case errs <- err:
					default:
					}
					done()
				}
			}
			wg.Add(1)
			if waitForNew {
				go read()
			} else {
				read() // stream by stream, so each one's lines stay together
			}
		}
		if !waitForNew {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second): // look for streams created meanwhile
			continue
		}
		break
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if *limit > 0 && t.printed < *limit {
		return fmt.Errorf("%d of %d messages matching %q within %s", t.printed, *limit, *grep, *timeout)
	}
	return nil
}

// streamNames is the stream named, or every stream capturing subjects under subjects.
func streamNames(ctx context.Context, js jetstream.JetStream, name, subjects string) ([]string, error) {
	if name != "" {
		return []string{name}, nil
	}
	var names []string
	l := js.StreamNames(ctx, jetstream.WithStreamListSubject(subjects))
	for n := range l.Name() {
		names = append(names, n)
	}
	return names, l.Err()
}

// read prints stream st's messages that match: all stored ones, then (waitForNew) new ones until
// ctx ends.
func (t *tail) read(ctx context.Context, st jetstream.Stream, waitForNew bool) error {
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", st.CachedInfo().Config.Name, err)
	}
	name := info.Config.Name
	last := info.State.LastSeq // without waitForNew: what is stored now, up to here
	if !waitForNew && info.State.Msgs == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("consumer on %s: %w", name, err)
	}
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch from %s: %w", name, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			md, err := msg.Metadata()
			if err != nil {
				return err
			}
			if t.print(msg.Subject(), strings.TrimRight(string(msg.Data()), "\n")) {
				return nil
			}
			if !waitForNew && md.Sequence.Stream >= last {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fetch from %s: %w", name, err)
		}
		if ctx.Err() != nil || (got == 0 && !waitForNew) {
			// Ctrl-C, -timeout or -n reached; or the rest of what was stored at the start is
			// gone (the stream's limits).
			return nil
		}
	}
}

// print prints one message if it matches and reports whether the run is over (-n reached).
func (t *tail) print(subject, line string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.limit > 0 && t.printed >= t.limit {
		return true
	}
	if t.grep != "" && !strings.Contains(subject, t.grep) && !strings.Contains(line, t.grep) {
		return false
	}
	fmt.Printf("%s %s\n", subject, line)
	t.printed++
	if t.limit > 0 && t.printed >= t.limit {
		t.done()
		return true
	}
	return false
}
