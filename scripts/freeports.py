#!/usr/bin/env python3
"""freeports.py N: print N distinct loopback ports that are free for both TCP and UDP.

Used by scripts/demo.sh (the bench harness has the same probe in Go). A Consul agent's DNS and serf ports use both
protocols, so a TCP-only probe can hand out a port whose UDP side is taken. Every probe socket
stays open until all N are chosen, so no port is picked twice.
"""
import socket
import sys

held, ports = [], []
while len(ports) < int(sys.argv[1]):
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    held.append(t)
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        continue  # keep the TCP probe open so the port is not picked again
    held.append(u)
    ports.append(port)
print(" ".join(map(str, ports)))
