"""The landing page's figures and HTML: hand-computed cost per contact, status, the 30-day chart."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.config import Band, Benchmark, CostItem, Settings
from collector.costing import compute_figures
from collector.health import SourceState
from collector.landing import SourceRow, render_page
from collector.model import Rollup
from collector.pagefigures import CHART_DAYS, PageFigures, page_figures, status
from collector.runtime import Exporter, LoadedConfig
from collector.snapshot import build_snapshot

# Thursday 26 November 2026, 12:00 UTC: half of today has passed (zone UTC, no service hours).
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
TODAY = NOW.date()



def rollup(day: date, queue: str, handled: int, handle: float, channel: str = "voice") -> Rollup:
    return Rollup(day, channel, "inbound", queue, "", handled, handled, handle, handle, 0.0, 0.0)


def settings(tmp_path: Path) -> Settings:
    return Settings(
        store=tmp_path / "s.db",
        currency="EUR",
        timezone="UTC",
        # 100 EUR a day, shared by handle time (the default).
        costs=[CostItem.model_validate({"name": "rent", "component": "facilities",
                                        "amount": 100, "per": "day"})],
        benchmark=Benchmark(low=2.0, high=6.0, channels={"email": Band(low=1.0, high=3.0)}),
    )


ROLLUPS = [
    rollup(TODAY, "support", 10, 3000),
    rollup(TODAY, "sales", 15, 3000),
    rollup(TODAY - timedelta(days=1), "support", 20, 4000),  # Wednesday 25th
    rollup(date(2026, 10, 15), "support", 50, 5000),  # previous month, outside the chart
]


def figures(tmp_path: Path) -> PageFigures:
    s = settings(tmp_path)
    return page_figures(s, compute_figures(s, ROLLUPS, NOW), ROLLUPS, NOW, {"pbx": 95})


def test_figures_per_channel_and_queue_by_hand(tmp_path: Path) -> None:
    page = figures(tmp_path)
    assert [c.channel for c in page.channels] == ["voice"]
    voice = page.channels[0]
    assert (voice.low, voice.high) == (2.0, 6.0)
    assert [q.queue for q in voice.queues] == ["sales", "support"]
    total, sales, support = voice.total.windows, voice.queues[0].windows, voice.queues[1].windows
    # Today: 100 x 0.5 = 50 EUR accrued, by handle time 3000:3000 -> 25 support, 25 sales.
    assert total["Today"].cost == pytest.approx(50)
    assert total["Today"].contacts == 25
    assert total["Today"].cost_per_contact == pytest.approx(2.0)  # 50 / 25, on the low edge
    assert support["Today"].cost_per_contact == pytest.approx(2.5)  # 25 / 10
    assert sales["Today"].cost_per_contact == pytest.approx(25 / 15)  # 1.67: below 2.0
    assert total["Today"].average_handle_seconds == pytest.approx(240)  # 6000 s / 25
    assert support["Today"].average_handle_seconds == pytest.approx(300)  # 3000 / 10
    # Week to date, Mon 23 .. Thu 26 noon: 3.5 days = 350 EUR over 45 contacts; by handle
    # time support 7000 s of 10000 -> 245, sales 3000 s -> 105.
    assert total["Week to date"].cost_per_contact == pytest.approx(350 / 45)  # 7.78
    assert support["Week to date"].cost_per_contact == pytest.approx(245 / 30)
    assert sales["Week to date"].cost_per_contact == pytest.approx(105 / 15)
    # Month to date: 25.5 days = 2550 EUR over the same 45 contacts.
    assert total["Month to date"].cost_per_contact == pytest.approx(2550 / 45)
    # October: 31 days = 3100 EUR over 50 contacts, all support; sales had none.
    assert total["Previous month"].cost_per_contact == pytest.approx(62.0)
    assert sales["Previous month"].cost_per_contact is None
    assert sales["Previous month"].contacts == 0
    assert page.stored == {"pbx": 95}
    assert not page.has_service_level
    assert (page.currency, page.timezone) == ("EUR", "UTC")


def test_the_chart_has_thirty_days_and_today_equals_the_today_figure(tmp_path: Path) -> None:
    voice = figures(tmp_path).channels[0]
    days = voice.days
    assert len(days) == CHART_DAYS == 30
    assert days[0].day == date(2026, 10, 28) and days[-1].day == TODAY  # 30 days inclusive
    assert days[-1].cost_per_contact == pytest.approx(2.0)  # 50 / 25, as "Today"
    assert days[-1].cost_per_contact == pytest.approx(voice.total.windows["Today"].cost_per_contact)
    assert days[-2].cost_per_contact == pytest.approx(5.0)  # 100 / 20 on Wednesday
    assert all(d.cost_per_contact is None for d in days[:-2])  # no handled contacts
    assert all(d.cost == 0 for d in days[:-2])


def test_service_level_and_fcr_sum_parts_over_the_sets_with_a_wait(tmp_path: Path) -> None:
    # Today, voice: support has waits (12 offered-or-not, 10 handled, 8 within the threshold,
    # 1 short abandon) and 10 identified customers, 2 of them repeats; sales has no wait
    # known and no customer keys, so it takes no part in either ratio.
    support = Rollup(TODAY, "voice", "inbound", "support", "", 12, 10, 3000, 3000, 0.0, 0.0,
                     waited=12, wait_seconds=100, answered_in_threshold=8, abandoned_short=1,
                     identified=10, repeats=2)
    sales = rollup(TODAY, "sales", 15, 3000)
    s = settings(tmp_path)
    page = page_figures(s, compute_figures(s, [support, sales], NOW), [support, sales], NOW)
    assert page.has_service_level and page.has_fcr
    voice = page.channels[0]
    today = voice.total.windows["Today"]
    # 8 / (10 handled + 2 abandoned - 1 short) = 8 / 11; averaging the queues' ratios
    # (8/11 and none) or counting sales' 15 would give something else.
    assert today.service_level == pytest.approx(8 / 11)
    assert today.first_contact_resolution == pytest.approx(0.8)  # 1 - 2 / 10
    sales_today = voice.queues[0].windows["Today"]
    assert sales_today.service_level is None and sales_today.first_contact_resolution is None
    info = {"currency": "EUR", "timezone": "UTC", "version": "x"}
    text = render_page(build_snapshot([], info, NOW.timestamp(), 0.0, page), [], currency="EUR",
                       timezone="UTC", interval_seconds=60).decode()
    def items(*texts: str) -> str:
        return " &middot; ".join(f'<span class="nw">{t}</span>' for t in texts)

    assert items("25 contacts", "AHT 4 min 00 s", "SL 72.7%", "FCR 80.0%") in text
    assert items("15 contacts", "AHT 3 min 20 s", "SL &mdash;", "FCR &mdash;") in text
    assert "SL: service level" in text


def test_the_chart_days_are_local_days_across_a_clock_change(tmp_path: Path) -> None:
    """30 local days up to 10 November 2026 in Oslo hold 25 October (25 hours long) once."""
    oslo = settings(tmp_path).model_copy(update={"timezone": "Europe/Oslo"})
    now = datetime(2026, 11, 10, 12, tzinfo=ZoneInfo("Europe/Oslo"))
    days = [date(2026, 10, 1) + timedelta(days=n) for n in range(41)]
    rollups = [rollup(day, "support", 10, 600) for day in days]
    voice = page_figures(oslo, compute_figures(oslo, rollups, now), rollups, now).channels[0]
    assert [p.day for p in voice.days] == days[11:]  # 12 Oct .. 10 Nov, each once
    # 100 EUR a day whatever its length: 10.00 per contact; today up to noon: 50 / 10.
    assert [p.cost_per_contact for p in voice.days[:-1]] == pytest.approx([10.0] * 29)
    assert voice.days[-1].cost_per_contact == pytest.approx(5.0)  # 12 of 24 hours


def test_status_edges_are_in_band() -> None:
    assert status(2.0, 2.0, 6.0) == "in band"
    assert status(6.0, 2.0, 6.0) == "in band"
    assert status(1.99, 2.0, 6.0) == "below"
    assert status(6.01, 2.0, 6.0) == "above"
    assert status(None, 2.0, 6.0) == ""


def page_html(tmp_path: Path, sources: list[SourceRow] | None = None) -> str:
    page = figures(tmp_path)
    snapshot = build_snapshot([], {"currency": "EUR", "timezone": "UTC", "version": "x"},
                              NOW.timestamp(), 0.0123, page)
    body = render_page(snapshot, sources or [], currency="EUR", timezone="UTC",
                       interval_seconds=60)
    return body.decode()


def test_page_shows_figures_status_words_and_colours(tmp_path: Path) -> None:
    text = page_html(tmp_path)
    assert "Money in <strong>EUR</strong>" in text
    assert "time zone\n<strong>UTC</strong>" in text
    assert "Figures as of 2026-11-26 12:00" in text
    assert '<meta http-equiv="refresh" content="60">' in text  # once per recompute
    # The channel row, today: 2.00 EUR in band (green class), week 7.78 above (red class).
    assert '<span class="cpc">2.00 EUR</span><span class="st st-in">in band</span>' in text
    assert '<span class="cpc">7.78 EUR</span><span class="st st-above">above band</span>' in text
    # Sales today 1.67: below band (amber class); its previous month has no contacts.
    assert '<span class="cpc">1.67 EUR</span><span class="st st-below">below band</span>' in text
    assert "no contacts</span><span class=\"small\">0 contacts</span>" in text
    # 6000 s / 25 = 240 s
    assert '<span class="nw">25 contacts</span> &middot; <span class="nw">AHT 4 min 00 s' in text
    assert "queue support" in text and "All voice" in text
    assert "SL " not in text  # no service-level parts in the samples: no column of dashes


def test_chart_svg_one_mark_per_day_and_band(tmp_path: Path) -> None:
    text = page_html(tmp_path)
    svgs = re.findall(r"<svg .*?</svg>", text, re.S)
    assert len(svgs) == 1
    svg = svgs[0]
    marks = re.findall(r'<circle class="day (\w+)"', svg)
    assert len(marks) == 30
    assert marks.count("none") == 28  # days without handled contacts sit on the axis
    assert marks[-2:] == ["in", "in"]  # Wednesday 5.00 and today 2.00 in the 2-6 band
    assert "Wed 25 Nov 2026: 5.00 EUR per contact, 20 contacts (in band)" in svg
    assert svg.count("<path ") == 1  # one line through the two days with values
    assert "band high" in svg and "band low" in svg


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes += [(name, value or "") for name, value in attrs]


def test_page_is_html_and_svg_only(tmp_path: Path) -> None:
    parser = _Tags()
    parser.feed(page_html(tmp_path))
    assert not parser.tags & {"script", "iframe", "img", "link", "object", "embed", "form"}
    assert not [name for name, _ in parser.attributes if name.startswith("on")]
    # links stay on this host; the only URL with a scheme is the SVG namespace name
    assert [v for n, v in parser.attributes if n == "href"] == ["/metrics", "/healthz"]
    assert [v for _, v in parser.attributes if "://" in v] == ["http://www.w3.org/2000/svg"]


def test_names_are_escaped(tmp_path: Path) -> None:
    state = SourceState(60, up=0, last_run=1.0, last_error="<b>boom</b>")
    text = page_html(tmp_path, [SourceRow("<x>", "csv", state)])
    assert "<x>" not in text and "&lt;x&gt;" in text
    assert "&lt;b&gt;boom&lt;/b&gt;" in text
    assert '<span class="down">down</span>' in text


def test_sources_table(tmp_path: Path) -> None:
    # last read 2026-11-26 11:59:30 UTC; newest contact 11:50:00; 3 rejected of two reasons
    state = SourceState(60, up=1, last_success=NOW.timestamp() - 30, last_run=NOW.timestamp() - 30,
                        last_record=NOW.timestamp() - 600)
    state.rejected.update({"time": 2, "shape": 1})
    text = page_html(tmp_path, [SourceRow("pbx", "asterisk_cdr", state),
                                SourceRow("chat", "csv", SourceState(60))])
    assert ("<tr><td>pbx</td><td>asterisk_cdr</td><td><span class=\"up\">up</span></td>"
            "<td>2026-11-26 11:59:30</td><td>2026-11-26 11:50:00</td>"
            '<td class="num">95</td><td class="num">3</td><td></td></tr>') in text
    # never read, nothing stored: not read yet, never, none, 0
    assert ("<tr><td>chat</td><td>csv</td><td><span class=\"idle\">not read yet</span></td>"
            "<td>never</td><td>none</td>") in text


def test_waiting_page_before_the_first_recompute() -> None:
    text = render_page(None, [], currency="USD", timezone="Europe/Oslo",
                       interval_seconds=60).decode()
    assert "Waiting for the first recompute." in text
    assert "Europe/Oslo" in text and "<strong>USD</strong>" in text


def test_the_exporter_page_is_rendered_once_per_snapshot(tmp_path: Path) -> None:
    """The served bytes come from the snapshot: no store read at request time."""
    from collector.landing import LandingPage

    exporter = Exporter(LoadedConfig(settings(tmp_path), (), "test"))
    try:
        exporter.recompute(NOW)
        cache = LandingPage()
        first = cache.body(exporter, "/metrics")
        exporter.store.close()  # a request that read the store would fail now
        assert cache.body(exporter, "/metrics") is first
        assert b"No contacts stored yet." in first
        assert b"Figures as of 2026-11-26 12:00" in first
    finally:
        exporter.close()


class _CountedStore:
    """A store whose count takes `took` seconds of a fake clock."""

    def __init__(self, clock: list[float], took: float) -> None:
        self.clock, self.took, self.calls = clock, took, 0

    def counts(self) -> dict[str, int]:
        self.calls += 1
        self.clock[0] += self.took
        return {"pbx": self.calls}


def test_stored_contacts_are_recounted_within_one_percent_of_the_time() -> None:
    from collector.storedcounts import stored_counts

    clock = [1000.0]
    store = _CountedStore(clock, took=0.5)  # a count of a large store: 0.5 s

    def now() -> float:
        return clock[0]

    assert stored_counts(store, now) == {"pbx": 1}  # type: ignore[arg-type]  # first: counted
    clock[0] += 48.0  # 48.5 s after the first count began: under 0.5 / 0.01 = 50 s
    assert stored_counts(store, now) == {"pbx": 1}  # type: ignore[arg-type]
    clock[0] += 1.6  # 50.1 s: recounted
    assert stored_counts(store, now) == {"pbx": 2}  # type: ignore[arg-type]
    assert store.calls == 2
    small = _CountedStore(clock, took=0.005)  # 5 ms: every recompute 0.5 s apart
    assert stored_counts(small, now) == {"pbx": 1}  # type: ignore[arg-type]
    clock[0] += 0.5
    assert stored_counts(small, now) == {"pbx": 2}  # type: ignore[arg-type]
