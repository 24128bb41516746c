"""Incremental reading: partial lines, long lines, rotation, truncation, rewrite in place."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from adapters.filetail import HEAD_BYTES, Chunk, FilePosition, read_new_lines, rewind


def read_all(path: Path, position: FilePosition | None, chunk_bytes: int = 64) -> list[Chunk]:
    return list(read_new_lines(path, position, chunk_bytes=chunk_bytes))


def text(chunks: list[Chunk]) -> bytes:
    return b"".join(chunk.data for chunk in chunks)


def test_partial_last_line_waits_while_the_file_is_written(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a\nb\npart")
    chunks = read_all(path, None)
    assert text(chunks) == b"a\nb\n"
    assert (chunks[0].first_line, chunks[-1].position.offset, chunks[-1].position.line) == (1, 4, 2)
    position = chunks[-1].position
    with path.open("ab") as handle:
        handle.write(b"i")  # still being written: size changed since the read
    chunks = read_all(path, position)
    # Nothing to hand out, only the size and mtime seen now, to compare with next time.
    assert [(c.data, c.position.offset, c.position.size) for c in chunks] == [(b"", 4, 9)]
    position = chunks[-1].position
    with path.open("ab") as handle:
        handle.write(b"al\nc\n")
    chunks = read_all(path, position)
    assert text(chunks) == b"partial\nc\n"
    assert chunks[0].first_line == 3 and chunks[-1].position.line == 4


def test_line_longer_than_a_chunk(tmp_path: Path) -> None:
    long = b"x" * 1000
    path = tmp_path / "f.csv"
    path.write_bytes(b"a\n" + long + b"\nb\n" + long)  # the last long line is unfinished
    chunks = read_all(path, None, chunk_bytes=16)
    assert text(chunks) == b"a\n" + long + b"\nb\n"
    assert [c.first_line for c in chunks] == [1, 2, 3]
    assert chunks[-1].position.offset == 2 + 1001 + 2


def test_every_chunk_ends_on_a_line_and_numbers_add_up(tmp_path: Path) -> None:
    lines = [f"line {n} ".encode() * (n % 7 + 1) for n in range(1, 200)]
    path = tmp_path / "f.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    chunks = read_all(path, None, chunk_bytes=50)
    assert all(chunk.data.endswith(b"\n") for chunk in chunks)
    assert text(chunks).split(b"\n")[:-1] == lines
    for before, after in pairwise(chunks):
        assert after.first_line == before.position.line + 1


def test_rotation_finishes_the_renamed_old_file_first(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(b"1\n")
    position = read_all(path, None)[-1].position
    with path.open("ab") as handle:
        handle.write(b"2\n3")  # the last line of the old file never gets its newline
    path.rename(tmp_path / "Master.csv.1")
    path.write_bytes(b"4\n")
    (tmp_path / "Other.csv").write_bytes(b"not this\n")

    chunks = read_all(path, position)
    assert [(c.path.name, c.data, c.first_line) for c in chunks] == [
        ("Master.csv.1", b"2\n", 2),
        ("Master.csv.1", b"3", 3),
        ("Master.csv", b"4\n", 1),
    ]
    assert read_all(path, chunks[-1].position) == []
    # A crash after any of the old file's batches resumes right after it.
    assert text(read_all(path, chunks[0].position)) == b"34\n"
    assert text(read_all(path, chunks[1].position)) == b"4\n"


def test_rotation_with_the_old_file_gone_reads_the_new_one(tmp_path: Path) -> None:
    path = tmp_path / "Master.csv"
    path.write_bytes(b"1\n")
    position = read_all(path, None)[-1].position
    path.unlink()
    path.write_bytes(b"2\n")
    assert text(read_all(path, position)) == b"2\n"


def test_truncation_reads_again_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a\nb\nc\n")
    position = read_all(path, None)[-1].position
    with path.open("r+b") as handle:  # copytruncate: same inode, shorter
        handle.truncate(0)
        handle.write(b"d\n")
    chunks = read_all(path, position)
    assert text(chunks) == b"d\n" and chunks[0].first_line == 1


def test_rewrite_in_place_with_the_same_first_bytes_is_read_again(tmp_path: Path) -> None:
    """A full export rewritten in place: same long header, longer file, other rows."""
    header = b"H" * (HEAD_BYTES + 50) + b"\n"
    path = tmp_path / "f.csv"
    path.write_bytes(header + b"row 1\n")
    position = read_all(path, None)[-1].position
    with path.open("r+b") as handle:
        handle.write(header + b"row 9\nrow 10\nrow 11\n")
    chunks = read_all(path, position, chunk_bytes=4096)
    assert text(chunks) == header + b"row 9\nrow 10\nrow 11\n"


def test_appending_keeps_the_position(tmp_path: Path) -> None:
    header = b"H" * (HEAD_BYTES + 50) + b"\n"
    path = tmp_path / "f.csv"
    path.write_bytes(header + b"row 1\n")
    position = read_all(path, None)[-1].position
    with path.open("ab") as handle:
        handle.write(b"row 2\n")
    assert text(read_all(path, position)) == b"row 2\n"


def test_position_round_trip_and_older_positions(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a\nb\n")
    position = read_all(path, None)[-1].position
    assert FilePosition.loads(position.dumps()) == position
    assert FilePosition.loads("not json") is None and FilePosition.loads(None) is None
    older = position.dumps().replace(f',"tail":"{position.tail}"', "")
    loaded = FilePosition.loads(older)
    assert loaded is not None and loaded.tail == ""
    with path.open("ab") as handle:
        handle.write(b"c\n")
    assert text(read_all(path, loaded)) == b"c\n"


def test_rewind_leaves_an_open_record_for_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'a\n"open\nstill open\n')
    chunk = read_all(path, None, chunk_bytes=4096)[-1]
    position = rewind(chunk, b'"open\nstill open\n')
    assert (position.offset, position.line) == (2, 1)
    with path.open("ab") as handle:
        handle.write(b'closed"\n')
    chunks = read_all(path, position)
    assert text(chunks) == b'"open\nstill open\nclosed"\n' and chunks[0].first_line == 2
    with pytest.raises(ValueError):
        rewind(chunk, b"x" * 1000)


def test_missing_file_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_all(tmp_path / "nope", None)


# -- a last line without its newline (issue 10, item 1) -------------------------------------

EXPORT = b"id,start,secs\nT1,2026-11-20T10:00:00,60\nT2,2026-11-20T11:00:00,60"  # the file


def test_last_line_of_an_unchanged_file_is_read_on_the_next_pass(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(EXPORT)
    first = read_all(path, None)
    # First pass: T2 may still be being written, so only the complete lines.
    assert text(first) == b"id,start,secs\nT1,2026-11-20T10:00:00,60\n"
    assert first[-1].position.size == len(EXPORT) and not first[-1].complete
    # Second pass: same size and mtime as when the first pass read it: T2 is complete.
    second = read_all(path, FilePosition.loads(first[-1].position.dumps()))
    assert [(c.data, c.first_line, c.complete) for c in second] == [
        (b"T2,2026-11-20T11:00:00,60", 3, True)
    ]
    position = second[-1].position
    assert (position.offset, position.line, position.open_end) == (len(EXPORT), 3, True)
    assert read_all(path, position) == []  # nothing new, and T2 is not handed out again


def test_newline_appended_after_the_last_line_was_read_is_not_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(EXPORT)
    position = read_all(path, read_all(path, None)[-1].position)[-1].position  # T2 read
    with path.open("ab") as handle:  # the writer terminates T2 and goes on
        handle.write(b"\nT3,2026-11-20T12:00:00,60\nT4,2026-11-20T13:00:00,60")
    chunks = read_all(path, FilePosition.loads(position.dumps()))
    # T2 is neither read again nor glued to T3; T3 is line 4; T4 waits (the file changed).
    assert [(c.data, c.first_line) for c in chunks] == [(b"T3,2026-11-20T12:00:00,60\n", 4)]
    assert chunks[-1].position.line == 4 and not chunks[-1].position.open_end
    chunks = read_all(path, chunks[-1].position)  # unchanged since: T4 is complete
    assert [(c.data, c.first_line) for c in chunks] == [(b"T4,2026-11-20T13:00:00,60", 5)]


def test_only_the_newline_appended_moves_the_position_past_it(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"a\nb")
    position = read_all(path, read_all(path, None)[-1].position)[-1].position
    with path.open("ab") as handle:
        handle.write(b"\n")
    chunks = read_all(path, position)
    assert [(c.data, c.position.offset, c.position.open_end) for c in chunks] == [(b"", 4, False)]
    with path.open("ab") as handle:
        handle.write(b"c\n")
    chunks = read_all(path, chunks[-1].position)
    assert [(c.data, c.first_line) for c in chunks] == [(b"c\n", 3)]


def test_a_line_continued_after_it_was_read_is_its_own_line(tmp_path: Path) -> None:
    """A writer that paused longer than a read interval in the middle of a line: the
    rest of that line is handed out alone (a parser rejects it), never glued to the next."""
    path = tmp_path / "t.csv"
    path.write_bytes(b"a\nhalf")
    position = read_all(path, read_all(path, None)[-1].position)[-1].position
    with path.open("ab") as handle:
        handle.write(b" line\nc\n")
    chunks = read_all(path, position)
    assert text(chunks) == b" line\nc\n"
    # " line" is the rest of line 2; c is line 3.
    assert chunks[0].first_line == 2 and chunks[-1].position.line == 3


def test_a_file_with_only_a_partial_line_remembers_what_it_saw(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"id,start")  # no newline anywhere
    chunks = read_all(path, None)
    assert [(c.data, c.position.offset, c.position.size) for c in chunks] == [(b"", 0, 8)]
    chunks = read_all(path, chunks[-1].position)
    assert [(c.data, c.first_line, c.complete) for c in chunks] == [(b"id,start", 1, True)]


def test_older_positions_without_size_wait_one_more_pass(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"a\nb")
    position = read_all(path, None)[-1].position
    older = FilePosition(position.dev, position.ino, position.offset, position.line,
                         position.head, position.tail)  # size -1: not known to be unchanged
    chunks = read_all(path, older)
    assert [(c.data, c.position.size) for c in chunks] == [(b"", 3)]
    assert text(read_all(path, chunks[-1].position)) == b"b"


def test_rewind_keeps_what_the_file_looked_like(tmp_path: Path) -> None:
    """An open quoted record left for later: on an unchanged file the next read reaches
    the end of the file and says so (complete), so the parser can settle the record."""
    path = tmp_path / "f.csv"
    path.write_bytes(b'a\n"open\n')
    chunk = read_all(path, None, chunk_bytes=4096)[-1]
    position = rewind(chunk, b'"open\n')
    assert (position.offset, position.size) == (2, 8)
    chunks = read_all(path, position)
    assert [(c.data, c.complete) for c in chunks] == [(b'"open\n', True)]
