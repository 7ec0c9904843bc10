"use strict";
// Polls status.json (the daemon's `status` reply, as `vrrpctl --json` shows it) and
// draws it. Values are only ever set as text (textContent), never parsed as HTML:
// names come from the config. The page has no action: it only reads.
(function () {
  const daemon = document.body.dataset.daemon;
  const content = document.getElementById("content");
  const updated = document.getElementById("updated");
  const EVERY_MS = 2000;
  let lastOk = null;
  let polls = 0;
  // Cell values that get a colour.
  const MARKED = new Set(["MASTER", "BACKUP", "FAULT", "INIT", "MAINTENANCE", "up", "down", "held"]);
  const PHASES = ["prepare", "vips_added", "first_advert", "garp_sent"];

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function show(v) {
    if (v === undefined || v === null) return "";
    if (Array.isArray(v)) return v.map(show).join(", ");
    if (typeof v === "boolean") return v ? "yes" : "no";
    return String(v);
  }
  function addr(a, port) { return port == null ? show(a) : (String(a).includes(":") ? "[" + a + "]:" + port : a + ":" + port); }
  function ago(ms) { return ms == null ? "" : (ms / 1000).toFixed(1) + " s ago"; }

  // columns: [heading, field name, function of the row giving the value]
  function table(title, id, columns, rows, key) {
    const section = el("section", { id: id });
    section.appendChild(el("h2", {}, title + " (" + rows.length + ")"));
    const t = el("table");
    const head = el("tr");
    for (const [h] of columns) head.appendChild(el("th", {}, h));
    t.appendChild(head);
    for (const row of rows) {
      const tr = el("tr", { "data-key": key(row) });
      for (const [, field, get] of columns) {
        const text = show(get(row));
        tr.appendChild(el("td", { "data-field": field, "class": MARKED.has(text) ? text : null }, text));
      }
      t.appendChild(tr);
    }
    section.appendChild(t);
    return section;
  }
  function facts(title, id, pairs) {
    const section = el("section", { id: id });
    section.appendChild(el("h2", {}, title));
    const dl = el("dl");
    for (const [name, field, value] of pairs) {
      dl.appendChild(el("dt", {}, name));
      dl.appendChild(el("dd", { "data-field": field }, show(value)));
    }
    section.appendChild(dl);
    return section;
  }
  function list(title, id, items) {
    const section = el("section", { id: id });
    section.appendChild(el("h2", {}, title));
    const ul = el("ul", { "class": "errors" });
    for (const i of items) ul.appendChild(el("li", {}, i));
    section.appendChild(ul);
    return section;
  }

  function vrrpd(s) {
    const out = [];
    out.push(facts("Node", "node", [
      ["node", "node", s.node], ["cluster", "cluster", s.cluster],
      ["config fingerprint", "config_fingerprint", s.config_fingerprint],
      ["failover drill", "failover_drill", s.failover_drill || "none"],
      ["held interfaces", "held_interfaces", s.held_interfaces],
    ]));
    out.push(table("Sync groups", "groups", [
      ["group", "name", g => g.name], ["state", "state", g => g.state],
      ["priority", "priority", g => g.priority], ["members", "members", g => g.members],
      ["VIPs", "vips", g => g.vips],
      ["maintenance", "maintenance", g => g.maintenance ? "held" : "no"],
      ["last takeover", "last_takeover", g => g.last_takeover ? PHASES.filter(p => g.last_takeover.phases_ms[p] != null).map(p => p + " " + g.last_takeover.phases_ms[p] + " ms").join(", ") : ""],
      ["prepare misses", "prepare_misses", g => g.prepare_misses],
    ], s.groups || [], g => "group:" + g.name));
    out.push(table("VRRP instances", "instances", [
      ["instance", "name", i => i.name], ["group", "group", i => i.group],
      ["interface", "interface", i => i.interface], ["VRID", "vrid", i => i.vrid],
      ["state", "state", i => i.state], ["priority", "priority", i => i.priority],
      ["effective", "effective_priority", i => i.effective_priority],
      ["master", "master_address", i => i.master_address],
      ["link", "link_up", i => i.link_up ? "up" : "down"],
      ["tracked down", "tracked_down", i => i.tracked_down],
      ["VIPs", "vips", i => i.vips],
      ["last transition", "last_transition", i => i.last_transition ? i.last_transition.from + " → " + i.last_transition.to + " (" + i.last_transition.reason + ") " + ago(i.last_transition.ago_ms) : ""],
    ], s.instances || [], i => "instance:" + i.name));
    return out;
  }

  function lbd(s) {
    const out = [];
    const sync = s.sync || {};
    out.push(facts("Node", "node", [
      ["node", "node", s.node],
      ["backend", "backend", s.backend ? s.backend.name + " (" + s.backend.reason + ")" : ""],
      ["vrrpd", "vrrpd_connected", s.vrrpd ? s.vrrpd.connected : null],
      ["groups (from vrrpd)", "vrrpd_groups", s.vrrpd ? Object.entries(s.vrrpd.groups || {}).map(([g, st]) => g + " " + st) : []],
      ["config fingerprint", "config_fingerprint", s.config ? s.config.fingerprint : ""],
      ["differs from vrrpd's", "config_differs", s.config ? s.config.differs_from_vrrpd : null],
      ["dataplane", "dataplane", s.dataplane ? (s.dataplane.dirty ? "dirty" : "applied") + ", " + s.dataplane.applies + " applies, " + s.dataplane.apply_errors + " errors" : ""],
      // The families a NAT service or SNAT rule needs forwarded (lbd's status `forwarding`).
      ["IP forwarding", "forwarding", (s.forwarding || []).filter(f => (f.needed_by || []).length).map(f =>
        f.family + (f.enabled ? " on" : " OFF (" + f.sysctl + (f.error ? " unreadable" : " = 0") + "): " + f.needed_by.join(", ") + " get no answers"))],
    ]));
    if (s.announce) {
      // Active-active mode (docs/active-active.md): what this node announces.
      const a = s.announce;
      out.push(facts("Active-active", "announce", [
        ["cluster nodes", "members", a.members],
        ["routing daemon", "daemon", a.daemon],
        ["drained", "drained", a.drained],
        ["VIPs wanted", "wanted", a.wanted],
        ["VIPs announced", "announced", a.announced],
        ["announce error", "announce_error", a.error || "none"],
      ]));
      out.push(table("BGP sessions", "peers", [
        ["peer", "address", p => p.address], ["state", "state", p => p.state],
        ["prefixes sent", "prefixes_sent", p => p.prefixes_sent],
      ], a.peers || [], p => "peer:" + p.address));
    }
    const services = s.services || [];
    out.push(table("Services", "services", [
      ["service", "name", v => v.name], ["VIP", "vip", v => v.vip], ["ports", "ports", v => v.ports],
      ["protocol", "protocol", v => v.protocol], ["scheduler", "scheduler", v => v.effective_scheduler || v.scheduler],
      ["serving", "serving", v => v.serving],
      ["quorum", "quorum", v => v.quorum ? v.quorum.up + "/" + v.quorum.min + (v.quorum.met ? " met" : " not met") : ""],
    ], services, v => "service:" + v.name));
    const servers = [];
    for (const v of services) for (const r of v.servers || []) servers.push(Object.assign({ service: v.name }, r));
    out.push(table("Servers", "servers", [
      ["service", "service", r => r.service], ["server", "name", r => r.name],
      ["address", "address", r => addr(r.address, r.port)], ["health", "health", r => r.health],
      ["state", "state", r => r.state], ["weight", "weight", r => r.weight],
      ["effective weight", "effective_weight", r => r.effective_weight],
      ["override", "override", r => r.override],
      ["active conns", "active_connections", r => r.active_connections],
      ["inactive conns", "inactive_connections", r => r.inactive_connections],
      ["connections", "connections", r => r.connections],
      ["last check", "last_check", r => r.last_check ? (r.last_check.ok ? "ok " : "failed (" + (r.last_check.reason || r.last_check.result) + ") ") + ago(r.last_check.ago_ms) : ""],
    ], servers, r => "server:" + r.service + "/" + r.name));
    const snat = [];
    for (const n of s.snat || []) for (const a of n.source || []) snat.push(Object.assign({ rule: n.name, destination: n.destination }, a));
    out.push(table("NAT (SNAT) rules", "snat", [
      ["rule", "rule", a => a.rule], ["destination", "destination", a => a.destination],
      ["source address", "address", a => a.address],
      ["port range", "ports", a => a.ports ? a.ports[0] + "-" + a.ports[1] : "kernel's choice"],
      ["ports in use", "ports_in_use", a => a.ports_in_use],
      ["ports available", "ports_available", a => a.ports_available],
    ], snat, a => "snat:" + a.rule + "/" + a.address));
    out.push(facts("Connection sync", "sync", [
      ["enabled", "enabled", sync.enabled], ["mode", "mode", sync.mode],
      ["peer", "peer", sync.peer], ["connected", "connected", sync.connected],
      ["peer complete", "peer_complete", sync.peer_complete],
      ["entries stored", "entries_stored", sync.entries_stored],
      ["entries pending", "entries_pending", sync.entries_pending],
      ["events sent", "events_sent", sync.events_sent], ["events lost", "events_lost", sync.events_lost],
    ]));
    if ((s.errors || []).length) out.push(list("Errors", "errors", s.errors));
    if ((s.notes || []).length) out.push(list("Notes", "notes", s.notes));
    return out;
  }

  async function refresh() {
    try {
      const reply = await fetch("status.json", { cache: "no-store", credentials: "omit" });
      if (!reply.ok) throw new Error(reply.status + " " + (await reply.text()).trim());
      const status = await reply.json();
      const sections = daemon === "lbd" ? lbd(status) : vrrpd(status);
      content.replaceChildren(...sections);
      lastOk = new Date();
      polls += 1;
      updated.dataset.polls = String(polls);
      updated.textContent = "updated " + lastOk.toLocaleTimeString() + " (every " + EVERY_MS / 1000 + " s)";
      updated.removeAttribute("class");
    } catch (e) {
      updated.textContent = "stale: " + e.message + (lastOk ? "; last update " + lastOk.toLocaleTimeString() : "");
      updated.className = "stale";
    } finally {
      setTimeout(refresh, EVERY_MS);
    }
  }
  refresh();
})();
