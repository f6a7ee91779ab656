# meshgate as the edge gateway on Nomad (docker driver). See docs/operations.md.
#
#   nomad job run -var image=REGISTRY/meshgate:TAG deploy/nomad/edge.nomad.hcl
#
# Stop sequence (what the numbers below are chosen for):
#   1. Nomad deregisters the "edge" service from Consul, then waits shutdown_delay (5s) while
#      meshgate keeps serving: callers that discover the edge through Consul move away.
#   2. Nomad sends kill_signal (SIGINT, Nomad's default; meshgate drains on SIGINT and SIGTERM):
#      /ready turns 503, responses carry Connection: close, shutdown.ready_delay passes, the
#      listeners stop accepting and in-flight requests get up to shutdown.drain_timeout (30s).
#   3. Nomad sends SIGKILL after kill_timeout (45s), which therefore exceeds
#      ready_delay + drain_timeout. Nomad caps kill_timeout at the client's max_kill_timeout
#      (30s unless the client config raises it): raise it on the clients, or lower drain_timeout.

variable "image" {
  type        = string
  description = "the meshgate image built from deploy/docker/Dockerfile"
  default     = "meshgate:latest"
}

variable "count" {
  type    = number
  default = 2
}

job "meshgate-edge" {
  type = "service"

  # Rolling deploys: one instance at a time, each must be healthy (Consul check passing on
  # /ready) for 10s before the next one is replaced; a failed deploy rolls back.
  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "2m"
    progress_deadline = "5m"
    auto_revert       = true
  }

  group "edge" {
    count = var.count

    network {
      mode = "bridge"
      port "http" {
        to = 8080
      }
      port "admin" {
        to = 9901
      }
    }

    # Nomad registers the edge (not meshgate's discovery.consul.register: the Consul agent runs
    # on the host and could not reach an admin API on the container's loopback). The check is
    # the admin /ready, which is 503 while starting and while draining.
    service {
      name     = "edge"
      port     = "http"
      provider = "consul"
      tags     = ["public"]

      check {
        name     = "meshgate ready"
        type     = "http"
        port     = "admin"
        path     = "/ready"
        interval = "2s"
        timeout  = "1s"
      }
    }

    task "meshgate" {
      driver = "docker"

      config {
        image = var.image
        args  = ["edge", "-config", "/local/meshgate.yaml"]
      }

      kill_signal    = "SIGINT"
      kill_timeout   = "45s"
      shutdown_delay = "5s"

      # The config, rendered by Nomad. A change is applied by SIGHUP (meshgate also watches the
      # file); an invalid render is rejected and the running config stays. Changing a listener or
      # the admin address needs a restart (meshgate refuses such a reload and logs why).
      template {
        destination   = "local/meshgate.yaml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<EOT
# The admin API listens on all of the container's addresses so that the Consul check can reach
# it through the mapped "admin" port; do not publish that port outside the cluster. The check
# arrives with the host's IP as Host, which the admin API refuses unless it is listed
# (DNS-rebinding defence): allowed_hosts names it.
admin:
  address: 0.0.0.0:9901
  allowed_hosts: [ "{{ env "NOMAD_HOST_IP_admin" }}" ]
listeners:
  - name: public
    address: 0.0.0.0:8080
routes:
  - name: all
    match: { path_prefix: / }
    to: [ { service: web } ]
discovery:
  consul:
    address: {{ env "attr.unique.network.ip-address" }}:8500
    snapshot_dir: /alloc/data/snapshot
shutdown:
  drain_timeout: 30s
  ready_delay: 2s
EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }

      # Keep the Go heap under the memory limit (about 90% of it); see docs/operations.md.
      env {
        GOMEMLIMIT = "230MiB"
      }
    }
  }
}
