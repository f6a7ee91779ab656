// Package keyed owns a set of values created once per name and listed without a lock: what a
// metrics collector keeps for each route or watched service. Creating a value takes the set's
// mutex (at build time, never per request); a scrape reads the list through an atomic pointer,
// so it never waits for code that holds other locks while it creates values.
package keyed
