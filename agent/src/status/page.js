"use strict";
// The status page's script: polls /api/status every 2 s and redraws the
// rows the server drew (same markup as html.rs), the "last updated" time
// and the lost-agent banner; filters points by device; sends alarm
// acknowledgements with the credentials typed in. No library, nothing
// fetched but the agent's own API.
(function () {
  const POLL_MS = 2000;
  const ack = (document.body.dataset.ack || "").split(" ").filter(Boolean);
  const $ = (id) => document.getElementById(id);
  let lastOk = null;
  let polls = 0;

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    }[c]));
  }
  function age(now, t) {
    if (t == null) return "never";
    const s = Math.max(0, now - t) / 1e6;
    if (s < 120) return Math.floor(s) + " s ago";
    if (s < 7200) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }
  function num(v) { return v == null ? "–" : String(v); }
  function td(cls, content) {
    return (cls ? '<td class="' + cls + '">' : "<td>") + content + "</td>";
  }
  const WORDS = { pending: "PENDING", ok: "OK", degraded: "DEGRADED", down: "DOWN" };

  function deviceRow(now, d) {
    const errors = Object.keys(d.errors).map((k) => esc(k) + " " + d.errors[k]).join(", ");
    return '<tr data-device="' + esc(d.kind + "/" + d.name) + '" class="st-' + d.state + '">' +
      td("", d.kind) + td("name", esc(d.name)) +
      td("state", '<span class="badge">' + WORDS[d.state] + "</span>") +
      td("", age(now, d.since_us)) + td("", age(now, d.last_ok_us)) +
      td("reason", d.reason ? esc(d.reason.detail) : "") +
      td("", String(d.received)) + td("errors", errors) +
      td("", d.round_trip_ms == null ? "–" : d.round_trip_ms.toFixed(1) + " ms") +
      "</tr>";
  }
  function pointRow(p) {
    return '<tr data-series="' + esc(p.series) + '" data-device="' + esc(p.device) + '" class="' +
      (p.stale ? "stale" : "fresh") + '">' +
      td("name", esc(p.series)) + td("", esc(p.device)) +
      td("value", num(p.value)) + td("", esc(p.unit)) +
      td("", p.quality || "–") +
      td("", p.age_s == null ? "no value yet" : Math.floor(p.age_s) + " s") +
      td("fresh-word", p.stale ? "STALE" : "fresh") + "</tr>";
  }
  function alarmRow(now, a) {
    let cell;
    if (a.acknowledged) cell = "ACKNOWLEDGED " + age(now, a.acked_us);
    else if (ack.length) cell = 'NOT ACKNOWLEDGED <button type="button" class="ack" data-series="' +
      esc(a.series) + '" data-rule="' + esc(a.rule) + '" aria-label="Acknowledge ' + esc(a.rule) +
      " on " + esc(a.series) + '">Acknowledge</button>';
    else cell = "NOT ACKNOWLEDGED";
    return '<tr data-alarm="' + esc(a.series) + "|" + esc(a.rule) + '" class="sev-' + a.severity +
      " " + (a.acknowledged ? "acked" : "unacked") + '">' +
      td("sev", a.severity.toUpperCase()) + td("name", esc(a.series)) +
      td("", esc(a.rule)) + td("", num(a.value) + " " + esc(a.unit)) +
      td("", num(a.limit)) + td("", age(now, a.raised_us)) +
      td("ackcell", cell) + "</tr>";
  }
  function historyRow(now, e) {
    return "<tr>" + td("", age(now, e.ts_us)) + td("", e.state.toUpperCase()) +
      td("", e.severity) + td("", esc(e.series)) +
      td("", esc(e.rule)) + td("", num(e.value)) + "</tr>";
  }
  function set(id, html) {
    const el = $(id);
    if (el && el.innerHTML !== html) el.innerHTML = html;
  }
  function overview(s) {
    const u = s.uplink, now = s.now_us;
    set("ov-uptime", Math.floor(s.gateway.uptime_s) + " s");
    set("ov-uplink", u.connected === true ? '<span class="good">CONNECTED</span>' :
      u.connected === false ? '<span class="bad">NOT CONNECTED</span>' : "no upload yet");
    set("ov-last-success", age(now, u.last_success_us));
    set("ov-backlog", u.backlog_readings + " readings, " + u.backlog_bytes + " bytes, " +
      u.backlog_batches + " batches");
    set("ov-oldest", age(now, u.oldest_unsent_us));
    set("ov-drain", u.drain_readings_per_s == null ? "–" : u.drain_readings_per_s.toFixed(1) + " readings/s");
    set("ov-empty", u.time_to_empty_s == null ? "not draining" : u.time_to_empty_s.toFixed(0) + " s");
    const sp = s.spool;
    set("ov-spool", sp == null ? '<span class="bad">cannot read the spool</span>' :
      sp.used_bytes + " of " + (sp.bound_bytes === 0 ? "no bound" : sp.bound_bytes) + " bytes, max age " +
      (sp.max_age_s == null ? "none" : sp.max_age_s + " s") + ", on full " + sp.on_full + "; dropped " +
      sp.readings_dropped_full + " (full) + " + sp.readings_dropped_age + " (age) readings, " + sp.gaps +
      " gaps, " + sp.quarantined_batches + " quarantined");
    set("health", s.health.failed.length === 0 ?
      '<li class="good">HEALTHY: no condition failed</li>' :
      s.health.failed.map((f) => '<li class="bad">UNHEALTHY: ' + esc(f.condition) + ": " +
        esc(f.message) + "</li>").join(""));
  }
  function filterPoints() {
    const want = $("device-filter").value;
    for (const row of $("points-body").rows) {
      row.hidden = want !== "" && row.dataset.device !== want;
    }
  }
  // Above this many points the agent sends one device's points at a time.
  const ALL_POINTS = Number(document.body.dataset.allPoints);
  function deviceOptions(s) {
    const sel = $("device-filter");
    const names = s.point_devices;
    const all = s.points_total <= ALL_POINTS;
    const key = (all ? "all\n" : "") + names.join("\n");
    if (sel.dataset.names !== key) {
      const keep = sel.value;
      sel.innerHTML = (all ? '<option value="">all devices</option>' : "") +
        names.map((n) => '<option value="' + esc(n) + '">' + esc(n) + "</option>").join("");
      sel.value = names.includes(keep) ? keep : (all ? "" : (s.points_device || ""));
      sel.dataset.names = key;
    }
    set("points-count", s.points.length + " of " + s.points_total + " points");
  }
  function draw(s) {
    const now = s.now_us;
    overview(s);
    set("devices-body", s.devices.map((d) => deviceRow(now, d)).join(""));
    deviceOptions(s);
    set("points-body", s.points.map(pointRow).join(""));
    filterPoints();
    set("alarms-body", s.alarms.active.length === 0 ?
      '<tr class="none"><td colspan="7">No active alarm</td></tr>' :
      s.alarms.active.map((a) => alarmRow(now, a)).join(""));
    set("history-body", s.alarms.recent.map((e) => historyRow(now, e)).join(""));
  }
  function tick() {
    const t = $("updated-age");
    if (lastOk) t.textContent = "(" + Math.floor((Date.now() - lastOk) / 1000) + " s ago)";
  }
  async function poll() {
    polls += 1;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), POLL_MS - 200);
    try {
      const device = $("device-filter").value;
      const url = "/api/status" + (device ? "?device=" + encodeURIComponent(device) : "");
      const r = await fetch(url, { cache: "no-store", signal: ctl.signal });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const s = await r.json();
      draw(s);
      lastOk = Date.now();
      const upd = $("updated");
      upd.textContent = new Date(lastOk).toLocaleTimeString();
      upd.dateTime = new Date(lastOk).toISOString();
      $("lost").hidden = true;
      document.body.dataset.polls = String(polls);
    } catch (e) {
      const lost = $("lost");
      lost.textContent = "Lost contact with the agent" +
        (lastOk ? " since " + new Date(lastOk).toLocaleTimeString() : "") +
        ": the figures below are not current (" + (e && e.message ? e.message : e) + ").";
      lost.hidden = false;
    } finally {
      clearTimeout(timer);
      tick();
    }
  }
  function credentials() {
    const token = $("ack-token"), user = $("ack-user"), pw = $("ack-password");
    if (token && token.value) return "Bearer " + token.value;
    if (user && user.value) return "Basic " + btoa(user.value + ":" + (pw ? pw.value : ""));
    return null;
  }
  async function acknowledge(button) {
    const msg = $("ack-msg");
    const headers = { "Content-Type": "application/json" };
    const auth = credentials();
    if (auth) headers.Authorization = auth;
    const body = JSON.stringify({ series: button.dataset.series, rule: button.dataset.rule });
    button.disabled = true;
    try {
      const r = await fetch("/api/alarms/ack", { method: "POST", headers: headers, body: body });
      const answer = await r.json().catch(() => ({}));
      msg.textContent = r.ok ? "Acknowledged " + button.dataset.rule + " on " + button.dataset.series + "." :
        "Not acknowledged (" + r.status + "): " + (answer.error || r.statusText);
      msg.className = r.ok ? "good" : "bad";
    } catch (e) {
      msg.textContent = "Not acknowledged: the agent did not answer.";
      msg.className = "bad";
    } finally {
      button.disabled = false;
      poll();
    }
  }
  $("device-filter").addEventListener("change", () => { filterPoints(); poll(); });
  $("alarms-body").addEventListener("click", (ev) => {
    const b = ev.target.closest("button.ack");
    if (b) acknowledge(b);
  });
  poll();
  setInterval(poll, POLL_MS);
  setInterval(tick, 1000);
})();
