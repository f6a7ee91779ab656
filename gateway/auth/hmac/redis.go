package hmac

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultRedisTimeout bounds every Redis command of the shared replay store.
const DefaultRedisTimeout = 50 * time.Millisecond

// ReplayStore shares accepted signatures between gateway instances, so a request accepted by
// one cannot be replayed to another. Consulted after the local ReplayCache and only for
// requests that verified completely.
type ReplayStore interface {
	// Add records sig for policy until exp. ErrReplayed when it is recorded already; any other
	// error means the store could not decide (the filter then fails closed).
	Add(policy string, sig [32]byte, exp, now time.Time) error
}

// ErrReplayed is a ReplayStore's answer for a signature it holds already.
var ErrReplayed = errReplayed

// RedisOptions locates the Redis a RedisReplay uses.
type RedisOptions struct {
	Address  string
	Password string
	DB       int
	Timeout  time.Duration // per command; default DefaultRedisTimeout
}

// RedisReplay is a ReplayStore on Redis: SET key NX with the signature's remaining lifetime, so
// Redis forgets it when the timestamp leaves the window. Safe for concurrent use.
type RedisReplay struct {
	client  *redis.Client
	timeout time.Duration
}

var _ ReplayStore = (*RedisReplay)(nil)

// NewRedisReplay returns a store on o's Redis; it connects on first use.
func NewRedisReplay(o RedisOptions) *RedisReplay {
	if o.Timeout <= 0 {
		o.Timeout = DefaultRedisTimeout
	}
	return &RedisReplay{timeout: o.Timeout, client: redis.NewClient(&redis.Options{
		Addr:     o.Address,
		Password: o.Password,
		DB:       o.DB,
		// Socket deadlines bound each command, so a slow Redis delays a signed request by at
		// most one timeout before it is refused.
		DialTimeout:  o.Timeout,
		ReadTimeout:  o.Timeout,
		WriteTimeout: o.Timeout,
		PoolTimeout:  o.Timeout,
		// A retried SET NX after a lost reply would find our own key and call it a replay.
		MaxRetries:               -1,
		DialerRetries:            1,
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})}
}

// Close closes the connections.
func (s *RedisReplay) Close() error { return s.client.Close() }

// Add implements ReplayStore.
func (s *RedisReplay) Add(policy string, sig [32]byte, exp, now time.Time) error {
	ttl := max(exp.Sub(now), time.Millisecond)
	var key [len("meshgate:hmac:") + 64]byte
	k := append(key[:0], "meshgate:hmac:"...)
	k = hex.AppendEncode(k, sig[:])
	// The policy goes last, so the fixed-size prefix fits the stack buffer; names are short.
	name := string(k) + ":" + policy
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	ok, err := s.client.SetNX(ctx, name, 1, ttl).Result()
	switch {
	case err != nil:
		return fmt.Errorf("hmac: replay store: %w", err)
	case !ok:
		return ErrReplayed
	}
	return nil
}
