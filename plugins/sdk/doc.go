// Package sdk is what a meshgate plugin author imports: the interfaces a plugin implements,
// idiomatic Request/Decision types, Serve to run the plugin as a process, and a logger whose
// lines the host re-logs under the plugin's name. It also owns both ends of the go-plugin
// handshake (Handshake, PluginName, PluginSet) and the typed Client the host calls through, so
// the two sides cannot disagree. It imports nothing of meshgate but the generated contract in
// plugins/proto.
//
//	meshgate process                                   plugin process
//	┌──────────────────────────┐   gRPC over a unix   ┌──────────────────────────────┐
//	│ plugins/host             │   socket, AutoMTLS   │ sdk.Serve(p)                 │
//	│   sdk.Client ────────────┼─────────────────────▶│   server: proto ⇄ sdk types  │
//	│   (deadline on each call,│  Describe, Configure │     p.Describe / Configure   │
//	│    pooled streams for    │  (unary); OnRequest, │     p.OnRequest / OnResponse │
//	│    the per-request calls,│  OnResponse (pooled  │                              │
//	│    Exited() channel)     │  streams or unary)   │                              │
//	│   socketClient ──────────┼─ socketpair (fd 3) ─▶│   serveSocket: same server   │
//	│   (OnRequest/OnResponse  │  framed protobuf,    │   (when MESHGATE_PLUGIN_     │
//	│    once claimed)         │  matched by call id  │    FASTFD is set)            │
//	│   hclog ◀────────────────┼── stderr (JSON) ◀────┼── sdk.NewLogger()            │
//	└──────────────────────────┘                      └──────────────────────────────┘
//
// A plugin is a type with a Describe method plus the optional behaviours it has:
// [Configurer], [RequestHandler], [ResponseHandler]. The phases it takes part in are the
// handler interfaces it implements, so the host never makes a call whose answer is known in
// advance. A minimal plugin:
//
//	type stamp struct{}
//
//	func (stamp) Describe() sdk.Capabilities { return sdk.Capabilities{Name: "stamp", Version: "1.0.0"} }
//
//	func (stamp) OnRequest(ctx context.Context, r *sdk.Request) (sdk.Decision, error) {
//		return sdk.Continue().SetHeader("X-Stamped", "yes"), nil
//	}
//
//	func main() { sdk.Serve(stamp{}) }
//
// Concurrency: the host calls a plugin from many goroutines at once, and Configure may run
// while requests are in flight (a reload). Keep configuration in an atomic.Pointer and swap it
// whole once it is valid, as the examples in plugins/examples do; a Configure that returns an
// error must leave the previous configuration in force.
//
// Deadlines: every call's ctx carries the host's deadline. A handler that waits (I/O, a lock,
// a sleep) should give up when ctx is done; the host has already moved on by then.
package sdk
