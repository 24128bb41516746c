"""The store's write path, once for both databases: a commit's contacts and legs (merged
per call), queue_log enrichment, repeat marks and rollup deltas, in one transaction.

collector.store_base adds setup and reads (SqlStore); SqliteStore (collector.store) and
PostgresStore (collector.store_pg) say how to connect and open a transaction, and keep or
re-read what a process may cache. Every statement comes from collector.store_sql.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from adapters.base import Leg, QueueCall, key_customer
from collector.calls import leg_of_contact, merge_legs, single_leg_contact, single_leg_rows
from collector.model import Contact, KpiDefinitions
from collector.service import enrich_contact
from collector.store_rollup import DayMapper, Totals, add_contact, add_rows
from collector.store_sql import CONTACT_COLUMNS, Statements

# The inline leg's flags: what a Leg knows that its contact does not show.
_ANSWERED, _PERSON, _QUEUE_MAPPED, _DIRECTION_MAPPED = 1, 2, 4, 8
_CHUNK = 500  # ids per IN list (SQLite's limit on parameters is 32766; keeps plans small)
_KEYED_BYTES = len(key_customer("", b"k")) // 2  # the stored customer key's size in bytes


class Committed(NamedTuple):
    """What one commit did: records (contacts or legs) new to the store, and repeats."""

    records: int  # new contacts plus new legs
    duplicates: int  # records already stored (a re-read, a redelivery) or repeated in the batch


def _flags(leg: Leg) -> int:
    return (
        (_ANSWERED if leg.answered else 0)
        | (_PERSON if leg.person else 0)
        | (_QUEUE_MAPPED if leg.queue else 0)
        | (_DIRECTION_MAPPED if leg.direction else 0)
    )


def _inline_leg(contact: Contact, leg_id: str, finish: float, billsec: float, flags: int) -> Leg:
    """The one leg a contact row holds, exactly as it was committed."""
    return Leg(
        leg_id,
        contact.id,
        contact.channel,
        contact.start,
        finish,
        billsec,
        bool(flags & _ANSWERED),
        bool(flags & _PERSON),
        contact.queue if flags & _QUEUE_MAPPED else "",
        contact.direction if flags & _DIRECTION_MAPPED else "",
        contact.outcome,
        contact.customer,
        contact.price,
        contact.reason,
    )


def _leg_start(leg: Leg) -> float:
    return leg.start


def _leg_of_row(row: tuple[object, ...]) -> Leg:
    lid, call, channel, start, finish, billsec, answered, person, *rest = row
    return Leg(
        lid, call, channel, start, finish, billsec, bool(answered), bool(person), *rest  # type: ignore[arg-type]
    )


class StoreWrites:
    """commit_records over one connection; subclasses say how to connect and write."""

    _sql: Statements
    _db: Any  # the DB-API connection (sqlite3 or psycopg): .execute() returns a cursor
    _db_errors: tuple[type[Exception], ...]
    _cache_newest = True  # whether newest_start may keep its figure in process
    _newest: dict[str, float | None]

    def _init_state(self, tz: ZoneInfo, readonly: bool, kpi: KpiDefinitions | None,
                    customer_key: bytes | None) -> None:
        self._tz = tz
        self._kpi = kpi or KpiDefinitions()
        self._configured_key = customer_key
        self._key = b""
        self._targets: set[str] = set()  # sources with queue_log entries waiting for them
        self._days = DayMapper(tz)
        self._lock = threading.RLock()
        self._legs_written = 0
        self._readonly = readonly
        self._newest: dict[str, float | None] = {}  # source -> newest contact start, once read

    # -- what the databases do differently -----------------------------------------------
    def _session(self) -> AbstractContextManager[None]:
        """Hold the store for one call (and, on PostgreSQL, have a live connection)."""
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[None]:
        """One write transaction: committed when the block ends, rolled back on an error."""
        raise NotImplementedError

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """executemany; how many rows it changed."""
        raise NotImplementedError

    def _awaits_queue_calls(self, source: str) -> bool:
        """Whether queue_log entries wait for contacts of `source`."""
        return source in self._targets

    def _note_target(self, target: str) -> None:
        self._targets.add(target)

    def _check_fence(self) -> None:
        """Inside a pull's commit: raise NotLeader when this replica may no longer pull."""

    # -- a commit's parts -----------------------------------------------------------------
    def _key_records(
        self, contacts: Sequence[Contact], legs: Sequence[Leg]
    ) -> tuple[Sequence[Contact], Sequence[Leg]]:
        """Contacts and legs with their customer digests keyed with the store's secret."""
        # key_customer's MAC, from a copy of the keyed state (BLAKE2 absorbs the key as
        # its first block): the same value without setting the key up again per digest.
        copy = hashlib.blake2b(digest_size=_KEYED_BYTES, key=self._key[:64]).copy
        keyed: dict[str, str] = {}

        def mac(digest: str) -> str:
            value = keyed.get(digest)
            if value is None:
                state = copy()
                state.update(digest.encode("ascii", "replace"))
                value = keyed[digest] = state.hexdigest()
            return value

        if any(c.customer is not None for c in contacts):
            contacts = [
                c if c.customer is None else c._replace(customer=mac(c.customer))
                for c in contacts
            ]
        if legs:
            new = tuple.__new__
            legs = [
                leg if leg[11] is None
                else new(Leg, (*leg[:11], mac(leg[11]), *leg[12:]))
                for leg in legs
            ]
        return contacts, legs

    # -- queue_log entries for another source's contacts ---------------------------------
    def _commit_queue_calls(
        self, source: str, entries: Sequence[QueueCall], totals: Totals,
        others: list[tuple[str, int, tuple[Any, ...]]],
        moved: list[tuple[int, str, str, str, str]],
    ) -> int:
        """Keep new queue_log entries; enrich the contacts that have arrived already."""
        fresh: list[QueueCall] = []
        for entry in entries:
            cursor = self._db.execute(
                self._sql.insert_queue_call,
                (entry.target, entry.call, source, entry.queue, entry.enter, entry.wait,
                 entry.left),
            )
            if cursor.rowcount:
                fresh.append(entry)
                self._note_target(entry.target)
        by_target: dict[str, dict[str, QueueCall]] = {}
        for entry in fresh:
            by_target.setdefault(entry.target, {})[entry.call] = entry
        for target, calls in by_target.items():
            stored = self._stored_calls(target, list(calls))
            enriched: list[tuple[int, tuple[Any, ...]]] = []
            for call, (day, contact, _leg) in stored.items():
                self._enrich(target, day, contact, calls[call], totals, enriched, moved)
            others.extend((target, day, c) for day, c in enriched)
        return len(fresh)

    def _enrich(
        self, source: str, day: int, contact: Contact, entry: QueueCall, totals: Totals,
        touched: list[tuple[int, tuple[Any, ...]]], moved: list[tuple[int, str, str, str, str]],
    ) -> None:
        new = enrich_contact(contact, entry)
        if new == contact:
            return
        add_contact(totals, day, contact, -1)
        add_contact(totals, day, new)
        if new.queue != contact.queue:
            moved.append((day, contact.channel, contact.direction, contact.queue,
                          contact.outcome))
        self._db.execute(
            self._sql.enrich, (new.queue, new.wait_seconds, new.reason, source, new.id)
        )
        touched.append((day, new))

    def _apply_queue_calls(
        self, source: str, touched: list[tuple[int, tuple[Any, ...]]], totals: Totals,
        moved: list[tuple[int, str, str, str, str]],
    ) -> None:
        """Enrich this commit's contacts of `source` that have a queue_log entry waiting."""
        ids = [c[0] for _, c in touched]
        entries: dict[str, QueueCall] = {}
        d = self._sql.dialect
        for i in range(0, len(ids), _CHUNK):
            part = ids[i : i + _CHUNK]
            query = self._sql.select_in(
                'SELECT call, queue, enter, wait, "left" FROM queue_calls WHERE target = ? AND',
                "call", len(part),
            )
            for call, queue, enter, wait, left in self._db.execute(
                query, (source, *d.list_param(part))
            ):
                entries[call] = QueueCall(call, source, queue, enter, wait, left)
        if not entries:
            return
        enriched: list[tuple[int, tuple[Any, ...]]] = []
        for i, (day, c) in enumerate(touched):
            entry = entries.get(c[0])
            if entry is None:
                continue
            contact = c if isinstance(c, Contact) else Contact._make(c[:14])
            before = len(enriched)
            self._enrich(source, day, contact, entry, totals, enriched, moved)
            if len(enriched) != before:
                touched[i] = enriched[-1]

    # -- repeats (issue 11) --------------------------------------------------------------
    def _mark_repeats(
        self, touched: Sequence[tuple[str, int, tuple[Any, ...]]], totals: Totals,
        vacated: Sequence[tuple[str, float]] = (),
    ) -> None:
        """Mark repeats around this commit's contacts (source, day, Contact's fields).

        A repeat is a handled contact with a later contact of its customer within the
        window. When contact c (start s) arrives, the only contacts that can gain a
        follower are those of the customer's latest start before s, if within the window
        (any earlier one already has that latest contact as its follower); and c itself
        is a repeat when a contact of its customer starts in (s, s + window]. Both are
        index look-ups per contact, in SQL over a temporary table of the commit's
        contacts, so the cost does not grow with a customer's history. A contact that
        was recomputed (a call's next leg, a queue_log entry) has its own mark checked
        and moved to its current daily row; and where it left a (customer, start) behind
        (`vacated`), the customer's latest contact before that start is checked again.
        """
        window = self._kpi.fcr_window
        rows = [
            (c[10], c[4], source, c[0])
            for source, _, c in touched
            if c[10] is not None or isinstance(c, Contact)
        ]
        if not rows and not vacated:
            return
        db, sql = self._db, self._sql
        db.execute(sql.fcr_temp)
        db.execute("DELETE FROM fcr_touched")
        self._many(sql.fcr_touched_put, rows)
        followed: set[tuple[str, str]] = set()
        before: set[tuple[str, float]] = set()
        for src, cid, customer, is_followed, latest in db.execute(
            sql.fcr_neighbours, (window, window)
        ):
            if is_followed:
                followed.add((src, cid))
            if latest is not None:
                before.add((customer, latest))
        marks = {(m[2], m[3]): m for m in db.execute(sql.fcr_marks)}
        add_marks: list[tuple[Any, ...]] = []
        drop_marks: list[tuple[Any, ...]] = []
        decided: set[tuple[str, str]] = set()
        for source, day, c in touched:
            key = (source, c[0])
            if key in decided:
                continue
            decided.add(key)
            old = marks.get(key)
            want = (c[10], c[4], source, c[0], day, c[1], c[2], c[3], c[9])
            repeat = bool(c[5]) and c[10] is not None and key in followed
            if old is not None and (not repeat or tuple(old) != want):
                drop_marks.append(old)
            if repeat and (old is None or tuple(old) != want):
                add_marks.append(want)
        if before:  # a first read of new customers has none
            db.execute(sql.fcr_before_temp)
            db.execute("DELETE FROM fcr_before")
            self._many(sql.fcr_before_put, before)
            for row in db.execute(sql.fcr_predecessors):
                if (row[2], row[3]) not in decided:  # handled, unmarked, newly followed
                    decided.add((row[2], row[3]))
                    add_marks.append(row)
        for customer, start in dict.fromkeys(vacated):
            (latest,) = db.execute(
                sql.fcr_latest_before_one, (customer, start, start, window)
            ).fetchone()
            if latest is None:
                continue
            for *mark, is_repeat in db.execute(
                sql.fcr_recheck, (window, customer, latest)
            ).fetchall():
                key = (mark[2], mark[3])
                if key in decided:
                    continue
                decided.add(key)
                old = db.execute(sql.mark_of_contact, key).fetchone()
                if old is not None and not is_repeat:
                    drop_marks.append(old)
                elif old is None and is_repeat:
                    add_marks.append(tuple(mark))
        for sign, group in ((-1, drop_marks), (1, add_marks)):
            for mark in group:
                day_key = (mark[4], mark[5], mark[6], mark[7], mark[8])
                acc = totals.get(day_key)
                if acc is None:
                    acc = totals[day_key] = [0, 0, 0.0, 0.0, 0.0, 0.0, mark[1], 0, 0.0, 0, 0, 0, 0]
                acc[12] += sign
        if drop_marks:
            self._many(sql.delete_mark, (mark[:4] for mark in drop_marks))
        if add_marks:
            self._many(sql.replace_mark, add_marks)

    # -- commits ------------------------------------------------------------------------
    def commit(self, source: str, contacts: Sequence[Contact], position: str | None) -> int:
        """Store new contacts and move the position; returns how many contacts were new."""
        return self.commit_records(source, contacts, (), position).records

    def commit_records(
        self,
        source: str,
        contacts: Sequence[Contact],
        legs: Sequence[Leg],
        position: str | None,
        queue_calls: Sequence[QueueCall] = (),
    ) -> Committed:
        """Store new contacts and legs, roll them up and move the position, atomically.

        Customer digests are keyed with the store's secret first. `queue_calls` (a
        queue_log with cdr_source) enrich another source's contacts: kept, and applied now
        to those already stored and later to each that arrives. Repeats are marked around
        every stored contact that carries a customer key, in the same transaction.

        A contact or leg already stored for this source (same id; for a leg, same call and
        id) is a duplicate: re-reading an export or a redelivered webhook counts once. Each
        call that gains a leg gets its contact recomputed from all its legs; the rollups
        lose the call's old contribution and gain the new one in the same transaction.
        """
        with self._session():
            contacts, legs = self._key_records(contacts, legs)
            legs_before = self._legs_written
            try:
                with self._transaction():
                    legs_before = self._legs_written  # re-read by the transaction
                    inserted, fresh_legs, merged, fresh_entries = self._write(
                        source, contacts, legs, position, queue_calls, legs_before
                    )
            except BaseException:
                self._legs_written = legs_before
                raise
            if self._cache_newest and source in self._newest:
                starts = [c.start for _, c in inserted] + [c[4] for _, c in merged]
                starts += [entry.enter for entry in queue_calls]  # kept: stored records
                known = self._newest[source]
                if starts and (known is None or max(starts) > known):
                    self._newest[source] = max(starts)
        records = len(inserted) + fresh_legs + fresh_entries
        return Committed(records, len(contacts) + len(legs) + len(queue_calls) - records)

    def _write(
        self, source: str, contacts: Sequence[Contact], legs: Sequence[Leg],
        position: str | None, queue_calls: Sequence[QueueCall], legs_before: int,
    ) -> tuple[list[tuple[int, Contact]], int, list[tuple[int, tuple[Any, ...]]], int]:
        """commit_records inside its transaction."""
        sql = self._sql
        totals = Totals(self._kpi)
        inserted = self._insert(source, contacts)
        for day, contact in inserted:
            add_contact(totals, day, contact)
        merged: list[tuple[int, tuple[Any, ...]]] = []
        vacated: list[tuple[str, float]] = []
        fresh_legs, moved = self._commit_legs(source, legs, totals, merged, vacated)
        touched: list[tuple[int, tuple[Any, ...]]] = [*inserted, *merged]
        if touched and self._awaits_queue_calls(source):
            self._apply_queue_calls(source, touched, totals, moved)
        others: list[tuple[str, int, tuple[Any, ...]]] = []
        fresh_entries = (
            self._commit_queue_calls(source, queue_calls, totals, others, moved)
            if queue_calls else 0
        )
        self._mark_repeats([(source, day, c) for day, c in touched] + others, totals, vacated)
        self._many(sql.upsert_daily, (key + tuple(acc) for key, acc in totals.items()))
        if moved:  # a call left its old row (day, queue or outcome changed)
            self._many(sql.delete_empty_daily, moved)
        if self._legs_written != legs_before:
            self._db.execute(sql.put_meta, ("legs", str(self._legs_written)))
        if position is not None:
            self._check_fence()
            self._db.execute(
                sql.put_position, (source, position, datetime.now(UTC).timestamp())
            )
        return inserted, fresh_legs, merged, fresh_entries

    def _insert(self, source: str, contacts: Sequence[Contact]) -> list[tuple[int, Contact]]:
        if not contacts:
            return []
        day_of = self._days.day
        rows = [(day_of(c.start), c) for c in contacts]
        sql = self._sql
        # The ids known already (re-read export, redelivery), asked first: an insert that
        # skips them inside a SAVEPOINT, rolled back when it skipped any, costs more (a
        # savepoint copies every index page it touches into SQLite's sub-journal).
        known = self._known_ids(source, [c.id for _, c in rows])
        fresh: list[tuple[int, Contact]] = []
        for day, c in rows:
            if c.id not in known:
                known.add(c.id)  # also drops a repeat inside this batch
                fresh.append((day, c))
        self._many(sql.insert_contact_new, ((*c, source, day) for day, c in fresh))
        return fresh

    def _commit_legs(
        self,
        source: str,
        legs: Sequence[Leg],
        totals: Totals,
        merged: list[tuple[int, tuple[Any, ...]]],
        vacated: list[tuple[str, float]],
    ) -> tuple[int, list[tuple[int, str, str, str, str]]]:
        """Store the new legs and recompute their calls' contacts into `merged`; the
        (customer, start) a recomputed call left goes to `vacated`.

        Returns how many legs were new, and the rollup keys that calls' old contacts were
        taken out of (to drop rows left empty). Fast path: every leg is a call of its own,
        new to the store (a day's file read for the first time): one contact row each,
        holding its leg.
        """
        if not legs:
            return 0, []
        calls = [leg.call for leg in legs]
        # Some calls known already (a re-read, a call's next leg): the general path. The
        # look-up walks the primary key where new ids go (cheap); an insert that skips
        # known calls inside a SAVEPOINT, rolled back when it skipped any, cost more (a
        # savepoint copies every index page it touches into SQLite's sub-journal, and
        # the customer index's pages are random): 1M rows, 11.9 -> 10.4 s of CPU.
        if len(set(calls)) == len(legs) and not self._known_ids(source, calls):
            rows = single_leg_rows(legs, source, self._days.day)
            self._many(self._sql.insert_inline_new, rows)  # a NOT NULL violation fails
            add_rows(totals, rows)
            # The rows as they are (Contact's fields first): for newest_start, queue
            # enrichment and repeats, without a Contact per row.
            merged.extend([(row[15], row) for row in rows])
            return len(legs), []
        return self._merge_calls(source, legs, totals, merged, vacated)

    def _merge_calls(
        self,
        source: str,
        legs: Sequence[Leg],
        totals: Totals,
        merged: list[tuple[int, tuple[Any, ...]]],
        vacated: list[tuple[str, float]],
    ) -> tuple[int, list[tuple[int, str, str, str, str]]]:
        by_call: dict[str, list[Leg]] = {}
        for leg in legs:
            group = by_call.get(leg.call)
            if group is None:
                by_call[leg.call] = [leg]
            else:
                group.append(leg)
        stored = self._stored_calls(source, list(by_call))
        day_of = self._days.day
        sql = self._sql
        fresh = 0
        moved: list[tuple[int, str, str, str, str]] = []
        inline_rows: list[tuple[object, ...]] = []
        table_legs: list[Leg] = []
        for call, group in by_call.items():
            old = stored.get(call)
            known: list[Leg] = []
            in_table = False
            if old is not None:
                if old[2] is not None:
                    known = [old[2]]  # the one leg kept in its contact row
                else:
                    known = [_leg_of_row(row) for row in self._db.execute(
                        sql.legs_of_call, (source, call)
                    )]
                    in_table = bool(known)
                    if not in_table:  # stored before legs were kept, or a plain contact
                        known = [leg_of_contact(old[1])]
            seen = {leg.id for leg in known}
            new: list[Leg] = []
            for leg in group:
                if leg.id not in seen:  # else already stored, or repeated in this batch
                    seen.add(leg.id)
                    new.append(leg)
            if not new:
                continue
            fresh += len(new)
            if old is None and len(new) == 1:
                leg = new[0]
                contact = single_leg_contact(leg)
                day = day_of(contact.start)
                inline_rows.append(
                    (*contact, source, day, leg.id, leg.end, leg.billsec, _flags(leg))
                )
            else:
                # A call of several legs: all of them in the legs table, in file order
                # (the legs stored before first), the contact row without an inline leg.
                table_legs.extend(new if in_table else known + new)
                everything = known + new
                everything.sort(key=_leg_start)  # stable: file order breaks ties
                contact = merge_legs(call, everything)
                day = day_of(contact.start)
                if old is not None:
                    old_day, old_contact = old[0], old[1]
                    add_contact(totals, old_day, old_contact, -1)
                    moved.append((old_day, old_contact.channel, old_contact.direction,
                                  old_contact.queue, old_contact.outcome))
                    if old_contact.customer is not None and (
                            old_contact.customer, old_contact.start) != (
                            contact.customer, contact.start):
                        vacated.append((old_contact.customer, old_contact.start))
                self._db.execute(sql.replace_contact, (*contact, source, day))
            merged.append((day, contact))
            add_contact(totals, day, contact)
        first = self._legs_written
        self._many(
            sql.insert_leg_new, ((*leg, source, n) for n, leg in enumerate(table_legs, first))
        )
        self._legs_written = first + len(table_legs)
        self._many(sql.insert_inline_new, inline_rows)
        return fresh, moved

    def _stored_calls(
        self, source: str, calls: list[str]
    ) -> dict[str, tuple[int, Contact, Leg | None]]:
        """call -> (day, contact, its inline leg or None) for the calls already stored."""
        found: dict[str, tuple[int, Contact, Leg | None]] = {}
        d = self._sql.dialect
        for i in range(0, len(calls), _CHUNK):
            part = calls[i : i + _CHUNK]
            query = self._sql.select_in(
                f"SELECT day, {CONTACT_COLUMNS}, leg, finish, billsec, flags "  # noqa: S608
                "FROM contacts WHERE source = ? AND", "id", len(part),
            )
            for row in self._db.execute(query, (source, *d.list_param(part))):
                day, cid, channel, direction, queue, start, handled, *rest = row
                *fields, leg_id, finish, billsec, flags = rest
                contact = Contact(cid, channel, direction, queue, start, bool(handled), *fields)
                leg = None if leg_id is None else _inline_leg(contact, leg_id, finish, billsec,
                                                              flags)
                found[cid] = (day, contact, leg)
        return found

    def _known_ids(self, source: str, ids: Iterable[str]) -> set[str]:
        unique = list(dict.fromkeys(ids))
        known: set[str] = set()
        d = self._sql.dialect
        for i in range(0, len(unique), _CHUNK):
            part = unique[i : i + _CHUNK]
            query = self._sql.select_in(
                "SELECT id FROM contacts WHERE source = ? AND", "id", len(part)
            )
            known.update(row[0] for row in self._db.execute(query, (source, *d.list_param(part))))
        return known
