// Package hmac owns signed-request authentication: each client holds a secret (key id → secret)
// and signs the method, path and query, selected headers, a body digest and a timestamp with
// HMAC-SHA256. The gateway recomputes the signature, bounds the timestamp to a replay window and
// remembers each accepted signature until it would expire, so a captured request cannot be
// replayed even inside the window.
//
//	Authorization: HMAC-SHA256 keyId="k1",headers="(request-target) x-date digest",signature="<base64>"
//
//	signing string (lines joined by "\n", header names lower case, in the order listed):
//	  (request-target): post /v1/orders?id=7
//	  x-date: Mon, 02 Mar 2026 12:00:00 GMT
//	  digest: SHA-256=<base64 sha256 of the body>
//
//	parse ─▶ key id known? ─▶ listed headers include target, date, digest and the policy's own
//	      ─▶ |now − date| ≤ Skew ─▶ signature not seen before (replay cache, read only)
//	      ─▶ HMAC over the signing string equal (constant time; covers the digest header)
//	      ─▶ body, read through filter.Request.Body (max_body_bytes; 413/400 from the engine)
//	      ─▶ body digest matches ─▶ signature recorded (replay cache) ─▶ r.Identity = key id
//
// Everything before the body costs microseconds and needs no body, so an unsigned or forged
// request never makes the gateway read (or hold) its body; only holders of a secret can, and
// then only up to the listener's limit. The engine forwards the bytes the filter read.
//
// The digest may be sent as "Digest: SHA-256=<b64>" (RFC 3230) or "Content-Digest:
// sha-256=:<b64>:" (RFC 9530); the timestamp as X-Date (for clients that cannot set Date) or
// Date, in HTTP-date form.
//
// The replay cache is recorded only after the signature verifies, so only holders of a secret can
// fill it. It is sharded (16 locks) and each shard is a ring of time buckets keyed by expiry: a
// bucket whose slot has passed is cleared wholesale when reused, so expiry costs no sweep. At
// MaxNonces entries the filter fails closed (503) rather than forget a signature early. A
// ReplayCache passed in Options outlives the filter: the gateway keeps one per policy name, so
// a reload does not forget the signatures accepted in the last window.
package hmac
