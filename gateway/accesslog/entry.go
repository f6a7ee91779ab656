package accesslog

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// JSON field names of one access-log line. They are part of the operator-facing contract
// (dashboards and log pipelines parse them), so they live in one place.
const (
	FieldTime       = "ts"
	FieldStatus     = "status"
	FieldMethod     = "method"
	FieldPath       = "path"
	FieldHost       = "host"
	FieldRoute      = "route"
	FieldService    = "service"
	FieldUpstream   = "upstream"
	FieldClientIP   = "client_ip"
	FieldRequestID  = "request_id"
	FieldDurationMS = "duration_ms"
	FieldUpstreamMS = "upstream_ms"
	FieldBytesIn    = "bytes_in"
	FieldBytesOut   = "bytes_out"
	FieldAttempts   = "attempts"
	FieldError      = "error"
	FieldUserAgent  = "ua"
	FieldListener   = "listener"
	FieldIdentity   = "identity"
	FieldProtocol   = "protocol"
)

const (
	timeFormat = time.RFC3339Nano
	// Lines are bounded by the truncation limits below (well under 4 KiB); a buffer that grew
	// past this came from something unexpected and is not worth keeping in the pool.
	maxLineBytesForReuse  = 16 << 10
	initialLineBufferSize = 1 << 10
)

// Truncation limits in bytes. Client-controlled values are capped so that one hostile request
// cannot produce a multi-kilobyte log line (and so pooled buffers stay small).
const (
	MaxPathBytes      = 512
	MaxUserAgentBytes = 256
	MaxHostBytes      = 256
	MaxRequestIDBytes = 128
	MaxMethodBytes    = 32
	MaxShortBytes     = 256 // Route, Service, Upstream, Listener, Error
)

// Entry is one finished request. It is a plain value built on the request goroutine and passed
// to Logger.Log by pointer; Log encodes it before returning and keeps no reference to it.
//
// The []byte fields are the request-derived ones: they may alias fasthttp's reused request
// buffers (ctx.Path(), ctx.Host(), ...) without copying, which is what makes logging
// allocation-free. The string fields are expected to be long-lived values the gateway already
// holds (route and service names from the compiled config, an endpoint address, a reason code),
// so passing them costs nothing either.
type Entry struct {
	Time             time.Time // zero means "now"
	Duration         time.Duration
	UpstreamDuration time.Duration
	BytesIn          int64
	BytesOut         int64
	Status           int
	Attempts         int
	ClientIP         netip.Addr // invalid (zero) encodes as ""

	RequestID []byte
	Method    []byte
	Host      []byte
	Path      []byte
	UserAgent []byte

	Route    string
	Service  string
	Upstream string // endpoint address host:port
	Listener string
	// Protocol is the client's protocol as it would appear on a request line: HTTP/1.1,
	// HTTP/1.0 or HTTP/2.0 (a constant or fasthttp's buffer: no copy).
	Protocol string
	Error    string // short reason code such as "upstream_timeout"; omitted when empty
	// Identity is the authenticated caller: the peer's Connect service on a connect listener, a
	// JWT subject, an API-key consumer or a plugin's consumer; omitted when empty.
	Identity []byte
}

// AppendJSON appends e as one JSON object followed by '\n' to dst. It is exported so that
// callers and tests can see exactly what Log writes; it does not allocate when dst has room.
func AppendJSON(dst []byte, e *Entry) []byte {
	t := e.Time
	if t.IsZero() {
		t = time.Now()
	}
	dst = append(dst, `{"`+FieldTime+`":"`...)
	dst = t.UTC().AppendFormat(dst, timeFormat)
	dst = append(dst, `","`+FieldStatus+`":`...)
	dst = strconv.AppendInt(dst, int64(e.Status), 10)
	dst = appendField(dst, `,"`+FieldMethod+`":`, e.Method, MaxMethodBytes)
	if e.Protocol != "" {
		dst = appendField(dst, `,"`+FieldProtocol+`":`, e.Protocol, MaxShortBytes)
	}
	dst = appendField(dst, `,"`+FieldPath+`":`, e.Path, MaxPathBytes)
	dst = appendField(dst, `,"`+FieldHost+`":`, e.Host, MaxHostBytes)
	dst = appendField(dst, `,"`+FieldRoute+`":`, e.Route, MaxShortBytes)
	dst = appendField(dst, `,"`+FieldService+`":`, e.Service, MaxShortBytes)
	dst = appendField(dst, `,"`+FieldUpstream+`":`, e.Upstream, MaxShortBytes)
	dst = append(dst, `,"`+FieldClientIP+`":"`...)
	if e.ClientIP.IsValid() {
		// Unmap so an IPv4 client seen through a dual-stack socket logs as 192.0.2.1, not
		// ::ffff:192.0.2.1; the textual form of an address never needs JSON escaping.
		dst = e.ClientIP.Unmap().AppendTo(dst)
	}
	dst = append(dst, '"')
	dst = appendField(dst, `,"`+FieldRequestID+`":`, e.RequestID, MaxRequestIDBytes)
	dst = append(dst, `,"`+FieldDurationMS+`":`...)
	dst = appendMillis(dst, e.Duration)
	dst = append(dst, `,"`+FieldUpstreamMS+`":`...)
	dst = appendMillis(dst, e.UpstreamDuration)
	dst = append(dst, `,"`+FieldBytesIn+`":`...)
	dst = strconv.AppendInt(dst, e.BytesIn, 10)
	dst = append(dst, `,"`+FieldBytesOut+`":`...)
	dst = strconv.AppendInt(dst, e.BytesOut, 10)
	dst = append(dst, `,"`+FieldAttempts+`":`...)
	dst = strconv.AppendInt(dst, int64(e.Attempts), 10)
	if e.Error != "" {
		dst = appendField(dst, `,"`+FieldError+`":`, e.Error, MaxShortBytes)
	}
	dst = appendField(dst, `,"`+FieldUserAgent+`":`, e.UserAgent, MaxUserAgentBytes)
	dst = appendField(dst, `,"`+FieldListener+`":`, e.Listener, MaxShortBytes)
	if len(e.Identity) > 0 {
		dst = appendField(dst, `,"`+FieldIdentity+`":`, e.Identity, MaxShortBytes)
	}
	return append(dst, "}\n"...)
}

func appendField[T ~string | ~[]byte](dst []byte, key string, v T, limit int) []byte {
	dst = append(dst, key...)
	return appendString(dst, truncate(v, limit))
}

// appendMillis writes d in milliseconds with three decimals (microseconds), rounded to the
// nearest microsecond (halves up). Integer arithmetic: strconv.AppendFloat was most of the
// encoder's cost after the timestamp, for the same digits.
func appendMillis(dst []byte, d time.Duration) []byte {
	us := d / time.Microsecond
	if r := d % time.Microsecond; r >= time.Microsecond/2 {
		us++
	} else if r <= -time.Microsecond/2 {
		us--
	}
	if us < 0 {
		dst = append(dst, '-')
		us = -us
	}
	dst = strconv.AppendInt(dst, int64(us/1000), 10)
	f := us % 1000
	return append(dst, '.', byte('0'+f/100), byte('0'+f/10%10), byte('0'+f%10))
}

// truncate cuts s to at most limit bytes, backing off to a rune boundary so that a cut never
// manufactures an invalid UTF-8 sequence out of a valid one.
func truncate[T ~string | ~[]byte](s T, limit int) T {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && cut > limit-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		// Not UTF-8 around the cut anyway; invalid bytes are replaced when encoding.
		cut = limit
	}
	return s[:cut]
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a quoted JSON string. Invalid UTF-8 bytes become U+FFFD, one per
// byte, matching encoding/json, so every line stays valid JSON whatever a client sends.
func appendString[T ~string | ~[]byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		// Decode through a small stack copy: utf8 has no function that accepts both string
		// and []byte, and converting would allocate.
		var tmp [utf8.UTFMax]byte
		n := copy(tmp[:], s[i:])
		r, size := utf8.DecodeRune(tmp[:n])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript consumers that eval lines.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
