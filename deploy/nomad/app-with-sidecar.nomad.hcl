# An application with meshgate as its Consul Connect sidecar, in one Nomad task group.
# See docs/sidecar.md and docs/operations.md.
#
#   nomad job run -var image=REGISTRY/meshgate:TAG -var app_image=REGISTRY/web:TAG \
#     deploy/nomad/app-with-sidecar.nomad.hcl
#
# meshgate is an ordinary task with lifecycle { hook = "prestart" sidecar = true }: it starts
# before the app and runs for the allocation's lifetime. Nomad's connect { sidecar_service } and
# sidecar_task are NOT used: they assume Envoy.
#
# Networking: "host". A bridge network would isolate the app, but meshgate registers the app
# and itself in Consul with checks that the Consul agent runs (a TCP check on the app's address,
# an HTTP check on meshgate's admin /ready, probed on 127.0.0.1); an agent on the host cannot
# reach the loopback of an allocation's network namespace, so in bridge mode every check would
# be critical. In host mode the app and the admin API listen on the host's loopback on ports
# Nomad allocates, and only the mTLS inbound listener listens on the node's addresses.
#
# Registration: meshgate registers both the app ("web") and its connect-proxy
# (sidecar.service.register: true, the default), so there is no Nomad service block. Nomad's
# generated service IDs are not something the config template can name reliably, and the proxy
# registration must point at the app's service ID; meshgate's own shutdown also puts both into
# maintenance and waits until Consul stops listing them before it drains (docs/consul.md).
#
# Stop sequence: Nomad stops the main task (the app) before the sidecar tasks; the proxy's alias
# check on the app turns critical within the check interval and callers move away. Give the app
# a graceful shutdown of its own. meshgate then gets SIGINT and drains: maintenance in Consul,
# wait (<= drain_wait, 10s), shutdown.ready_delay, in-flight requests up to
# shutdown.drain_timeout (30s), deregister. kill_timeout (45s) exceeds that sum; Nomad caps it
# at the client's max_kill_timeout (30s unless raised in the client config).

variable "image" {
  type    = string
  default = "meshgate:latest"
}

variable "app_image" {
  type    = string
  default = "web:latest"
}

job "web" {
  type = "service"

  update {
    max_parallel     = 1
    health_check     = "task_states"
    min_healthy_time = "10s"
    healthy_deadline = "2m"
    auto_revert      = true
  }

  group "web" {
    count = 2

    network {
      mode = "host"
      port "app" {}     # the app, on 127.0.0.1
      port "inbound" {} # meshgate's mTLS inbound, on the node's addresses (registered in Consul)
      port "admin" {}   # meshgate's admin API, on 127.0.0.1
      port "up_api" {}  # the loopback listener through which the app calls "api"
    }

    task "meshgate" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = true
      }

      config {
        image        = var.image
        network_mode = "host"
        args         = ["sidecar", "-config", "local/meshgate.yaml"]
      }

      kill_signal    = "SIGINT"
      kill_timeout   = "45s"
      shutdown_delay = "5s"

      template {
        destination   = "local/meshgate.yaml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<EOT
admin:
  address: 127.0.0.1:{{ env "NOMAD_PORT_admin" }}
discovery:
  consul:
    address: 127.0.0.1:8500
    snapshot_dir: /alloc/data/meshgate
sidecar:
  service:
    name: web
    address: 127.0.0.1
    port: {{ env "NOMAD_PORT_app" }}
    register: true
  inbound:
    # A wildcard host registers the node's address.
    address: 0.0.0.0:{{ env "NOMAD_PORT_inbound" }}
    # The edge may tell the app who the client is (X-Forwarded-*); other callers cannot.
    trusted_peers: [ edge ]
  upstreams:
    - service: api
      bind: 127.0.0.1:{{ env "NOMAD_PORT_up_api" }}
shutdown:
  drain_timeout: 30s
EOT
      }

      resources {
        cpu    = 200
        memory = 64
      }

      env {
        GOMEMLIMIT = "57MiB"
      }
    }

    task "app" {
      driver = "docker"

      config {
        image        = var.app_image
        network_mode = "host"
      }

      # The app listens on 127.0.0.1:$PORT and calls api at $API_URL (meshgate's upstream
      # listener, which adds mTLS and picks a healthy api sidecar).
      env {
        PORT    = "${NOMAD_PORT_app}"
        API_URL = "http://127.0.0.1:${NOMAD_PORT_up_api}"
      }

      kill_timeout = "30s"

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
