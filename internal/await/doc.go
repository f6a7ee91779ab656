// Package await is what tests use instead of sleeps as synchronisation: bounded polling of a
// condition, failing the test with what was awaited when the bound passes. It also lists the
// process-wide background goroutines of our dependencies that goleak must not report.
package await
