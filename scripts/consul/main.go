// Command consul is the slice of the Consul 1.16.6 CLI that meshgate's tests and demo need:
// `consul agent ...` and `consul connect proxy ...`, plus `consul version`.
//
// Consul is not packaged for the machines this project runs on, but its source is an ordinary
// Go module, so scripts/install-consul.sh builds this file into a cached binary. Only the two
// commands are linked (not command.RegisteredCommands) because every other subcommand would
// add build time and binary size for nothing we use.
//
//	consul agent -dev ...          → command/agent (server, HTTP API, Connect CA)
//	consul connect proxy ...       → command/connect/proxy (Consul's built-in Connect proxy,
//	                                 for interop tests against our sidecar)
//	consul version                 → command/version
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/consul/command/agent"
	"github.com/hashicorp/consul/command/cli"
	"github.com/hashicorp/consul/command/connect/proxy"
	"github.com/hashicorp/consul/command/version"
	mcli "github.com/mitchellh/cli"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// Upstream's main does the same: the agent logs through hclog, and stray stdlib log output
	// from dependencies would otherwise interleave with it.
	log.SetOutput(io.Discard)

	ui := &cli.BasicUI{BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr}}

	switch {
	case len(args) >= 1 && args[0] == "agent":
		// The agent installs its own SIGINT/SIGTERM/SIGHUP handling (graceful leave, reload).
		return agent.New(ui).Run(args[1:])
	case len(args) >= 2 && args[0] == "connect" && args[1] == "proxy":
		// A closed channel wakes every receiver, which is all the proxy needs from upstream's
		// MakeShutdownCh (that helper lives in command/, which links every subcommand).
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return proxy.New(ui, ctx.Done()).Run(args[2:])
	case len(args) >= 1 && (args[0] == "version" || args[0] == "-version" || args[0] == "--version"):
		return version.New(ui).Run(nil)
	default:
		fmt.Fprintln(os.Stderr, "usage: consul agent [flags] | consul connect proxy [flags] | consul version")
		fmt.Fprintln(os.Stderr, "(meshgate's test build of Consul 1.16.6: only these commands are included)")
		return 1
	}
}
