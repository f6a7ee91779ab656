package sdk_test

import (
	"context"

	"github.com/meshgate/meshgate/plugins/sdk"
)

// requireTenant is a whole plugin: it refuses requests without an X-Tenant header and tells
// the upstream which tenant it serves. The host sends it that one header and nothing else.
type requireTenant struct{}

func (requireTenant) Describe() sdk.Capabilities {
	return sdk.Capabilities{
		Name:    "require-tenant",
		Version: "1.0.0",
		Request: sdk.RequestParts{Headers: sdk.HeaderNames("X-Tenant")},
		CanDeny: true, // it answers 400 on its own: if it is down, fail closed
	}
}

func (requireTenant) OnRequest(_ context.Context, r *sdk.Request) (sdk.Decision, error) {
	tenant := r.Header("X-Tenant")
	if tenant == "" {
		return sdk.Respond(400, "X-Tenant is required\n"), nil
	}
	return sdk.Continue().SetHeader("X-Tenant-Verified", tenant), nil
}

// A plugin's main function: build it with `go build`, point meshgate's config at the binary
// (with its sha256), and reference it from a route.
func Example() {
	sdk.Serve(requireTenant{})
}
