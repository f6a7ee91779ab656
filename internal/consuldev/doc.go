// Package consuldev runs a real Consul agent for tests and the demo. It is test support only:
// production code must never import it.
//
// Consul 1.16.6 is built from source by scripts/install-consul.sh (from the scripts/consul tools
// module) into a cache; Binary finds it, and Start runs `consul agent -dev` on loopback with every
// port picked free at run time, so parallel packages and a developer's own Consul never collide.
//
//	test ──Start(t)──▶ consul agent -dev -bind 127.0.0.1 -client 127.0.0.1
//	                     ├─ http/dns/serf_lan/serf_wan/server/grpc/grpc_tls: free ports
//	                     ├─ data dir + log file in t.TempDir()
//	                     └─ ready when /v1/status/leader names a leader and /v1/agent/self answers
//	     ◀─ *Agent{HTTPAddr, ...}   Kill() for outages, Restart(t) on the same ports,
//	                                 t.Cleanup stops it and prints the log tail if the test failed
//
// When the binary is missing, Start skips the test, unless the CI environment variable is set,
// where a missing Consul is a broken pipeline and fails the test instead.
package consuldev
