"""The HTML report's load-step section: per ``load`` step, its figures, latency over time and a
latency histogram (inline SVG from ``consim.bench.plots``), from the step's recorded samples."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from consim.bench.plots import histogram_svg, over_time_svg
from consim.bench.stats import format_summary

if TYPE_CHECKING:
    from consim.scenario.runner import RunResult


def render_load_steps(result: RunResult) -> str:
    """One ``<section>`` per load step that recorded latencies ("" when there is none)."""
    parts = []
    for st in result.steps:
        if st.load is None:
            continue
        samples = [(sent - result.start_time, lat) for sent, lat in st.load.get("samples", [])]
        title = f"step {st.number}: {st.description}"
        parts.append(
            f'<section class="load" id="load-step-{st.number}"><h2>{html.escape(title)}</h2>'
            f"<p>{st.load['requests']} answered; {html.escape(format_summary(st.load))}</p>"
        )
        if samples:
            parts.append(over_time_svg({"answered": samples}, "latency over time"))
            parts.append(histogram_svg([lat for _, lat in samples], "latency histogram"))
        parts.append("</section>")
    return "".join(parts)
