package listener

import (
	"strconv"

	"github.com/valyala/fasthttp"
)

// RedirectOptions configures the plain-HTTP listener that sends clients to HTTPS.
type RedirectOptions struct {
	// HTTPSPort is the port of the TLS listener; 0 or 443 leaves it out of the Location.
	HTTPSPort int
}

// RedirectHandler answers every request with 308 to the same host, path and query over https.
// 308, not 301: clients keep the method and body, so a POST is not silently turned into a GET.
// Serve it on its own Listener (Options.Handler) next to the TLS one.
func RedirectHandler(opts RedirectOptions) fasthttp.RequestHandler {
	port := ""
	if opts.HTTPSPort != 0 && opts.HTTPSPort != 443 {
		port = ":" + strconv.Itoa(opts.HTTPSPort)
	}
	return func(ctx *fasthttp.RequestCtx) {
		host := hostOnly(ctx.Request.Header.Host())
		if !validHost(host) {
			// Without a trustworthy host there is nowhere safe to send the client.
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			return
		}
		var buf [512]byte // long URIs spill to the heap; the header copies loc either way
		loc := append(buf[:0], "https://"...)
		loc = append(loc, host...)
		loc = append(loc, port...)
		loc = append(loc, ctx.Request.URI().PathOriginal()...)
		if q := ctx.Request.URI().QueryString(); len(q) > 0 {
			loc = append(loc, '?')
			loc = append(loc, q...)
		}
		ctx.Response.Header.SetBytesV(fasthttp.HeaderLocation, loc)
		ctx.Response.Header.SetConnectionClose() // the client's next request goes elsewhere
		ctx.SetStatusCode(fasthttp.StatusPermanentRedirect)
	}
}

// hostOnly drops the port from a Host header value, keeping IPv6 brackets.
func hostOnly(h []byte) []byte {
	for i := len(h) - 1; i >= 0; i-- {
		switch h[i] {
		case ':':
			return h[:i]
		case ']':
			return h
		}
	}
	return h
}

// validHost accepts DNS names and IP literals only, so the Host header cannot steer the
// redirect to another authority ("evil.test/x", "user@evil.test") or into another header.
func validHost(h []byte) bool {
	if len(h) == 0 || len(h) > 255 {
		return false
	}
	if h[0] == '[' { // IPv6 literal: hex digits, colons and dots inside the brackets only
		if len(h) < 3 || h[len(h)-1] != ']' {
			return false
		}
		for _, c := range h[1 : len(h)-1] {
			if !isHex(c) && c != ':' && c != '.' {
				return false
			}
		}
		return true
	}
	for _, c := range h {
		if !isHex(c) && !('g' <= c && c <= 'z') && !('G' <= c && c <= 'Z') && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
