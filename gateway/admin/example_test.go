package admin_test

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/meshgate/meshgate/gateway/admin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func Example() {
	srv, err := admin.New(admin.Options{
		Address:  "127.0.0.1:0",
		Gatherer: prometheus.NewRegistry(),
		Ready:    func() (bool, string) { return false, "discovery: no snapshot yet" },
		Logger:   zerolog.Nop(),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	addr, err := srv.Listen() // bind errors surface here, before anything else starts
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, path := range []string{admin.PathLive, admin.PathReady} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			fmt.Println(err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		fmt.Printf("%s %d %s", path, resp.StatusCode, body)
	}

	cancel()
	fmt.Println("serve:", <-done)
	// Output:
	// /live 200 ok
	// /ready 503 discovery: no snapshot yet
	// serve: <nil>
}
