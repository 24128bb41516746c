"""Log rotation schemes done with real file operations, the way logrotate does them.

logrotate(8): `create` renames the log (Master.csv -> Master.csv.1, or Master.csv-YYYYMMDD
with `dateext`, or into `olddir`) and creates a new empty one; `copytruncate` copies the
log and then truncates the original in place, so the writer keeps its descriptor;
`compress` gzips the rotated file at once, `delaycompress` only at the next rotation.
Each test reads by hand between the steps (no sleeps) and checks every row once.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from adapters.filetail import Chunk, FilePosition, read_new_lines


def rows(first: int, count: int) -> bytes:
    return b"".join(b"row %d\n" % n for n in range(first, first + count))


def append(path: Path, data: bytes) -> None:
    # O_APPEND, as Asterisk's cdr_csv and any sane logger write: after a truncation the
    # next write lands at the new end, not at the old offset.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(
    path: Path, position: FilePosition | None, rotated_glob: str | None = None
) -> tuple[list[Chunk], FilePosition | None]:
    chunks = list(read_new_lines(path, position, chunk_bytes=64, rotated_glob=rotated_glob))
    return chunks, (chunks[-1].position if chunks else position)


def data(chunks: list[Chunk]) -> bytes:
    return b"".join(c.data for c in chunks)


def losses(chunks: list[Chunk]) -> list[tuple[bool, int]]:
    return [(c.lost, c.lost_bytes) for c in chunks if c.lost]


def start(tmp_path: Path) -> tuple[Path, FilePosition | None]:
    """Master.csv with rows 1-10 read, then rows 11-110 written but not read yet."""
    path = tmp_path / "Master.csv"
    append(path, rows(1, 10))
    chunks, position = read(path, None)
    assert data(chunks) == rows(1, 10)
    append(path, rows(11, 100))  # the 100 unread rows of the probe
    return path, position


def copytruncate(path: Path, copy: Path) -> None:
    shutil.copyfile(path, copy)  # logrotate copies first...
    with path.open("r+b") as handle:  # ...then truncates in place (same inode)
        handle.truncate(0)


def test_create_rename_reads_the_rest_of_the_old_file(tmp_path: Path) -> None:
    path, position = start(tmp_path)
    path.rename(tmp_path / "Master.csv.1")
    append(path, rows(111, 5))
    chunks, position = read(path, position)
    assert data(chunks) == rows(11, 105)  # 100 from the old file, then 5 from the new
    assert losses(chunks) == []


def test_create_with_dateext_and_delaycompress(tmp_path: Path) -> None:
    path, position = start(tmp_path)
    older = tmp_path / "Master.csv-20261125"
    older.write_bytes(b"row 0\n")  # an earlier rotation, compressed now by delaycompress
    with gzip.open(tmp_path / "Master.csv-20261125.gz", "wb") as handle:
        handle.write(older.read_bytes())
    older.unlink()
    path.rename(tmp_path / "Master.csv-20261126")  # this rotation stays plain for now
    append(path, rows(111, 1))
    chunks, _ = read(path, position)
    assert data(chunks) == rows(11, 101)


def test_olddir_is_lost_without_rotated_glob_and_counted(tmp_path: Path) -> None:
    path, position = start(tmp_path)
    (tmp_path / "old").mkdir()
    path.rename(tmp_path / "old" / "Master.csv.1")
    append(path, rows(111, 5))
    chunks, position = read(path, position)
    assert data(chunks) == rows(111, 5)  # rows 11-110 were not found
    # Flagged once on the first chunk; unread bytes known at the last read: none (the 100
    # rows came after it), so the flag, not the byte count, is what says rows may be lost.
    assert losses(chunks) == [(True, 0)]
    chunks, _ = read(path, position)
    assert chunks == []  # not flagged again


def test_olddir_with_rotated_glob_reads_the_rest(tmp_path: Path) -> None:
    path, position = start(tmp_path)
    (tmp_path / "old").mkdir()
    path.rename(tmp_path / "old" / "Master.csv.1")
    append(path, rows(111, 5))
    chunks, _ = read(path, position, rotated_glob="old/Master.csv*")
    assert data(chunks) == rows(11, 105)
    assert chunks[0].path.name == "Master.csv.1" and losses(chunks) == []


def test_olddir_with_an_absolute_glob(tmp_path: Path) -> None:
    path, position = start(tmp_path)
    (tmp_path / "archive").mkdir()
    path.rename(tmp_path / "archive" / "cdr-20261126.csv")  # any name the glob matches
    append(path, b"")  # logrotate's `create`: a new empty file
    chunks, _ = read(path, position, rotated_glob=str(tmp_path / "archive" / "*.csv"))
    assert data(chunks) == rows(11, 100)


def test_copytruncate_reads_the_copy_from_the_old_offset(tmp_path: Path) -> None:
    path, position = start(tmp_path)
    copytruncate(path, tmp_path / "Master.csv.1")
    append(path, rows(111, 3))  # the writer goes on in the truncated file
    chunks, position = read(path, position)
    assert data(chunks) == rows(11, 103)
    assert [c.path.name for c in chunks][-1] == "Master.csv" and losses(chunks) == []
    append(path, rows(114, 1))
    chunks, _ = read(path, position)
    assert data(chunks) == rows(114, 1)


def test_copytruncate_when_the_writer_outran_the_old_offset(tmp_path: Path) -> None:
    """The truncated file grew past the old offset before the next read: the content no
    longer matches what was read, so it is recognised as new, and the copy still found."""
    path, position = start(tmp_path)
    copytruncate(path, tmp_path / "Master.csv.1")
    append(path, rows(111, 50))
    assert position is not None and path.stat().st_size > position.offset
    chunks, _ = read(path, position)
    assert data(chunks) == rows(11, 150)


def test_copytruncate_into_olddir_with_rotated_glob(tmp_path: Path) -> None:
    path, position = start(tmp_path)
    (tmp_path / "old").mkdir()
    copytruncate(path, tmp_path / "old" / "Master.csv.1")
    chunks, _ = read(path, position, rotated_glob="old/*")
    assert data(chunks) == rows(11, 100)


def test_copytruncate_picks_the_newest_matching_copy(tmp_path: Path) -> None:
    """Two generations share their first bytes (a header): the newest copy is this one."""
    path = tmp_path / "export.csv"
    append(path, b"id,start\n" + rows(1, 2))
    _, position = read(path, None)
    append(path, rows(3, 2))
    copytruncate(path, tmp_path / "export.csv.1")
    append(path, b"id,start\n")
    _, position = read(path, position)  # rows 3-4 from the copy, then the new header
    append(path, rows(5, 2))
    os.rename(tmp_path / "export.csv.1", tmp_path / "export.csv.2")
    copytruncate(path, tmp_path / "export.csv.1")
    old = tmp_path / "export.csv.2"
    os.utime(old, ns=(1, 1))  # clearly older
    chunks, _ = read(path, position)
    assert data(chunks) == rows(5, 2) and chunks[0].path.name == "export.csv.1"


def test_copytruncate_with_the_copy_compressed_counts_the_loss_once(tmp_path: Path) -> None:
    path, position = start(tmp_path)
    _, position = read(path, position)  # rows 11-110 read: nothing known unread
    append(path, rows(111, 7))  # these 7 rows are never read
    copy = tmp_path / "Master.csv.1"
    copytruncate(path, copy)
    with gzip.open(tmp_path / "Master.csv.1.gz", "wb") as handle:  # compress, no delay
        handle.write(copy.read_bytes())
    copy.unlink()
    chunks, position = read(path, position)
    # Nothing in the truncated file yet: one empty chunk carries the reset position and
    # the loss, so that it is committed and counted once.
    assert [(c.data, c.lost, c.position.offset) for c in chunks] == [(b"", True, 0)]
    append(path, rows(118, 2))
    chunks, _ = read(path, position)
    assert data(chunks) == rows(118, 2) and losses(chunks) == []


def test_copytruncate_loss_reports_the_bytes_known_unread(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    append(path, rows(1, 2) + b"row 3 partial")  # 13 bytes after the last newline
    _, position = read(path, None)
    with path.open("r+b") as handle:  # truncated, no copy anywhere
        handle.truncate(0)
    chunks, _ = read(path, position)
    assert losses(chunks) == [(True, len(b"row 3 partial"))]


def test_compress_without_delaycompress_is_a_counted_loss(tmp_path: Path) -> None:
    path, position = start(tmp_path)
    rotated = tmp_path / "Master.csv.1"
    path.rename(rotated)
    with gzip.open(tmp_path / "Master.csv.1.gz", "wb") as handle:
        handle.write(rotated.read_bytes())
    rotated.unlink()
    append(path, rows(111, 1))
    chunks, _ = read(path, position)
    assert data(chunks) == rows(111, 1) and losses(chunks) == [(True, 0)]


def test_crash_while_reading_the_copy_resumes_in_the_copy(tmp_path: Path) -> None:
    path, position = start(tmp_path)
    copytruncate(path, tmp_path / "Master.csv.1")
    append(path, rows(111, 3))
    chunks, _ = read(path, position)
    assert len(chunks) > 2
    for index, chunk in enumerate(chunks[:-1]):
        # The process dies after committing chunk `index`: the rest comes exactly once.
        resumed = FilePosition.loads(chunk.position.dumps())
        again, _ = read(path, resumed)
        assert data(chunks[: index + 1]) + data(again) == rows(11, 103), index


def test_a_truncated_file_with_nothing_read_is_not_a_loss(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(b"")
    _, position = read(path, None)
    path.unlink()
    append(path, rows(1, 1))
    chunks, _ = read(path, position)
    assert data(chunks) == rows(1, 1) and losses(chunks) == []
