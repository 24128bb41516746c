"""Incremental reading of an append-only export file that may be rotated or truncated.

The position remembers the file's identity (device, inode, fingerprints of its first
bytes and of the bytes just before the offset), the byte offset after the last line that
was handed out, and the file's size and modification time when it was read.

A read returns complete lines. A partial last line waits while the file is being written;
once the file has not changed since the previous read (same size and modification time),
its last line is complete and is handed out too, and the position remembers that it had
no newline: a newline appended later is skipped, and bytes appended to that same line
(a writer that paused for a whole interval) become a line of their own, never glued on.

When the file was replaced (rotated), or shrank or was rewritten (copytruncate), the rest
of the old content is read first from the file that now holds it: found next to the file
(Master.csv.1, Master.csv-20261126) or by `rotated_glob` (an olddir), by inode first and
else by the fingerprint of what was read. Then the new file is read from its start; the
store's (source, id) uniqueness keeps re-read rows from counting twice. When the old
content is not found, the bytes known to be unread are reported as lost on the next chunk.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

HEAD_BYTES = 256
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024
MAX_CANDIDATES = 1000  # rotated files looked at, newest first, when one goes missing


@dataclass(frozen=True)
class FilePosition:
    dev: int
    ino: int
    offset: int
    line: int  # complete lines consumed so far, for 1-based line numbers in logs
    head: str  # hash of the file's first min(offset, HEAD_BYTES) bytes
    # hash of the HEAD_BYTES before offset: catches a rewrite in place that keeps the first
    # bytes (a CSV header longer than HEAD_BYTES). "" (older positions): not checked.
    tail: str = ""
    # The file's size and mtime (ns) when it was read; -1 (older positions): unknown.
    size: int = -1
    mtime_ns: int = -1
    # The line before offset was handed out without its newline (a file's last line).
    open_end: bool = False

    def dumps(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> FilePosition | None:
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                dev=int(data["dev"]),
                ino=int(data["ino"]),
                offset=int(data["offset"]),
                line=int(data["line"]),
                head=str(data["head"]),
                tail=str(data.get("tail", "")),
                size=int(data.get("size", -1)),
                mtime_ns=int(data.get("mtime_ns", -1)),
                open_end=data.get("open_end", False) is True,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


@dataclass(frozen=True)
class Chunk:
    """Lines read from one file, and the position after them.

    `data` may be empty: the position alone changed (the file was seen to change, or was
    replaced), and it must be committed so that the next read knows it.
    """

    data: bytes
    first_line: int  # 1-based line number of the first line in data
    path: Path
    position: FilePosition
    complete: bool = False  # data ends at the end of a file that is no longer written
    # Before this chunk, the file was rotated, truncated or replaced and the rest of its old
    # content was not found: rows written after the previous read are lost, if any.
    lost: bool = False
    lost_bytes: int = 0  # of them, how many bytes were known to be unread (a lower bound)


def _hash(fd: int, length: int, at: int) -> str:
    data = os.pread(fd, length, at) if length > 0 else b""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _head_hash(fd: int, length: int) -> str:
    return _hash(fd, length, 0)


def _tail_hash(fd: int, offset: int) -> str:
    start = max(0, offset - HEAD_BYTES)
    return _hash(fd, offset - start, start)


def _position_at(
    fd: int,
    dev: int,
    ino: int,
    offset: int,
    line: int,
    seen: os.stat_result | None = None,
    open_end: bool = False,
) -> FilePosition:
    head = _head_hash(fd, min(offset, HEAD_BYTES))
    size, mtime_ns = (seen.st_size, seen.st_mtime_ns) if seen is not None else (-1, -1)
    return FilePosition(
        dev, ino, offset, line, head, _tail_hash(fd, offset), size, mtime_ns, open_end
    )


def _still_valid(fd: int, size: int, position: FilePosition) -> bool:
    """Same content up to the offset: not truncated, not rewritten in place."""
    if size < position.offset:
        return False
    if position.head != _head_hash(fd, min(position.offset, HEAD_BYTES)):
        return False
    return not position.tail or position.tail == _tail_hash(fd, position.offset)


def _unchanged(seen: os.stat_result, position: FilePosition) -> bool:
    """The file has the size and mtime it had when `position` was taken."""
    return position.size >= 0 and (seen.st_size, seen.st_mtime_ns) == (
        position.size,
        position.mtime_ns,
    )


def rotated_candidates(path: Path, rotated_glob: str | None = None) -> list[Path]:
    """Files that may hold `path`'s old content: the names next to it that start with its
    name, and the matches of `rotated_glob` (relative to `path`'s folder unless absolute)."""
    found: list[Path] = []
    with contextlib.suppress(OSError):
        found = sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name))
    if rotated_glob:
        pattern = os.path.join(path.parent, os.path.expanduser(rotated_glob))
        found += [Path(name) for name in sorted(glob.glob(pattern))]
    unique: dict[Path, None] = {}
    for candidate in found:
        if candidate != path:
            unique.setdefault(candidate, None)
    return list(unique)


def _find_old(
    path: Path, position: FilePosition, live: os.stat_result, rotated_glob: str | None
) -> tuple[Path, int] | None:
    """The file that now holds what was read up to `position`, opened; None if not found.

    The old inode first (a rename, also into an olddir); else the newest other file whose
    first bytes and bytes before the offset hash as they did (a copy: copytruncate).
    """
    by_inode: list[Path] = []
    by_print: list[tuple[int, Path]] = []
    for candidate in rotated_candidates(path, rotated_glob):
        try:
            st = candidate.stat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size < position.offset:
            continue
        if (st.st_dev, st.st_ino) == (live.st_dev, live.st_ino):
            continue  # the live file itself (a hard link)
        if (st.st_dev, st.st_ino) == (position.dev, position.ino):
            by_inode.append(candidate)
        elif position.offset > 0:  # an empty fingerprint would match anything
            by_print.append((st.st_mtime_ns, candidate))
    by_print.sort(key=lambda item: item[0], reverse=True)
    for candidate in [*by_inode, *(p for _, p in by_print[:MAX_CANDIDATES])]:
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:
            continue
        try:
            if _still_valid(fd, os.fstat(fd).st_size, position):
                return candidate, fd
        except OSError:
            pass
        os.close(fd)
    return None


def _read_from(
    path: Path,
    fd: int,
    start: FilePosition,
    chunk_bytes: int,
    final: bool,
    force: bool = False,
    lost: tuple[bool, int] = (False, 0),
) -> Iterator[Chunk]:
    """Yield chunks of lines from `start.offset`.

    `final` (a rotated file, or one unchanged since `start` was taken) also takes a last
    unterminated line. `lost` goes on the first chunk. When nothing is read, one empty
    chunk carries the new position if `force`, a loss, or unread bytes in a file that
    changed since `start`.
    """
    seen = os.fstat(fd)
    size = seen.st_size
    offset, line = start.offset, start.line
    if start.open_end and offset < size:
        if os.pread(fd, 1, offset) == b"\n":
            offset += 1  # the newline of the last line, which was already handed out
        else:
            line -= 1  # that line went on after it was read: its rest is a line of its own
    yielded = False
    while offset < size:
        data = os.pread(fd, min(chunk_bytes, size - offset), offset)
        if not data:
            break  # shrank under us; the next read sees the truncation
        end = data.rfind(b"\n") + 1
        if end == 0:
            # One line longer than a chunk: read on until its newline (linear, not quadratic).
            parts = [data]
            read = len(data)
            while offset + read < size:
                more = os.pread(fd, min(chunk_bytes, size - offset - read), offset + read)
                if not more:
                    break
                newline = more.find(b"\n")
                if newline >= 0:
                    parts.append(more[: newline + 1])
                    end = read + newline + 1
                    break
                parts.append(more)
                read += len(more)
            data = b"".join(parts)
            if end == 0:
                if not final or offset + len(data) < size:
                    break  # a partial last line: still being written
                end = len(data)
        body = data[:end]
        offset += end
        open_end = not body.endswith(b"\n")
        lines = body.count(b"\n") + (1 if open_end else 0)
        position = _position_at(fd, start.dev, start.ino, offset, line + lines, seen, open_end)
        yield Chunk(body, line + 1, path, position, final and offset == size, *lost)
        yielded, lost = True, (False, 0)
        line += lines
    if yielded:
        return
    waiting = offset < size and not _unchanged(seen, start)
    if force or lost[0] or waiting or offset != start.offset:
        open_end = start.open_end and offset == start.offset  # else its newline was skipped
        position = _position_at(fd, start.dev, start.ino, offset, line, seen, open_end)
        yield Chunk(b"", line + 1, path, position, final and offset == size, *lost)


def rewind(chunk: Chunk, unconsumed: bytes) -> FilePosition:
    """The position before the last `unconsumed` bytes read from `chunk`'s file, up to the
    end of `chunk` (they may begin in an earlier chunk of the same file).

    For a parser that leaves an incomplete record (an open quoted field) for the next read.
    Raises OSError if the chunk's file is gone or is no longer the same file.
    """
    if len(unconsumed) > chunk.position.offset:
        raise ValueError("more unconsumed bytes than were read from the file")
    offset = chunk.position.offset - len(unconsumed)
    lines = unconsumed.count(b"\n") + (0 if unconsumed.endswith(b"\n") or not unconsumed else 1)
    fd = os.open(chunk.path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (chunk.position.dev, chunk.position.ino):
            raise OSError(f"{chunk.path}: replaced while it was being read")
        position = _position_at(fd, st.st_dev, st.st_ino, offset, chunk.position.line - lines)
    finally:
        os.close(fd)
    # The file as it was seen when the chunk was read, so that an unchanged file is known.
    open_end = chunk.position.open_end and not unconsumed
    return replace(
        position, size=chunk.position.size, mtime_ns=chunk.position.mtime_ns, open_end=open_end
    )


def read_new_lines(
    path: Path,
    position: FilePosition | None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    rotated_glob: str | None = None,
) -> Iterator[Chunk]:
    """Yield chunks of new lines after `position` (see the module docstring).

    Raises OSError if `path` is missing or unreadable.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        lost = (False, 0)
        reset = False
        if position is not None:
            moved = (st.st_dev, st.st_ino) != (position.dev, position.ino)
            if moved or not _still_valid(fd, st.st_size, position):
                # Rotated, truncated or rewritten: finish the old content first, if it is
                # still somewhere and still holds what we read (inodes are reused).
                old = _find_old(path, position, st, rotated_glob)
                if old is None:
                    # Rows written after the previous read may be lost: say so, unless the
                    # file was rewritten in place past the old offset (a whole new export).
                    if moved or st.st_size < position.offset:
                        unread = max(0, position.size - position.offset)
                        lost = (position.offset > 0 or unread > 0, unread)
                else:
                    old_path, old_fd = old
                    try:
                        old_st = os.fstat(old_fd)
                        resume = replace(position, dev=old_st.st_dev, ino=old_st.st_ino)
                        yield from _read_from(old_path, old_fd, resume, chunk_bytes, final=True)
                    finally:
                        os.close(old_fd)
                position, reset = None, True
        if position is None:
            position = _position_at(fd, st.st_dev, st.st_ino, 0, 0)
            final = False
        else:
            final = _unchanged(st, position)
        yield from _read_from(path, fd, position, chunk_bytes, final, reset, lost)
    finally:
        os.close(fd)
