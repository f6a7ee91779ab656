// Command apikey is a meshgate authentication plugin: a request must carry a known API key in
// a header (X-Api-Key by default). A known key continues with its consumer recorded as the
// request's identity and the key removed before the request goes upstream; a missing or
// unknown key gets 401, and a known key used on a route it is not allowed on gets 403.
//
// Keys are held only as SHA-256 hashes, so the configuration can carry hashes and never the
// keys themselves, and a presented key is compared against every stored hash in constant time.
package main
