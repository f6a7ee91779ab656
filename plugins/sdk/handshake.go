package sdk

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/meshgate/meshgate/plugins/proto"
)

// The go-plugin handshake. Both sides import these from here, so they cannot drift apart.
const (
	// ProtocolVersion is the version of plugin.proto's contract; a plugin built against
	// another version is refused at launch with go-plugin's "incompatible API version" error.
	ProtocolVersion = 1
	// MagicCookieKey and MagicCookieValue are not a secret: they only let a plugin binary
	// that was started by hand say so, instead of waiting for a handshake that never comes.
	MagicCookieKey   = "MESHGATE_PLUGIN"
	MagicCookieValue = "b1f0c7e2a94d4e5c8a3d6f21e07b9c54"
	// PluginName is the one plugin every meshgate plugin process serves (go-plugin's
	// Dispense name).
	PluginName = "meshgate"
)

// Handshake is the go-plugin handshake for meshgate plugins.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   MagicCookieKey,
		MagicCookieValue: MagicCookieValue,
	}
}

// PluginSet is what the host passes as plugin.ClientConfig.Plugins.
func PluginSet() plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{}}
}

// GRPCPlugin is the go-plugin glue for both sides: in a plugin process (built by Serve) it
// registers the plugin's gRPC service; in the host its GRPCClient returns a *Client.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin

	server *server // nil in the host
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.server == nil {
		return errors.New("no plugin to serve: plugin processes call sdk.Serve")
	}
	pb.RegisterPluginServer(s, p.server)
	return nil
}

// GRPCClient implements plugin.GRPCPlugin. go-plugin cancels ctx when the plugin process
// exits, which is what Client.Exited reports.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return NewClient(conn, ctx.Done()), nil
}

// Dispense returns the plugin's Client from a started go-plugin client's protocol
// (plugin.Client.Client()).
func Dispense(cp plugin.ClientProtocol) (*Client, error) {
	raw, err := cp.Dispense(PluginName)
	if err != nil {
		return nil, fmt.Errorf("dispense %s: %w", PluginName, err)
	}
	c, ok := raw.(*Client)
	if !ok {
		return nil, fmt.Errorf("dispense %s: got %T, not *sdk.Client (was PluginSet() passed as ClientConfig.Plugins?)", PluginName, raw)
	}
	return c, nil
}
