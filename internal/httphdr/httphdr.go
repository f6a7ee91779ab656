package httphdr

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/valyala/fasthttp"
)

// Request adds to dst every field of h for which keep says yes (nil: every field), in order,
// as Header.Add would. Names are expected in canonical form (fasthttp normalises them); one
// that is not is canonicalised, as Add does.
//
// Two passes over h rather than a copy of its fields into an array: on the HTTP/2 path this
// runs on a goroutine x/net/http2 started for the stream, and every KiB of frame it needs
// beyond the starting stack is a stack copy per request.
func Request(dst http.Header, h *fasthttp.RequestHeader, keep func(k, v []byte) bool) {
	n, size := 0, 0
	for k, v := range h.All() { // h.All is inlined: the loop's closure stays on the stack
		if keep == nil || keep(k, v) {
			n++
			size += len(v)
		}
	}
	if n == 0 {
		return
	}
	f := newFiller(n, size)
	for k, v := range h.All() {
		if keep == nil || keep(k, v) {
			f.add(dst, k, v)
		}
	}
}

// Response is Request for a response header. It repeats Request's body on purpose: a shared
// function taking h.All() as an iter.Seq2 (or a generic one over both header types) calls the
// iterator through a func value, which makes the loop's closure escape: an allocation per
// request where these two have none.
func Response(dst http.Header, h *fasthttp.ResponseHeader, keep func(k, v []byte) bool) {
	n, size := 0, 0
	for k, v := range h.All() {
		if keep == nil || keep(k, v) {
			n++
			size += len(v)
		}
	}
	if n == 0 {
		return
	}
	f := newFiller(n, size)
	for k, v := range h.All() {
		if keep == nil || keep(k, v) {
			f.add(dst, k, v)
		}
	}
}

// filler hands out the values from one string and the slots from one []string.
type filler struct {
	values strings.Builder
	slots  []string
}

func newFiller(n, size int) *filler {
	f := &filler{slots: make([]string, 0, n)}
	f.values.Grow(size)
	return f
}

func (f *filler) add(dst http.Header, k, v []byte) {
	// The builder never reallocates (it was grown to the total), so every string taken from
	// it stays valid: String() shares its buffer.
	start := f.values.Len()
	f.values.Write(v)
	f.slots = append(f.slots, f.values.String()[start:])
	i := len(f.slots) - 1
	key := Name(k)
	if prev, ok := dst[key]; ok {
		dst[key] = append(prev, f.slots[i])
	} else {
		dst[key] = f.slots[i : i+1 : i+1] // full slice: a later append must not overwrite slot i+1
	}
}

// Name is the canonical string of a field name: an interned constant for the names a
// gateway sees on nearly every request or response, a new string otherwise.
func Name(k []byte) string {
	switch string(k) { // the compiler compares without converting
	case "Accept":
		return "Accept"
	case "Accept-Encoding":
		return "Accept-Encoding"
	case "Accept-Language":
		return "Accept-Language"
	case "Authorization":
		return "Authorization"
	case "Cache-Control":
		return "Cache-Control"
	case "Connection":
		return "Connection"
	case "Content-Encoding":
		return "Content-Encoding"
	case "Content-Length":
		return "Content-Length"
	case "Content-Type":
		return "Content-Type"
	case "Cookie":
		return "Cookie"
	case "Date":
		return "Date"
	case "Etag":
		return "Etag"
	case "Forwarded":
		return "Forwarded"
	case "Grpc-Accept-Encoding":
		return "Grpc-Accept-Encoding"
	case "Grpc-Encoding":
		return "Grpc-Encoding"
	case "Grpc-Message":
		return "Grpc-Message"
	case "Grpc-Status":
		return "Grpc-Status"
	case "Grpc-Timeout":
		return "Grpc-Timeout"
	case "Last-Modified":
		return "Last-Modified"
	case "Location":
		return "Location"
	case "Server":
		return "Server"
	case "Set-Cookie":
		return "Set-Cookie"
	case "Te":
		return "Te"
	case "Traceparent":
		return "Traceparent"
	case "Tracestate":
		return "Tracestate"
	case "User-Agent":
		return "User-Agent"
	case "Vary":
		return "Vary"
	case "X-Forwarded-For":
		return "X-Forwarded-For"
	case "X-Forwarded-Host":
		return "X-Forwarded-Host"
	case "X-Forwarded-Proto":
		return "X-Forwarded-Proto"
	case "X-Meshgate-Budget-Ms":
		return "X-Meshgate-Budget-Ms"
	case "X-Real-Ip":
		return "X-Real-Ip"
	case "X-Request-Id":
		return "X-Request-Id"
	}
	return textproto.CanonicalMIMEHeaderKey(string(k))
}

// Method is the string of a request method, interned for the common ones.
func Method(m []byte) string {
	switch string(m) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "HEAD":
		return "HEAD"
	case "PATCH":
		return "PATCH"
	case "OPTIONS":
		return "OPTIONS"
	}
	return string(m)
}
