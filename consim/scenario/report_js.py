"""The HTML report's script (inline in every page: no network, no library)."""

# ruff: noqa: E501
SCRIPT = r"""
// consim's HTML report: draws the run (the JSON in #run-data) for a window of time that the
// reader zooms (wheel, buttons, a step or tenure link) and pans (drag). Self-contained: no
// network, no libraries. The URL's #view=FROM,TO opens a window (and is kept up to date).
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("run-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const W = 1100, LEFT = 110, RIGHT = 20;
  const ROLE_H = 20, SUFF_H = 6, COMMIT_H = 14, KEY_H = 8;
  const LANE_H = ROLE_H + 2 + SUFF_H + 2 + COMMIT_H + 2 + (D.keyrings.initial ? 2 * KEY_H + 2 : 0) + 8;
  const COLOURS = {follower: "#8fb8de", candidate: "#f2c14e", leader: "#2e8b57", down: "#d9d9d9",
    paused: "#b39ddb", prevote: "#fbe7a1"};
  const FAMILY = {vote: "#f57f17", append: "#1565c0", heartbeat: "#90a4ae", snapshot: "#6a1b9a",
    rpc: "#00897b", gossip: "#bdbdbd"};
  const MAX_MESSAGES = 800, MAX_LOGS = 400;
  const servers = D.servers;
  let v0 = 0, v1 = D.span, cursor = null;
  const families = {vote: true, append: true, heartbeat: true, snapshot: true, rpc: true, gossip: false};

  function el(tag, attrs, parent, text) {
    const n = document.createElementNS(NS, tag);
    for (const k in attrs) n.setAttribute(k, attrs[k]);
    if (text !== undefined) n.textContent = text;
    if (parent) parent.appendChild(n);
    return n;
  }
  function title(node, text) { el("title", {}, node, text); return node; }
  const scale = () => (W - LEFT - RIGHT) / (v1 - v0);
  const x = (t) => +(LEFT + (t - v0) * scale()).toFixed(2);
  const visible = (s, e) => e >= v0 && s <= v1;
  const clampX = (t) => Math.max(LEFT, Math.min(W - RIGHT, x(t)));
  const fmt = (t) => (t < 10 ? t.toFixed(3) : t.toFixed(2)) + "s";
  const ms = (d) => d < 1 ? (d * 1000).toFixed(d < 0.01 ? 1 : 0) + " ms" : d.toFixed(3) + " s";
  const textWidth = (s) => 6.2 * s.length + 8;

  function niceStep(span) {
    const steps = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
      1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
    for (const s of steps) if (span / s <= 12) return s;
    return span / 10;
  }

  // Step markers: one box per step, packed into as many rows as it takes so none hides another.
  function packSteps() {
    const rows = [];
    const placed = [];
    for (const st of D.steps) {
      if (!visible(st.t, st.t)) continue;
      const label = String(st.n) + (st.note ? " ✎" : "");
      const w = textWidth(label), cx = x(st.t);
      const left = Math.max(LEFT - 4, cx - w / 2);
      let row = rows.findIndex((end) => end + 3 <= left);
      if (row < 0) { row = rows.length; rows.push(0); }
      rows[row] = left + w;
      placed.push({st, label, left, w, row, cx});
    }
    return {placed, rows: rows.length};
  }

  function setView(a, b) {
    const min = 0.0005;
    if (b - a < min) { const m = (a + b) / 2; a = m - min / 2; b = m + min / 2; }
    const span = b - a;
    if (span >= D.span) { a = 0; b = D.span; }
    if (a < 0) { b -= a; a = 0; }
    if (b > D.span) { a -= b - D.span; b = D.span; }
    v0 = Math.max(0, a); v1 = b;
    if (history.replaceState) history.replaceState(null, "", "#view=" + v0.toFixed(6) + "," + v1.toFixed(6));
    render();
  }
  window.consimView = setView;

  function keyStates() {
    // name -> pool -> [{s, keys:Set, primary}]
    const out = {};
    if (!D.keyrings.initial) return out;
    for (const n of servers) out[n] = {lan: [{s: 0, keys: [D.keyrings.initial], primary: D.keyrings.initial}],
      wan: [{s: 0, keys: [D.keyrings.initial], primary: D.keyrings.initial}]};
    for (const c of D.keyrings.changes) {
      const hist = out[c.server] && out[c.server][c.pool];
      if (!hist) continue;
      const last = hist[hist.length - 1];
      let keys = last.keys.slice(), primary = last.primary;
      if (c.op === "install" && !keys.includes(c.key)) keys.push(c.key);
      if (c.op === "use") primary = c.key;
      if (c.op === "remove") keys = keys.filter((k) => k !== c.key);
      hist.push({s: c.t, keys, primary});
    }
    return out;
  }
  const KEYS = keyStates();
  const keyColours = {};
  const PALETTE = ["#5c6bc0", "#ef6c00", "#00897b", "#c2185b", "#7cb342", "#6d4c41"];
  function keyColour(k) {
    if (!(k in keyColours)) keyColours[k] = PALETTE[Object.keys(keyColours).length % PALETTE.length];
    return keyColours[k];
  }

  function suffrages() {
    // name -> [{s, suffrage}] ; bootstrap: every server of a datacenter is a voter.
    const out = {};
    for (const n of servers) out[n] = [{s: 0, suffrage: "voter"}];
    for (const c of D.configurations) {
      const dc = D.datacenters[c.leader];
      for (const n of servers) {
        if (D.datacenters[n] !== dc) continue;
        const s = c.voters.includes(n) ? "voter" : c.nonvoters.includes(n) ? "nonvoter" : "absent";
        const h = out[n];
        if (h[h.length - 1].suffrage !== s) h.push({s: c.t, suffrage: s});
      }
    }
    return out;
  }
  const SUFFRAGE = suffrages();
  let COMMIT_MAX = 1;
  for (const pts of Object.values(D.commits || {})) for (const p of pts) COMMIT_MAX = Math.max(COMMIT_MAX, p[1]);

  function render() {
    const svg = document.getElementById("timeline");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const packed = packSteps();
    const TOP = 24 + packed.rows * 16 + 10;
    const lanesTop = TOP;
    const height = lanesTop + LANE_H * servers.length + 50;
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${W} ${height}`);
    const y = (name) => lanesTop + servers.indexOf(name) * LANE_H;
    el("clipPath", {id: "plot"}, svg);
    el("rect", {x: LEFT, y: 0, width: W - LEFT - RIGHT, height}, svg.lastChild);
    // Axis.
    const step = niceStep(v1 - v0);
    const axis = el("g", {class: "axis"}, svg);
    for (let t = Math.ceil(v0 / step) * step; t <= v1 + 1e-9; t += step) {
      el("line", {x1: x(t), y1: TOP - 6, x2: x(t), y2: height - 40, stroke: "#eee"}, axis);
      el("text", {x: x(t), y: height - 28, "text-anchor": "middle", fill: "#555"}, axis,
        +t.toPrecision(6) + "s");
    }
    const plot = el("g", {"clip-path": "url(#plot)"}, svg);
    // Fault bands.
    for (const f of D.faults) {
      if (!visible(f.s, f.e)) continue;
      for (const name of f.cut) {
        if (!servers.includes(name)) continue;
        title(el("rect", {class: "fault", x: x(f.s), y: y(name) - 2, width: Math.max(1, x(f.e) - x(f.s)),
          height: LANE_H - 6, fill: "#e53935", "fill-opacity": 0.13}, plot),
          `${f.label} (${fmt(f.s)} - ${fmt(f.e)})`);
      }
    }
    // Lanes.
    for (const name of servers) {
      const top = y(name);
      const g = el("g", {class: "lane", "data-server": name}, plot);
      el("text", {x: LEFT - 8, y: top + 15, "text-anchor": "end", "font-weight": "bold"}, svg, name);
      el("text", {x: LEFT - 8, y: top + ROLE_H + 8, "text-anchor": "end", fill: "#888", "font-size": 8}, svg, "voter");
      el("text", {x: LEFT - 8, y: top + ROLE_H + SUFF_H + 14, "text-anchor": "end", fill: "#888", "font-size": 8}, svg, "commit");
      for (const seg of D.segments[name]) {
        if (!visible(seg.s, seg.e)) continue;
        const x0 = x(seg.s), real = x(seg.e) - x0;
        // A short tenure is drawn at least 3 px wide (and flagged below): never invisible.
        const w = Math.max(3, real);
        const colour = seg.role === "candidate" && seg.prevote ? COLOURS.prevote : COLOURS[seg.role] || "#999";
        const what = seg.role === "candidate" && seg.prevote
          ? `pre-vote candidate, term ${seg.term} (asking for term ${seg.term + 1}; a pre-vote does not raise the term)`
          : seg.role + (seg.term === null || seg.role === "down" ? "" : ` term ${seg.term}`);
        const r = title(el("rect", {class: "segment " + seg.role + (seg.prevote ? " prevote" : ""),
          x: x0, y: top, width: w.toFixed(2), height: ROLE_H, fill: colour,
          "data-role": seg.role, "data-term": seg.term === null ? "" : seg.term,
          "data-s": seg.s, "data-e": seg.e}, g),
          `${name}: ${what} (${fmt(seg.s)} - ${fmt(seg.e)}, ${ms(seg.e - seg.s)})`);
        r.addEventListener("click", () => details(`${name}: ${what}`, `from ${fmt(seg.s)} to ${fmt(seg.e)} (${ms(seg.e - seg.s)})`));
        if (seg.role !== "down" && seg.role !== "paused" && seg.term !== null) {
          const label = seg.role === "candidate" && seg.prevote ? `pre-vote t${seg.term}` : `${seg.role} t${seg.term}`;
          if (real > textWidth(label)) {
            el("text", {class: "term-label", x: Math.max(x0, LEFT) + 3, y: top + 14, fill: seg.role === "leader" ? "#fff" : "#123",
              "font-size": 10, "pointer-events": "none"}, g, label);
          } else if (seg.role === "leader" && real < 12) {
            // Flag it: a leader for a few ms is the moment a learner must not miss.
            const flag = title(el("path", {class: "short-tenure", d: `M${x0 + w / 2} ${top - 1} l-5 -7 h10 z`,
              fill: COLOURS.leader, "data-s": seg.s, "data-e": seg.e}, g),
              `${name} leader term ${seg.term} for ${ms(seg.e - seg.s)}: click to zoom in`);
            flag.addEventListener("click", () => zoomTo(seg.s, seg.e));
          }
        }
      }
      // Suffrage strip.
      const hist = SUFFRAGE[name];
      for (let i = 0; i < hist.length; i++) {
        const s = hist[i].s, e = i + 1 < hist.length ? hist[i + 1].s : D.span;
        if (!visible(s, e) || hist[i].suffrage === "absent") continue;
        title(el("rect", {class: "suffrage " + hist[i].suffrage, x: x(s), y: top + ROLE_H + 2,
          width: Math.max(1, x(e) - x(s)), height: SUFF_H,
          fill: hist[i].suffrage === "voter" ? "#546e7a" : "#cfd8dc"}, g),
          `${name}: ${hist[i].suffrage} in the Raft configuration from ${fmt(s)}`);
      }
      // Commit index.
      const cy0 = top + ROLE_H + SUFF_H + 4;
      if (D.commits && D.commits[name] && D.commits[name].length) {
        const pts = D.commits[name];
        const cy = (c) => +(cy0 + COMMIT_H - (c / COMMIT_MAX) * COMMIT_H).toFixed(2);
        let d = "", lastLabel = -1e9;
        for (let i = 0; i < pts.length; i++) {
          const [t, c] = pts[i];
          const tn = i + 1 < pts.length ? pts[i + 1][0] : D.span;
          d += (i ? ` L${x(t)} ${cy(pts[i - 1][1])} ` : `M${x(t)} `) + `L${x(t)} ${cy(c)} L${x(tn)} ${cy(c)}`;
          if (visible(t, tn) && x(t) - lastLabel > 26 && x(tn) - x(t) > 14) {
            title(el("text", {class: "commit-label", x: Math.max(LEFT, x(t)) + 2, y: cy0 + 10, "font-size": 8, fill: "#37474f"}, g, c),
              `${name}: commit index ${c} from ${fmt(t)}`);
            lastLabel = Math.max(LEFT, x(t));
          }
        }
        el("path", {class: "commit", d, fill: "none", stroke: "#37474f", "stroke-width": 1}, g);
      } else {
        el("text", {x: LEFT + 4, y: cy0 + 10, fill: "#aaa", "font-size": 8}, g,
          D.mode === "virtual" ? "" : "(commit index is recorded in virtual runs)");
      }
      // Keyring.
      if (KEYS[name]) {
        ["lan", "wan"].forEach((pool, k) => {
          const hist = KEYS[name][pool];
          const ky = top + ROLE_H + SUFF_H + COMMIT_H + 8 + k * (KEY_H + 1);
          for (let i = 0; i < hist.length; i++) {
            const s = hist[i].s, e = i + 1 < hist.length ? hist[i + 1].s : D.span;
            if (!visible(s, e)) continue;
            const st = hist[i];
            const keys = st.keys.map((kk) => kk === st.primary ? kk + " (primary)" : kk).join(", ");
            title(el("rect", {class: "keyring " + pool, x: x(s), y: ky, width: Math.max(1, x(e) - x(s)), height: KEY_H,
              fill: keyColour(st.primary), "fill-opacity": st.keys.length > 1 ? 0.55 : 0.9,
              "data-keys": st.keys.length}, g),
              `${name} ${pool.toUpperCase()} keyring from ${fmt(s)}: ${st.keys.length} key(s): ${keys}`);
            if (x(e) - x(s) > 60) el("text", {x: Math.max(LEFT, x(s)) + 2, y: ky + 7, "font-size": 7, fill: "#fff",
              "pointer-events": "none"}, g, `${pool} ${st.keys.length} key${st.keys.length > 1 ? "s" : ""}`);
          }
        });
      }
    }
    // Configuration changes, on the server they changed.
    for (const c of D.configurations) {
      if (!visible(c.t, c.t) || !servers.includes(c.server)) continue;
      const top = y(c.server) + ROLE_H + 2;
      title(el("path", {class: "config-change", d: `M${x(c.t)} ${top - 2} l5 5 l-5 5 l-5 -5 z`, fill: "#d84315",
        stroke: "#fff"}, plot),
        `${fmt(c.t)} ${c.command} ${c.server} (leader ${c.leader}, index ${c.index}); voters: ${c.voters.join(", ")}` +
        (c.nonvoters.length ? `; non-voters: ${c.nonvoters.join(", ")}` : ""));
    }
    // Operator markers and requests.
    const SYMBOL = {kill: "✕", restart: "↻", stop: "■", pause: "⏸", resume: "▶"};
    for (const m of D.markers) {
      if (!visible(m.t, m.t)) continue;
      title(el("text", {class: "marker " + m.kind, x: x(m.t), y: y(m.server) + 16, "text-anchor": "middle",
        "font-size": 15, fill: m.kind === "kill" ? "#b71c1c" : "#1b5e20"}, plot, SYMBOL[m.kind]),
        `${m.kind} ${m.server} at ${fmt(m.t)}`);
    }
    for (const q of D.requests) {
      if (!visible(q.t, q.t)) continue;
      title(el("circle", {class: "request", cx: x(q.t), cy: y(q.server) + ROLE_H - 2, r: 4,
        fill: q.ok ? "#1565c0" : "#e65100", stroke: "#fff"}, plot), `${fmt(q.t)} ${q.text}`);
    }
    // Step markers on top, packed.
    const band = el("g", {class: "steps"}, svg);
    for (const p of packed.placed) {
      const ok = p.st.status === "ok";
      const colour = ok ? "#2e7d32" : p.st.status === "failed" ? "#c62828" : "#888";
      const g = el("g", {class: `step-result ${ok ? "ok" : p.st.status}`, "data-step": p.st.n}, band);
      const by = 16 + p.row * 16;
      el("line", {x1: p.cx, y1: by + 13, x2: p.cx, y2: TOP - 2, stroke: colour, "stroke-width": 1, "stroke-opacity": 0.5}, g);
      el("rect", {class: "step-box", x: p.left.toFixed(2), y: by, width: p.w.toFixed(2), height: 13, rx: 3,
        fill: "#fff", stroke: colour}, g);
      el("text", {x: (p.left + p.w / 2).toFixed(2), y: by + 10, "text-anchor": "middle", "font-size": 9, fill: colour}, g, p.label);
      title(g, `step ${p.st.n} ${p.st.status} at ${fmt(p.st.t)}: ${p.st.description}` + (p.st.note ? `\n# ${p.st.note}` : "") +
        (p.st.detail ? `\n${p.st.detail}` : ""));
      g.addEventListener("click", () => selectStep(p.st));
    }
    el("text", {x: 4, y: 26, fill: "#555", "font-size": 10}, svg, "steps");
    if (cursor !== null && visible(cursor, cursor)) {
      el("line", {class: "cursor", x1: x(cursor), y1: TOP - 4, x2: x(cursor), y2: height - 40, stroke: "#000",
        "stroke-dasharray": "3 2"}, svg);
    }
    document.getElementById("window").textContent = `${fmt(v0)} - ${fmt(v1)} (${ms(v1 - v0)} of ${ms(D.span)})`;
    renderMessages();
    renderLogs();
  }

  function renderMessages() {
    const svg = document.getElementById("messages");
    const info = document.getElementById("messages-info");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (!D.messages) {
      info.textContent = "Messages are recorded in virtual runs only.";
      svg.setAttribute("height", 0);
      return;
    }
    const shown = D.messages.filter((m) => families[m.family] && visible(m.t, m.due));
    const ROW = 26, top = 12, height = top + ROW * servers.length + 10;
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${W} ${height}`);
    const y = (n) => top + servers.indexOf(n) * ROW;
    for (const n of servers) {
      el("text", {x: LEFT - 8, y: y(n) + 4, "text-anchor": "end", "font-size": 11}, svg, n);
      el("line", {x1: LEFT, y1: y(n), x2: W - RIGHT, y2: y(n), stroke: "#ccc"}, svg);
    }
    if (shown.length > MAX_MESSAGES) {
      info.textContent = `${shown.length} messages in this window: zoom in (to ${MAX_MESSAGES} or fewer) to draw them.`;
      return;
    }
    info.textContent = `${shown.length} messages in this window (sent at the left end of a line, arrived at the right).`;
    el("clipPath", {id: "mplot"}, svg);
    el("rect", {x: LEFT, y: 0, width: W - LEFT - RIGHT, height}, svg.lastChild);
    const g = el("g", {"clip-path": "url(#mplot)"}, svg);
    for (const m of shown) {
      const line = title(el("line", {class: `msg ${m.family}${m.lost ? " lost" : ""}`, x1: x(m.t), y1: y(m.from),
        x2: x(m.due), y2: y(m.to), stroke: m.lost ? "#c62828" : FAMILY[m.family], "stroke-width": m.family === "heartbeat" ? 1 : 1.6,
        "stroke-dasharray": m.lost ? "4 3" : "none", "marker-end": m.lost ? "" : "url(#arrow-" + m.family + ")"}, g),
        `${fmt(m.t)} ${m.from} → ${m.to}: ${m.label}${m.lost ? " (lost)" : ""}`);
      line.addEventListener("click", () => details(`${m.from} → ${m.to}: ${m.label}`,
        `sent ${fmt(m.t)}, ${m.lost ? "dropped" : "arrived"} ${fmt(m.due)}`));
      if (m.lost) el("text", {x: x(m.due), y: y(m.to) + 4, "text-anchor": "middle", fill: "#c62828", "font-size": 10}, g, "✕");
    }
    const defs = el("defs", {}, svg);
    for (const f in FAMILY) {
      const mk = el("marker", {id: "arrow-" + f, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 5, markerHeight: 5,
        orient: "auto-start-reverse"}, defs);
      el("path", {d: "M 0 0 L 10 5 L 0 10 z", fill: FAMILY[f]}, mk);
    }
  }

  function renderLogs() {
    const box = document.getElementById("logs");
    const info = document.getElementById("logs-info");
    while (box.firstChild) box.removeChild(box.firstChild);
    const shown = D.logs.filter((l) => visible(l.t, l.t));
    info.textContent = `${shown.length} log line${shown.length === 1 ? "" : "s"} in this window` +
      (shown.length > MAX_LOGS ? ` (the first ${MAX_LOGS} shown: zoom in for the rest)` : "");
    for (const l of shown.slice(0, MAX_LOGS)) {
      const div = document.createElement("div");
      div.className = "log " + l.level;
      div.dataset.t = l.t;
      div.textContent = `${fmt(l.t).padStart(8)} ${l.node.padEnd(8)} ${l.line}`;
      div.addEventListener("click", () => { cursor = l.t; render(); });
      box.appendChild(div);
    }
  }

  function details(head, body) {
    document.getElementById("details").textContent = head + "\n" + body;
  }
  function zoomTo(s, e) {
    const pad = Math.max((e - s) * 2, 0.02);
    setView(s - pad, e + pad);
  }
  function selectStep(st) {
    details(`step ${st.n} ${st.status}: ${st.description}`, (st.note ? "# " + st.note + "\n" : "") + (st.detail || ""));
    for (const row of document.querySelectorAll("tr.step")) row.classList.toggle("selected", row.dataset.step == st.n);
  }

  // Zoom (wheel, buttons) and pan (drag).
  const tl = document.getElementById("timeline");
  function timeAt(evt) {
    const r = tl.getBoundingClientRect();
    const px = (evt.clientX - r.left) * (W / r.width);
    return v0 + (px - LEFT) / scale();
  }
  for (const svgId of ["timeline", "messages"]) {
    const s = document.getElementById(svgId);
    s.addEventListener("wheel", (evt) => {
      evt.preventDefault();
      const t = Math.max(v0, Math.min(v1, timeAt(evt)));
      const f = evt.deltaY < 0 ? 1 / 1.3 : 1.3;
      setView(t - (t - v0) * f, t + (v1 - t) * f);
    }, {passive: false});
    let drag = null;
    s.addEventListener("mousedown", (evt) => { drag = {x: evt.clientX, a: v0, b: v1}; });
    window.addEventListener("mouseup", () => { drag = null; });
    window.addEventListener("mousemove", (evt) => {
      if (!drag) return;
      const r = s.getBoundingClientRect();
      const dt = (evt.clientX - drag.x) * (W / r.width) / scale();
      if (Math.abs(evt.clientX - drag.x) > 2) setView(drag.a - dt, drag.b - dt);
    });
  }
  document.getElementById("zoom-in").addEventListener("click", () => { const m = (v0 + v1) / 2, h = (v1 - v0) / 4; setView(m - h, m + h); });
  document.getElementById("zoom-out").addEventListener("click", () => { const m = (v0 + v1) / 2, h = v1 - v0; setView(m - h, m + h); });
  document.getElementById("zoom-reset").addEventListener("click", () => setView(0, D.span));
  for (const a of document.querySelectorAll("[data-zoom]")) {
    a.addEventListener("click", (evt) => {
      evt.preventDefault();
      const [s, e] = a.dataset.zoom.split(",").map(Number);
      zoomTo(s, e);
    });
  }
  for (const f in families) {
    const box = document.getElementById("family-" + f);
    if (!box) continue;
    box.checked = families[f];
    box.addEventListener("change", () => { families[f] = box.checked; renderMessages(); });
  }
  const m = /#view=([0-9.]+),([0-9.]+)/.exec(location.hash);
  if (m) setView(+m[1], +m[2]); else render();
})();
"""
