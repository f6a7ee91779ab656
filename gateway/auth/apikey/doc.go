// Package apikey owns API-key authentication: a filter that maps a presented key to a consumer
// name by comparing its SHA-256 against a set of stored hashes.
//
//	key (header X-Api-Key, or a query parameter) ─▶ sha256 ─▶ compare with EVERY stored hash
//	     │ none                                             (constant time, no early exit)
//	     ▼                                                      │ match        │ no match
//	 401 apikey_missing                         r.Identity = consumer     401 apikey_unknown
//
// Only hashes are held, so a leaked config, /config dump or heap snapshot does not leak keys.
// Comparing against all entries without stopping at the first hit keeps the time independent of
// which key matched. The key set is an immutable snapshot behind an atomic pointer: Set (fed by a
// file reload or a Consul KV watch) validates and swaps, requests never lock, and a bad update
// keeps the previous set.
//
// File format, one key per line (also a flat YAML mapping):
//
//	# consumer: sha256-hex-of-the-key
//	billing-service: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//	partner-acme:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//
// A consumer may appear on several lines (key rotation: old and new key both valid).
package apikey
