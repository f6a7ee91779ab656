package consul

import "testing"

// A Client given to the Source and to Registrars is the one they use: one token, one TLS
// setup and one connection pool for the whole process, instead of a client each.
func TestSharedClient(t *testing.T) {
	t.Parallel()
	cl, err := NewClient(ClientOptions{Address: "127.0.0.1:1", Token: "t0k"})
	if err != nil {
		t.Fatal(err)
	}
	src, err := New(Options{Client: cl, Address: "ignored.example:1", Token: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r, err := NewRegistrar(RegistrarOptions{Client: cl, Service: Instance{Name: "web", Port: 80}, CheckURL: "http://127.0.0.1:1/ready"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if src.APIClient() != cl.API() || r.client != cl.API() || src.Token() != "t0k" || r.token != "t0k" {
		t.Fatalf("the source or the registrar built a client of its own")
	}
	if _, err := NewClient(ClientOptions{Scheme: "ftp"}); err == nil {
		t.Fatal("scheme ftp accepted")
	}
}
