package httphdr

import (
	"net/http"
	"net/textproto"

	"github.com/valyala/fasthttp"
)

// maxFields is how many fields the conversion handles without allocating per field; the
// rest of a header with more (rare: a browser sends about fifteen) goes through Header.Add.
const maxFields = 48

type field struct{ k, v []byte }

// Request adds to dst every field of h for which keep says yes (nil: every field), in order,
// as Header.Add would. Names are expected in canonical form (fasthttp normalises them); one
// that is not is canonicalised, as Add does.
func Request(dst http.Header, h *fasthttp.RequestHeader, keep func(k, v []byte) bool) {
	// One loop per header type, not a shared function taking an iter.Seq2: ranging over the
	// inlined h.All() keeps the loop's closure, and with it the array, on the stack.
	var arr [maxFields]field
	fs := arr[:0]
	for k, v := range h.All() {
		if keep != nil && !keep(k, v) {
			continue
		}
		if len(fs) == maxFields {
			dst.Add(string(k), string(v))
			continue
		}
		fs = append(fs, field{k, v})
	}
	fill(dst, fs)
}

// Response is Request for a response header.
func Response(dst http.Header, h *fasthttp.ResponseHeader, keep func(k, v []byte) bool) {
	var arr [maxFields]field
	fs := arr[:0]
	for k, v := range h.All() {
		if keep != nil && !keep(k, v) {
			continue
		}
		if len(fs) == maxFields {
			dst.Add(string(k), string(v))
			continue
		}
		fs = append(fs, field{k, v})
	}
	fill(dst, fs)
}

// fill adds fs to dst with one string for every value and one []string for every slot.
func fill(dst http.Header, fs []field) {
	if len(fs) == 0 {
		return
	}
	var stack [2048]byte // the values are gathered here, then copied once into their string
	buf := stack[:0]
	for _, f := range fs {
		buf = append(buf, f.v...)
	}
	values := string(buf)
	slots := make([]string, len(fs))
	off := 0
	for i, f := range fs {
		slots[i] = values[off : off+len(f.v)]
		off += len(f.v)
		key := Name(f.k)
		if prev, ok := dst[key]; ok {
			dst[key] = append(prev, slots[i])
		} else {
			dst[key] = slots[i : i+1 : i+1] // full slice: a later append must not overwrite slot i+1
		}
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
