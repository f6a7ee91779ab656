// Command jwtgen makes the key material of the bench harness's (scripts/bench) "jwt" scenario:
// a fresh RSA-2048 key pair and one RS256 token signed with it. It writes the
// public key twice into -dir, as public.pem (PKIX PEM, for public_key_files)
// and as jwks.json (a JWK Set with one key, for jwks_url), and prints the
// token on stdout. The private key never leaves the process.
//
// The token carries kid (so a JWKS lookup finds the key by id), iss, aud, sub,
// iat and exp (-ttl from now).
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
)

func main() {
	dir := flag.String("dir", ".", "directory for public.pem and jwks.json")
	issuer := flag.String("issuer", "meshgate-bench-issuer", "iss claim")
	audience := flag.String("audience", "bench-api", "aud claim")
	subject := flag.String("subject", "bench-user", "sub claim")
	kid := flag.String("kid", "bench-1", "key id (JWKS kid and token header)")
	ttl := flag.Duration("ttl", time.Hour, "token lifetime (exp = now + ttl)")
	flag.Parse()
	if err := run(*dir, *issuer, *audience, *subject, *kid, *ttl); err != nil {
		fmt.Fprintln(os.Stderr, "jwtgen:", err)
		os.Exit(1)
	}
}

func run(dir, issuer, audience, subject, kid string, ttl time.Duration) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "public.pem"), pemBytes, 0o644); err != nil {
		return err
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, err := json.MarshalIndent(map[string]any{"keys": []map[string]string{{
		"kty": "RSA",
		"kid": kid,
		"use": "sig",
		"alg": "RS256",
		"n":   b64(key.N.Bytes()),
		"e":   b64(big.NewInt(int64(key.E)).Bytes()),
	}}}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), append(jwks, '\n'), 0o644); err != nil {
		return err
	}
	now := time.Now()
	tok := gojwt.NewWithClaims(gojwt.SigningMethodRS256, gojwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   subject,
		Audience:  gojwt.ClaimStrings{audience},
		IssuedAt:  gojwt.NewNumericDate(now),
		ExpiresAt: gojwt.NewNumericDate(now.Add(ttl)),
	})
	tok.Header["kid"] = kid
	signed, err := tok.SignedString(key)
	if err != nil {
		return err
	}
	fmt.Println(signed)
	return nil
}
