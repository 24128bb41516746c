"""Generate the Grafana dashboards for contact-cost-exporter with grafana-foundation-sdk.

The JSON under grafana/dashboards/ is committed and is what Grafana loads; this script is
its source of truth, built with Grafana Labs' own builders (grafana-foundation-sdk, a
test/dev dependency pinned to its Grafana 11 flavour in pyproject.toml). After editing:

    python grafana/generate.py            # rewrite the committed JSON (currency USD)
    python grafana/generate.py --check    # exit 1 if the committed JSON is out of date
    python grafana/generate.py --config /etc/contact-cost.toml --out /var/lib/grafana/dash
                                          # dashboards in the configured currency

Money panels carry a Grafana currency unit (currencyUSD, currencyEUR, ...). With
`--config FILE` the unit follows the exporter's `currency` (environment overrides
included, as the exporter reads it); `--currency EUR` gives it directly. Either needs
`--out DIR`: the default run writes only the committed files, in USD.

Colouring by the benchmark band: Grafana thresholds are static numbers, but the band is
a per-channel value from the exporter. Each cost-per-contact stat is therefore split by
PromQL into three queries (below, inside, above the band, joined on channel with
channel:contactcenter_benchmark_low:min / _high:max); exactly one of them returns a
value, and an override gives each query its colour. No band number is written here.

Legends are Grafana templates: ``{{channel}}`` is replaced by Grafana, so they are built
by concatenation, never with ``str.format`` (which turns ``{{channel}}`` into a literal
``{channel}``); tests/test_dashboards.py checks every legend and title for leftovers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prom_model

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"
DEFAULT_CURRENCY = "USD"
DS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every currency unit Grafana knows (currencyUSD, currencyEUR, ...), from the SDK's list.
CURRENCIES = sorted(
    value.removeprefix("currency")
    for value in vars(units).values()
    if isinstance(value, str) and value.startswith("currency") and value[8:].isupper()
)

BAND_STATES = (
    # refId suffix, colour, PromQL comparison of Q against the band (on channel)
    ("BELOW", "blue", "Q < on (channel) group_left () channel:contactcenter_benchmark_low:min"),
    (
        "IN",
        "green",
        "(Q >= on (channel) group_left () channel:contactcenter_benchmark_low:min)"
        " <= on (channel) group_left () channel:contactcenter_benchmark_high:max",
    ),
    ("ABOVE", "red", "Q > on (channel) group_left () channel:contactcenter_benchmark_high:max"),
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

Grid = tuple[int, int, int, int]  # x, y, w, h
PanelBuilder = Builder[model.Panel]


# -- queries -----------------------------------------------------------------------------------
def target(
    ref: str, expr: str, legend: str, instant: bool = False, as_table: bool = False
) -> prom.Dataquery:
    query = (
        prom.Dataquery()
        .datasource(DS)
        .editor_mode(prom_model.QueryEditorMode.CODE)
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
    )
    query = query.instant() if instant else query.range()
    return query.format(prom_model.PromQueryFormat.TABLE) if as_table else query


# Replicas of one store serve the same figures under different instances: a sum of raw
# figure parts first keeps one replica per replica set, the one the recording rules keep
# (config/prometheus/recording_rules.yml, its header says why).
FRESHEST = "instance_job:contactcenter_last_recompute_timestamp_seconds:freshest"


def one_replica(expr: str) -> str:
    """`expr` (raw exporter series) from one replica of each replica set."""
    inner = expr if expr.startswith("contactcenter_") and " " not in expr else f"({expr})"
    return f"max without (instance) ({inner} and on (instance, job) {FRESHEST})"


def figure_sum(by: str, expr: str) -> str:
    """sum by (`by`) of raw figure parts, each replica set counted once."""
    return f"sum by ({by}) ({one_replica(expr)})"


def cost_per_contact_by(by: str, period: str, window: str, filters: str) -> str:
    sel = f'period="{period}",window="{window}",{filters}'
    return (
        f"{figure_sum(by, f'contactcenter_cost{{{sel}}}')}\n"
        f"  / ({figure_sum(by, f'contactcenter_contacts{{{sel}}}')} > 0)"
    )


# -- panel pieces ----------------------------------------------------------------------------
def grid(g: Grid) -> model.GridPos:
    x, y, w, h = g
    return model.GridPos(h=h, w=w, x=x, y=y)


def base(
    panel: Any, title: str, description: str, targets: Sequence[prom.Dataquery], g: Grid,
    unit: str,
) -> Any:
    """What every panel has: title, description, datasource, queries, position and unit."""
    panel = (
        panel.title(title)
        .description(description)
        .datasource(DS)
        .targets(list(targets))
        .grid_pos(grid(g))
        .unit(unit)
    )
    return panel


def plain_thresholds(*steps: tuple[float | None, str]) -> builders.ThresholdsConfig:
    return (
        builders.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in (steps or ((None, "text"),))])
    )


def colour(mode: model.FieldColorModeId) -> builders.FieldColor:
    return builders.FieldColor().mode(mode)


def fixed_colour(ref: str, name: str) -> tuple[model.MatcherConfig, list[model.DynamicConfigValue]]:
    return (
        model.MatcherConfig(id_val="byFrameRefID", options=ref),
        [model.DynamicConfigValue(id_val="color", value={"fixedColor": name, "mode": "fixed"})],
    )


def last_value() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def stat_panel(
    title: str,
    description: str,
    targets: Sequence[prom.Dataquery],
    g: Grid,
    unit: str,
    color_mode: common.BigValueColorMode = common.BigValueColorMode.VALUE,
) -> stat.Panel:
    panel: stat.Panel = base(stat.Panel(), title, description, targets, g, unit)
    return (
        panel.color_scheme(colour(model.FieldColorModeId.THRESHOLDS))
        .thresholds(plain_thresholds())
        .color_mode(color_mode)
        .graph_mode(common.BigValueGraphMode.NONE)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(last_value())
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
    )


def band_stat(title: str, description: str, base_query: dict[str, str], legend: str, g: Grid,
              money: str) -> stat.Panel:
    """A stat whose every value is coloured by where it sits in its channel's band.

    ``legend`` is a Grafana legend template to which " · today" (and the other windows)
    is appended: concatenated, so ``{{channel}}`` reaches Grafana as it is.
    """
    targets = []
    overrides = []
    for ref, _period, label in WINDOWS_NOW:
        for suffix, colour_name, template in BAND_STATES:
            ref_id = f"{ref}_{suffix}"
            shown = f"{legend} · {label}" if legend else label
            targets.append(target(ref_id, template.replace("Q", base_query[ref]), shown, True))
            overrides.append(fixed_colour(ref_id, colour_name))
    panel = stat_panel(title, description, targets, g, money)
    for matcher, properties in overrides:
        panel = panel.with_override(matcher, properties)
    return panel


def timeseries_panel(
    title: str,
    description: str,
    targets: Sequence[prom.Dataquery],
    g: Grid,
    unit: str,
    stacked: bool = False,
) -> timeseries.Panel:
    panel: timeseries.Panel = base(timeseries.Panel(), title, description, targets, g, unit)
    panel = (
        panel.color_scheme(colour(model.FieldColorModeId.PALETTE_CLASSIC))
        .thresholds(plain_thresholds())
        .legend(
            common_builders.VizLegendOptions()
            .calcs(["lastNotNull"])
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )
    if stacked:
        panel = panel.stacking(
            common_builders.StackingConfig().mode(common.StackingMode.NORMAL)
        ).fill_opacity(30)
    return panel


def dashed(panel: timeseries.Panel, *refs: str) -> timeseries.Panel:
    """The queries `refs` of `panel` drawn as dashed lines without fill: the targets,
    thresholds, intervals and band ends a figure is read against."""
    for ref in refs:
        panel = panel.override_by_query(
            ref,
            [
                model.DynamicConfigValue(
                    id_val="custom.lineStyle", value={"dash": [10, 10], "fill": "dash"}
                ),
                model.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            ],
        )
    return panel


def band_panel(title: str, description: str, figure: prom.Dataquery, g: Grid,
               money: str) -> timeseries.Panel:
    """A cost per contact per channel over time, with each channel's band ends dashed."""
    panel = timeseries_panel(
        title,
        description,
        [
            figure,
            target("LOW", 'channel:contactcenter_benchmark_low:min{channel=~"$channel"}',
                   "{{channel}} band low"),
            target("HIGH", 'channel:contactcenter_benchmark_high:max{channel=~"$channel"}',
                   "{{channel}} band high"),
        ],
        g,
        money,
    )
    return dashed(panel, "LOW", "HIGH")


def bargauge_panel(
    title: str, description: str, targets: Sequence[prom.Dataquery], g: Grid, unit: str
) -> bargauge.Panel:
    panel: bargauge.Panel = base(bargauge.Panel(), title, description, targets, g, unit)
    return (
        panel.color_scheme(colour(model.FieldColorModeId.THRESHOLDS))
        .thresholds(plain_thresholds())
        .display_mode(common.BarGaugeDisplayMode.BASIC)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(last_value())
    )


def table_panel(
    title: str, description: str, targets: Sequence[prom.Dataquery], g: Grid, unit: str
) -> table.Panel:
    panel: table.Panel = base(table.Panel(), title, description, targets, g, unit)
    return (
        panel.color_scheme(colour(model.FieldColorModeId.THRESHOLDS))
        .thresholds(plain_thresholds())
        .show_header(True)
    )


# -- variables and dashboards ----------------------------------------------------------------
def datasource_variable() -> builders.DatasourceVariable:
    return (
        builders.DatasourceVariable("datasource")
        .label("Data source")
        .description("The Prometheus that scrapes contact-cost-exporter.")
        .type("prometheus")
        .hide(model.VariableHide.DONT_HIDE)
    )


def custom(
    name: str, label: str, values: list[str], default: str, description: str
) -> builders.CustomVariable:
    return (
        builders.CustomVariable(name)
        .label(label)
        .description(description)
        .values(",".join(values))
        .current(model.VariableOption(selected=True, text=default, value=default))
        .options([model.VariableOption(selected=v == default, text=v, value=v) for v in values])
        .hide(model.VariableHide.DONT_HIDE)
    )


class QueryVariableModel(model.VariableModel):
    """The SDK's variable model plus `definition`: the query text Grafana's variable editor
    shows and saves beside the query object (the SDK's schema has no field for it)."""

    definition: str = ""

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        if self.definition:
            payload["definition"] = self.definition
        return payload


class QueryVariable(builders.QueryVariable):
    def __init__(self, name: str, definition: str) -> None:
        super().__init__(name)
        internal = QueryVariableModel()
        internal.name = name
        internal.type_val = model.VariableType.QUERY
        internal.definition = definition
        self._internal = internal


def query_var(name: str, label: str, query: str, description: str) -> builders.QueryVariable:
    return (
        QueryVariable(name, query)
        .label(label)
        .description(description)
        .datasource(DS)
        .query({"query": query, "refId": f"{name}-variable", "qryType": 1})
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .hide(model.VariableHide.DONT_HIDE)
    )


def cost_variables() -> list[Builder[model.VariableModel]]:
    return [
        datasource_variable(),
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


def source_variables() -> list[Builder[model.VariableModel]]:
    return [
        datasource_variable(),
        query_var(
            "source",
            "Source",
            "label_values(contactcenter_source_up, source)",
            "Sources (export files, APIs) to include.",
        ),
    ]


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: Sequence[PanelBuilder],
    variables: list[Builder[model.VariableModel]],
    time_from: str,
) -> builders.Dashboard:
    board = (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["contact-cost"])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("1m")
        .time(time_from, "now")
        .timezone("")
        .version(1)
        .link(
            builders.DashboardLink("Contact cost")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["contact-cost"])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
        .variables(variables)
    )
    for number, panel in enumerate(panels, start=1):
        board = board.with_panel(panel.id(number))  # type: ignore[attr-defined]
    return board


def overview(currency: str) -> builders.Dashboard:
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
    band_over_time = band_panel(
        "Cost per contact over time, with the benchmark band",
        "Cost per handled contact for the selected period and window, per channel, with the "
        "low and high ends of each channel's band as dashed lines.",
        target("A", cost_per_contact_by("channel", "$period", "$window", F_CQ), "{{channel}}"),
        (0, 6, 24, 9),
        money,
    )
    breakdown = (
        table_panel(
            "Breakdown by queue and channel",
            "Handled contacts, allocated cost and cost per contact for every channel and queue "
            "in the selection, for the selected period and window.",
            [
                target(
                    "CONTACTS",
                    figure_sum("channel, queue", f"contactcenter_contacts{{{sel}}}"),
                    "",
                    True,
                    as_table=True,
                ),
                target(
                    "COST",
                    figure_sum("channel, queue", f"contactcenter_cost{{{sel}}}"),
                    "",
                    True,
                    as_table=True,
                ),
                target(
                    "CPC",
                    cost_per_contact_by("channel, queue", "$period", "$window", F_CQ),
                    "",
                    True,
                    as_table=True,
                ),
            ],
            (0, 37, 24, 8),
            money,
        )
        .sort_by(
            [common_builders.TableSortByFieldState().display_name("Cost per contact").desc(True)]
        )
        .override_by_name("Contacts", [model.DynamicConfigValue(id_val="unit", value="short")])
        .transformations(
            [
                model.DataTransformerConfig(id_val="merge", options={}),
                model.DataTransformerConfig(
                    id_val="organize",
                    options={
                        "excludeByName": {"Time": True},
                        "renameByName": {
                            "Value #CONTACTS": "Contacts",
                            "Value #COST": "Cost",
                            "Value #CPC": "Cost per contact",
                            "channel": "Channel",
                            "queue": "Queue",
                        },
                    },
                ),
            ]
        )
    )
    panels: list[PanelBuilder] = [
        band_stat(
            "Cost per contact by channel, now",
            "Cost per handled contact, today, week to date and month to date, for the selected "
            "queues; sum(cost) / sum(contacts). Blue: below the channel's benchmark band "
            "(understaffing? missing cost item?), green: inside it, red: above it.",
            per_channel,
            "{{channel}}",
            (0, 0, 16, 6),
            money,
        ),
        band_stat(
            "Cost per contact, whole center, now",
            "All channels and queues together, from the recording rule "
            "period_window:contactcenter_cost_per_contact:ratio, coloured by the default band.",
            center_base,
            "",
            (16, 0, 8, 6),
            money,
        ),
        band_over_time,
        timeseries_panel(
            "Cost by component",
            "Allocated cost of the selected contacts by component (salaries, licences, ...), "
            "stacked, for the selected period and window.",
            [target("A", figure_sum("component", f"contactcenter_cost{{{sel}}}"), "{{component}}")],
            (0, 15, 12, 8),
            money,
            stacked=True,
        ),
        timeseries_panel(
            "Unallocated cost",
            "Cost that found no handled contact in its scope in the selected period and window "
            "(a Sunday's rent, for instance), by component. It is never dropped: it lands on "
            "the longer periods' contacts.",
            [
                target(
                    "A",
                    figure_sum("component", f"contactcenter_cost_unallocated{{{F_PW}}}"),
                    "{{component}}",
                )
            ],
            (12, 15, 12, 8),
            money,
            stacked=True,
        ),
        timeseries_panel(
            "Contacts handled and abandoned",
            "Handled contacts and contacts abandoned or unanswered, for the selected period, "
            "window, channels and queues.",
            [
                target(
                    "A",
                    figure_sum("channel", f"contactcenter_contacts{{{sel}}}"),
                    "{{channel}} handled",
                ),
                target(
                    "B",
                    figure_sum("channel", f"contactcenter_contacts_abandoned{{{sel}}}"),
                    "{{channel}} abandoned",
                ),
            ],
            (0, 23, 12, 8),
            "short",
        ),
        timeseries_panel(
            "Average handle time",
            "Talk + hold + after-call work per handled contact: sum(handle time) / sum(contacts), "
            "per channel.",
            [
                target(
                    "A",
                    figure_sum("channel", f"contactcenter_handle_time_seconds{{{sel}}}")
                    + "\n  / ("
                    + figure_sum("channel", f"contactcenter_contacts{{{sel}}}")
                    + " > 0)",
                    "{{channel}}",
                )
            ],
            (12, 23, 12, 8),
            "s",
        ),
        stat_panel(
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
        ),
        bargauge_panel(
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
        ),
        bargauge_panel(
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
        ),
        breakdown,
        *service_panels(sel, money),
        projection_panel(money),
        *projection_volume_panels(),
    ]
    return dashboard(
        "contact-cost-overview",
        "Contact cost: overview",
        "Cost per contact against the benchmark band, what it is made of, and the volumes "
        "behind it. Figures come from contact-cost-exporter, recomputed every interval.",
        panels,
        cost_variables(),
        "now-30d",
    )


def projection_panel(money: str) -> timeseries.Panel:
    """Projected cost per contact to the end of the current period (issue 13), with the band."""
    projected = f'period="$period",window="current",{F_CQ}'
    return band_panel(
        "Projected cost per contact at the end of the period, with the benchmark band",
        "Where the current period is heading: (cost so far + the rest of its shared cost + "
        "usage at the current rate) / (contacts so far + those the last weeks' weekday-and-hour "
        "pattern expects in its remaining open hours), per channel, sum over sum. Projected for "
        "week, month, quarter and year (none for the day); ContactCostProjectedOutsideBenchmark "
        "watches the month once a quarter of its open time has passed.",
        target(
            "A",
            figure_sum("channel", f"contactcenter_cost_projected{{{projected}}}")
            + "\n  / ("
            + figure_sum("channel", f"contactcenter_contacts_projected{{{projected}}}")
            + " > 0)",
            "{{channel}} projected",
        ),
        (0, 67, 24, 8),
        money,
    )


def projection_volume_panels() -> list[PanelBuilder]:
    """The projection's parts (issue 13): projected contacts beside those so far, and how
    much of the period's open time has passed (the alert's gate)."""
    current = f'period="$period",window="current",{F_CQ}'
    return [
        timeseries_panel(
            "Projected contacts at the end of the period, and so far",
            "Handled contacts projected for the whole current period (so far + those the last "
            "[forecast] weeks' weekday-and-hour pattern expects in its remaining open hours) "
            "beside the contacts handled so far, per channel. Projected for week, month, "
            "quarter and year (none for the day).",
            [
                target("A", figure_sum("channel", f"contactcenter_contacts_projected{{{current}}}"),
                       "{{channel}} projected"),
                target("B", figure_sum("channel", f"contactcenter_contacts{{{current}}}"),
                       "{{channel}} so far"),
            ],
            (0, 75, 16, 8),
            "short",
        ),
        stat_panel(
            "Open time of the current period passed",
            "Share of the current period's open seconds (service hours, closed days and "
            "holidays respected) that has passed, least across exporters. "
            "ContactCostProjectedOutsideBenchmark waits for a quarter of the month's.",
            [target("A", 'period:contactcenter_period_open_elapsed_ratio:min{period="$period"}',
                    "{{period}}", True)],
            (16, 75, 8, 8),
            "percentunit",
        ),
    ]


def service_panels(sel: str, money: str) -> list[PanelBuilder]:
    """Service level, abandonment, speed of answer, first contact resolution and cost per
    resolution (issue 11), each re-aggregated from its parts for the selection."""

    def by(what: str, expr: str) -> str:
        return figure_sum(what, expr)

    offered = (
        f"contactcenter_contacts{{{sel}}} + contactcenter_contacts_abandoned{{{sel}}}"
        f" - contactcenter_contacts_abandoned_short{{{sel}}}"
    )
    answered = f"contactcenter_contacts_answered_in_threshold{{{sel}}}"
    service_level = (
        f"{by('queue', answered)}\n  / ({by('queue', f'({offered}) and {answered}')} > 0)"
    )
    abandonment = (
        f"{by('queue', f'contactcenter_contacts_abandoned{{{sel}}} - contactcenter_contacts_abandoned_short{{{sel}}}')}"
        f"\n  / ({by('queue', offered)} > 0)"
    )
    wait = f"contactcenter_wait_seconds{{{sel}}}"
    speed = (
        f"{by('queue', wait)}\n  / ({by('queue', f'contactcenter_contacts{{{sel}}} and {wait}')} > 0)"
    )
    fcr = (
        f"1 - {by('queue', f'contactcenter_contacts_repeat{{{sel}}}')}"
        f"\n  / ({by('queue', f'contactcenter_contacts_identified{{{sel}}}')} > 0)"
    )
    per_resolution = (
        f"{by('channel', f'contactcenter_cost{{{sel}}}')}\n  / "
        f"({by('channel', f'contactcenter_contacts{{{sel}}} - contactcenter_contacts_repeat{{{sel}}}')} > 0)"
    )
    return [
        dashed(
            timeseries_panel(
                "Service level by queue",
                "Handled contacts answered within the queue's threshold / (handled + abandoned - "
                "short abandons), for queues whose contacts carry a wait; the dashed line is the "
                "alert target (thresholds.yml).",
                [
                    target("A", service_level, "{{queue}}"),
                    target("TARGET", "max(period_window:contactcenter_service_level_target:threshold)",
                           "target"),
                ],
                (0, 45, 12, 8),
                "percentunit",
            ),
            "TARGET",
        ),
        dashed(
            timeseries_panel(
                "Abandonment by queue",
                "(Abandoned - short abandons) / (handled + abandoned - short abandons); the dashed "
                "line is the alert target (thresholds.yml).",
                [
                    target("A", abandonment, "{{queue}}"),
                    target("TARGET", "max(period_window:contactcenter_abandonment_target:threshold)",
                           "target"),
                ],
                (12, 45, 12, 8),
                "percentunit",
            ),
            "TARGET",
        ),
        dashed(
            timeseries_panel(
                "Average speed of answer by queue",
                "Sum of the wait of handled contacts / handled contacts, for queues whose contacts "
                "carry a wait, with each queue's service-level threshold.",
                [
                    target("A", speed, "{{queue}}"),
                    target("THRESHOLD",
                           'contactcenter_service_level_threshold_seconds{queue=~"$queue|default"}',
                           "{{queue}} threshold"),
                ],
                (0, 53, 12, 8),
                "s",
            ),
            "THRESHOLD",
        ),
        timeseries_panel(
            "First contact resolution by queue",
            "1 - repeats / handled contacts that carry a customer key. A repeat is a handled "
            "contact followed by another contact of the same customer within the [fcr] window "
            "(counted on the earlier contact's day).",
            [target("A", fcr, "{{queue}}")],
            (12, 53, 12, 8),
            "percentunit",
        ),
        bargauge_panel(
            "Cost per resolution by channel",
            "Allocated cost / (handled contacts - repeats): what a contact that needed no "
            "second contact cost, for the selected period, window and queues.",
            [target("A", per_resolution, "{{channel}}", True)],
            (0, 61, 12, 6),
            money,
        ),
        stat_panel(
            "Service, whole center",
            "From the recording rules (sum over sum across queues, channels and exporters), "
            "for the selected period and window: service level, abandonment, average speed "
            "of answer and first contact resolution, and the [fcr] repeat window it is counted over.",
            [
                target("SL", f"period_window:contactcenter_service_level:ratio{{{F_PW}}}",
                       "service level", True),
                target("AB", f"period_window:contactcenter_abandonment:ratio{{{F_PW}}}",
                       "abandonment", True),
                target("FCR", f"period_window:contactcenter_first_contact_resolution:ratio{{{F_PW}}}",
                       "first contact resolution", True),
                target("ASA",
                       f"period_window:contactcenter_average_speed_of_answer_seconds:ratio{{{F_PW}}}",
                       "speed of answer", True),
                target("FCRW", "max(contactcenter_fcr_window_seconds)", "repeat window", True),
            ],
            (12, 61, 12, 6),
            "percentunit",
        )
        .override_by_query("ASA", [model.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_query("FCRW", [model.DynamicConfigValue(id_val="unit", value="s")]),
    ]


def sources() -> builders.Dashboard:
    src = 'source=~"$source"'
    up = (
        stat_panel(
            "Source up",
            "1 when the source's last read succeeded. A source that is down keeps its last good "
            "figures on the overview, which go stale (alert ContactCostSourceDown).",
            [target("A", f"contactcenter_source_up{{{src}}}", "{{source}}", True)],
            (0, 0, 6, 5),
            "none",
            color_mode=common.BigValueColorMode.BACKGROUND,
        )
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(color="red", text="down"),
                        "1": model.ValueMappingResult(color="green", text="up"),
                    }
                )
            ]
        )
        .thresholds(plain_thresholds((None, "red"), (1, "green")))
    )
    panels: list[PanelBuilder] = [
        up,
        stat_panel(
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
        ),
        stat_panel(
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
        ),
        stat_panel(
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
        ),
        timeseries_panel(
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
        ),
        timeseries_panel(
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
        ),
        timeseries_panel(
            "Recompute duration",
            "Time the exporter took to rebuild its snapshot of all gauges, per recompute.",
            [target("A", "contactcenter_recompute_duration_seconds", "{{instance}}")],
            (0, 13, 12, 8),
            "s",
        ),
        timeseries_panel(
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
        ),
        timeseries_panel(
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
        ),
        table_panel(
            "Records and rejections, totals",
            "Records read and rejected since each source's history began, and the exporter's "
            "version, currency and time zone.",
            [
                target(
                    "RECORDS",
                    f"sum by (source) (contactcenter_source_records_total{{{src}}})",
                    "",
                    True,
                    as_table=True,
                ),
                target(
                    "REJECTED",
                    f"sum by (source) (contactcenter_source_rejected_records_total{{{src}}})",
                    "",
                    True,
                    as_table=True,
                ),
                target("INFO", "contactcenter_info", "", True, as_table=True),
            ],
            (12, 13, 12, 8),
            "short",
        ),
        *exporter_panels(src),
    ]
    return dashboard(
        "contact-cost-sources",
        "Contact cost: sources",
        "Health of contact-cost-exporter's sources (export files, vendor APIs) and of its "
        "recompute job.",
        panels,
        source_variables(),
        "now-24h",
    )


def state_stat(title: str, description: str, gauge: str, g: Grid,
               zero: tuple[str, str], one: tuple[str, str]) -> stat.Panel:
    """A stat for a 0/1 gauge of each instance, shown in words on a coloured background."""
    return (
        stat_panel(title, description, [target("A", gauge, "{{instance}}", True)], g, "none",
                   color_mode=common.BigValueColorMode.BACKGROUND)
        .mappings(
            [
                model.ValueMap(
                    options={
                        "0": model.ValueMappingResult(color=zero[1], text=zero[0]),
                        "1": model.ValueMappingResult(color=one[1], text=one[0]),
                    }
                )
            ]
        )
        .thresholds(plain_thresholds((None, zero[1]), (1, one[1])))
    )


def exporter_panels(src: str) -> list[PanelBuilder]:
    """The exporter's own health: service hours (contactcenter_open), configuration
    reloads, each source's read time against its interval, the scheduler's job runs, and
    (issue 14) the leader and the store per instance, store errors and webhook requests.
    Store errors and webhook requests are exported from their first event on, so their
    queries fall back to a 0 line (per instance, or one) while there is none: every query
    returns data on a healthy exporter, and the 0 is the truth (none since start)."""
    return [
        state_stat(
            "Open now (service hours)",
            "Whether the center is inside its configured service hours ([hours]); shared costs "
            "accrue over open seconds only, and ContactCostSourceQuiet waits while closed. No "
            "data means no [hours]: open around the clock.",
            "contactcenter_open",
            (0, 29, 8, 5),
            ("closed", "blue"),
            ("open", "green"),
        ),
        state_stat(
            "Last configuration reload",
            "Whether the last reload (SIGHUP or POST /-/reload) was applied; a refused reload "
            "keeps the last good configuration, and the exporter log says why.",
            "contactcenter_config_last_reload_successful",
            (8, 29, 8, 5),
            ("refused", "red"),
            ("applied", "green"),
        ),
        stat_panel(
            "Last successful reload age",
            "Time since the configuration was last loaded successfully (start-up or reload).",
            [
                target(
                    "A",
                    "time() - contactcenter_config_last_reload_success_timestamp_seconds",
                    "{{instance}}",
                    True,
                )
            ],
            (16, 29, 8, 5),
            "s",
        ),
        dashed(
            timeseries_panel(
                "Source read time against its interval",
                "How long each source's last read took, with its configured interval dashed: a "
                "read that nears its interval falls behind.",
                [
                    target("A", f"contactcenter_source_duration_seconds{{{src}}}", "{{source}} read"),
                    target(
                        "INTERVAL",
                        f"contactcenter_source_interval_seconds{{{src}}}",
                        "{{source}} interval",
                    ),
                ],
                (0, 34, 12, 8),
                "s",
            ),
            "INTERVAL",
        ),
        timeseries_panel(
            "Scheduler job runs by status",
            "Runs of each scheduler job (reads, recompute) per interval by status: success, "
            "error, missed. Missed runs mean a job took longer than its interval.",
            [
                target(
                    "A",
                    "sum by (job, status) "
                    "(increase(contactcenter_scheduler_job_runs_total[$__rate_interval]))",
                    "{{job}} {{status}}",
                )
            ],
            (12, 34, 12, 8),
            "short",
        ),
        state_stat(
            "Leader per instance",
            "Which replica leads (contactcenter_leader): only the leader pulls sources; every "
            "replica accepts webhooks and serves the figures from the shared PostgreSQL store. "
            "Exactly one per replica set; a single SQLite exporter always leads. A handover "
            "takes up to two intervals (ContactCostNoLeader, ContactCostTwoLeaders).",
            "contactcenter_leader",
            (0, 42, 12, 5),
            ("follower", "blue"),
            ("leader", "green"),
        ),
        state_stat(
            "Store up per instance",
            "Whether the instance's last store operation succeeded (contactcenter_store_up). "
            "Down: it serves its last figures and reconnects with backoff; pulls are not "
            "committed and are read again later (ContactCostStoreDown).",
            "contactcenter_store_up",
            (12, 42, 12, 5),
            ("down", "red"),
            ("up", "green"),
        ),
        timeseries_panel(
            "Store errors by operation",
            "Failed store operations per interval, by instance and operation (commit, read, ...; "
            "contactcenter_store_errors_total). The counter appears at the first failure; "
            "until then each instance shows a 0 line.",
            [
                target(
                    "A",
                    "sum by (instance, operation) "
                    "(increase(contactcenter_store_errors_total[$__rate_interval]))\n"
                    "  or on (instance) "
                    "(0 * max by (instance) (contactcenter_last_recompute_timestamp_seconds))",
                    "{{instance}} {{operation}}",
                )
            ],
            (0, 47, 12, 8),
            "short",
        ),
        timeseries_panel(
            "Webhook requests by source and status",
            "Webhook requests per interval by source and status (accepted, duplicate, "
            "unauthorized, ...; contactcenter_webhook_requests_total), summed over the "
            "replicas: each request reaches one of them. The counter appears at the first "
            "request; until then one 0 line.",
            [
                target(
                    "A",
                    f"sum by (source, status) (increase(contactcenter_webhook_requests_total{{{src}}}"
                    "[$__rate_interval]))\n"
                    '  or on () label_replace(vector(0), "status", "none yet", "", "")',
                    "{{source}} {{status}}",
                )
            ],
            (12, 47, 12, 8),
            "short",
        ),
    ]


def render(board: builders.Dashboard) -> str:
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def build(currency: str = DEFAULT_CURRENCY) -> dict[str, str]:
    """File name -> JSON text, for every dashboard."""
    if currency not in CURRENCIES:
        raise ValueError(
            f"Grafana has no currency unit currency{currency} (it knows {', '.join(CURRENCIES)})"
        )
    return {
        "contact-cost-overview.json": render(overview(currency)),
        "contact-cost-sources.json": render(sources()),
    }


def configured_currency(path: Path) -> str:
    """The exporter's `currency` as it reads it: the file, then CONTACT_COST_* overrides."""
    from collector.config import ConfigError, load_settings

    try:
        return load_settings(path).currency
    except ConfigError as exc:
        raise SystemExit(f"generate.py: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--config", type=Path, help="the exporter's TOML: use its currency")
    which.add_argument("--currency", help="ISO 4217 code, such as EUR (default USD)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: the committed grafana/dashboards)")
    parser.add_argument("--check", action="store_true", help="fail if the files differ")
    args = parser.parse_args(argv)
    currency = DEFAULT_CURRENCY
    if args.config is not None:
        currency = configured_currency(args.config)
    elif args.currency is not None:
        currency = args.currency.upper()
    out = args.out or OUT_DIR
    if currency != DEFAULT_CURRENCY and out.resolve() == OUT_DIR.resolve() and not args.check:
        parser.error(f"the committed dashboards are in {DEFAULT_CURRENCY}: "
                     f"give --out DIR for dashboards in {currency}")
    try:
        files = build(currency)
    except ValueError as exc:
        parser.error(str(exc))
    stale = []
    for name, text in files.items():
        path = out / name
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
