"""Write deterministic, realistic sample exports (Asterisk Master.csv, helpdesk tickets.csv).

Every calendar day's rows come from an RNG seeded by that day alone, so generating an
overlapping window again gives byte-identical rows (same uniqueids, same ticket ids) for
the days both runs cover. The exporter deduplicates by id, so regenerating never counts
anything twice.

Volumes are sized against config/example.toml so that the example shows figures inside
its benchmark bands (voice 1.60-6.50, email 1.20-4.50 per contact). The arithmetic, for a
30-day month with 21 weekdays and 4 Saturdays (a Saturday is 45 % of a weekday, so the
month is 21 + 4 x 0.45 = 22.8 weekday-equivalents of inbound calls and tickets; the
telesales team dials on weekdays only):

  shared cost allocated by handle time: salaries 96 000 + licences 39 x 40 = 1 560
    + headsets 54 000 / 36 = 1 500                                      = 99 060 / month
  pay rise, queue "support" only (calls and tickets), by handle time      4 000 / month
  rent, allocated by handled contacts                                    14 000 / month
  carrier minutes, 0.012 x billsec / 60 (~6 min a call = 0.072), voice   ~ 2 400 / month

  handled contacts and handle time on a mean weekday:
    support-in  1 015 offered x 91 % =  924 x 6.0 min = 333 000 s
    sales-in      435 offered x 91 % =  396 x 6.0 min = 143 000 s
    sales-out     400 dials  x 35 %  =  140 x 6.0 min =  50 000 s
    tickets       300 x 4.3 min (180 s + exponential, 3-15 min) =  78 000 s (80 % support)
  per month: handle time = 22.8 x (333 + 143 + 78) k + 21 x 50 k = 13.68 M s
             handled     = 22.8 x (924 + 396 + 300)  + 21 x 140 = 39 900

  per handle second: 99 060 / 13.68 M = 0.00724 (26.1 / hour); rent: 14 000 / 39 900 = 0.35
  pay rise per support second: 4 000 / (22.8 x (333 k + 0.8 x 78 k)) = 0.00044
  support call = 360 x (0.00724 + 0.00044) + 0.35 + 0.072 = 3.19
  sales call   = 360 x  0.00724            + 0.35 + 0.072 = 3.03
  telesales    = 360 x  0.00724            + 0.35 + 0.072 = 3.03   (per SALE ~ 38)
  ticket       = 260 x  0.00724 + 0.8 x 260 x 0.00044 + 0.35 = 2.33

A whole generated November comes out at 3.10 per call and 2.29 per ticket. Month to date
at 2026-11-26 17:00, `contact-cost-exporter report` on the committed samples gives 3.05 per
call (support 3.12, sales 2.94, telesales 2.94) and 2.26 per ticket (support 2.29, billing
2.15): inside both bands. More calls than this (the 2 000-2 500 a day of a bigger centre)
would push voice below 2.70 with this cost base, so inbound volume sits at the low end on
purpose.

The example's [hours] match the generator (weekdays 08:00-20:00, Saturday 09:00-16:00,
Sunday, CLOSED_DATES and Norway's public holidays closed), so shared cost accrues over
open hours: November is open 21 x 12 + 4 x 7 = 280 h; a weekday carries 12/280 = 1/23.3
of the month's cost against 1/22.8 of its contacts, so day figures run at ~0.98 x the
month's (a Saturday 7/280 against 0.45/22.8 of the contacts, ~1.3 x); a Sunday carries
no cost and nothing unallocated. Within a day the cost accrues evenly over the open hours
while calls peak mid-morning, so a weekday's voice figure goes from ~4.0 at 08:30 to ~2.6
at noon and ~2.7 at 17:00 (without [hours], 26 at 08:30 and 2.0 at 17:00). The previous
month holds only the window's first days, so its figures carry a whole month's cost on a
few days' contacts (use --days 62 to cover it too).

`make run` writes to state/samples (ignored); config/samples holds the committed files
that the tests compare with `--end 2026-11-26 --now 2026-11-26T17:00`.

Usage: python scripts/generate_samples.py [--end YYYY-MM-DD] [--days 31] [--out DIR]
                                          [--now YYYY-MM-DDTHH:MM] [--if-stale]
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import math
import os
import random
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

TIMEZONE = ZoneInfo("Europe/Oslo")
CDR_COLUMNS = 18
TICKET_HEADER = (
    "Ticket ID",
    "Created at",
    "Subject",
    "Requester",
    "Channel",
    "Status",
    "Priority",
    "Group",
    "Handle time (s)",
)

# Inbound offered calls on a mean weekday; per-weekday factors average to 1.0.
INBOUND_PER_WEEKDAY = 1450
SUPPORT_SHARE = 0.70
OUTBOUND_DIALS_PER_WEEKDAY = 400
TICKETS_PER_WEEKDAY = 300
WEEKDAY_FACTOR = (1.14, 1.04, 1.00, 0.96, 0.86, 0.45, 0.0)  # Mon..Sun; Sunday closed
OPEN_HOURS = {5: (9, 16)}  # Saturday; every other open day is 08:00-20:00
DEFAULT_HOURS = (8, 20)
# Closed all day, as config/example.toml's [hours] says: these dates and Norway's public
# holidays (none fall in October or November, so the committed samples have none).
CLOSED_DATES = frozenset({date(2026, 12, 24), date(2026, 12, 31)})
HOLIDAYS_COUNTRY = "NO"
# Relative arrivals per hour of the day, peaking mid-morning, with a post-lunch bump.
HOURLY_CURVE = {
    8: 0.55, 9: 0.95, 10: 1.15, 11: 1.10, 12: 0.85, 13: 0.90,
    14: 0.90, 15: 0.80, 16: 0.65, 17: 0.45, 18: 0.32, 19: 0.22,
}  # fmt: skip
OUTBOUND_CURVE = {
    8: 0.3, 9: 0.9, 10: 1.0, 11: 1.0, 12: 0.5, 13: 0.9,
    14: 1.0, 15: 1.0, 16: 0.9, 17: 0.8, 18: 0.7, 19: 0.4,
}  # fmt: skip

# (disposition, cumulative probability) for calls that were not answered.
INBOUND_MISSED = 0.09
INBOUND_MISS_KINDS = (("NO ANSWER", 0.80), ("BUSY", 0.90), ("FAILED", 0.96), ("CONGESTION", 1.0))
OUTBOUND_ANSWERED = 0.35
OUTBOUND_MISS_KINDS = (("NO ANSWER", 0.70), ("BUSY", 0.88), ("FAILED", 0.95), ("CONGESTION", 1.0))
OUTBOUND_SALE, OUTBOUND_LEAD = 0.08, 0.15  # of answered dials
INBOUND_SALE, INBOUND_LEAD = 0.06, 0.04  # of answered sales-in calls

FIRST_NAMES = (
    "Ola", "Kari", "Per", "Anne", "Lars", "Ingrid", "Jonas", "Sofie", "Kåre", "Åse",
    "Bjørn", "Marte", "Emil", "Nora", "Håkon", "Sigrid", "Mohammed", "Fatima", "John", "Anna",
)  # fmt: skip
LAST_NAMES = (
    "Nordmann", "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen",
    "Kristiansen", "Jensen", "Dahl", "Berg", "Haugen", "Ødegård", "Sæther", "Doe", "Ali",
)  # fmt: skip
SUBJECTS = (
    "Invoice {n}, wrong amount",
    "Cannot log in, password reset",
    "Change of address, moving {m}",
    'Question about "Pro" plan, pricing',
    "Delivery delayed, order {n}",
    "Refund request, order {n}",
    "Cancel subscription",
    "Broken router, need replacement",
    "Re: Your case {n}",
    "Faktura {n}, feil beløp",
)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")  # fmt: skip


# -- helpers -------------------------------------------------------------------------------
def _q(value: str) -> str:
    """An Asterisk cdr_csv string field: double-quoted, embedded quotes doubled."""
    return '"' + value.replace('"', '""') + '"'


def _hms(day_prefix: str, seconds: int) -> str:
    """Local 'YYYY-MM-DD HH:MM:SS' for `seconds` after local midnight of the prefix's day."""
    if seconds >= 86400:  # a call running past midnight: format on the next day
        nxt = date.fromisoformat(day_prefix[:10]) + timedelta(days=seconds // 86400)
        return _hms(nxt.isoformat() + " ", seconds % 86400)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{day_prefix}{h:02d}:{m:02d}:{s:02d}"


def _day_epoch(day: date, tz: ZoneInfo) -> int:
    """Epoch seconds of local 00:00 as seen from noon (opening hours never cross a DST shift)."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=tz)
    return int(noon.timestamp()) - 12 * 3600


def _pick(rng: random.Random, kinds: Sequence[tuple[str, float]]) -> str:
    u = rng.random()
    for name, cumulative in kinds:
        if u < cumulative:
            return name
    return kinds[-1][0]


def _arrivals(
    rng: random.Random, count: int, hours: tuple[int, int], curve: dict[int, float]
) -> list[int]:
    """`count` arrival times (seconds after midnight), sorted, following an hourly curve."""
    slots = [h for h in range(hours[0], hours[1]) if curve.get(h, 0) > 0]
    weights = [curve[h] for h in slots]
    picked = rng.choices(slots, weights, k=count)
    return sorted(h * 3600 + int(rng.random() * 3600) for h in picked)


def _lognormal(rng: random.Random, mean: float, sigma: float, low: int, high: int) -> int:
    mu = math.log(mean) - sigma * sigma / 2
    return max(low, min(high, int(rng.lognormvariate(mu, sigma))))


@functools.cache
def _public_holidays(year: int) -> frozenset[date]:
    import holidays  # the exporter's own dependency for [hours] holidays = "NO"

    return frozenset(holidays.country_holidays(HOLIDAYS_COUNTRY, years=year))


def is_closed(day: date) -> bool:
    """A day the sample center is closed although its weekday has hours."""
    return day in CLOSED_DATES or day in _public_holidays(day.year)


def _volume(rng: random.Random, base: float, day: date) -> int:
    factor = WEEKDAY_FACTOR[day.weekday()]
    if factor <= 0 or is_closed(day):
        return 0
    return max(0, round(base * factor * rng.gauss(1.0, 0.04)))


def _outcome(rng: random.Random, sale: float, lead: float) -> str:
    """The userfield an agent sets after an answered sales call: SALE, LEAD or nothing."""
    u = rng.random()
    return "SALE" if u < sale else "LEAD" if u < sale + lead else ""


def _phone(rng: random.Random) -> str:
    return "47" + rng.choice("49") + f"{rng.randrange(10_000_000):07d}"


def _clid(rng: random.Random, number: str) -> str:
    if rng.random() < 0.35:
        return f'"{rng.choice(LAST_NAMES)}, {rng.choice(FIRST_NAMES)}" <{number}>'
    return f'"{number}" <{number}>'


# -- CDR rows ------------------------------------------------------------------------------
def iter_cdr_rows(
    day: date, tz: ZoneInfo = TIMEZONE, until: datetime | None = None
) -> Iterator[str]:
    """The Master.csv lines (with newline) of one local calendar day, in start order.

    Deterministic per day: the RNG is seeded by the day's ordinal. With `until`, only the
    calls that started at or before that moment are yielded (same ids as the full day).
    """
    rng = random.Random(day.toordinal() << 1)
    hours = OPEN_HOURS.get(day.weekday(), DEFAULT_HOURS)
    n_in = _volume(rng, INBOUND_PER_WEEKDAY, day)
    n_out = _volume(rng, OUTBOUND_DIALS_PER_WEEKDAY, day) if day.weekday() < 5 else 0
    calls: list[tuple[int, bool]] = [(t, False) for t in _arrivals(rng, n_in, hours, HOURLY_CURVE)]
    calls += [(t, True) for t in _arrivals(rng, n_out, hours, OUTBOUND_CURVE)]
    calls.sort()

    midnight = _day_epoch(day, tz)
    prefix = day.isoformat() + " "
    limit = None if until is None else int(until.timestamp()) - midnight
    seq = 1000 + rng.randrange(50_000)  # Asterisk's uniqueid sequence carries on across days
    chan = rng.randrange(0x1000_0000)
    for offset, outbound in calls:
        seq += 1 + (rng.random() < 0.3)  # some ids go to legs that write no CDR
        chan = (chan + 1 + rng.randrange(3)) & 0xFFFF_FFFF
        agent = 200 + rng.randrange(40)
        number = _phone(rng)
        userfield = ""
        if outbound:
            answered = rng.random() < OUTBOUND_ANSWERED
            if answered:
                disposition = "ANSWERED"
                wait = rng.randint(4, 25)
                billsec = _lognormal(rng, 360, 0.6, 15, 3600)
                userfield = _outcome(rng, OUTBOUND_SALE, OUTBOUND_LEAD)
            else:
                disposition = _pick(rng, OUTBOUND_MISS_KINDS)
                wait = rng.randint(20, 45) if disposition == "NO ANSWER" else rng.randint(0, 6)
                billsec = 0
            src, dst, dcontext = str(agent), number, "sales-out"
            clid = f'"Telesales {agent}" <{agent}>'
            channel = f"SIP/{agent}-{chan:08x}"
            dstchannel = (
                f"SIP/trunk-{(chan + 1) & 0xFFFF_FFFF:08x}" if disposition != "FAILED" else ""
            )
            lastapp, lastdata = "Dial", f"SIP/trunk/{number},60,tT"
        else:
            support = rng.random() < SUPPORT_SHARE
            queue = "support" if support else "sales"
            dcontext = "support-in" if support else "sales-in"
            dst = "22334400" if support else "22334410"
            src = number
            clid = _clid(rng, number)
            channel = f"SIP/trunk-{chan:08x}"
            lastapp, lastdata = "Queue", f"{queue},tT,,,300"
            if rng.random() >= INBOUND_MISSED:
                disposition = "ANSWERED"
                wait = min(600, int(rng.expovariate(1 / 35)))
                billsec = _lognormal(rng, 360, 0.55, 10, 3600)
                dstchannel = f"SIP/{agent}-{(chan + 1) & 0xFFFF_FFFF:08x}"
                if not support:
                    userfield = _outcome(rng, INBOUND_SALE, INBOUND_LEAD)
            else:
                disposition = _pick(rng, INBOUND_MISS_KINDS)
                wait = (
                    min(900, int(rng.expovariate(1 / 70)))
                    if disposition == "NO ANSWER"
                    else rng.randint(0, 3)
                )
                billsec = 0
                dstchannel = ""
        if limit is not None and offset > limit:
            continue
        duration = wait + billsec
        answer = _hms(prefix, offset + wait) if billsec else ""
        yield (
            f'"",{_q(src)},{_q(dst)},"{dcontext}",{_q(clid)},"{channel}","{dstchannel}",'
            f'"{lastapp}",{_q(lastdata)},"{_hms(prefix, offset)}","{answer}",'
            f'"{_hms(prefix, offset + duration)}",{duration},{billsec},"{disposition}",'
            f'"DOCUMENTATION","{midnight + offset}.{seq}","{userfield}"\n'
        )


# -- tickets -------------------------------------------------------------------------------
def iter_ticket_rows(day: date, until: datetime | None = None) -> Iterator[tuple[str, ...]]:
    """The helpdesk rows of one local day (columns of TICKET_HEADER), deterministic per day."""
    rng = random.Random((day.toordinal() << 1) | 1)
    count = _volume(rng, TICKETS_PER_WEEKDAY, day)
    hours = OPEN_HOURS.get(day.weekday(), DEFAULT_HOURS)
    limit = None
    if until is not None:
        local = until.astimezone(TIMEZONE)
        clock = local.hour * 3600 + local.minute * 60 + local.second
        limit = (local.date() - day).days * 86400 + clock
    first_id = 100_000 + (day.toordinal() - date(2024, 1, 1).toordinal()) * 1000
    prefix = day.isoformat() + " "
    for i, offset in enumerate(_arrivals(rng, count, hours, HOURLY_CURVE)):
        group = "support" if rng.random() < 0.8 else "billing"
        handle = min(900, 180 + int(rng.expovariate(1 / 80)))
        subject = rng.choice(SUBJECTS).format(
            n=rng.randrange(10_000, 99_999), m=MONTHS[day.month - 1]
        )
        requester = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}@example.com".lower()
        channel = rng.choices(("Email", "Web form", "Email, forwarded"), (70, 25, 5))[0]
        status = rng.choices(("Solved", "Closed", "Pending", "Open"), (55, 30, 10, 5))[0]
        priority = rng.choices(("Normal", "High", "Low", "Urgent"), (70, 15, 12, 3))[0]
        if limit is not None and offset > limit:
            continue
        yield (
            str(first_id + i), _hms(prefix, offset), subject, requester, channel, status,
            priority, group, str(handle),
        )  # fmt: skip


# -- files ---------------------------------------------------------------------------------
def _write_atomically(path: Path, chunks: Iterator[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _days(end: date, days: int) -> list[date]:
    return [end - timedelta(days=n) for n in range(days - 1, -1, -1)]


def write_samples(out: Path, end: date, days: int, now: datetime) -> tuple[int, int]:
    """Write Master.csv and tickets.csv for `days` days ending at `end`, cut off at `now`."""
    window = [d for d in _days(end, days) if d <= now.astimezone(TIMEZONE).date()]
    counts = [0, 0]

    def cdr() -> Iterator[str]:
        for day in window:
            for line in iter_cdr_rows(day, until=now):
                counts[0] += 1
                yield line

    def tickets() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(TICKET_HEADER)
        for day in window:
            for row in iter_ticket_rows(day, until=now):
                counts[1] += 1
                writer.writerow(row)
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
        yield buf.getvalue()

    _write_atomically(out / "Master.csv", cdr())
    _write_atomically(out / "tickets.csv", tickets())
    return counts[0], counts[1]


def newest_cdr_day(path: Path) -> date | None:
    """The start date of the last row of a Master.csv, or None if there is none."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        try:
            fields = next(csv.reader([raw.decode("utf-8", "replace")]))
            return date.fromisoformat(fields[9][:10])
        except (StopIteration, IndexError, ValueError):
            continue
    return None


def write_cdr_file(path: Path | str, n_rows: int, start_date: date = date(2020, 1, 1)) -> int:
    """Write exactly `n_rows` CDR rows over consecutive days from `start_date` (benchmarks).

    The rows are the same as the sample generator's; each day is generated once and
    streamed to a buffered file. Returns the number of days covered.
    """
    written = 0
    day = start_date
    days = 0
    with open(path, "w", encoding="utf-8", newline="", buffering=1 << 20) as out:
        while written < n_rows:
            lines = list(iter_cdr_rows(day))[: n_rows - written]
            out.writelines(lines)
            written += len(lines)
            days += 1 if lines else 0
            day += timedelta(days=1)
    return days


# -- CLI -----------------------------------------------------------------------------------
def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--end", type=date.fromisoformat, help="last day (default: today, Europe/Oslo)"
    )
    parser.add_argument(
        "--days",
        type=int,
        default=None,
        help="number of days (default: from the 1st of the previous month, so both month "
        "windows are complete)",
    )
    parser.add_argument("--out", type=Path, default=Path("config/samples"), help="output directory")
    parser.add_argument(
        "--now",
        type=datetime.fromisoformat,
        help="the moment to cut off at, local Europe/Oslo unless it has an offset (default: now)",
    )
    parser.add_argument(
        "--if-stale", action="store_true", help="do nothing unless Master.csv has no row from today"
    )
    args = parser.parse_args(argv)
    if args.days is not None and args.days < 1:
        parser.error("--days must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    now: datetime = args.now or datetime.now(TIMEZONE)
    if now.tzinfo is None:
        now = now.replace(tzinfo=TIMEZONE)
    today = now.astimezone(TIMEZONE).date()
    end: date = args.end or today
    if args.days is None:
        previous_month = (end.replace(day=1) - timedelta(days=1)).replace(day=1)
        args.days = (end - previous_month).days + 1
    if args.if_stale:
        newest = newest_cdr_day(args.out / "Master.csv")
        if newest is not None and newest >= today:
            print(f"{args.out / 'Master.csv'}: has rows from {newest}, not stale")
            return 0
    calls, tickets = write_samples(args.out, end, args.days, now)
    first = end - timedelta(days=args.days - 1)
    cut = f"{now:%Y-%m-%d %H:%M %Z}"
    print(f"{args.out}: {calls} calls, {tickets} tickets, {first} .. {end} (cut off at {cut})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C in `make run`: files are replaced atomically or not at all
        sys.exit(130)
