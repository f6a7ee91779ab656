// Command misbehave is a meshgate plugin that fails on command, for tests and demos of the
// host's isolation: it crashes (the process exits mid-request), hangs (until the call's
// deadline), slows down, returns an error, or panics. The command comes from the configuration
// (every request, or every Nth) or, unless turned off, from the request's X-Misbehave header:
//
//	X-Misbehave: crash | hang | slow=50ms | error | panic
//
//	config:
//	  mode: slow=20ms        # what to do (default: nothing)
//	  every: 10              # only every 10th request (default 1)
//	  obey_header: false     # ignore X-Misbehave (default true)
//
// Never put it in front of real traffic: any client that can send the header can crash it.
package main
