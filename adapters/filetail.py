"""Incremental reading of an append-only export file that may be rotated or truncated.

The position remembers the file's identity (device, inode, fingerprints of its first
bytes and of the bytes just before the offset) and the byte offset after the last complete
line that was handed out. A read
returns only complete lines; a partial last line waits for the next read. When the file
was rotated, the rest of the old file is read first (found by inode next to it), then the
new file from its start. When it was truncated or rewritten in place, it is read again
from the start; the store's (source, id) uniqueness keeps re-read rows from counting twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HEAD_BYTES = 256
DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024


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
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Chunk:
    """Complete lines read from one file, and the position after them."""

    data: bytes
    first_line: int  # 1-based line number of the first line in data
    path: Path
    position: FilePosition


def _hash(fd: int, length: int, at: int) -> str:
    data = os.pread(fd, length, at) if length > 0 else b""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _head_hash(fd: int, length: int) -> str:
    return _hash(fd, length, 0)


def _tail_hash(fd: int, offset: int) -> str:
    start = max(0, offset - HEAD_BYTES)
    return _hash(fd, offset - start, start)


def _position_at(fd: int, dev: int, ino: int, offset: int, line: int) -> FilePosition:
    head = _head_hash(fd, min(offset, HEAD_BYTES))
    return FilePosition(dev, ino, offset, line, head, _tail_hash(fd, offset))


def _still_valid(fd: int, size: int, position: FilePosition) -> bool:
    """Same content up to the offset: not truncated, not rewritten in place."""
    if size < position.offset:
        return False
    if position.head != _head_hash(fd, min(position.offset, HEAD_BYTES)):
        return False
    return not position.tail or position.tail == _tail_hash(fd, position.offset)


def _find_rotated(path: Path, dev: int, ino: int) -> Path | None:
    """The file next to `path` that still has the old inode (Master.csv.1, -20261126, ...)."""
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return None
    for sibling in siblings:
        if sibling == path or not sibling.name.startswith(path.name):
            continue
        try:
            st = sibling.stat()
        except OSError:
            continue
        if st.st_dev == dev and st.st_ino == ino:
            return sibling
    return None


def _read_from(
    path: Path,
    fd: int,
    start: FilePosition,
    chunk_bytes: int,
    final: bool,
) -> Iterator[Chunk]:
    """Yield chunks of complete lines from `start.offset`.

    `final` (a rotated file, no longer written) also takes a last unterminated line.
    """
    offset, line = start.offset, start.line
    size = os.fstat(fd).st_size
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
                if not final:
                    break  # a partial last line: still being written
                end = len(data)
        body = data[:end]
        offset += end
        lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
        position = _position_at(fd, start.dev, start.ino, offset, line + lines)
        yield Chunk(body, line + 1, path, position)
        line += lines


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
        return _position_at(fd, st.st_dev, st.st_ino, offset, chunk.position.line - lines)
    finally:
        os.close(fd)


def read_new_lines(
    path: Path, position: FilePosition | None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[Chunk]:
    """Yield chunks of new complete lines after `position`.

    Raises OSError if `path` is missing or unreadable.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if position is not None and (st.st_dev, st.st_ino) != (position.dev, position.ino):
            # Rotated: finish the old file first, if it is still next to the new one and
            # still holds what we read (an inode can be reused for an unrelated file).
            old = _find_rotated(path, position.dev, position.ino)
            if old is not None:
                old_fd = os.open(old, os.O_RDONLY)
                try:
                    if _still_valid(old_fd, os.fstat(old_fd).st_size, position):
                        yield from _read_from(old, old_fd, position, chunk_bytes, final=True)
                finally:
                    os.close(old_fd)
            position = None
        if position is not None and not _still_valid(fd, st.st_size, position):
            position = None  # truncated or rewritten in place: read it again
        if position is None:
            position = _position_at(fd, st.st_dev, st.st_ino, 0, 0)
        yield from _read_from(path, fd, position, chunk_bytes, final=False)
    finally:
        os.close(fd)
