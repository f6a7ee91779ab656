// Package deadline owns lazy, coarse connection deadlines: what a proxy's connections use
// instead of arming the runtime's timer on every Set*Deadline call.
//
// An HTTP/1.1 server sets up to four deadlines per keep-alive request (idle, head, body,
// write), each a timer update in the runtime's netpoller, although a request that arrives in
// one read never waits under three of them. State keeps the deadline a caller asked for and
// arms the socket only when a Read or Write is about to wait under it, and then only when the
// armed one is not already within a slack of it: a deadline fires at most that slack late,
// never early (nginx's timer_resolution makes the same trade). A deadline that moves earlier by
// more than the slack, the past included (the usual way to unblock a Read), is armed exactly
// and at once, even while a Read or Write is in progress.
package deadline
