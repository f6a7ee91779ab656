package tracing

import "bytes"

// TraceID is a 16-byte W3C/B3 trace id; the zero value is invalid.
type TraceID [16]byte

// SpanID is an 8-byte span id; the zero value is invalid.
type SpanID [8]byte

// IsValid reports whether the id is not all zeros (both formats reserve zero for "none").
func (t TraceID) IsValid() bool { return t != TraceID{} }

// IsValid reports whether the id is not all zeros.
func (s SpanID) IsValid() bool { return s != SpanID{} }

// SpanContext is what crosses a hop: which trace, which span is the parent, and whether the
// trace is sampled.
type SpanContext struct {
	TraceID TraceID
	SpanID  SpanID
	Sampled bool
}

// IsValid reports whether both ids are set.
func (sc SpanContext) IsValid() bool { return sc.TraceID.IsValid() && sc.SpanID.IsValid() }

// Carrier is a header set: *fasthttp.RequestHeader satisfies it. Names are given in the
// canonical form fasthttp normalises incoming names to.
type Carrier interface {
	Peek(key string) []byte
	SetBytesV(key string, value []byte)
	Del(key string)
}

// Header names, canonical as fasthttp normalises them ("traceparent" arrives as "Traceparent").
const (
	HeaderTraceparent   = "Traceparent"
	HeaderTracestate    = "Tracestate"
	HeaderB3            = "B3"
	HeaderB3TraceID     = "X-B3-Traceid"
	HeaderB3SpanID      = "X-B3-Spanid"
	HeaderB3ParentID    = "X-B3-Parentspanid"
	HeaderB3Sampled     = "X-B3-Sampled"
	HeaderB3Flags       = "X-B3-Flags"
	traceparentLen      = 55 // "00-" 32 "-" 16 "-" 2
	maxTracestateLength = 512
)

// Format is one propagation format.
type Format uint8

// The formats a config may name (tracing.propagation).
const (
	W3C     Format = iota + 1 // traceparent + tracestate
	B3                        // the single b3 header
	B3Multi                   // X-B3-TraceId, X-B3-SpanId, X-B3-Sampled
)

// ParseFormat reads a propagation name as the config spells it.
func ParseFormat(s string) (Format, bool) {
	switch s {
	case "w3c":
		return W3C, true
	case "b3":
		return B3, true
	case "b3multi":
		return B3Multi, true
	}
	return 0, false
}

func (f Format) String() string {
	switch f {
	case W3C:
		return "w3c"
	case B3:
		return "b3"
	case B3Multi:
		return "b3multi"
	}
	return "unknown"
}

// ParseTraceparent reads a W3C traceparent value ("00-<trace id>-<parent id>-<flags>"). A
// future version is read by its first four fields, as the spec asks; version ff, zero ids,
// upper-case hex and any other shape are refused.
func ParseTraceparent(v []byte) (SpanContext, bool) {
	var sc SpanContext
	if len(v) < traceparentLen || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return sc, false
	}
	ver, ok := hexByte(v[0], v[1])
	if !ok || ver == 0xff || (ver == 0 && len(v) != traceparentLen) || (len(v) > traceparentLen && v[traceparentLen] != '-') {
		return sc, false
	}
	if !decodeHex(sc.TraceID[:], v[3:35]) || !decodeHex(sc.SpanID[:], v[36:52]) {
		return SpanContext{}, false
	}
	flags, ok := hexByte(v[53], v[54])
	if !ok || !sc.IsValid() {
		return SpanContext{}, false
	}
	sc.Sampled = flags&1 != 0
	return sc, true
}

// AppendTraceparent appends sc as a version-00 traceparent value.
func AppendTraceparent(dst []byte, sc SpanContext) []byte {
	dst = append(dst, "00-"...)
	dst = appendHex(dst, sc.TraceID[:])
	dst = append(dst, '-')
	dst = appendHex(dst, sc.SpanID[:])
	if sc.Sampled {
		return append(dst, "-01"...)
	}
	return append(dst, "-00"...)
}

// ParseB3 reads a single b3 header: "<trace id>-<span id>[-<sampling>[-<parent id>]]", the
// trace id 16 or 32 hex digits (a 64-bit id is padded on the left), sampling 1, 0 or d
// (debug, which is sampled). deferred is true when the header names no decision. A bare "0"
// or "1" (a decision without ids) carries no parent, so it is refused: the ratio then decides.
func ParseB3(v []byte) (sc SpanContext, deferred, ok bool) {
	i := bytes.IndexByte(v, '-')
	if i < 0 || !parseB3TraceID(&sc.TraceID, v[:i]) {
		return SpanContext{}, false, false
	}
	v = v[i+1:]
	sid := v
	if j := bytes.IndexByte(v, '-'); j >= 0 {
		sid, v = v[:j], v[j+1:]
	} else {
		v = nil
	}
	if len(sid) != 16 || !decodeHex(sc.SpanID[:], sid) || !sc.IsValid() {
		return SpanContext{}, false, false
	}
	if v == nil {
		return sc, true, true // no decision: the receiver's, here the ratio (so hops agree)
	}
	flag := v
	if j := bytes.IndexByte(v, '-'); j >= 0 {
		flag = v[:j]
		if len(v[j+1:]) != 16 {
			return SpanContext{}, false, false
		}
	}
	switch string(flag) {
	case "1", "d":
		sc.Sampled = true
	case "0":
	default:
		return SpanContext{}, false, false
	}
	return sc, false, true
}

// AppendB3 appends sc as a single b3 header value "<trace id>-<span id>-<1|0>".
func AppendB3(dst []byte, sc SpanContext) []byte {
	dst = appendHex(dst, sc.TraceID[:])
	dst = append(dst, '-')
	dst = appendHex(dst, sc.SpanID[:])
	if sc.Sampled {
		return append(dst, "-1"...)
	}
	return append(dst, "-0"...)
}

// ParseB3Multi reads the X-B3-* headers: trace and span id required; X-B3-Sampled "1"/"true"
// or X-B3-Flags "1" (debug) mean sampled. deferred is true when neither says anything.
func ParseB3Multi(traceID, spanID, sampled, flags []byte) (sc SpanContext, deferred, ok bool) {
	if !parseB3TraceID(&sc.TraceID, traceID) || len(spanID) != 16 || !decodeHex(sc.SpanID[:], spanID) || !sc.IsValid() {
		return SpanContext{}, false, false
	}
	switch {
	case string(flags) == "1", string(sampled) == "1", string(sampled) == "true":
		sc.Sampled = true
	case string(sampled) == "0", string(sampled) == "false":
	case len(sampled) == 0:
		deferred = true
	default:
		return SpanContext{}, false, false
	}
	return sc, deferred, true
}

func parseB3TraceID(dst *TraceID, v []byte) bool {
	switch len(v) {
	case 32:
		return decodeHex(dst[:], v)
	case 16:
		*dst = TraceID{}
		return decodeHex(dst[8:], v)
	}
	return false
}

const hexDigits = "0123456789abcdef"

func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// decodeHex decodes len(dst)*2 lower-case hex digits (W3C refuses upper case; B3 ids are
// lower-case by its spec too).
func decodeHex(dst, src []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		b, ok := hexByte(src[2*i], src[2*i+1])
		if !ok {
			return false
		}
		dst[i] = b
	}
	return true
}

func hexByte(hi, lo byte) (byte, bool) {
	h, ok1 := nibble(hi)
	l, ok2 := nibble(lo)
	return h<<4 | l, ok1 && ok2
}

func nibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// String is the id in lower-case hex, as the headers spell it.
func (t TraceID) String() string { return string(appendHex(nil, t[:])) }

// String is the id in lower-case hex.
func (s SpanID) String() string { return string(appendHex(nil, s[:])) }

// MarshalText spells the format as the config does (for /config-like views and golden files).
func (f Format) MarshalText() ([]byte, error) { return []byte(f.String()), nil }
