// Package identity owns this process's Connect identity: the CA roots peers are verified
// against and the leaf certificate it presents, kept fresh from Consul and handed to TLS as
// configs that read the current material on every handshake.
//
//	Consul agent (cached, blocking)        Manager                      crypto/tls
//	/v1/agent/connect/ca/roots ──┐                                  ┌─ ServerTLSConfig
//	/v1/agent/connect/ca/leaf/x ─┤  Provider   watch loops          │   GetConfigForClient
//	         ConsulProvider ─────┴──────────► (backoff, index) ──►  │   GetCertificate
//	         (fake in tests)                       │                │   VerifyConnection
//	                                   atomic.Pointer[Roots/Leaf] ──┤
//	                                               │                └─ ClientTLSConfig(svc)
//	                                       Snapshot (optional)          GetClientCertificate
//	                                    survives restarts in outages    VerifyConnection
//
// Why the Provider seam: the agent Connect endpoints are deprecated upstream (Consul's own
// dataplane gets this over xDS/gRPC instead). Everything but ConsulProvider depends on a
// two-method interface the package itself defines, so swapping the source — a gRPC client,
// a file, a test fake — touches one file.
//
// Why handshakes read an atomic pointer: rotation (a new leaf before expiry, or a CA rotation
// that adds a root) must take effect for new handshakes without restarting listeners, while
// established connections, already authenticated, keep running untouched.
//
// Why verification is our own: Consul leaf certificates identify services by a SPIFFE URI SAN
// (spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<name>) and carry no DNS names matching a dial
// address, so the client sets InsecureSkipVerify and VerifyConnection does the chain check
// against the current roots plus the trust-domain and service-name check. VerifyConnection,
// unlike VerifyPeerCertificate, also runs on resumed sessions. Servers only authenticate here;
// which services may call is authorisation (intentions), keyed off PeerID.
//
// A failed or nonsensical answer (error, empty roots, expired leaf) never replaces the
// material in use: stale-but-valid certificates beat no mTLS at all.
package identity
