"""The HTML report of a check: the history drawn as Porcupine draws it, with the faults above.

One self-contained page (inline CSS, SVG and a little JavaScript; no network): a lane per client
process, each operation a bar from its invoke to its completion, labelled ``f key value -> result``
and coloured by outcome (ok, fail: certainly not applied, info: unknown), info operations
trailing a dashed line because they may take effect later; nemesis faults as spans above the
lanes; the window that cannot be linearized as a red band with its operations outlined. The
detail view zooms (wheel, buttons) and pans (drag); a static overview strip of the whole run and
the window's operations as a table need no script at all, so the page stays useful for 10,000
operations and in a browser without JavaScript.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from consim.check.history import History, Operation

COLOURS = {"ok": "#74c476", "fail": "#bdbdbd", "info": "#fdb462"}
WINDOW = "#d62728"
FAULT = "#9e86c8"
OVERVIEW_WIDTH = 1100
OVERVIEW_LANE = 8


def _short(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _compact(op: Operation) -> str:
    """The label for a narrow bar: the colour already says ok / fail / info."""
    if op.f == "read":
        return "r " + (_short(op.output) if op.type == "ok" else "?")
    if op.f == "write":
        return "w " + _short(op.value)
    exp, new = op.value
    return f"c {_short(exp)}→{_short(new)}"


def _label(op: Operation) -> str:
    if op.f == "read":
        head = f"r {op.key}"
        result = _short(op.output) if op.type == "ok" else op.type
    elif op.f == "write":
        head = f"w {op.key} {_short(op.value)}"
        result = op.type
    else:
        exp, new = op.value
        head = f"cas {op.key} {_short(exp)}→{_short(new)}"
        result = op.type
    return f"{head} → {result}"


def _lanes(ops: list[Operation]) -> list[list[int]]:
    """Client processes packed into lanes. A client whose operation ended info continues as a
    new process (Jepsen's convention), so processes come and go; each lane holds processes whose
    lives do not overlap (first fit in order of first invoke): one lane per concurrent client."""
    span: dict[int, list[float]] = {}
    for op in ops:
        last = op.complete_time if op.complete_time is not None else math.inf
        s = span.setdefault(op.process, [op.invoke_time, last])
        s[0] = min(s[0], op.invoke_time)
        s[1] = max(s[1], last)
    lanes: list[list[int]] = []
    ends: list[float] = []
    for process in sorted(span, key=lambda p: (span[p][0], p)):
        start, end = span[process]
        for i, lane_end in enumerate(ends):
            if lane_end < start:
                lanes[i].append(process)
                ends[i] = end
                break
        else:
            lanes.append([process])
            ends.append(end)
    return sorted(lanes)


def _extra(op: Operation) -> str:
    """The fields beyond Jepsen's (server, consistency, index, error, ...), as ``k=v`` text."""
    return " ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in op.extra.items()
    )


def _faults(history: History) -> list[dict[str, Any]]:
    """Nemesis start/stop events paired into spans: a stop closes the earliest open start of the
    same fault (``value["fault"]``, else its ``id``, else any)."""
    spans: list[dict[str, Any]] = []
    open_spans: list[dict[str, Any]] = []

    def name(value: Any) -> str:
        if isinstance(value, dict):
            return str(value.get("fault") or value.get("id") or value.get("f") or "fault")
        return _short(value) if value is not None else "fault"

    def text(value: Any) -> str:
        if isinstance(value, dict):
            rest = {k: v for k, v in value.items() if k != "fault" and v != name(value)}
            return name(value) + (" " + json.dumps(rest, separators=(",", ":")) if rest else "")
        return name(value)

    for event in history.nemesis_events():
        if event.f == "start":
            span = {
                "t0": event.time,
                "t1": None,
                "name": name(event.value),
                "text": text(event.value),
            }
            spans.append(span)
            open_spans.append(span)
        else:
            match = next((s for s in open_spans if s["name"] == name(event.value)), None)
            if match is None and open_spans and name(event.value) == "fault":
                match = open_spans[0]
            if match is None:
                spans.append(
                    {
                        "t0": event.time,
                        "t1": event.time,
                        "name": name(event.value),
                        "text": "stop " + text(event.value),
                    }
                )
            else:
                match["t1"] = event.time
                open_spans.remove(match)
    return spans


def _rows(spans: list[dict[str, Any]], end: float) -> int:
    """Stack overlapping fault spans in rows (first fit); returns the number of rows."""
    row_ends: list[float] = []
    for span in sorted(spans, key=lambda s: s["t0"]):
        t1 = span["t1"] if span["t1"] is not None else end
        for r, row_end in enumerate(row_ends):
            if row_end <= span["t0"]:
                span["row"] = r
                row_ends[r] = t1
                break
        else:
            span["row"] = len(row_ends)
            row_ends.append(t1)
    return len(row_ends)


def render_check_report(history: History, result: dict[str, Any], *, title: str) -> str:
    """The page for one checked history; ``result`` is the campaign's JSON result with
    ``"linearizability"`` (``LinearizabilityResult.to_json()``) and optionally ``"invariants"``."""
    ops = history.operations()
    lin = result.get("linearizability") or {}
    verdict = str(lin.get("verdict") or result.get("verdict") or "unchecked")
    window_ids = {int(w["index"]) for w in lin.get("window") or []}
    pending = {int(i) for i in lin.get("window_pending") or []}
    processes = sorted({op.process for op in ops})
    lanes = _lanes(ops)
    lane = {p: i for i, group in enumerate(lanes) for p in group}
    times = [e.time for e in history.events] or [0.0]
    start, end = min(times), max(times)
    if end <= start:
        end = start + 1.0
    faults = _faults(history)
    fault_rows = _rows(faults, end)
    data = {
        "start": start,
        "end": end,
        "lanes": lanes,
        "keys": sorted({op.key for op in ops}),
        "failingKey": lin.get("failing_key"),
        # per op: lane, invoke, completion (null: never), type, label, in window, key, index,
        # short label, process, extra fields
        "ops": [
            [
                lane[op.process],
                op.invoke_time,
                op.complete_time,
                op.type,
                _label(op),
                1 if op.index in window_ids else 0,
                op.key,
                op.index,
                _compact(op),
                op.process,
                _extra(op),
            ]
            for op in ops
        ],
        "faults": [[f["t0"], f["t1"], f["row"], f["text"]] for f in faults],
        "faultRows": fault_rows,
        "window": [w["index"] for w in lin.get("window") or []],
    }
    counts = {t: sum(1 for op in ops if op.type == t) for t in ("ok", "fail", "info")}
    page = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _overall(result, verdict),
        f'<p class="verdict {html.escape(verdict)}" id="verdict">linearizability: '
        f"<b>{html.escape(verdict)}</b></p>",
        f'<p class="summary">{len(ops)} operations ({counts["ok"]} ok, {counts["fail"]} fail, '
        f"{counts['info']} info) by {len(processes)} client processes in {len(lanes)} lanes on "
        f"{len(data['keys'])} keys; {len(faults)} faults; {end - start:.3f} s"
        + _seed(result)
        + "</p>",
        _keys_table(lin),
        _invariants(result.get("invariants")),
        _legend(),
        _overview(ops, lane, faults, fault_rows, window_ids, start, end),
        '<div class="controls"><button id="fit">whole run</button>'
        + ('<button id="towin">the window</button>' if window_ids else "")
        + '<button id="zin">zoom in</button><button id="zout">zoom out</button>'
        '<label>key <select id="keysel"><option value="">all</option>'
        + "".join(
            f'<option value="{html.escape(k)}">{html.escape(k)}</option>' for k in data["keys"]
        )
        + '</select></label><span id="range"></span>'
        '<span class="hint">wheel: zoom, drag: pan, click the overview: jump</span></div>',
        '<div id="detail"><noscript>The zoomable view needs JavaScript; the overview above and '
        "the window below do not.</noscript></div>",
        _window_table(lin, ops, window_ids, pending),
        f'<script type="application/json" id="data">{_json_for_script(data)}</script>',
        f"<script>{_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(p for p in page if p)


def _overall(result: dict[str, Any], linearizability: str) -> str:
    """The run's verdict when it is not just the checker's (an invariant broke)."""
    overall = result.get("verdict")
    broken = result.get("invariants_failed") or [
        name
        for name, v in (result.get("invariants") or {}).items()
        if isinstance(v, dict) and v.get("ok") is False
    ]
    if not overall or (overall == linearizability and not broken):
        return ""
    why = f" (invariants broken: {', '.join(map(str, broken))})" if broken else ""
    return (
        f'<p class="verdict {html.escape(str(overall))}" id="overall">run: '
        f"<b>{html.escape(str(overall))}</b>{html.escape(why)}</p>"
    )


def _seed(result: dict[str, Any]) -> str:
    seed = result.get("seed")
    return f"; seed {html.escape(str(seed))}" if seed is not None else ""


def _json_for_script(data: Any) -> str:
    # "</" inside a script element would end it
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def _keys_table(lin: dict[str, Any]) -> str:
    keys = lin.get("keys") or {}
    if not keys:
        return ""
    cells = "".join(
        f'<td class="{html.escape(v)}">{html.escape(k)}: {html.escape(v)}</td>'
        for k, v in sorted(keys.items())
    )
    explored = lin.get("explored")
    tail = f'<td class="muted">{explored} search steps</td>' if explored is not None else ""
    return f'<table class="keys"><tr>{cells}{tail}</tr></table>'


def _invariants(inv: Any) -> str:
    """The campaign's invariant results (``{name: {"ok", "checked", "violations", "note"}}``)."""
    if not inv:
        return ""
    rows = []
    items = inv.items() if isinstance(inv, dict) else enumerate(inv)
    for name, value in items:
        value = value if isinstance(value, dict) else {"ok": value}
        ok = value.get("ok", value.get("verdict"))
        holds = ok in (True, "valid", "ok", "pass")
        verdict = "holds" if holds else "VIOLATED" if ok is not None else "?"
        if value.get("checked") is not None:
            verdict += f" ({value['checked']} checked)"
        violations = value.get("violations") or []
        if isinstance(violations, str):
            violations = [violations]
        detail = "".join(f"<li>{html.escape(str(v))}</li>" for v in violations[:20])
        note = html.escape(str(value.get("note") or value.get("detail") or ""))
        rows.append(
            f'<tr><td class="{"valid" if holds else "invalid"}">{html.escape(str(name))}</td>'
            f"<td>{verdict}</td><td>{'<ul>' + detail + '</ul>' if detail else ''}{note}</td></tr>"
        )
    return '<h2>Invariants</h2><table class="inv">' + "".join(rows) + "</table>"


def _legend() -> str:
    items = [
        f'<span><i style="background:{COLOURS["ok"]}"></i>ok</span>',
        f'<span><i style="background:{COLOURS["fail"]}"></i>fail (certainly not applied)</span>',
        f'<span><i style="background:{COLOURS["info"]}"></i>info (unknown: may take effect '
        "later, dashed)</span>",
        f'<span><i style="background:{FAULT}"></i>fault (nemesis)</span>',
        f'<span><i style="border:2px solid {WINDOW};background:#fff"></i>window that cannot be '
        "linearized</span>",
    ]
    return '<p class="legend">' + "".join(items) + "</p>"


def _overview(
    ops: list[Operation],
    lane: dict[int, int],
    faults: list[dict[str, Any]],
    fault_rows: int,
    window_ids: set[int],
    start: float,
    end: float,
) -> str:
    """The whole run in one static strip: every operation as a thin mark, faults above."""
    w = OVERVIEW_WIDTH
    fault_h = 6 * max(fault_rows, 1)
    lanes = max(lane.values(), default=0) + 1
    h = fault_h + 4 + OVERVIEW_LANE * lanes + 14

    def x(t: float) -> float:
        return round((t - start) / (end - start) * w, 2)

    parts = [
        f'<svg id="overview" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}"><rect width="{w}" height="{h}" fill="#fafafa"/>'
    ]
    for f in faults:
        t1 = f["t1"] if f["t1"] is not None else end
        parts.append(
            f'<rect class="fault" x="{x(f["t0"])}" y="{6 * f["row"]}" '
            f'width="{max(x(t1) - x(f["t0"]), 1)}" height="5" fill="{FAULT}">'
            f"<title>{html.escape(f['text'])}</title></rect>"
        )
    if window_ids:
        win = [op for op in ops if op.index in window_ids]
        w0 = min(op.invoke_time for op in win)
        w1 = max(op.complete_time or op.invoke_time for op in win)
        parts.append(
            f'<rect class="window-band" x="{x(w0) - 2}" y="0" width="{x(w1) - x(w0) + 4}" '
            f'height="{h - 12}" fill="{WINDOW}" fill-opacity="0.35"/>'
        )
    top = fault_h + 4
    for op in ops:
        t1 = op.complete_time if op.complete_time is not None else end
        parts.append(
            f'<rect x="{x(op.invoke_time)}" y="{top + OVERVIEW_LANE * lane[op.process]}" '
            f'width="{max(x(t1) - x(op.invoke_time), 0.6)}" height="{OVERVIEW_LANE - 1}" '
            f'fill="{COLOURS.get(op.type, "#999")}"/>'
        )
    parts.append(
        f'<text x="0" y="{h - 2}" font-size="10">{start:.3f} s</text>'
        f'<text x="{w}" y="{h - 2}" font-size="10" text-anchor="end">{end:.3f} s</text>'
        f'<rect id="ov-view" x="0" y="0" width="{w}" height="{h - 12}" fill="none" '
        'stroke="#333" stroke-width="1.5"/></svg>'
    )
    return '<div class="overview">' + "".join(parts) + "</div>"


def _window_table(
    lin: dict[str, Any], ops: list[Operation], window_ids: set[int], pending: set[int]
) -> str:
    reason = lin.get("reason") or ""
    if not window_ids:
        return f'<p class="reason">{html.escape(reason)}</p>' if reason else ""
    rows = []
    for op in ops:
        if op.index in window_ids:
            note = " (still open at the cut: treated as unknown)" if op.index in pending else ""
            extra = f' <span class="muted">{html.escape(_extra(op))}</span>' if op.extra else ""
            rows.append(
                f"<li><code>{html.escape(op.describe())}</code>{html.escape(note)}{extra}</li>"
            )
    return (
        f"<h2>The window that cannot be linearized (key {html.escape(str(lin.get('failing_key')))}, "
        f'{len(window_ids)} operations)</h2><ol class="window" id="window">'
        + "".join(rows)
        + f'</ol><p class="reason">{html.escape(reason)}</p>'
    )


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 6px}h2{font-size:16px;margin:18px 0 6px}
.verdict{font-size:17px;margin:4px 0}.verdict.valid b{color:#2e7d32}
.verdict.invalid b{color:#c62828}.verdict.unknown b{color:#ef6c00}
.summary,.muted,.hint{color:#555}.hint{margin-left:12px;font-size:12px}
table{border-collapse:collapse;margin:6px 0}td{padding:2px 8px;border:1px solid #ddd}
td.valid{background:#e8f5e9}td.invalid{background:#ffebee}td.unknown{background:#fff3e0}
.legend span{margin-right:14px;font-size:13px}
table.inv ul{margin:0;padding-left:18px}table.inv td{vertical-align:top}
.legend i{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}
.overview{margin:8px 0;cursor:pointer}.controls{margin:6px 0}
.controls button{margin-right:6px}#range{margin-left:10px;font-family:monospace}
#detail{border:1px solid #ccc;overflow:hidden;user-select:none;cursor:grab}
#detail text{font:11px monospace;pointer-events:none}
ol.window code{font-size:13px}.reason{max-width:1100px}
"""

_JS = r"""
(function(){
const D=JSON.parse(document.getElementById('data').textContent);
const NS='http://www.w3.org/2000/svg', W=1100, LEFT=60, LANE=28, FROW=16, AXIS=22;
const COL={ok:'#74c476',fail:'#bdbdbd',info:'#fdb462'}, WIN='#d62728';
const ops=D.ops, nl=D.lanes.length;
const ftop=4, ltop=ftop+Math.max(D.faultRows,1)*FROW+6, H=ltop+nl*LANE+AXIS;
let v0=D.start, v1=D.end, key='';
const winOps=ops.filter(o=>o[5]);
function winRange(){let a=Infinity,b=-Infinity;for(const o of winOps){a=Math.min(a,o[1]);b=Math.max(b,o[2]===null?o[1]:o[2]);}
  const pad=Math.max((b-a)*0.5,(D.end-D.start)*0.001);return [a-pad,b+pad];}
function firstOps(){const ends=ops.map(o=>o[2]===null?D.end:o[2]).slice(0,60);
  return [D.start,Math.min(D.end,Math.max(...ends,D.start+1e-3))];}
[v0,v1]=winOps.length?winRange():firstOps();
if(winOps.length&&D.failingKey){key=D.failingKey;document.getElementById('keysel').value=key;}
// a view can be linked: report.html#from=12.5&to=14&key=k1 (key= for all keys)
const want=new URLSearchParams(location.hash.slice(1));
if(want.has('from')&&want.has('to')){const a=parseFloat(want.get('from')),b=parseFloat(want.get('to'));
  if(isFinite(a)&&isFinite(b)&&b>a){v0=a;v1=b;}}
if(want.has('key')){key=want.get('key');document.getElementById('keysel').value=key;}
const badge=new Map(D.window.map((ix,i)=>[ix,i+1]));
const host=document.getElementById('detail');
const svg=document.createElementNS(NS,'svg');svg.setAttribute('id','timeline');
svg.setAttribute('width',W);svg.setAttribute('height',H);svg.setAttribute('viewBox',`0 0 ${W} ${H}`);
host.appendChild(svg);
function el(tag,attrs,parent,text){const e=document.createElementNS(NS,tag);for(const k in attrs)e.setAttribute(k,attrs[k]);
  if(text!==undefined)e.textContent=text;(parent||svg).appendChild(e);return e;}
function X(t){return LEFT+(t-v0)/(v1-v0)*(W-LEFT-4);}
function nice(span){const raw=span/8,p=Math.pow(10,Math.floor(Math.log10(raw)));
  for(const m of [1,2,5,10])if(m*p>=raw)return m*p;return 10*p;}
function draw(){
  while(svg.firstChild)svg.removeChild(svg.firstChild);
  el('rect',{x:0,y:0,width:W,height:H,fill:'#fff'});
  for(let i=0;i<nl;i++){const y=ltop+i*LANE;
    el('rect',{x:LEFT,y:y,width:W-LEFT,height:LANE,fill:i%2?'#f7f7f7':'#fff'});
    const ps=D.lanes[i],g=el('g',{class:'lane','data-processes':ps.join(' ')});
    el('text',{x:4,y:y+LANE/2+4},g,'p'+ps[0]+(ps.length>1?' +'+(ps.length-1):''));
    el('title',{},g,'processes '+ps.join(', '));}
  el('text',{x:4,y:ftop+11},svg,'faults');
  const step=nice(v1-v0);
  for(let t=Math.ceil(v0/step)*step;t<=v1;t+=step){const x=X(t);
    el('line',{x1:x,x2:x,y1:ltop,y2:H-AXIS+4,stroke:'#e3e3e3'});
    el('text',{x:x,y:H-6,'text-anchor':'middle'},svg,(+t.toFixed(6))+' s');}
  if(winOps.length){let a=Infinity,b=-Infinity;for(const o of winOps){a=Math.min(a,o[1]);b=Math.max(b,o[2]===null?o[1]:o[2]);}
    el('rect',{class:'window-band',x:X(a)-3,y:ftop,width:Math.max(X(b)-X(a)+6,3),height:H-AXIS-ftop,fill:WIN,'fill-opacity':0.1});}
  for(const f of D.faults){const t1=f[1]===null?D.end:f[1];if(t1<v0||f[0]>v1)continue;
    const x0=Math.max(X(f[0]),LEFT),x1=Math.min(X(t1),W),y=ftop+f[2]*FROW;
    const r=el('rect',{class:'fault',x:x0,y:y,width:Math.max(x1-x0,2),height:FROW-3,fill:'#9e86c8',rx:2});
    el('title',{},r,f[3]+' ['+f[0]+' .. '+(f[1]===null?'end':f[1])+']');
    el('line',{x1:x0,x2:x0,y1:y,y2:H-AXIS,stroke:'#9e86c8','stroke-dasharray':'2,3'});
    if(f[1]!==null&&X(t1)<=W)el('line',{x1:X(t1),x2:X(t1),y1:y,y2:H-AXIS,stroke:'#9e86c8','stroke-dasharray':'2,3'});
    if(x1-x0>40)el('text',{x:x0+3,y:y+10,fill:'#fff'},svg,f[3].slice(0,Math.floor((x1-x0-6)/6.6)));}
  let shown=0;const pending=[];
  for(const o of ops){
    const t1=o[2]===null?D.end:o[2];if(t1<v0||o[1]>v1)continue;
    if(key&&o[6]!==key)continue;
    shown++;
    const x0=X(o[1]),x1=Math.max(X(t1),x0+1.5),y=ltop+o[0]*LANE+3,h=LANE-6;
    if(o[3]==='info')el('line',{x1:x1,x2:W,y1:y+h/2,y2:y+h/2,stroke:'#e59a3c','stroke-opacity':0.6,'stroke-dasharray':'2,5'});
    const r=el('rect',{class:'op '+o[3]+(o[5]?' in-window':''),x:x0,y:y,width:x1-x0,height:h,
      fill:COL[o[3]]||'#999',stroke:o[5]?WIN:'#555','stroke-width':o[5]?2.5:(x1-x0>4?0.4:0),rx:2,'data-index':o[7]});
    el('title',{},r,'#'+o[7]+' p'+o[9]+' '+o[4]+'  ['+o[1]+' .. '+(o[2]===null?'never completed':o[2])+']'+(o[10]?'\n'+o[10]:''));
    const room=x1-x0-4,n=Math.floor(room/6.6);
    if(o[5]&&o[4].length>n){pending.push([x1,y,h,o[4]]);}
    else if(n>=3){let s=o[4].length<=n?o[4]:o[8].length<=n?o[8]:o[8].slice(0,n-1)+'…';
      el('text',{x:x0+3,y:y+h/2+4},svg,s);}
    if(o[5]){const c=el('g',{class:'badge'});el('circle',{cx:x0,cy:y,r:7,fill:WIN},c);
      el('text',{x:x0,y:y+4,'text-anchor':'middle',fill:'#fff'},c,String(badge.get(o[7])));}
  }
  // the window's operations keep their full label, beside the bar when it is too narrow
  const taken={};  // per lane row: where the last label beside a bar ends (labels never overlap)
  for(const [x,y,h,s] of pending){if(x<(taken[y]||-1e9))continue;taken[y]=x+s.length*6.6+12;
    const g=el('g',{class:'window-label'});
    el('rect',{x:x+3,y:y+1,width:s.length*6.6+6,height:h-2,fill:'#fff',stroke:WIN,rx:2},g);
    el('text',{x:x+6,y:y+h/2+4,fill:WIN},g,s);}
  document.getElementById('range').textContent=v0.toFixed(3)+' s .. '+v1.toFixed(3)+' s, '+shown+' operations';
  try{history.replaceState(null,'','#from='+v0.toFixed(4)+'&to='+v1.toFixed(4)+'&key='+encodeURIComponent(key));}catch(e){}
  const ov=document.getElementById('ov-view');
  if(ov){const ow=1100,a=(v0-D.start)/(D.end-D.start)*ow,b=(v1-D.start)/(D.end-D.start)*ow;
    ov.setAttribute('x',Math.max(a,0));ov.setAttribute('width',Math.max(Math.min(b,ow)-Math.max(a,0),2));}
}
function clamp(){const span=Math.min(Math.max(v1-v0,1e-6),(D.end-D.start)*1.2);
  if(v0<D.start-span*0.1){v0=D.start-span*0.1;}v1=v0+span;
  if(v1>D.end+span*0.1){v1=D.end+span*0.1;v0=v1-span;}}
function zoom(f,at){const c=at===undefined?(v0+v1)/2:at;v0=c-(c-v0)*f;v1=c+(v1-c)*f;clamp();draw();}
svg.addEventListener('wheel',e=>{e.preventDefault();const r=svg.getBoundingClientRect();
  const t=v0+(e.clientX-r.left-LEFT)/(W-LEFT-4)*(v1-v0);zoom(e.deltaY>0?1.25:0.8,t);},{passive:false});
let drag=null;
svg.addEventListener('mousedown',e=>{drag={x:e.clientX,v0:v0,v1:v1};host.style.cursor='grabbing';});
window.addEventListener('mouseup',()=>{drag=null;host.style.cursor='';});
window.addEventListener('mousemove',e=>{if(!drag)return;const dt=(e.clientX-drag.x)/(W-LEFT-4)*(drag.v1-drag.v0);
  v0=drag.v0-dt;v1=drag.v1-dt;clamp();draw();});
document.getElementById('fit').onclick=()=>{v0=D.start;v1=D.end;draw();};
const tw=document.getElementById('towin');if(tw)tw.onclick=()=>{[v0,v1]=winRange();draw();};
document.getElementById('zin').onclick=()=>zoom(0.5);
document.getElementById('zout').onclick=()=>zoom(2);
document.getElementById('keysel').onchange=e=>{key=e.target.value;draw();};
const ovs=document.getElementById('overview');
if(ovs)ovs.addEventListener('click',e=>{const r=ovs.getBoundingClientRect();
  const t=D.start+(e.clientX-r.left)/r.width*(D.end-D.start),span=v1-v0;v0=t-span/2;v1=t+span/2;clamp();draw();});
draw();
})();
"""
