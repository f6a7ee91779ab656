// Command natstail prints the messages of a NATS JetStream stream, one per line as
// "<subject> <payload>", the way scripts/demo.sh shows the access logs that the edge and the
// sidecars ship (Debian's nats-server package comes without the `nats` CLI):
//
//	natstail -server nats://127.0.0.1:4222 -stream MESHGATE_ACCESS            # what is there now
//	natstail -server nats://127.0.0.1:4222 -stream MESHGATE_ACCESS -f         # and follow
//	natstail ... -grep 5c1f0e -n 2 -timeout 10s   # wait for 2 lines containing 5c1f0e; exit 1 if not
//	natstail ... -create 'meshgate.access.>'      # create the stream capturing these subjects
//
// Without -f or -n it prints the messages stored when it started and exits. With -n N it waits
// (for new messages too) until N messages matched, then exits 0; -timeout bounds every mode and
// exits 1 when it ran out before -n was reached. -create makes the stream (file storage, server
// defaults) if it does not exist and exits: meshgate creates a missing stream capturing only
// its own subject, so one stream shared by several subjects is made beforehand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
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

func run() error {
	server := flag.String("server", nats.DefaultURL, "NATS server URL(s), comma-separated")
	stream := flag.String("stream", "MESHGATE_ACCESS", "JetStream stream to read")
	follow := flag.Bool("f", false, "keep printing new messages (until Ctrl-C or -timeout)")
	grep := flag.String("grep", "", "print only messages whose subject or payload contains this")
	limit := flag.Int("n", 0, "exit 0 once this many messages were printed, waiting for new ones if needed (0: no limit)")
	timeout := flag.Duration("timeout", 0, "give up after this long (0: never); exits 1 if -n was not reached")
	create := flag.String("create", "", "create the stream capturing these subjects (comma-separated) if missing, and exit")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	nc, err := nats.Connect(*server, nats.Name("natstail"), nats.Timeout(2*time.Second))
	if err != nil {
		return fmt.Errorf("connect %s: %w", *server, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	if *create != "" {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: *stream, Subjects: strings.Split(*create, ",")})
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("create stream %s: %w", *stream, err)
		}
		return nil
	}

	st, err := js.Stream(ctx, *stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", *stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream %s: %w", *stream, err)
	}
	// Without -f or -n: what is stored now, up to this sequence.
	last := info.State.LastSeq
	waitForNew := *follow || *limit > 0
	if !waitForNew && info.State.Msgs == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return fmt.Errorf("consumer on %s: %w", *stream, err)
	}
	printed := 0
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("fetch from %s: %w", *stream, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			md, err := msg.Metadata()
			if err != nil {
				return err
			}
			line := strings.TrimRight(string(msg.Data()), "\n")
			if *grep == "" || strings.Contains(msg.Subject(), *grep) || strings.Contains(line, *grep) {
				fmt.Printf("%s %s\n", msg.Subject(), line)
				printed++
				if *limit > 0 && printed >= *limit {
					return nil
				}
			}
			if !waitForNew && md.Sequence.Stream >= last {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fetch from %s: %w", *stream, err)
		}
		switch {
		case ctx.Err() != nil && *limit > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("%d of %d messages matching %q in %s within %s", printed, *limit, *grep, *stream, *timeout)
		case ctx.Err() != nil:
			return nil // Ctrl-C, or -timeout without -n
		case got == 0 && !waitForNew:
			return nil // the rest of what was stored at the start is gone (the stream's limits)
		}
	}
}
