// Command stamper is a meshgate plugin that sets configured headers on every request on its way
// upstream and on every response on its way back. It is the smallest useful plugin, and what
// the plugin benchmarks measure: it asks for no part of the request, so each call carries
// little more than the route's name.
package main
