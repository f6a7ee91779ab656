// The meshgate dashboard: polls the admin API and renders it. Plain JS, no build step.
//
// Every value shown comes from the gateway's config or from peers, so it reaches the DOM only as
// text (el() below makes text nodes; innerHTML is never used), and the page's CSP forbids inline
// script anyway. Rates are differences between two successive scrapes of the same counters.
"use strict";

(() => {
  // ?refresh=SECONDS changes the 2 s period (0.2 to 60 s).
  const period = (() => {
    const s = Number(new URLSearchParams(location.search).get("refresh"));
    return Number.isFinite(s) && s >= 0.2 && s <= 60 ? s * 1000 : 2000;
  })();

  // ---- DOM helpers: the only way anything is put on the page.

  // el builds an element; string and number children become text nodes, never markup.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, String(v));
      else if (k === "title") e.title = String(v);
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function table(head, rows) {
    return el("table", {},
      el("thead", {}, el("tr", {}, head.map((h) => {
        const num = h.startsWith("#");
        return el("th", { class: num ? "num" : null }, num ? h.slice(1) : h);
      }))),
      el("tbody", {}, rows));
  }

  function num(v, attrs) {
    return el("td", Object.assign({ class: "num" }, attrs || {}), v);
  }

  function empty(text) {
    return el("p", { class: "empty" }, text);
  }

  function fill(id, ...nodes) {
    document.querySelector("#" + id + " .body").replaceChildren(...nodes.flat(Infinity));
  }

  const fmt = {
    rate(v) { return v === null ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(1); },
    ms(v) { return v === null || !Number.isFinite(v) ? "–" : v < 10 ? v.toFixed(2) : v.toFixed(0); },
    pct(v) { return v === null ? "–" : (v * 100).toFixed(1) + "%"; },
    until(iso) {
      const ms = Date.parse(iso) - Date.now();
      if (!Number.isFinite(ms)) return "";
      if (ms <= 0) return "expired";
      const m = Math.floor(ms / 60000), h = Math.floor(m / 60), d = Math.floor(h / 24);
      return "in " + (d ? d + "d " + (h % 24) + "h" : h ? h + "h " + (m % 60) + "m" : m + "m");
    },
  };

  // ---- Fetching. A missing endpoint (404) is an answer, not a failure: the section says so.

  async function get(path, kind) {
    try {
      // Bounded, so one hung endpoint cannot stop the refresh loop.
      const r = await fetch(path, { cache: "no-store", credentials: "same-origin", signal: AbortSignal.timeout(Math.max(period, 5000)) });
      if (r.status === 404) return { absent: true };
      if (!r.ok) return { error: path + " answered " + r.status };
      return { value: kind === "json" ? await r.json() : await r.text() };
    } catch (e) {
      return { error: path + ": " + e.message };
    }
  }

  // ---- Prometheus text format: just enough for the meshgate_* counters and histograms.

  function parseLabels(s) {
    const out = {};
    let i = 0;
    while (i < s.length) {
      const eq = s.indexOf("=", i);
      if (eq < 0) break;
      const key = s.slice(i, eq).replace(/^[\s,]+/, "").trim();
      i = eq + 2; // past ="
      let v = "";
      while (i < s.length && s[i] !== '"') {
        if (s[i] === "\\" && i + 1 < s.length) {
          i++;
          v += s[i] === "n" ? "\n" : s[i];
        } else v += s[i];
        i++;
      }
      out[key] = v;
      i++; // past the closing quote
    }
    return out;
  }

  // parseMetrics returns [{name, labels, value}] for the meshgate_* samples.
  function parseMetrics(text) {
    const out = [];
    for (const line of text.split("\n")) {
      if (!line.startsWith("meshgate_")) continue;
      const brace = line.indexOf("{");
      const space = brace >= 0 ? line.lastIndexOf("}") + 1 : line.indexOf(" ");
      const name = line.slice(0, brace >= 0 ? brace : space);
      const labels = brace >= 0 ? parseLabels(line.slice(brace + 1, space - 1)) : {};
      const value = Number(line.slice(space).trim().split(/\s+/)[0]);
      if (!Number.isNaN(value)) out.push({ name, labels, value });
    }
    return out;
  }

  // sumBy adds the samples of one metric, grouped by one label (and an optional filter).
  function sumBy(samples, name, label, keep) {
    const m = new Map();
    for (const s of samples) {
      if (s.name !== name || (keep && !keep(s.labels))) continue;
      const k = s.labels[label];
      m.set(k, (m.get(k) || 0) + s.value);
    }
    return m;
  }

  // ---- Rates between two samples.

  let prev = null; // { t, samples, clusters }
  let refreshes = 0;

  function rate(now, before, dt) {
    if (before === undefined || now === undefined || dt <= 0) return null;
    const d = now - before;
    return d < 0 ? null : d / dt; // a counter that went back was reset (a reload): no rate
  }

  // quantile estimates q from the bucket increments of one route's histogram, interpolating
  // linearly inside the bucket like Prometheus's histogram_quantile.
  function quantile(q, buckets) {
    buckets.sort((a, b) => a.le - b.le);
    const total = buckets.length ? buckets[buckets.length - 1].n : 0;
    if (total <= 0) return null;
    let lower = 0, below = 0;
    for (const b of buckets) {
      if (b.n >= q * total) {
        if (!Number.isFinite(b.le)) return lower;
        const inBucket = b.n - below;
        return lower + (b.le - lower) * (inBucket > 0 ? (q * total - below) / inBucket : 1);
      }
      lower = b.le;
      below = b.n;
    }
    return lower;
  }

  function routeTraffic(now, before, dt) {
    const rows = [];
    const reqs = sumBy(now, "meshgate_requests_total", "route");
    const reqs0 = before ? sumBy(before, "meshgate_requests_total", "route") : new Map();
    const classes = (samples, cls) => samples ? sumBy(samples, "meshgate_requests_total", "route", (l) => l.class === cls) : new Map();
    const c4 = classes(now, "4xx"), c4b = classes(before, "4xx");
    const c5 = classes(now, "5xx"), c5b = classes(before, "5xx");
    const sum = sumBy(now, "meshgate_request_duration_seconds_sum", "route");
    const sum0 = before ? sumBy(before, "meshgate_request_duration_seconds_sum", "route") : new Map();
    const cnt = sumBy(now, "meshgate_request_duration_seconds_count", "route");
    const cnt0 = before ? sumBy(before, "meshgate_request_duration_seconds_count", "route") : new Map();
    for (const route of [...reqs.keys()].sort()) {
      if (route === "" && !reqs.get(route)) continue; // nothing unmatched yet: no row
      const rps = rate(reqs.get(route), reqs0.get(route), dt);
      const e5 = rate(c5.get(route), c5b.get(route), dt);
      const dn = (cnt.get(route) || 0) - (cnt0.get(route) || 0);
      const mean = before && dn > 0 ? ((sum.get(route) - (sum0.get(route) || 0)) / dn) * 1000 : null;
      let p99 = null;
      if (before && dn > 0) {
        const bs = [];
        for (const s of now) {
          if (s.name !== "meshgate_request_duration_seconds_bucket" || s.labels.route !== route) continue;
          const old = before.find((o) => o.name === s.name && o.labels.route === route && o.labels.le === s.labels.le);
          bs.push({ le: s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), n: s.value - (old ? old.value : 0) });
        }
        const q = quantile(0.99, bs);
        p99 = q === null ? null : q * 1000;
      }
      // route="" counts requests that matched no route (404s and early rejections).
      rows.push(el("tr", { "data-route": route },
        el("td", { class: route ? "" : "muted" }, route || "(no route)"),
        num(fmt.rate(rps), { class: "num rps", "data-value": rps }),
        num(fmt.rate(rate(c4.get(route), c4b.get(route), dt))),
        num(fmt.rate(e5), { class: "num e5xx " + (e5 > 0 ? "bad" : ""), "data-value": e5 }),
        num(fmt.pct(rps > 0 && e5 !== null ? e5 / rps : null)),
        num(fmt.ms(mean), { class: "num mean", "data-value": mean }),
        num(fmt.ms(p99), { class: "num p99", "data-value": p99 })));
    }
    return rows;
  }

  function serviceTraffic(clusters, before, samples, samples0, dt) {
    const old = new Map((before || []).map((c) => [c.name, c]));
    const retries = sumBy(samples, "meshgate_upstream_retries_total", "service");
    const retries0 = samples0 ? sumBy(samples0, "meshgate_upstream_retries_total", "service") : new Map();
    return clusters.map((c) => {
      const total = (cl, f) => (cl ? cl.hosts.reduce((a, h) => a + h[f], 0) : undefined);
      const o = old.get(c.name);
      const rps = rate(total(c, "requests"), total(o, "requests"), dt);
      const eps = rate(total(c, "errors"), total(o, "errors"), dt);
      const live = c.hosts.filter((h) => h.requests > 0);
      const ewma = live.length ? live.reduce((a, h) => a + h.ewma_ms, 0) / live.length : null;
      return el("tr", { "data-service": c.name },
        el("td", {}, c.name),
        num(fmt.rate(rps), { class: "num rps", "data-value": rps }),
        num(fmt.rate(eps), { class: "num " + (eps > 0 ? "bad" : "") }),
        num(fmt.pct(rps > 0 && eps !== null ? eps / rps : null)),
        num(fmt.rate(rate(retries.get(c.name), retries0.get(c.name), dt))),
        num(fmt.ms(ewma)),
        num(c.in_flight));
    });
  }

  // ---- Listeners: the effective config is YAML; read the listeners block line by line (it is
  // written by meshgate's own marshaller, so its shape is fixed: "    - name: x" then keys).

  function parseListeners(yaml) {
    const out = [];
    let inBlock = false, cur = null, keyIndent = -1;
    for (const line of yaml.split("\n")) {
      if (/^\S/.test(line)) {
        inBlock = line.startsWith("listeners:");
        cur = null;
        continue;
      }
      if (!inBlock) continue;
      const item = /^(\s*)- (\w+):\s?(.*)$/.exec(line);
      if (item) {
        cur = { [item[2]]: item[3] };
        keyIndent = item[1].length + 2;
        out.push(cur);
        continue;
      }
      const kv = /^(\s*)(\w+):\s?(.*)$/.exec(line);
      if (cur && kv && kv[1].length === keyIndent) cur[kv[2]] = kv[3] === "" ? "(set)" : kv[3];
    }
    return out;
  }

  function renderListeners(cfg, routes) {
    if (cfg.absent && routes.absent) return fill("listeners", empty("No /config or /routes endpoint on this admin API."));
    if (cfg.error) return fill("listeners", empty(cfg.error));
    const ls = cfg.value !== undefined ? parseListeners(cfg.value) : [];
    const names = new Set(ls.map((l) => l.name));
    for (const n of Object.keys(routes.value || {})) if (!names.has(n)) ls.push({ name: n });
    if (!ls.length) return fill("listeners", empty("No listeners."));
    const on = (v) => (v === undefined ? "–" : v === "null" || v === "false" || v === "" ? "no" : "yes");
    // listeners[].http2 defaults to on: only an explicit false turns it off.
    fill("listeners", cfg.absent ? empty("No /config endpoint on this admin API: listener names from /routes only.") : [], table(["Name", "Address", "TLS", "HTTP/2", "Connect", "#Routes"], ls.map((l) =>
      el("tr", { "data-listener": l.name },
        el("td", {}, l.name), el("td", { class: "mono" }, l.address || "–"),
        el("td", {}, on(l.tls)), el("td", {}, l.http2 === "false" ? "no" : "yes"), el("td", {}, on(l.connect)),
        num(((routes.value || {})[l.name] || []).length)))));
  }

  function match(r) {
    const parts = [];
    if (r.hosts) parts.push("host " + r.hosts.join(","));
    if (r.methods) parts.push(r.methods.join(","));
    if (r.path) parts.push("= " + r.path);
    if (r.path_prefix) parts.push(r.path_prefix + "*");
    if (r.path_regex) parts.push("~ " + r.path_regex);
    for (const h of r.headers || []) parts.push("header " + h.name);
    for (const q of r.query || []) parts.push("query " + q.name);
    return parts.join(" ") || "any";
  }

  function renderRoutes(routes) {
    if (routes.absent) return fill("routes", empty("No /routes endpoint on this admin API."));
    if (routes.error) return fill("routes", empty(routes.error));
    const rows = [];
    for (const [listener, rs] of Object.entries(routes.value).sort()) {
      for (const r of rs) {
        rows.push(el("tr", { "data-route": r.name },
          el("td", {}, listener), el("td", {}, r.name), num(r.priority),
          el("td", { class: "mono" }, match(r)),
          el("td", {}, r.targets.map((t) => t.service + (r.targets.length > 1 ? " (" + t.weight + ")" : "")).join(", ")),
          el("td", {}, r.timeout || "–")));
      }
    }
    fill("routes", rows.length ? table(["Listener", "Route", "#Priority", "Match", "To", "Timeout"], rows) : empty("No routes."));
  }

  function renderTraffic(metrics, clusters, t) {
    if (metrics.error) return fill("traffic", empty(metrics.error));
    if (metrics.absent) return fill("traffic", empty("No /metrics endpoint on this admin API."));
    const samples = parseMetrics(metrics.value);
    const dt = prev ? (t - prev.t) / 1000 : 0;
    const nodes = [];
    if (!prev) nodes.push(empty("Rates appear after the second scrape."));
    const routeRows = routeTraffic(samples, prev && prev.samples, dt);
    nodes.push(el("h3", {}, "Per route (downstream)"),
      routeRows.length ? table(["Route", "#req/s", "#4xx/s", "#5xx/s", "#5xx %", "#mean ms", "#p99 ms"], routeRows) : empty("No requests counted yet."));
    if (clusters.value) {
      nodes.push(el("h3", {}, "Per service (upstream)"),
        clusters.value.length ? table(["Service", "#req/s", "#err/s", "#err %", "#retries/s", "#EWMA ms", "#in flight"],
          serviceTraffic(clusters.value, prev && prev.clusters, samples, prev && prev.samples, dt)) : empty("No services."));
    }
    fill("traffic", nodes);
    return samples;
  }

  function renderClusters(clusters, t) {
    if (clusters.absent) return fill("clusters", empty("No /clusters endpoint on this admin API."));
    if (clusters.error) return fill("clusters", empty(clusters.error));
    if (!clusters.value.length) return fill("clusters", empty("No clusters."));
    const old = new Map();
    for (const c of (prev && prev.clusters) || []) for (const h of c.hosts) old.set(c.name + " " + h.address, h);
    const dt = prev ? (t - prev.t) / 1000 : 0;
    fill("clusters", clusters.value.map((c) => {
      const flags = [c.source, c.policy, c.protocol, c.hosts_ejected + " ejected"];
      if (c.panic) flags.push("PANIC: balancing across all hosts");
      const rows = c.hosts.map((h) => {
        const health = h.healthy ? "healthy" : "unhealthy";
        const o = old.get(c.name + " " + h.address);
        return el("tr", { "data-host": h.address },
          el("td", { class: "mono" }, h.address), num(h.weight),
          el("td", { class: "health " + (h.healthy ? "ok" : "bad") }, health),
          el("td", { class: h.ejected ? "bad" : "" }, h.ejected ? "until " + new Date(h.ejected_until).toLocaleTimeString() : "no"),
          el("td", { class: h.breaker === "open" ? "bad" : h.breaker === "half-open" ? "warn" : "" }, h.breaker),
          num(h.in_flight), num(fmt.ms(h.ewma_ms)), num(fmt.rate(o ? rate(h.requests, o.requests, dt) : null)),
          num(h.requests), num(h.errors), num(h.consecutive_errors), num(h.open_conns));
      });
      return el("div", { "data-cluster": c.name },
        el("h3", {}, c.name + " ", el("span", { class: c.panic ? "bad" : "muted" }, "(" + flags.join(", ") + ")")),
        rows.length ? table(["Endpoint", "#Weight", "Health", "Ejected", "Breaker", "#In flight", "#EWMA ms", "#req/s",
          "#Requests", "#Errors", "#Consec. errors", "#Conns"], rows) : empty("No endpoints."));
    }));
  }

  function renderIdentity(id) {
    if (id.absent) return fill("identity", empty("No /identity endpoint on this admin API."));
    if (id.error) return fill("identity", empty(id.error));
    const v = id.value;
    if (!v.connect) return fill("identity", empty("No mesh identity: this gateway runs without identity.connect."));
    const items = [["Service", v.service], ["Trust domain", v.trust_domain], ["CA roots", v.roots]];
    if (v.leaf) {
      const left = Date.parse(v.leaf.not_after) - Date.now();
      items.push(["SPIFFE ID", v.leaf.spiffe_id], ["Serial", v.leaf.serial],
        ["Certificate expires", el("span", { class: left <= 0 ? "bad" : left < 3600e3 ? "warn" : "ok" },
          v.leaf.not_after + " (" + fmt.until(v.leaf.not_after) + ")")]);
    } else items.push(["Certificate", el("span", { class: "bad" }, "no leaf certificate yet")]);
    fill("identity", el("dl", {}, items.map(([k, val]) => [el("dt", {}, k), el("dd", {}, val === undefined ? "–" : val)])));
  }

  function renderIntentions(id) {
    if (id.absent || id.error || !id.value.connect) {
      return fill("intentions", empty("No intentions in force: they apply with a Connect identity (a sidecar, or an edge with identity.connect)."));
    }
    const v = id.value;
    if (!v.intentions) return fill("intentions", empty("Intentions are not enforced here (default " + (v.intentions_default || "–") + ")."));
    const r = v.intentions;
    const head = el("dl", {},
      el("dt", {}, "Destination"), el("dd", {}, r.destination),
      el("dt", {}, "Rules"), el("dd", { class: r.ready ? (r.stale ? "bad" : "ok") : "warn" },
        r.ready ? (r.stale ? "stale: every request is denied" : "in force") + " (version " + r.version + (r.origin ? ", " + r.origin : "") + ")" : "not fetched yet"),
      el("dt", {}, "Default"), el("dd", {}, r.default_allow ? "allow" : "deny"),
      el("dt", {}, "Fetched"), el("dd", {}, r.fetched_at || "–"));
    const rows = r.intentions.map((i) => el("tr", {},
      el("td", {}, i.source_name + (i.source_peer ? " (peer " + i.source_peer + ")" : "")),
      el("td", {}, i.destination_name),
      el("td", { class: i.action === "deny" ? "bad" : "" }, i.permissions && i.permissions.length ? i.permissions.length + " L7 rules" : i.action || "–"),
      num(i.precedence), el("td", {}, i.description || "")));
    fill("intentions", head, rows.length ? table(["Source", "Destination", "Action", "#Precedence", "Description"], rows) : empty("No intentions: the default applies."));
  }

  function renderPlugins(p) {
    if (p.absent) return fill("plugins", empty("No /plugins endpoint on this admin API."));
    if (p.error) return fill("plugins", empty(p.error));
    if (!p.value.length) return fill("plugins", empty("No plugins configured."));
    fill("plugins", table(["Name", "State", "#PID", "#Restarts", "Breaker", "Failure policy", "#Calls", "#Errors", "Last error"],
      p.value.map((x) => el("tr", { "data-plugin": x.name },
        el("td", {}, x.name), el("td", { class: x.state === "running" ? "ok" : "bad" }, x.state), num(x.pid || "–"),
        num(x.restarts), el("td", { class: x.breaker === "open" ? "bad" : "" }, x.breaker), el("td", {}, x.failure_policy),
        num(x.calls), num(x.errors), el("td", { class: "mono" }, x.last_error || "")))));
  }

  // ---- The loop: every endpoint at once, render, wait, again. One section failing to render
  // must not blank the others, so each is guarded.

  async function refresh() {
    const t = Date.now();
    const [cfg, routes, clusters, metrics, identity, plugins] = await Promise.all([
      get("/config", "text"), get("/routes", "json"), get("/clusters", "json"),
      get("/metrics", "text"), get("/identity", "json"), get("/plugins", "json")]);
    const failed = [];
    const guard = (name, f) => {
      try {
        return f();
      } catch (e) {
        failed.push(name + ": " + e.message);
        fill(name, empty("Could not render: " + e.message));
        return undefined;
      }
    };
    guard("listeners", () => renderListeners(cfg, routes));
    guard("routes", () => renderRoutes(routes));
    const samples = guard("traffic", () => renderTraffic(metrics, clusters, t));
    guard("clusters", () => renderClusters(clusters, t));
    guard("identity", () => renderIdentity(identity));
    guard("intentions", () => renderIntentions(identity));
    guard("plugins", () => renderPlugins(plugins));
    for (const r of [cfg, routes, clusters, metrics, identity, plugins]) if (r.error) failed.push(r.error);
    prev = { t, samples: samples || (prev && prev.samples), clusters: clusters.value || (prev && prev.clusters) };
    refreshes++;
    const status = document.getElementById("status");
    status.className = failed.length ? "bad" : "";
    status.textContent = (failed.length ? "errors: " + failed.join("; ") + " — " : "") +
      "updated " + new Date(t).toLocaleTimeString() + ", every " + period / 1000 + " s";
    document.body.dataset.state = failed.length ? "error" : "ok";
    document.body.dataset.refreshes = String(refreshes);
  }

  // A tab nobody looks at does not scrape; the first refresh after it shows again gives rates
  // over the whole gap, and the next one over the period again.
  async function loop() {
    if (!document.hidden || refreshes === 0) await refresh();
    setTimeout(loop, period);
  }

  loop();
})();
