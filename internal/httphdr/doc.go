// Package httphdr owns the conversion of fasthttp header fields into net/http's http.Header
// on the HTTP/2 path, where the gateway's engine (fasthttp types) meets the HTTP/2 server and
// transport (net/http types) once per request in each direction.
//
// The straightforward conversion, Header.Add(string(k), string(v)) per field, costs three or
// four allocations a field (the name, the value, the []string, the canonicalised key) —
// about forty per proxied gRPC call, and with them a share of the garbage collector's work.
// Request and Response do it in three: one buffer holding every value, one []string holding
// every slot, and the small struct that hands them out; the common field names are interned
// constants.
package httphdr
