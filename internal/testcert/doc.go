// Package testcert makes throw-away certificates for tests of TLS listeners and TLS upstreams,
// so no key material is committed and every run uses fresh keys.
package testcert
