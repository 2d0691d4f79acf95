// consim's page: the live view of a `consim up` cluster, or the replay of a virtual-time run.
// No libraries, no network beyond the server that served it (and, when that server is killed,
// the cluster's other addresses). Stable hooks: every server element has data-server and
// data-role; every control has data-action (and data-server when it acts on one server).
"use strict";
(function () {
  const BOOT = window.CONSIM_BOOT || { mode: "live" };
  let REPLAY = window.CONSIM_REPLAY || null; // replaced when a replay JSON is opened
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = { leader: "#2e8b57", follower: "#3a6ea5", candidate: "#d98c1f", down: "#9a9a9a" };
  const MSG_COLORS = {
    Heartbeat: "#7fa7d1", AppendEntries: "#3a6ea5", AppendEntriesResponse: "#9fbbd9",
    RequestVote: "#d98c1f", PreRequestVote: "#e6b366", RequestVoteResponse: "#e0a450",
    PreRequestVoteResponse: "#eec98f", InstallSnapshot: "#8e44ad", TimeoutNow: "#c0392b",
  };
  const GROUPS = ["A", "B", "C"]; // partition groups the page offers
  const MSG_FLIGHT = 600; // ms an arrow takes on the page (not the real latency)
  const LOG_KEEP = 600;
  const $ = (id) => document.getElementById(id);

  let state = null; // the latest snapshot
  let replayNow = 0; // replay: the virtual time shown
  let stateAt = 0; // performance.now() when it arrived (live) / the frame's time (replay)
  let positions = {}; // server name -> {x, y}
  let flights = []; // messages on the way: {from, to, type, start}
  let bases = []; // live: where the API can be reached ("" = this server)
  let baseIndex = 0;

  // ---- drawing ----------------------------------------------------------------------------
  function el(tag, attrs, text) {
    const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function layout(servers, dcs) {
    positions = {};
    const width = 600, height = 340;
    const per = width / dcs.length;
    dcs.forEach((dc, d) => {
      const mine = servers.filter((s) => s.datacenter === dc);
      const cx = per * d + per / 2, cy = height / 2 + 8;
      const r = Math.min(per / 2 - 48, height / 2 - 56);
      mine.forEach((s, i) => {
        const a = -Math.PI / 2 + (2 * Math.PI * i) / mine.length;
        positions[s.name] = { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a), dc, cx };
      });
    });
  }

  function timerLeft(s, now) {
    if (!s.timer) return null;
    const elapsed = REPLAY ? now - stateAt : (now - stateAt) / 1000;
    return Math.max(0, s.timer.remaining - elapsed);
  }

  function drawRing(now) {
    const svg = $("ring");
    if (!state) return;
    svg.textContent = "";
    state.datacenters.forEach((dc) => {
      const any = state.servers.find((s) => s.datacenter === dc);
      if (!any) return;
      const p = positions[any.name];
      const leader = state.leaders[dc];
      svg.appendChild(el("svg:text", { x: p.cx, y: 16, class: "dcname" }, `${dc}: leader ${leader || "none"}`));
    });
    for (const s of state.servers) {
      const p = positions[s.name];
      if (!p) continue;
      // data-ring-server, not data-server/data-role: those mark the one element per server (its card).
      const g = el("svg:g", { "data-ring-server": s.name, class: "node" });
      const color = COLORS[s.role] || COLORS.down;
      const circle = el("svg:circle", { cx: p.x, cy: p.y, r: 26, fill: color });
      if (s.state === "paused") circle.setAttribute("fill-opacity", "0.45");
      g.appendChild(circle);
      if (s.state === "cut off") {
        g.appendChild(el("svg:circle", { cx: p.x, cy: p.y, r: 37, fill: "none", stroke: "#b3261e", "stroke-width": 2, "stroke-dasharray": "4 3" }));
      }
      const left = timerLeft(s, now);
      if (left !== null && s.timer.max > 0 && s.state !== "paused") {
        // RaftScope's arc: the full circle when just armed, shrinking to nothing at timeout.
        const frac = Math.min(1, left / s.timer.max);
        const R = 31, C = 2 * Math.PI * R;
        g.appendChild(el("svg:circle", {
          cx: p.x, cy: p.y, r: R, fill: "none", stroke: color, "stroke-width": 4,
          "stroke-dasharray": `${C * frac} ${C}`, transform: `rotate(-90 ${p.x} ${p.y})`, opacity: 0.7,
        }));
      }
      g.appendChild(el("svg:text", { x: p.x, y: p.y, class: "term" }, s.term === null ? "\u00d7" : String(s.term)));
      const label = (s.role === "leader" ? "\u2605 " : "") + (s.state === "up" ? s.name : `${s.name} (${s.state})`);
      g.appendChild(el("svg:text", { x: p.x, y: p.y + 46 }, label));
      svg.appendChild(g);
    }
    const t = performance.now();
    flights = flights.filter((f) => t - f.start < MSG_FLIGHT);
    for (const f of flights) {
      const a = positions[f.from], b = positions[f.to];
      if (!a || !b) continue;
      const k = (t - f.start) / MSG_FLIGHT;
      const x = a.x + (b.x - a.x) * k, y = a.y + (b.y - a.y) * k;
      const dot = el("svg:circle", { cx: x, cy: y, r: f.type.endsWith("Response") ? 4 : 6, class: "msg", fill: MSG_COLORS[f.type] || "#7d3c98" });
      dot.appendChild(el("svg:title", {}, `${f.type} ${f.from} \u2192 ${f.to}`));
      svg.appendChild(dot);
    }
  }

  function fmt(v, unit) {
    if (v === null || v === undefined) return "\u2013";
    return unit ? `${v}${unit}` : String(v);
  }

  const cards = {}; // server name -> its element, updated in place (a click never loses its button)
  const ROWS = ["datacenter", "state", "term", "commit / applied", "last contact", "voter", "leader", "address"];

  function serverCard(s) {
    if (cards[s.name]) return cards[s.name];
    const card = el("div", { class: "server", "data-server": s.name });
    const title = el("div", { class: "title" });
    title.appendChild(el("span", {}, s.name));
    title.appendChild(el("span", { class: "role" }));
    card.appendChild(title);
    const dl = el("dl");
    for (const k of ROWS) {
      dl.appendChild(el("dt", {}, k));
      dl.appendChild(el("dd", { "data-field": k }));
    }
    card.appendChild(dl);
    if (!REPLAY) {
      const buttons = el("div", { class: "buttons" });
      for (const action of ["kill", "restart", "stop", "pause", "resume", "isolate"]) {
        buttons.appendChild(el("button", { "data-action": action, "data-server": s.name }, action));
      }
      card.appendChild(buttons);
    }
    cards[s.name] = card;
    return card;
  }

  function sinceState() {
    return REPLAY ? Math.max(0, replayNow - stateAt) : (performance.now() - stateAt) / 1000;
  }

  function lastContact(s) {
    // As of now, not as of the snapshot: the time since then is added (no frame between).
    if (s.last_contact === null || s.last_contact === undefined) return "\u2013";
    return `${(s.last_contact + sinceState()).toFixed(3)} s`;
  }

  function updateCard(s) {
    const card = serverCard(s);
    card.dataset.role = s.role;
    card.dataset.state = s.state;
    card.querySelector(".role").textContent = s.role;
    const values = {
      datacenter: s.datacenter, state: s.state, term: fmt(s.term),
      "commit / applied": s.commit_index === null ? "\u2013" : `${s.commit_index} / ${s.applied_index}`,
      "last contact": s.role === "leader" ? "(leader)" : lastContact(s),
      voter: s.voter === null ? "\u2013" : s.voter ? "yes" : "no",
      leader: fmt(s.leader), address: s.address,
    };
    for (const dd of card.querySelectorAll("dd")) {
      const v = values[dd.dataset.field];
      if (dd.textContent !== v) dd.textContent = v;
    }
    const st = card.querySelector('[data-field="state"]');
    st.className = s.state === "cut off" ? "state-cut" : s.state === "paused" ? "state-paused" : "";
    const running = s.role !== "down";
    for (const b of card.querySelectorAll("button[data-action]")) {
      const a = b.dataset.action;
      const off = ((a === "kill" || a === "stop" || a === "isolate") && !running)
        || (a === "pause" && (!running || s.state === "paused"))
        || (a === "resume" && s.state !== "paused");
      markDisabled(b, off);
    }
    return card;
  }

  // A control this page's server cannot perform (a consim agent with no supervisor cannot kill
  // its peers): disabled, with the reason as its title and data-reason.
  function cannot(action) {
    const c = state && state.ctl;
    return (c && c.disabled && c.disabled[action]) || "";
  }

  function markDisabled(button, off) {
    const why = cannot(button.dataset.action);
    button.disabled = off || Boolean(why);
    if (why) { button.title = why; button.dataset.reason = why; }
    else if (button.dataset.reason) { button.removeAttribute("title"); delete button.dataset.reason; }
  }

  function fillSelect(select, names, extra) {
    const keep = select.value;
    const want = [...(extra || []), ...names];
    if (select.options.length === want.length && [...select.options].every((o, i) => o.value === want[i])) return;
    select.textContent = "";
    for (const n of want) select.appendChild(el("option", { value: n }, n));
    if (want.includes(keep)) select.value = keep;
  }

  function render(now) {
    if (!state) return;
    const names = state.servers.map((s) => s.name);
    if (Object.keys(positions).length !== names.length) layout(state.servers, state.datacenters);
    const servers = $("servers");
    state.servers.forEach((s, i) => {
      const card = updateCard(s);
      if (servers.children[i] !== card) servers.insertBefore(card, servers.children[i] || null);
    });
    $("leaders").textContent = Object.entries(state.leaders).map(([dc, l]) => `${dc} leader: ${l || "none"}`).join(" \u00b7 ");
    $("clock").textContent = REPLAY ? "" : `t = ${state.time.toFixed(1)} s`;
    if (!REPLAY) {
      fillSelect($("client-server"), names, ["leader", "follower"]);
      fillSelect($("link-src"), names, ["*"]);
      fillSelect($("link-dst"), names, ["*"]);
      const pick = $("partition-pick");
      if (pick.childElementCount !== names.length) {
        pick.textContent = "";
        for (const n of names) {
          const l = el("label", {}, `${n} `);
          const select = el("select", { "data-group-server": n });
          for (const g of GROUPS) select.appendChild(el("option", { value: g }, g));
          l.appendChild(select);
          pick.appendChild(l);
        }
      }
      const f = state.faults;
      const parts = [];
      if (f.partition.length) parts.push("partition " + f.partition.map((g) => `[${g.join(", ")}]`).join(" | "));
      if (f.isolated.length) parts.push("isolated " + f.isolated.join(", "));
      if (f.blocked.length) parts.push("blocked " + f.blocked.map(([a, b]) => `${a}\u2192${b}`).join(", "));
      if (f.delay.length) parts.push("delay " + f.delay.map(([a, b, x]) => `${a}\u2192${b} ${Math.round(x * 1000)} ms`).join(", "));
      if (f.loss.length) parts.push("loss " + f.loss.map(([a, b, p]) => `${a}\u2192${b} ${p}`).join(", "));
      $("faults").textContent = parts.length ? parts.join("; ") : "no faults";
      for (const b of document.querySelectorAll("#network button[data-action]")) markDisabled(b, false);
      const reasons = [...new Set(Object.values((state.ctl && state.ctl.disabled) || {}))];
      $("ctl-note").textContent = reasons.length ? "Disabled here: " + reasons.join("; ") : "";
      if (state.served_by) {
        $("mode").textContent = `live, served by ${state.served_by} (a consim agent process; ` +
          (state.supervisor ? `controls through consim up --processes at ${state.supervisor})` : "no supervisor)");
      }
    }
    renderGossip();
    drawRing(now);
  }

  function renderGossip() {
    const table = $("gossip-table");
    table.textContent = "";
    const head = el("tr");
    for (const h of ["server", "LAN members", "WAN", "keyring (LAN)"]) head.appendChild(el("th", {}, h));
    table.appendChild(head);
    for (const s of state.servers) {
      const tr = el("tr", { "data-gossip": s.name });
      tr.appendChild(el("td", {}, s.name));
      const lan = el("td");
      for (const m of s.lan) lan.appendChild(el("span", { class: `st-${m.status}`, title: m.status }, `${m.name}:${m.status} `));
      if (!s.lan.length) lan.textContent = "\u2013";
      tr.appendChild(lan);
      const alive = s.wan.filter((m) => m.status === "alive").length;
      tr.appendChild(el("td", {}, s.wan.length ? `${alive}/${s.wan.length} alive` : "\u2013"));
      const ring = s.keyring && s.keyring.lan;
      tr.appendChild(el("td", {}, ring ? `primary ${ring.primary.slice(0, 8)}\u2026, ${ring.keys.length} key${ring.keys.length === 1 ? "" : "s"}` : "no encryption"));
      table.appendChild(tr);
    }
    // What `consul keyring -list` counts: for each key, how many running servers hold it, and
    // on how many it is the primary.
    const lines = [];
    // One LAN pool per datacenter, one WAN pool for all.
    const pools = state.datacenters.map((dc) => ["lan", dc]).concat([["wan", null]]);
    for (const [pool, dc] of pools) {
      const up = state.servers.filter((s) => s.role !== "down" && s.keyring && s.keyring[pool] && (dc === null || s.datacenter === dc));
      const keys = new Map();
      for (const s of up) {
        for (const k of s.keyring[pool].keys) {
          const entry = keys.get(k) || { held: 0, primary: 0 };
          entry.held++;
          if (s.keyring[pool].primary === k) entry.primary++;
          keys.set(k, entry);
        }
      }
      for (const [k, e] of keys) {
        lines.push(`${dc ? `LAN ${dc}` : "WAN"} ${k.slice(0, 8)}\u2026 held by ${e.held}/${up.length}` + (e.primary ? `, primary on ${e.primary}` : ""));
      }
    }
    $("keyring-summary").textContent = lines.length ? lines.join("\n") : "gossip is not encrypted (no keyring)";
  }

  function matchesFilter(line) {
    const f = $("log-filter").value.trim().toLowerCase();
    return !f || line.toLowerCase().includes(f);
  }

  function applyFilter() {
    for (const d of $("log").children) d.classList.toggle("filtered", !matchesFilter(d.textContent));
  }

  function addLog(entry, future) {
    const log = $("log");
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const div = el("div", { class: entry.level + (future ? " future" : ""), "data-time": entry.time }, entry.line);
    if (!matchesFilter(entry.line)) div.classList.add("filtered");
    log.appendChild(div);
    while (log.childElementCount > LOG_KEEP) log.firstElementChild.remove();
    if (stick) log.scrollTop = log.scrollHeight;
  }

  function addMessage(m) {
    if (positions[m.from] && positions[m.to]) flights.push({ from: m.from, to: m.to, type: m.type, start: performance.now() });
    const list = $("msg-list");
    list.appendChild(el("li", {}, `${m.time.toFixed(3)} ${m.from} \u2192 ${m.to} ${m.type} ${m.detail || ""}`));
    while (list.childElementCount > 200) list.firstElementChild.remove();
    list.scrollTop = list.scrollHeight;
    if (m.seen !== undefined) $("msg-count").textContent = `(${m.shown} shown of ${m.seen} sent: sampled when busy)`;
  }

  // ---- live -------------------------------------------------------------------------------
  function api(path) { return (bases[baseIndex] || "") + "api/" + path; }

  let liveSource = null;
  let liveStopped = false; // a replay JSON was opened: the live view stops for good

  let lastFrame = 0; // performance.now() of the stream's last snapshot (or of connecting)
  const SILENT = 2000; // ms without a snapshot (one comes every 250 ms): that server is stuck

  function connect() {
    if (liveStopped) return;
    const conn = $("connection");
    const source = new EventSource(api("stream"));
    liveSource = source;
    lastFrame = performance.now();
    source.addEventListener("open", () => { conn.textContent = "live"; conn.className = "pill ok"; });
    source.addEventListener("state", (e) => {
      lastFrame = performance.now();
      state = JSON.parse(e.data);
      stateAt = performance.now();
      rememberBases();
      render(performance.now());
    });
    source.addEventListener("log", (e) => addLog(JSON.parse(e.data)));
    source.addEventListener("msg", (e) => addMessage(JSON.parse(e.data)));
    source.addEventListener("error", () => moveOn(source));
  }

  function moveOn(source) {
    // The server this page talks to went away (killed, stopped) or went silent (a paused
    // process keeps its connections open): go on through another.
    if (source !== liveSource || liveStopped) return;
    source.close();
    liveSource = null;
    const conn = $("connection");
    conn.textContent = "reconnecting"; conn.className = "pill bad";
    baseIndex = (baseIndex + 1) % Math.max(1, bases.length);
    setTimeout(connect, 300);
  }

  function watchdog() {
    if (liveSource && performance.now() - lastFrame > SILENT) moveOn(liveSource);
  }

  function rememberBases() {
    // This server first, then the control API (which no kill takes away), then the others.
    const here = [""];
    if (state.control) here.push(`http://${state.control}/ui/`);
    for (const s of state.servers) {
      if (s.http !== location.host) here.push(`http://${s.http}/ui/`);
    }
    if (bases.length !== here.length) bases = here;
  }

  async function post(path, body) {
    $("ctl-error").textContent = "";
    for (let tries = 0; tries < Math.max(1, bases.length); tries++) {
      try {
        const r = await fetch(api(path), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        const answer = await r.json();
        if (!r.ok) $("ctl-error").textContent = answer.error || `HTTP ${r.status}`;
        if (answer.state) { state = answer.state; stateAt = performance.now(); render(performance.now()); }
        return answer;
      } catch (err) {
        baseIndex = (baseIndex + 1) % Math.max(1, bases.length);
      }
    }
    $("ctl-error").textContent = "no server of the cluster answers";
    return null;
  }

  // Controls go to this page's API, or where the snapshot says (an agent of consim up
  // --processes: its supervisor, which kills, pauses and partitions the processes).
  async function control(action, body) {
    const url = state && state.ctl && state.ctl.url;
    if (!url) return post(`ctl/${action}`, body);
    $("ctl-error").textContent = "";
    try {
      const r = await fetch(url + action, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      const answer = await r.json();
      if (!r.ok) $("ctl-error").textContent = answer.error || `HTTP ${r.status}`;
      return answer;
    } catch (err) {
      $("ctl-error").textContent = `the supervisor at ${url} does not answer`;
      return null;
    }
  }

  async function onAction(button) {
    const action = button.dataset.action;
    const server = button.dataset.server;
    if (["kill", "restart", "stop", "pause", "resume", "isolate"].includes(action)) {
      return control(action, { node: server });
    }
    if (action === "heal") return control("heal", {});
    if (action === "partition") {
      const groups = {};
      for (const select of document.querySelectorAll("[data-group-server]")) {
        (groups[select.value] = groups[select.value] || []).push(select.dataset.groupServer);
      }
      const listed = GROUPS.filter((g) => groups[g]).map((g) => groups[g]);
      if (listed.length < 2) {
        $("ctl-error").textContent = "put the servers in at least two groups";
        return null;
      }
      return control("partition", { groups: listed });
    }
    if (action === "delay") return control("delay", { src: $("link-src").value, dst: $("link-dst").value, seconds: Number($("delay-ms").value) / 1000 });
    if (action === "loss") return control("loss", { src: $("link-src").value, dst: $("link-dst").value, probability: Number($("loss-p").value) });
    if (action === "read" || action === "write") {
      const out = $("client-answer");
      out.textContent = "\u2026";
      const answer = await post("client", {
        server: $("client-server").value, op: action, key: $("client-key").value,
        value: $("client-value").value, consistency: $("client-consistency").value,
      });
      if (!answer) { out.textContent = "no answer"; return null; }
      if (answer.error) { out.textContent = `${answer.request || ""} on ${answer.server || "?"}\n${answer.error}`; return answer; }
      const headers = Object.entries(answer.headers).map(([k, v]) => `${k}: ${v}`).join("\n");
      let body = answer.body;
      try {
        const parsed = JSON.parse(body);
        if (Array.isArray(parsed) && parsed[0] && parsed[0].Value !== undefined) {
          body += `\n(Value decoded: ${parsed[0].Value === null ? "null" : atob(parsed[0].Value)})`;
        }
      } catch (e) { /* not JSON: shown as it is */ }
      out.textContent = `${answer.request} on ${answer.server}: ${answer.status} (${answer.ms} ms)\n${headers}\n\n${body}`;
      out.dataset.status = answer.status;
      return answer;
    }
    return null;
  }

  function syncClientButtons() {
    for (const b of document.querySelectorAll('#client [data-action="read"], #client [data-action="write"]')) {
      b.dataset.server = $("client-server").value;
    }
  }

  function startLive() {
    $("mode").textContent = BOOT.server ? `live, served by ${BOOT.server}` : "live";
    document.addEventListener("click", (e) => {
      const b = e.target.closest("button[data-action]");
      if (b && !b.disabled) onAction(b);
    });
    $("client-server").addEventListener("change", syncClientButtons);
    setInterval(syncClientButtons, 500);
    setInterval(watchdog, 500);
    connect();
    const frame = () => { if (!liveStopped) { drawRing(performance.now()); requestAnimationFrame(frame); } };
    requestAnimationFrame(frame);
  }

  // ---- replay -----------------------------------------------------------------------------
  let player = null; // the replay being shown; the controls act on it
  let wired = false;

  function wireReplayControls() {
    wired = true;
    document.querySelector('[data-replay="play"]').addEventListener("click", () => player && player.togglePlay());
    document.querySelector('[data-replay="step"]').addEventListener("click", () => player && player.stepEvent());
    document.querySelector('[data-replay="next-step"]').addEventListener("click", () => player && player.stepNote());
    $("replay-scrub").addEventListener("input", () => player && player.scrub(Number($("replay-scrub").value) / 1000));
    const loop = (now) => { if (player) player.tick(now); requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
  }

  function startReplay(data) {
    if (liveSource) { liveStopped = true; liveSource.close(); }
    REPLAY = data;
    // A different run may have other servers: the cards and the ring start over.
    for (const k of Object.keys(cards)) delete cards[k];
    $("servers").textContent = "";
    positions = {};
    flights = [];
    document.body.classList.add("replay");
    $("replay-bar").hidden = false;
    $("connection").textContent = "replay";
    $("connection").className = "pill";
    $("mode").textContent = `replay: ${data.scenario} (seed ${data.seed}), ${data.end.toFixed(2)} virtual s`;
    if (!wired) wireReplayControls();
    player = makePlayer(data);
  }

  function makePlayer(data) {
    const frames = data.frames, logs = data.logs, msgs = data.messages, notes = data.notes || [];
    const eventTimes = [...new Set(logs.map((l) => l.time).concat(notes.map((n) => n.time)))].sort((a, b) => a - b);
    let vt = 0, playing = false, last = null, frameIdx = -1, logIdx = 0, msgIdx = 0;
    let noteIdx = -1; // the step shown: the last one started by now, or the one stepped to
    const scrub = $("replay-scrub");
    const playButton = document.querySelector('[data-replay="play"]');

    function frameAt(t) {
      let lo = 0, hi = frames.length - 1, best = 0;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (frames[mid].t <= t) { best = mid; lo = mid + 1; } else hi = mid - 1;
      }
      return best;
    }

    function rebuildLog(t) {
      $("log").textContent = "";
      $("msg-list").textContent = "";
      logIdx = 0; msgIdx = 0;
      const from = Math.max(0, logs.findIndex((l) => l.time > t) - LOG_KEEP);
      for (const l of logs.slice(from)) addLog(l, l.time > t);
      while (logIdx < logs.length && logs[logIdx].time <= t) logIdx++;
      while (msgIdx < msgs.length && msgs[msgIdx].time <= t) msgIdx++;
      markFuture(t);
    }

    function markFuture(t) {
      const log = $("log");
      for (const d of log.children) d.classList.toggle("future", Number(d.dataset.time) > t);
      const current = [...log.children].filter((d) => !d.classList.contains("future")).pop();
      // Scroll the log box only (scrollIntoView would move the whole page too).
      if (current) log.scrollTop = Math.max(0, current.offsetTop - log.offsetTop - log.clientHeight + 20);
    }

    function showNote(t, forced) {
      if (forced !== undefined) noteIdx = forced;
      else {
        noteIdx = -1;
        notes.forEach((n, i) => { if (n.time <= t + 1e-9) noteIdx = i; });
      }
      const note = notes[noteIdx];
      const box = $("note");
      box.hidden = !note;
      if (note) {
        box.textContent = `step ${note.step}: ${note.description}${note.note ? " \u2014 " + note.note : ""}`;
        box.dataset.step = note.step;
      }
    }

    function seek(t, jump, forcedNote) {
      vt = Math.max(0, Math.min(data.end, t));
      replayNow = vt;
      const i = frameAt(vt);
      if (i !== frameIdx) {
        frameIdx = i;
        state = frames[i].state;
        stateAt = frames[i].t;
      }
      if (jump) rebuildLog(vt);
      else {
        while (logIdx < logs.length && logs[logIdx].time <= vt) logIdx++;
        while (msgIdx < msgs.length && msgs[msgIdx].time <= vt) addMessage(msgs[msgIdx++]);
        markFuture(vt);
      }
      showNote(vt, forcedNote);
      scrub.value = String(Math.round((vt / Math.max(1e-9, data.end)) * 1000));
      $("replay-time").textContent = `t = ${vt.toFixed(3)} s`;
      render(vt);
    }

    function setPlaying(on) {
      playing = on;
      playButton.innerHTML = on ? "&#10074;&#10074;" : "&#9654;";
      playButton.dataset.playing = on ? "true" : "false";
    }

    layout(frames[0].state.servers, frames[0].state.datacenters);
    setPlaying(false);
    seek(0, true);
    return {
      tick(now) {
        if (playing && last !== null) {
          const speed = Number($("replay-speed").value);
          seek(vt + ((now - last) / 1000) * speed, false);
          if (vt >= data.end) setPlaying(false);
        } else if (state) drawRing(vt);
        last = now;
      },
      togglePlay() {
        if (!playing && vt >= data.end) seek(0, true); // at the end, play starts over
        setPlaying(!playing);
      },
      stepEvent() {
        const next = eventTimes.find((x) => x > vt + 1e-9);
        setPlaying(false);
        seek(next === undefined ? data.end : next, false);
      },
      stepNote() {
        // Step by step, even when several steps start at the same instant.
        setPlaying(false);
        const next = noteIdx + 1;
        if (next < notes.length) seek(Math.max(vt, notes[next].time), false, next);
        else seek(data.end, false);
      },
      scrub(fraction) { setPlaying(false); seek(fraction * data.end, true); },
    };
  }

  function loadReplayFile(file) {
    file.text().then((text) => {
      const data = JSON.parse(text);
      if (!data.frames) throw new Error("not a consim replay (no frames)");
      startReplay(data);
      document.body.dataset.loaded = "file";
    }).catch((err) => { $("note").hidden = false; $("note").textContent = String(err); });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("log-filter").addEventListener("input", applyFilter);
    $("replay-file").addEventListener("change", (e) => { if (e.target.files[0]) loadReplayFile(e.target.files[0]); });
    if (REPLAY) startReplay(REPLAY);
    else startLive();
  });
})();
