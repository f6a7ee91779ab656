package httphdr

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/valyala/fasthttp"
)

func request() *fasthttp.RequestHeader {
	var h fasthttp.RequestHeader
	h.Set("Content-Type", "application/grpc")
	h.Set("User-Agent", "grpc-go/1.85.0")
	h.Set("Grpc-Timeout", "10S")
	h.Set("X-Tag", "one")
	h.Add("X-Tag", "two")
	h.Set("x-lower-case", "v")
	h.Set("Connection", "close")
	return &h
}

// Request must give what Header.Add field by field gives, repeated fields in order included.
func TestFillMatchesAdd(t *testing.T) {
	h := request()
	keep := func(k, _ []byte) bool { return string(k) != "Connection" }
	want := http.Header{}
	for k, v := range h.All() {
		if keep(k, v) {
			want.Add(string(k), string(v))
		}
	}
	got := http.Header{}
	Request(got, h, keep)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Request gave %v, Add gives %v", got, want)
	}
	if len(want["X-Tag"]) != 2 || want.Get("X-Lower-Case") != "v" {
		t.Fatalf("the fixture lost its repeated or lower-case field: %v", want)
	}
	// A later append to one field must not overwrite another's value.
	got["Content-Type"] = append(got["Content-Type"], "extra")
	if got.Get("User-Agent") != "grpc-go/1.85.0" {
		t.Fatalf("append to one field changed another: %v", got)
	}
}

func TestRequestAllocations(t *testing.T) { // not parallel: AllocsPerRun counts the process
	// What a gRPC call looks like by the time the gateway sends it on: every name interned.
	var h fasthttp.RequestHeader
	for _, kv := range [][2]string{{"Content-Type", "application/grpc"}, {"User-Agent", "grpc-go/1.85.0"},
		{"Grpc-Timeout", "999m"}, {"Te", "trailers"}, {"X-Request-Id", "3f1e0c6a-8f5e-4d3a-9b1c-2a7d6e5f4c3b"},
		{"X-Forwarded-For", "127.0.0.1"}, {"X-Forwarded-Proto", "http"}, {"Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}} {
		h.Set(kv[0], kv[1])
	}
	dst := make(http.Header, 16)
	n := testing.AllocsPerRun(200, func() {
		clear(dst)
		Request(dst, &h, nil)
	})
	// The filler, one buffer holding the values and one []string of slots; Header.Add would
	// make about 30.
	if n > 3 {
		t.Fatalf("Request allocates %.0f times for 8 interned fields, want 3", n)
	}
}

func TestResponse(t *testing.T) {
	var h fasthttp.ResponseHeader
	h.Set("Grpc-Status", "0")
	h.Set("Content-Type", "application/grpc")
	h.Add("Set-Cookie", "a=1")
	got := http.Header{}
	Response(got, &h, func(k, _ []byte) bool { return string(k) != "Date" })
	want := http.Header{}
	for k, v := range h.All() {
		if string(k) != "Date" {
			want.Add(string(k), string(v))
		}
	}
	if !reflect.DeepEqual(got, want) || got.Get("Grpc-Status") != "0" {
		t.Fatalf("Response gave %v, Add gives %v", got, want)
	}
}

// Many fields, repeated: every value lands, in order.
func TestManyFields(t *testing.T) {
	var h fasthttp.RequestHeader
	for i := range 60 {
		h.Add("X-F", string(rune('a'+i%26)))
	}
	got := http.Header{}
	Request(got, &h, nil)
	if len(got["X-F"]) != 60 || got["X-F"][59] != string(rune('a'+59%26)) {
		t.Fatalf("got %v", got["X-F"])
	}
}
