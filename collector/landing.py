"""The landing page: the snapshot's figures and the sources' health as HTML with inline SVG.

Pure: plain data in, HTML bytes out, no I/O and no clock reads. The page is HTML and SVG
only (no script, nothing from another host), so it passes the strict Content-Security-Policy
of :mod:`collector.server`. Its figures come from the snapshot
(:class:`collector.pagefigures.PageFigures`, computed with the metrics), never the store.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo

from collector import __version__
from collector.health import SourceState
from collector.pagefigures import (
    WINDOWS,
    ChannelView,
    DayPoint,
    PageFigures,
    Row,
    WindowFigures,
    status,
)
from collector.snapshot import Snapshot

if TYPE_CHECKING:
    from collector.runtime import Exporter

STATUS_WORDS = {"in band": "in band", "above": "above band", "below": "below band"}
STATUS_CLASS = {"in band": "in", "above": "above", "below": "below", "": "none"}

# A wall screen reloads the page once per recompute (no script needed), at most this often.
MIN_REFRESH_SECONDS = 10

# Chart geometry (SVG user units).
WIDTH, HEIGHT = 760, 230
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 34

STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:#202124;margin:0;background:#f6f7f9}
header{background:#1f3b57;color:#fff;padding:1em 2em}
header h1{margin:0 0 .2em;font-size:1.5em}
header p{margin:0;color:#d7e3ef}
header a{color:#fff}
main{max-width:1180px;margin:0 auto;padding:1em 2em 3em}
section{background:#fff;border:1px solid #dadce0;border-radius:8px;padding:1em 1.4em;margin:1.2em 0}
h2{margin:.2em 0 .1em;font-size:1.3em}
p.band{margin:0 0 .8em;color:#5f6368}
table{border-collapse:collapse;width:100%}
th,td{padding:.45em .7em;text-align:left;vertical-align:top;border-bottom:1px solid #e8eaed}
th{font-weight:600;color:#5f6368;font-size:.9em}
td.num,th.num{text-align:right}
td.name,.nw{white-space:nowrap}
tr.total td{font-weight:600;background:#f8f9fa}
.cpc{font-size:1.15em;font-variant-numeric:tabular-nums}
.small{display:block;color:#5f6368;font-size:.82em;font-weight:400}
.st{display:inline-block;border-radius:10px;padding:0 .55em;font-size:.8em;font-weight:600;
margin-left:.35em;white-space:nowrap}
.st-in{background:#e6f4ea;color:#137333}
.st-above{background:#fce8e6;color:#a50e0e}
.st-below{background:#fef3d6;color:#8a4b00}
.st-none{background:#f1f3f4;color:#5f6368}
.up{color:#137333;font-weight:600}.down{color:#a50e0e;font-weight:600}.idle{color:#5f6368}
figure{margin:1em 0 0}
figcaption{color:#5f6368;font-size:.85em}
svg text{font:11px system-ui,Arial,sans-serif;fill:#5f6368}
.waiting{font-size:1.1em}
"""


class SourceRow(NamedTuple):
    """One configured source as the page lists it."""

    name: str
    adapter: str
    state: SourceState


def contacts(count: float) -> str:
    return f"{count:,.0f} contact" + ("" if count == 1 else "s")


def money(value: float, currency: str) -> str:
    return f"{value:,.2f} {html.escape(currency)}"


def duration_words(seconds: float) -> str:
    """Handle time for people: '5 min 55 s', '42 s', '1 h 02 min'."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def local_time(timestamp: float, tz: ZoneInfo, never: str = "never") -> str:
    if timestamp <= 0:
        return never
    return datetime.fromtimestamp(timestamp, tz).strftime("%Y-%m-%d %H:%M:%S")


def _chip(state: str) -> str:
    if not state:
        return '<span class="st st-none">no contacts</span>'
    return f'<span class="st st-{STATUS_CLASS[state]}">{STATUS_WORDS[state]}</span>'


def _item(text: str) -> str:
    """One figure under the cost per contact, never broken across lines."""
    return f'<span class="nw">{text}</span>'


def _percent(value: float | None) -> str:
    return f"{value * 100:.1f}%" if value is not None else "&mdash;"


class Shown(NamedTuple):
    """Which of the optional figures a channel's rows show (those its contacts have)."""

    service_level: bool
    fcr: bool

    @classmethod
    def of(cls, view: ChannelView) -> Shown:
        windows = view.total.windows.values()
        return cls(any(w.sl_offered > 0 for w in windows), any(w.identified > 0 for w in windows))


def _cell(figures: WindowFigures, view: ChannelView, currency: str, shown: Shown) -> str:
    cpc = figures.cost_per_contact
    state = status(cpc, view.low, view.high)
    if cpc is None:
        return f"<td>&mdash; {_chip(state)}<span class=\"small\">0 contacts</span></td>"
    details = [contacts(figures.contacts)]
    aht = figures.average_handle_seconds
    if aht is not None:
        details.append(f"AHT {duration_words(aht)}")
    if shown.service_level:
        details.append(f"SL {_percent(figures.service_level)}")
    if shown.fcr:
        details.append(f"FCR {_percent(figures.first_contact_resolution)}")
    return (f'<td><span class="cpc">{money(cpc, currency)}</span>{_chip(state)}'
            f'<span class="small">{" &middot; ".join(map(_item, details))}</span></td>')


def _row(row: Row, view: ChannelView, currency: str, shown: Shown, total: bool) -> str:
    name = f"All {html.escape(row.channel)}" if total else f"queue {html.escape(row.queue)}"
    cells = "".join(
        _cell(row.windows[label], view, currency, shown) for _, label in WINDOWS
    )
    css = ' class="total"' if total else ""
    return f'<tr{css}><td class="name">{name}</td>{cells}</tr>'


def _y(value: float, top: float) -> float:
    """SVG y of a cost per contact on a 0..top scale."""
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - min(value, top) / top)


def chart(view: ChannelView, currency: str) -> str:
    """The channel's daily cost per contact against its band, one mark per day."""
    days: Sequence[DayPoint] = view.days
    values = [d.cost_per_contact for d in days]
    top = max([view.high * 1.25, *[v * 1.1 for v in values if v is not None]])
    inner = WIDTH - LEFT - RIGHT
    step = inner / max(len(days) - 1, 1)
    xs = [LEFT + i * step for i in range(len(days))]
    base = _y(0, top)
    parts = [
        f'<rect x="{LEFT}" y="{_y(view.high, top):.1f}" width="{inner}" '
        f'height="{_y(view.low, top) - _y(view.high, top):.1f}" fill="#e6f4ea"/>',
        f'<line x1="{LEFT}" y1="{base:.1f}" x2="{WIDTH - RIGHT}" y2="{base:.1f}" '
        'stroke="#9aa0a6"/>',
    ]
    edges = (view.low, view.high)
    for edge, label in zip(edges, ("low", "high"), strict=True):
        y = _y(edge, top)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" '
                     'stroke="#34a853" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{edge:.2f}</text>')
        parts.append(f'<text x="{WIDTH - RIGHT - 2}" y="{y - 3:.1f}" text-anchor="end">'
                     f'band {label}</text>')
    parts.append(f'<text x="{LEFT - 6}" y="{base + 4:.1f}" text-anchor="end">0</text>')
    highest = max((v for v in values if v is not None), default=None)
    if highest is not None and min(abs(_y(highest, top) - _y(e, top)) for e in edges) > 12:
        parts.append(f'<text x="{LEFT - 6}" y="{_y(highest, top) + 4:.1f}" text-anchor="end">'
                     f'{highest:.2f}</text>')  # the highest day, where no band label is
    # The line, broken where a day has no handled contacts.
    path: list[str] = []
    pen_down = False
    for x, v in zip(xs, values, strict=True):
        if v is None:
            pen_down = False
            continue
        path.append(f"{'L' if pen_down else 'M'}{x:.1f} {_y(v, top):.1f}")
        pen_down = True
    if path:
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="#1a73e8" '
                     'stroke-width="2"/>')
    colours = {"in band": "#1e8e3e", "above": "#d93025", "below": "#e37400"}
    for x, day in zip(xs, days, strict=True):
        v = day.cost_per_contact
        when = day.day.strftime("%a %d %b %Y")
        if v is None:
            parts.append(f'<circle class="day none" cx="{x:.1f}" cy="{base:.1f}" r="3.5" '
                         f'fill="#fff" stroke="#9aa0a6"><title>{when}: no handled contacts'
                         '</title></circle>')
            continue
        state = status(v, view.low, view.high)
        parts.append(
            f'<circle class="day {STATUS_CLASS[state]}" cx="{x:.1f}" cy="{_y(v, top):.1f}" '
            f'r="4" fill="{colours[state]}"><title>{when}: {money(v, currency)} per contact, '
            f'{contacts(day.contacts)} ({STATUS_WORDS[state]})</title></circle>'
        )
    for i in sorted({0, 7, 14, 21, len(days) - 1}):
        if i < len(days):
            label = "today" if i == len(days) - 1 else days[i].day.strftime("%d %b")
            parts.append(f'<text x="{xs[i]:.1f}" y="{HEIGHT - BOTTOM + 18}" '
                         f'text-anchor="middle">{label}</text>')
    name = html.escape(view.channel)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" data-channel="{name}" '
        f'aria-label="Daily cost per contact, {name}, last {len(days)} days">'
        + "".join(parts) + "</svg>"
    )


def _channel(view: ChannelView, currency: str) -> str:
    name = html.escape(view.channel)
    heads = "".join(f"<th>{label}</th>" for _, label in WINDOWS)
    shown = Shown.of(view)
    rows = [_row(view.total, view, currency, shown, total=True)]
    rows += [_row(q, view, currency, shown, total=False) for q in view.queues]
    first, last = view.days[0].day, view.days[-1].day
    return f"""<section id="channel-{name}">
<h2>{name.capitalize()}</h2>
<p class="band">Cost per contact against the band {money(view.low, currency)} &ndash;
{money(view.high, currency)}: <span class="st st-in">in band</span>
<span class="st st-above">above band</span> <span class="st st-below">below band</span></p>
<table><tr><th></th>{heads}</tr>
{"".join(rows)}
</table>
<figure>{chart(view, currency)}
<figcaption>Daily cost per contact ({html.escape(currency)}), {first:%d %b} &ndash; {last:%d %b}
(today up to now); shaded: the band. A hollow mark on the axis is a day without handled
contacts.</figcaption></figure>
</section>"""


def _sources(sources: Sequence[SourceRow], stored: Mapping[str, int] | None, tz: ZoneInfo) -> str:
    rows = []
    for name, adapter, state in sorted(sources):
        if state.up:
            word = '<span class="up">up</span>'
        elif state.last_run:
            word = '<span class="down">down</span>'
        else:
            word = '<span class="idle">not read yet</span>'
        count = f"{stored.get(name, 0):,}" if stored is not None else "&mdash;"
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(adapter)}</td><td>{word}</td>"
            f"<td>{local_time(state.last_success, tz)}</td>"
            f"<td>{local_time(state.last_record, tz, 'none')}</td>"
            f'<td class="num">{count}</td>'
            f'<td class="num">{sum(state.rejected.values()):,}</td>'
            f"<td>{html.escape(state.last_error)}</td></tr>"
        )
    return (
        '<section id="sources"><h2>Sources</h2><table><tr><th>source</th><th>adapter</th>'
        "<th>status</th><th>last successful read</th><th>newest contact</th>"
        '<th class="num">stored contacts</th><th class="num">rejected since start</th>'
        "<th>last error</th></tr>" + "".join(rows) + "</table></section>"
    )


def render_page(
    snapshot: Snapshot | None,
    sources: Sequence[SourceRow],
    *,
    currency: str,
    timezone: str,
    interval_seconds: float,
    telemetry_path: str = "/metrics",
) -> bytes:
    """The whole landing page as UTF-8 bytes."""
    page: PageFigures | None = snapshot.page if snapshot is not None else None
    tz = ZoneInfo(timezone)
    path = html.escape(telemetry_path)
    if snapshot is None:
        facts = "Waiting for the first recompute."
    else:
        as_of = (page.moment.strftime("%Y-%m-%d %H:%M") if page is not None
                 else local_time(snapshot.computed_at, tz))
        facts = (f"Figures as of {as_of}, recomputed every {interval_seconds:g} s "
                 f"(last in {snapshot.duration * 1000:.1f} ms, {snapshot.series} series).")
    if page is not None:
        terms = ["AHT: average handle time"]
        if page.has_service_level:
            terms.append("SL: service level, answered within the threshold of those offered")
        if page.has_fcr:
            terms.append("FCR: first contact resolution")
        body = (f'<p class="band">{" &middot; ".join(terms)}.</p>'
                + "".join(_channel(v, currency) for v in page.channels))
        if not page.channels:
            body = '<section><p class="waiting">No contacts stored yet.</p></section>'
    elif snapshot is None:
        body = '<section><p class="waiting">Waiting for the first recompute.</p></section>'
    else:
        body = ""
    stored = page.stored if page is not None else None
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{max(round(interval_seconds), MIN_REFRESH_SECONDS)}">
<title>Contact-center cost</title>
<style>{STYLE}</style>
</head><body>
<header><h1>Contact-center cost</h1>
<p>Money in <strong>{html.escape(currency)}</strong> &middot; time zone
<strong>{html.escape(timezone)}</strong> &middot; {html.escape(facts)}</p>
<p><a href="{path}">Metrics</a> &middot; <a href="/healthz">Health</a> &middot;
contact-cost-exporter, Version {__version__}</p></header>
<main>
{body}
{_sources(sources, stored, tz)}
</main>
</body></html>
"""
    return text.encode("utf-8")


class LandingPage:
    """Renders the page once per new snapshot or health change, and serves the bytes after."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[object, ...] = ()
        self._body = b""

    def body(self, exporter: Exporter, telemetry_path: str) -> bytes:
        # Each part is replaced whole when it changes, so identity says "unchanged".
        key = (exporter.snapshots.current, exporter.health.rendered, exporter.config,
               telemetry_path)
        with self._lock:
            if len(self._key) == len(key) and all(
                a is b for a, b in zip(key, self._key, strict=True)
            ):
                return self._body
        body = landing_page_bytes(exporter, telemetry_path)
        with self._lock:
            self._key, self._body = key, body
        return body


def source_rows(exporter: Exporter) -> list[SourceRow]:
    adapters = exporter.adapters
    return [
        SourceRow(name, adapters[name].settings.adapter if name in adapters else "", state)
        for name, state in exporter.health.sources().items()
    ]


def landing_page_bytes(exporter: Exporter, telemetry_path: str) -> bytes:
    settings = exporter.settings
    return render_page(
        exporter.snapshots.current,
        source_rows(exporter),
        currency=settings.currency,
        timezone=settings.timezone,
        interval_seconds=settings.interval.total_seconds(),
        telemetry_path=telemetry_path,
    )


def landing_page(exporter: Exporter, telemetry_path: str) -> str:
    """The page as text (tests and callers that want a str)."""
    return landing_page_bytes(exporter, telemetry_path).decode("utf-8")
