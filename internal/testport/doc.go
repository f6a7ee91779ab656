// Package testport owns test ports that must survive their server's restart: a test that
// stops a broker and starts it again on the same port (an outage) cannot use a port the
// kernel picked, because while the broker is down any outgoing connection of the parallel
// tests may get that port as its source port from the same ephemeral range, and the restart
// then fails to listen. Test support only.
package testport
