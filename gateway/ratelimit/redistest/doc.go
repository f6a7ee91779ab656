// Package redistest runs a real, throw-away redis-server for tests of cluster rate limits: on a
// loopback port chosen at run time, without persistence, stoppable and restartable on the same
// port to simulate an outage.
package redistest
