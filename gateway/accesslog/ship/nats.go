package ship

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const defaultReconnectWait = time.Second

// NATSOptions configures a JetStream publisher.
type NATSOptions struct {
	URL     string // nats://host:4222; several comma-separated for a cluster
	Subject string // every line is published on this subject
	// Stream must capture Subject. It is created (subject only, server defaults, which include
	// the two-minute duplicate window) when missing; an existing stream is used as it is.
	Stream string
	// ReconnectWait is the pause between reconnect attempts. Default 1s.
	ReconnectWait time.Duration
	// AckTimeout bounds how long an unacknowledged message is tracked. Default 5s.
	AckTimeout time.Duration
}

// NATS publishes batches to JetStream asynchronously and waits for every ack.
type NATS struct {
	opts    NATSOptions
	nc      *nats.Conn
	js      jetstream.JetStream
	ensured bool // the stream was found or created on this connection
	futures []jetstream.PubAckFuture
}

// DialNATS returns a publisher that connects in the background: a broker that is down when
// meshgate starts is retried for ever, and lines are spooled until it answers.
func DialNATS(o NATSOptions) (*NATS, error) {
	if o.URL == "" || o.Subject == "" || o.Stream == "" {
		return nil, errors.New("ship: nats needs url, subject and stream")
	}
	o.ReconnectWait = orDefault(o.ReconnectWait, defaultReconnectWait)
	o.AckTimeout = orDefault(o.AckTimeout, defaultAckTimeout)
	nc, err := nats.Connect(o.URL,
		nats.Name("meshgate access log"),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.ReconnectWait),
		// No client-side buffer while disconnected: a publish then fails at once and the
		// batch goes to the spool, which survives a restart; nats.go's buffer would not.
		nats.ReconnectBufSize(-1),
	)
	if err != nil {
		return nil, fmt.Errorf("ship: nats %s: %w", o.URL, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(o.AckTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("ship: jetstream: %w", err)
	}
	return &NATS{opts: o, nc: nc, js: js}, nil
}

// Publish sends msgs with their ids as Nats-Msg-Id and returns nil once JetStream acknowledged
// all of them, in order on one connection, so the stream stores them in order.
func (n *NATS) Publish(ctx context.Context, msgs []Message) error {
	if !n.nc.IsConnected() {
		return errors.New("ship: nats: not connected")
	}
	if !n.ensured {
		if err := n.ensureStream(ctx); err != nil {
			return err
		}
		n.ensured = true
	}
	n.futures = n.futures[:0]
	defer func() { clear(n.futures) }()
	for _, m := range msgs {
		msg := &nats.Msg{Subject: n.opts.Subject, Data: m.Data, Header: nats.Header{}}
		f, err := n.js.PublishMsgAsync(msg, jetstream.WithMsgID(m.ID), jetstream.WithExpectStream(n.opts.Stream))
		if err != nil {
			n.ensured = false // re-check the stream on the next attempt: it may be what is missing
			return fmt.Errorf("ship: nats publish: %w", err)
		}
		n.futures = append(n.futures, f)
	}
	for _, f := range n.futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			n.ensured = false
			return fmt.Errorf("ship: nats ack: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("ship: nats ack: %w", ctx.Err())
		}
	}
	return nil
}

func (n *NATS) ensureStream(ctx context.Context) error {
	_, err := n.js.Stream(ctx, n.opts.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = n.js.CreateStream(ctx, jetstream.StreamConfig{Name: n.opts.Stream, Subjects: []string{n.opts.Subject}})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil // created by another instance meanwhile
		}
	}
	if err != nil {
		return fmt.Errorf("ship: nats stream %q: %w", n.opts.Stream, err)
	}
	return nil
}

// Close closes the connection; unacknowledged messages are in the spool or will be resent.
func (n *NATS) Close() error {
	n.nc.Close()
	return nil
}
