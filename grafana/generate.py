"""Generate the Grafana dashboards for contact-cost-exporter as JSON, from plain Python dicts.

The JSON under grafana/dashboards/ is committed and is what Grafana loads; this script is
its source of truth. After editing, run:

    python grafana/generate.py            # rewrite the JSON
    python grafana/generate.py --check    # exit 1 if the committed JSON is out of date

Money panels carry a Grafana currency unit. The exporter's currency is a config value
(`currency = "USD"`), so pass `--currency EUR` (any code Grafana knows as currencyXXX)
to generate dashboards for another currency.

Colouring by the benchmark band: Grafana thresholds are static numbers, but the band is
a per-channel value from the exporter. Each cost-per-contact stat is therefore split by
PromQL into three queries (below, inside, above the band, joined on channel with
channel:contactcenter_benchmark_low:min / _high:max); exactly one of them returns a
value, and an override gives each query its colour. No band number is written here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"
DEFAULT_CURRENCY = "USD"
DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39

BAND_STATES = (
    # refId suffix, colour, PromQL comparison against the band (on channel)
    ("BELOW", "blue", "{q} < on (channel) group_left () channel:contactcenter_benchmark_low:min"),
    (
        "IN",
        "green",
        (
            "({q} >= on (channel) group_left () channel:contactcenter_benchmark_low:min)"
            " <= on (channel) group_left () channel:contactcenter_benchmark_high:max"
        ),
    ),
    ("ABOVE", "red", "{q} > on (channel) group_left () channel:contactcenter_benchmark_high:max"),
)
WINDOWS_NOW = (
    ("DAY", "day", "today"),
    ("WEEK", "week", "week to date"),
    ("MONTH", "month", "month to date"),
)

# Filters from the template variables. Series without a channel or queue label (outcomes,
# unallocated cost) must not get the channel filter.
F_CQ = 'channel=~"$channel",queue=~"$queue"'
F_PW = 'period="$period",window="$window"'


def target(ref: str, expr: str, legend: str, instant: bool = False) -> dict[str, Any]:
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    grid: tuple[int, int, int, int],
    unit: str,
    options: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    defaults: dict[str, Any] | None = None,
) -> dict[str, Any]:
    x, y, w, h = grid
    field_defaults: dict[str, Any] = {
        "unit": unit,
        "color": {
            "mode": "palette-classic" if kind in ("timeseries", "barchart") else "thresholds"
        },
        "thresholds": {"mode": "absolute", "steps": [{"color": "text", "value": None}]},
    }
    field_defaults.update(defaults or {})
    return {
        "datasource": DS,
        "description": description,
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "options": options or {},
        "targets": targets,
        "title": title,
        "type": kind,
    }


def stat_options(text_mode: str = "value_and_name", color_mode: str = "value") -> dict[str, Any]:
    return {
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": text_mode,
    }


def timeseries_options() -> dict[str, Any]:
    return {
        "legend": {"calcs": ["lastNotNull"], "displayMode": "table", "placement": "right"},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }


def fixed_colour(matcher: dict[str, Any], colour: str) -> dict[str, Any]:
    return {
        "matcher": matcher,
        "properties": [{"id": "color", "value": {"fixedColor": colour, "mode": "fixed"}}],
    }


def band_stat(
    title: str,
    description: str,
    base: dict[str, str],
    legend: str,
    grid: tuple[int, int, int, int],
    money: str,
) -> dict[str, Any]:
    """A stat whose every value is coloured by where it sits in its channel's band."""
    targets = []
    overrides = []
    for ref, _period, label in WINDOWS_NOW:
        for suffix, colour, template in BAND_STATES:
            ref_id = f"{ref}_{suffix}"
            targets.append(
                target(ref_id, template.format(q=base[ref]), legend.format(label=label), True)
            )
            overrides.append(fixed_colour({"id": "byFrameRefID", "options": ref_id}, colour))
    return panel("stat", title, description, targets, grid, money, stat_options(), overrides)


def cost_per_contact_by(by: str, period: str, window: str, filters: str) -> str:
    sel = f'period="{period}",window="{window}",{filters}'
    return (
        f"sum by ({by}) (contactcenter_cost{{{sel}}})\n"
        f"  / (sum by ({by}) (contactcenter_contacts{{{sel}}}) > 0)"
    )


def variables(with_cost_filters: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {
            "current": {},
            "description": "The Prometheus that scrapes contact-cost-exporter.",
            "hide": 0,
            "label": "Data source",
            "name": "datasource",
            "options": [],
            "query": "prometheus",
            "refresh": 1,
            "regex": "",
            "type": "datasource",
        }
    ]
    if with_cost_filters:
        out += [
            custom(
                "period",
                "Period",
                ["day", "week", "month", "quarter", "year"],
                "month",
                "Calendar period of the figures, in the exporter's time zone.",
            ),
            custom(
                "window",
                "Window",
                ["current", "previous"],
                "current",
                "current: period to date; previous: the last complete period.",
            ),
            query_var(
                "channel",
                "Channel",
                "label_values(contactcenter_contacts, channel)",
                "Channels to include (voice, email, ...).",
            ),
            query_var(
                "queue",
                "Queue",
                'label_values(contactcenter_contacts{channel=~"$channel"}, queue)',
                "Queues to include.",
            ),
        ]
    else:
        out.append(
            query_var(
                "source",
                "Source",
                "label_values(contactcenter_source_up, source)",
                "Sources (export files, APIs) to include.",
            )
        )
    return out


def custom(
    name: str, label: str, values: list[str], default: str, description: str
) -> dict[str, Any]:
    return {
        "current": {"selected": True, "text": default, "value": default},
        "description": description,
        "hide": 0,
        "label": label,
        "name": name,
        "options": [{"selected": v == default, "text": v, "value": v} for v in values],
        "query": ",".join(values),
        "type": "custom",
    }


def query_var(name: str, label: str, query: str, description: str) -> dict[str, Any]:
    return {
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": DS,
        "definition": query,
        "description": description,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }


def dashboard(
    uid: str, title: str, description: str, panels: list[dict[str, Any]], cost: bool
) -> dict[str, Any]:
    for number, item in enumerate(panels, start=1):
        item["id"] = number
    return {
        "annotations": {"list": []},
        "description": description,
        "editable": True,
        "graphTooltip": 1,
        "links": [
            {
                "asDropdown": False,
                "includeVars": True,
                "keepTime": True,
                "tags": ["contact-cost"],
                "title": "Contact cost",
                "type": "dashboards",
            }
        ],
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["contact-cost"],
        "templating": {"list": variables(cost)},
        "time": {"from": "now-30d" if cost else "now-24h", "to": "now"},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
    }


def overview(currency: str) -> dict[str, Any]:
    money = f"currency{currency}"
    per_channel = {
        ref: cost_per_contact_by("channel", period, "current", F_CQ)
        for ref, period, _ in WINDOWS_NOW
    }
    # The whole center has no channel: compare it with the default band.
    center_base = {
        ref: f'label_replace(period_window:contactcenter_cost_per_contact:ratio{{period="{period}",window="current"}},'
        ' "channel", "default", "", "")'
        for ref, period, _ in WINDOWS_NOW
    }
    sel = f"{F_PW},{F_CQ}"
    panels = [
        band_stat(
            "Cost per contact by channel, now",
            "Cost per handled contact, today, week to date and month to date, for the selected "
            "queues; sum(cost) / sum(contacts). Blue: below the channel's benchmark band "
            "(understaffing? missing cost item?), green: inside it, red: above it.",
            per_channel,
            "{{channel}} · {label}",
            (0, 0, 16, 6),
            money,
        ),
        band_stat(
            "Cost per contact, whole center, now",
            "All channels and queues together, from the recording rule "
            "period_window:contactcenter_cost_per_contact:ratio, coloured by the default band.",
            center_base,
            "{label}",
            (16, 0, 8, 6),
            money,
        ),
        panel(
            "timeseries",
            "Cost per contact over time, with the benchmark band",
            "Cost per handled contact for the selected period and window, per channel, with the "
            "low and high ends of each channel's band as dashed lines.",
            [
                target(
                    "A", cost_per_contact_by("channel", "$period", "$window", F_CQ), "{{channel}}"
                ),
                target(
                    "LOW",
                    'channel:contactcenter_benchmark_low:min{channel=~"$channel"}',
                    "{{channel}} band low",
                ),
                target(
                    "HIGH",
                    'channel:contactcenter_benchmark_high:max{channel=~"$channel"}',
                    "{{channel}} band high",
                ),
            ],
            (0, 6, 24, 9),
            money,
            timeseries_options(),
            [
                {
                    "matcher": {"id": "byFrameRefID", "options": ref},
                    "properties": [
                        {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
                        {"id": "custom.fillOpacity", "value": 0},
                    ],
                }
                for ref in ("LOW", "HIGH")
            ],
        ),
        panel(
            "timeseries",
            "Cost by component",
            "Allocated cost of the selected contacts by component (salaries, licences, ...), "
            "stacked, for the selected period and window.",
            [target("A", f"sum by (component) (contactcenter_cost{{{sel}}})", "{{component}}")],
            (0, 15, 12, 8),
            money,
            timeseries_options(),
            defaults={"custom": {"stacking": {"mode": "normal"}, "fillOpacity": 30}},
        ),
        panel(
            "timeseries",
            "Unallocated cost",
            "Cost that found no handled contact in its scope in the selected period and window "
            "(a Sunday's rent, for instance), by component. It is never dropped: it lands on "
            "the longer periods' contacts.",
            [
                target(
                    "A",
                    f"sum by (component) (contactcenter_cost_unallocated{{{F_PW}}})",
                    "{{component}}",
                )
            ],
            (12, 15, 12, 8),
            money,
            timeseries_options(),
            defaults={"custom": {"stacking": {"mode": "normal"}, "fillOpacity": 30}},
        ),
        panel(
            "timeseries",
            "Contacts handled and abandoned",
            "Handled contacts and contacts abandoned or unanswered, for the selected period, "
            "window, channels and queues.",
            [
                target(
                    "A",
                    f"sum by (channel) (contactcenter_contacts{{{sel}}})",
                    "{{channel}} handled",
                ),
                target(
                    "B",
                    f"sum by (channel) (contactcenter_contacts_abandoned{{{sel}}})",
                    "{{channel}} abandoned",
                ),
            ],
            (0, 23, 12, 8),
            "short",
            timeseries_options(),
        ),
        panel(
            "timeseries",
            "Average handle time",
            "Talk + hold + after-call work per handled contact: sum(handle time) / sum(contacts), "
            "per channel.",
            [
                target(
                    "A",
                    f"sum by (channel) (contactcenter_handle_time_seconds{{{sel}}})\n"
                    f"  / (sum by (channel) (contactcenter_contacts{{{sel}}}) > 0)",
                    "{{channel}}",
                )
            ],
            (12, 23, 12, 8),
            "s",
            timeseries_options(),
        ),
        panel(
            "stat",
            "Outbound cost per sale and per lead",
            "Total cost of outbound contacts / number of outcomes of outbound queues, whole "
            "center, for the selected period and window (recording rule "
            "period_window_outcome:contactcenter_outbound_cost_per_outcome:ratio). Not filtered "
            "by channel or queue.",
            [
                target(
                    "A",
                    f"period_window_outcome:contactcenter_outbound_cost_per_outcome:ratio{{{F_PW}}}",
                    "per {{outcome}}",
                    True,
                )
            ],
            (0, 31, 8, 6),
            money,
            stat_options(),
        ),
        panel(
            "bargauge",
            "Cost per contact by queue",
            "sum(cost) / sum(contacts) per queue, for the selected period, window and channels.",
            [
                target(
                    "A",
                    cost_per_contact_by("queue", "$period", "$window", F_CQ),
                    "{{queue}}",
                    True,
                )
            ],
            (8, 31, 8, 6),
            money,
            {
                "displayMode": "basic",
                "orientation": "horizontal",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        ),
        panel(
            "bargauge",
            "Cost per contact by channel",
            "sum(cost) / sum(contacts) per channel, for the selected period, window and queues.",
            [
                target(
                    "A",
                    cost_per_contact_by("channel", "$period", "$window", F_CQ),
                    "{{channel}}",
                    True,
                )
            ],
            (16, 31, 8, 6),
            money,
            {
                "displayMode": "basic",
                "orientation": "horizontal",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            },
        ),
        panel(
            "table",
            "Breakdown by queue and channel",
            "Handled contacts, allocated cost and cost per contact for every channel and queue "
            "in the selection, for the selected period and window.",
            [
                target(
                    "CONTACTS",
                    f"sum by (channel, queue) (contactcenter_contacts{{{sel}}})",
                    "",
                    True,
                ),
                target("COST", f"sum by (channel, queue) (contactcenter_cost{{{sel}}})", "", True),
                target(
                    "CPC",
                    cost_per_contact_by("channel, queue", "$period", "$window", F_CQ),
                    "",
                    True,
                ),
            ],
            (0, 37, 24, 8),
            money,
            {"showHeader": True, "sortBy": [{"desc": True, "displayName": "Cost per contact"}]},
            [
                {
                    "matcher": {"id": "byName", "options": "Contacts"},
                    "properties": [{"id": "unit", "value": "short"}],
                }
            ],
        ),
    ]
    for item in panels[-1:]:
        for tgt in item["targets"]:
            tgt["format"] = "table"
        item["transformations"] = [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        "Value #CONTACTS": "Contacts",
                        "Value #COST": "Cost",
                        "Value #CPC": "Cost per contact",
                        "channel": "Channel",
                        "queue": "Queue",
                    },
                },
            },
        ]
    return dashboard(
        "contact-cost-overview",
        "Contact cost: overview",
        "Cost per contact against the benchmark band, what it is made of, and the volumes "
        "behind it. Figures come from contact-cost-exporter, recomputed every interval.",
        panels,
        cost=True,
    )


def sources() -> dict[str, Any]:
    src = 'source=~"$source"'
    panels = [
        panel(
            "stat",
            "Source up",
            "1 when the source's last read succeeded. A source that is down keeps its last good "
            "figures on the overview, which go stale (alert ContactCostSourceDown).",
            [target("A", f"contactcenter_source_up{{{src}}}", "{{source}}", True)],
            (0, 0, 6, 5),
            "none",
            stat_options(color_mode="background"),
            defaults={
                "mappings": [
                    {
                        "options": {
                            "0": {"color": "red", "text": "down"},
                            "1": {"color": "green", "text": "up"},
                        },
                        "type": "value",
                    }
                ],
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
                },
            },
        ),
        panel(
            "stat",
            "Last success age",
            "Time since each source's last successful read. ContactCostSourceStale fires when it "
            "exceeds N of the source's intervals.",
            [
                target(
                    "A",
                    f"time() - contactcenter_source_last_success_timestamp_seconds{{{src}}}",
                    "{{source}}",
                    True,
                )
            ],
            (6, 0, 6, 5),
            "s",
            stat_options(),
        ),
        panel(
            "stat",
            "Newest contact age",
            "Time since the start of the newest contact each source has stored (from the store, "
            "so it survives restarts). A source that reads fine but delivers nothing grows "
            "here; ContactCostSourceQuiet fires when it passes the quiet threshold while the "
            "center is open.",
            [
                target(
                    "A",
                    f"time() - contactcenter_source_last_record_timestamp_seconds{{{src}}}",
                    "{{source}}",
                    True,
                )
            ],
            (12, 0, 6, 5),
            "s",
            stat_options(),
        ),
        panel(
            "stat",
            "Last recompute age and duration",
            "Time since the exporter last rebuilt its snapshot, and how long that took. The "
            "age should stay below the configured recompute interval.",
            [
                target(
                    "A",
                    "time() - contactcenter_last_recompute_timestamp_seconds",
                    "age {{instance}}",
                    True,
                ),
                target("B", "contactcenter_recompute_duration_seconds", "took {{instance}}", True),
            ],
            (18, 0, 6, 5),
            "s",
            stat_options(),
        ),
        panel(
            "timeseries",
            "Records read per source",
            "Records read from each source per interval (increase of "
            "contactcenter_source_records_total).",
            [
                target(
                    "A",
                    f"sum by (source) (increase(contactcenter_source_records_total{{{src}}}[$__rate_interval]))",
                    "{{source}}",
                )
            ],
            (0, 5, 12, 8),
            "short",
            timeseries_options(),
        ),
        panel(
            "timeseries",
            "Rejected records per source and reason",
            "Rows skipped as malformed, per interval, by reason. A steady rise fires "
            "ContactCostRejectedRecords; the exporter log names the file and line.",
            [
                target(
                    "A",
                    "sum by (source, reason) "
                    f"(increase(contactcenter_source_rejected_records_total{{{src}}}[$__rate_interval]))",
                    "{{source}}: {{reason}}",
                )
            ],
            (12, 5, 12, 8),
            "short",
            timeseries_options(),
        ),
        panel(
            "timeseries",
            "Recompute duration",
            "Time the exporter took to rebuild its snapshot of all gauges, per recompute.",
            [target("A", "contactcenter_recompute_duration_seconds", "{{instance}}")],
            (0, 13, 12, 8),
            "s",
            timeseries_options(),
        ),
        panel(
            "timeseries",
            "Rotation losses per source",
            "Times a file source's file was rotated or truncated and the rest of its old "
            "content was not found (rows written since the previous read lost), per interval. "
            "Any loss fires ContactCostRotationLoss.",
            [
                target(
                    "A",
                    "sum by (source) "
                    f"(increase(contactcenter_source_rotation_losses_total{{{src}}}[$__rate_interval]))",
                    "{{source}}",
                )
            ],
            (0, 21, 12, 8),
            "short",
            timeseries_options(),
        ),
        panel(
            "timeseries",
            "Duplicate and excluded records per source",
            "Records read again that were already stored (a re-read, a redelivery: counted "
            "once), and records left out on purpose by reason (exclude_contexts, exclude, a "
            "call's internal leg), per interval. For a file: rows read = records + duplicates "
            "+ excluded + rejected.",
            [
                target(
                    "A",
                    "sum by (source) "
                    f"(increase(contactcenter_source_duplicate_records_total{{{src}}}[$__rate_interval]))",
                    "{{source}}: duplicate",
                ),
                target(
                    "B",
                    "sum by (source, reason) "
                    f"(increase(contactcenter_source_excluded_records_total{{{src}}}[$__rate_interval]))",
                    "{{source}}: excluded {{reason}}",
                ),
            ],
            (12, 21, 12, 8),
            "short",
            timeseries_options(),
        ),
        panel(
            "table",
            "Records and rejections, totals",
            "Records read and rejected since each source's history began, and the exporter's "
            "version, currency and time zone.",
            [
                target(
                    "RECORDS",
                    f"sum by (source) (contactcenter_source_records_total{{{src}}})",
                    "",
                    True,
                ),
                target(
                    "REJECTED",
                    f"sum by (source) (contactcenter_source_rejected_records_total{{{src}}})",
                    "",
                    True,
                ),
                target("INFO", "contactcenter_info", "", True),
            ],
            (12, 13, 12, 8),
            "short",
            {"showHeader": True},
        ),
    ]
    for tgt in panels[-1]["targets"]:
        tgt["format"] = "table"
    return dashboard(
        "contact-cost-sources",
        "Contact cost: sources",
        "Health of contact-cost-exporter's sources (export files, vendor APIs) and of its "
        "recompute job.",
        panels,
        cost=False,
    )


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def build(currency: str = DEFAULT_CURRENCY) -> dict[str, str]:
    """File name -> JSON text, for every dashboard."""
    return {
        "contact-cost-overview.json": render(overview(currency)),
        "contact-cost-sources.json": render(sources()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--currency", default=DEFAULT_CURRENCY, help="ISO 4217 code (default USD)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    parser.add_argument("--check", action="store_true", help="fail if the files differ")
    args = parser.parse_args(argv)
    stale = []
    for name, text in build(args.currency).items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date, run python grafana/generate.py: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
