package sdk_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os/exec"
	"time"

	"github.com/hashicorp/go-plugin"

	pb "github.com/meshgate/meshgate/plugins/proto"
	"github.com/meshgate/meshgate/plugins/sdk"
)

func ExampleRespond() {
	d := sdk.Respond(401, "missing API key\n").
		SetHeader("WWW-Authenticate", `ApiKey header="X-Api-Key"`)
	fmt.Println(d.Responds(), d.Reply.Status)
	for _, h := range d.Reply.Headers {
		fmt.Printf("%s: %s\n", h.Name, h.Value)
	}
	fmt.Printf("%q\n", d.Reply.Body)
	// Output:
	// true 401
	// Content-Type: text/plain; charset=utf-8
	// WWW-Authenticate: ApiKey header="X-Api-Key"
	// "missing API key\n"
}

func ExampleContinue() {
	// After a successful check: record who called, and keep the credential from the upstream.
	d := sdk.Continue().
		WithConsumer("billing").
		RemoveHeader("X-Api-Key").
		SetHeader("X-Consumer", "billing")
	fmt.Println(d.Responds(), d.Consumer, d.RemoveHeaders, d.SetHeaders)
	// Output:
	// false billing [X-Api-Key] [{X-Consumer billing}]
}

func ExampleRequest_Header() {
	r := &sdk.Request{Headers: []sdk.Header{
		{Name: "x-api-key", Value: "k1"},
		{Name: "Accept", Value: "text/html"},
		{Name: "Accept", Value: "application/json"},
	}}
	fmt.Println(r.Header("X-Api-Key"))
	fmt.Println(r.Values("accept"))
	fmt.Printf("%q\n", r.Header("X-Missing"))
	// Output:
	// k1
	// [text/html application/json]
	// ""
}

// The host's side: start a plugin binary with the binary's checksum and mTLS, hand it its
// configuration, and call it with a deadline. plugins/host does this with restarts, breakers
// and failure policies around it.
func ExampleDispense() {
	path := "/usr/lib/meshgate/plugins/apikey"
	sum := sha256.Sum256([]byte("the binary's bytes, read at load")) // the user configures this

	proc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake(),
		Plugins:          sdk.PluginSet(),
		Cmd:              exec.Command(path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SecureConfig:     &plugin.SecureConfig{Checksum: sum[:], Hash: sha256.New()},
	})
	defer proc.Kill()
	cp, err := proc.Client() // starts the process; a wrong checksum fails here
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := sdk.Dispense(cp)
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	caps, err := c.Configure(ctx, []byte(`{"keys":[{"consumer":"billing","key":"s3cret"}]}`))
	if err != nil {
		fmt.Println(err) // errors.Is(err, sdk.ErrInvalidConfig): the user's mistake
		return
	}
	fmt.Println(caps.Name, caps.CanDeny, caps.Request.Headers.Names)

	reqCtx, cancelReq := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelReq()
	in := &pb.RequestPhase{Route: "api", Headers: []*pb.Header{{Name: []byte("X-Api-Key"), Value: []byte("s3cret")}}}
	var out pb.RequestDecision
	if err := c.OnRequest(reqCtx, in, &out); err != nil {
		// errors.Is: context.DeadlineExceeded (hang), sdk.ErrUnavailable (crashed),
		// sdk.ErrFailed (plugin error): the host's failure policy decides.
		fmt.Println(err)
		return
	}
	fmt.Println(out.GetProceed().GetConsumer())

	select {
	case <-c.Exited():
		fmt.Println("plugin exited: restart it with backoff, then Describe and Configure again")
	default:
	}
}
