package host

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/gateway/filter"
	pb "github.com/meshgate/meshgate/plugins/proto"
	"github.com/meshgate/meshgate/plugins/sdk"
)

// BenchmarkFilterRequest is one request through the stamper as a filter: state load,
// breaker, pooled message, the call with its deadline, and the decision applied (one header
// set). It reports the p50 and p99 of single calls besides the mean, on each transport in the
// same run: socket (the socketpair, the default) and grpc (the Manager told not to offer the
// socket: the fallback's pooled gRPC stream).
func BenchmarkFilterRequest(b *testing.B) {
	for _, tr := range [...]string{sdk.TransportSocket, sdk.TransportGRPC} {
		b.Run("transport="+tr, func(b *testing.B) {
			h := newHarnessWith(b, ManagerOptions{GRPCOnly: tr == sdk.TransportGRPC})
			p := h.ensure(b, pluginOptions(b, "stamp", "stamper", `{"request":{"X-Stamp":"v1"}}`))
			if got := p.Status().Transport; got != tr {
				b.Fatalf("transport = %q, want %q", got, tr)
			}
			r := request("GET", "/api/orders?id=7", "Authorization", "Bearer t")
			for range 100 { // warm the stream pool and the message pool
				if v := p.Request(r); v != (filter.Verdict{}) {
					b.Fatalf("verdict %+v", v)
				}
			}
			lat := make([]time.Duration, 0, b.N)
			pid := p.Status().PID
			hostCPU, pluginCPU := processCPU(b, 0), processCPU(b, pid)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				v := p.Request(r)
				lat = append(lat, time.Since(start))
				if v.Status != 0 {
					b.Fatalf("verdict %+v", v)
				}
			}
			b.StopTimer()
			reportPercentiles(b, lat)
			// CPU time (user+system) per call on each side: steadier than latency on a
			// shared machine, where a call's wall time is mostly waiting for a CPU.
			b.ReportMetric(float64((processCPU(b, 0)-hostCPU).Nanoseconds())/float64(b.N), "host-cpu-ns/op")
			b.ReportMetric(float64((processCPU(b, pid)-pluginCPU).Nanoseconds())/float64(b.N), "plugin-cpu-ns/op")
		})
	}
}

// BenchmarkFilterRequestInterleaved makes the same call as BenchmarkFilterRequest on both
// transports in turn, one socket call then one gRPC call, so that both see the same load on a
// shared machine: it reports each one's p50 and p99 (a b.N of calls on each).
func BenchmarkFilterRequestInterleaved(b *testing.B) {
	var ps [2]*Plugin
	for i, grpcOnly := range [...]bool{false, true} {
		h := newHarnessWith(b, ManagerOptions{GRPCOnly: grpcOnly})
		ps[i] = h.ensure(b, pluginOptions(b, "stamp", "stamper", `{"request":{"X-Stamp":"v1"}}`))
	}
	r := request("GET", "/api/orders?id=7", "Authorization", "Bearer t")
	for range 100 {
		for _, p := range ps {
			if v := p.Request(r); v != (filter.Verdict{}) {
				b.Fatalf("verdict %+v", v)
			}
		}
	}
	lat := [2][]time.Duration{make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for i, p := range ps {
			start := time.Now()
			v := p.Request(r)
			lat[i] = append(lat[i], time.Since(start))
			if v.Status != 0 {
				b.Fatalf("verdict %+v", v)
			}
		}
	}
	b.StopTimer()
	for i, name := range [...]string{"socket", "grpc"} {
		slices.Sort(lat[i])
		b.ReportMetric(float64(lat[i][len(lat[i])/2].Nanoseconds()), name+"-p50-ns")
		b.ReportMetric(float64(lat[i][len(lat[i])*99/100].Nanoseconds()), name+"-p99-ns")
	}
}

// BenchmarkClientOnRequest is the same call made on the sdk.Client directly, with the same
// deadline: what gRPC and the SDK cost, for comparing the adapter against.
func BenchmarkClientOnRequest(b *testing.B) {
	h := newHarness(b)
	p := h.ensure(b, pluginOptions(b, "stamp", "stamper", `{"request":{"X-Stamp":"v1"}}`))
	rpc := p.cur.Load().inst.rpc
	in := &pb.RequestPhase{RequestId: []byte("0af7651916cd43dd8448eb211c80319c"), Route: "api",
		Method: []byte("GET"), Path: []byte("/api/orders")}
	var out pb.RequestDecision
	call := func() error {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(DefaultTimeout))
		defer cancel()
		return rpc.OnRequest(ctx, in, &out)
	}
	for range 100 {
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFilterRequestParallel is the filter called from many goroutines, as a busy proxy
// calls it, on each transport.
func BenchmarkFilterRequestParallel(b *testing.B) {
	for _, tr := range [...]string{sdk.TransportSocket, sdk.TransportGRPC} {
		b.Run("transport="+tr, func(b *testing.B) {
			h := newHarnessWith(b, ManagerOptions{GRPCOnly: tr == sdk.TransportGRPC})
			o := pluginOptions(b, "stamp", "stamper", `{"request":{"X-Stamp":"v1"}}`)
			o.Timeout = time.Second // measure throughput, not how often a loaded machine misses 50ms
			p := h.ensure(b, o)
			pid := p.Status().PID
			hostCPU, pluginCPU := processCPU(b, 0), processCPU(b, pid)
			b.ReportAllocs()
			// 8 callers per P: a proxy at wrk -c16 on 2 cores has about that many requests
			// in flight, and whether calls in flight share system calls is what this measures.
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				r := request("GET", "/api/orders?id=7")
				for pb.Next() {
					if v := p.Request(r); v.Status != 0 {
						b.Errorf("verdict %+v", v)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((processCPU(b, 0)-hostCPU).Nanoseconds())/float64(b.N), "host-cpu-ns/op")
			b.ReportMetric(float64((processCPU(b, pid)-pluginCPU).Nanoseconds())/float64(b.N), "plugin-cpu-ns/op")
		})
	}
}

// processCPU is the user+system time of process pid so far (0: this one), from
// /proc/<pid>/stat in clock ticks (100 a second on Linux).
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	path := "/proc/self/stat"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Skipf("no CPU times here: %v", err)
	}
	// The fields after the command's ")" (which may hold spaces): utime and stime are the
	// 14th and 15th of the line, the 12th and 13th after it.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("%s: %v", path, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}
