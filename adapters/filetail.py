"""Incremental reading of an append-only export file that may be rotated or truncated.

The position remembers the file's identity (device, inode, a fingerprint of its first
bytes) and the byte offset after the last complete line that was handed out. A read
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


def _head_hash(fd: int, length: int) -> str:
    data = os.pread(fd, length, 0) if length else b""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


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
    """Yield chunks of complete lines from `start.offset`; `final` takes a last unterminated line."""
    offset, line = start.offset, start.line
    size = os.fstat(fd).st_size
    while offset < size:
        data = os.pread(fd, min(chunk_bytes, size - offset), offset)
        if not data:
            break
        end = data.rfind(b"\n") + 1
        if end == 0:
            if len(data) == chunk_bytes and offset + len(data) < size:
                # One line longer than a chunk: read on until its newline.
                more = data
                while b"\n" not in more[len(data) - 1 :] and offset + len(more) < size:
                    more += os.pread(fd, chunk_bytes, offset + len(more))
                data = more
                end = data.find(b"\n") + 1
            if end == 0:
                if not final:
                    break  # a partial last line: still being written
                end = len(data)
        body = data[:end]
        offset += end
        lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
        head = _head_hash(fd, min(offset, HEAD_BYTES))
        position = FilePosition(start.dev, start.ino, offset, line + lines, head)
        yield Chunk(body, line + 1, path, position)
        line += lines


def read_new_lines(
    path: Path, position: FilePosition | None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[Chunk]:
    """Yield chunks of new complete lines after `position`. Raises OSError if `path` is unreadable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if position is not None and (st.st_dev, st.st_ino) != (position.dev, position.ino):
            # Rotated: finish the old file first, if it is still next to the new one.
            old = _find_rotated(path, position.dev, position.ino)
            if old is not None:
                old_fd = os.open(old, os.O_RDONLY)
                try:
                    yield from _read_from(old, old_fd, position, chunk_bytes, final=True)
                finally:
                    os.close(old_fd)
            position = None
        if position is not None:
            unchanged = st.st_size >= position.offset and position.head == _head_hash(
                fd, min(position.offset, HEAD_BYTES)
            )
            if not unchanged:
                position = None  # truncated or rewritten in place: read it again
        if position is None:
            position = FilePosition(st.st_dev, st.st_ino, 0, 0, _head_hash(fd, 0))
        yield from _read_from(path, fd, position, chunk_bytes, final=False)
    finally:
        os.close(fd)
