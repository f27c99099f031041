"""Cutting byte streams into numbered lines and batches (services/collector/lines.py)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.collector.lines import Batcher, LineSplitter, RawBatch, read_batches


def split_all(chunks: list[bytes], max_line: int = 1 << 20) -> tuple[list[bytes], list[int], set[int]]:
    splitter = LineSplitter(max_line=max_line)
    lines: list[bytes] = []
    offsets: list[int] = []
    overlong: set[int] = set()
    for chunk in chunks:
        got, got_offsets, got_overlong = splitter.feed(chunk)
        overlong |= {index + len(lines) for index in got_overlong}
        lines += got
        offsets += got_offsets
    last, last_offsets = splitter.finish()
    return lines + last, offsets + last_offsets, overlong


@pytest.mark.parametrize(
    ("chunks", "lines", "offsets"),
    [
        ([b"a\nbb\nccc\n"], [b"a", b"bb", b"ccc"], [0, 2, 5]),
        ([b"a\nb", b"b\ncc"], [b"a", b"bb", b"cc"], [0, 2, 5]),  # last line without newline
        ([b"\n\nx\n"], [b"", b"", b"x"], [0, 1, 2]),  # blank lines keep their numbers
        ([b"ab", b"cd", b"\n"], [b"abcd"], [0]),
        ([b"a\r\nb\r\n"], [b"a\r", b"b\r"], [0, 3]),  # CR stays: JSON ignores it as whitespace
        ([], [], []),
    ],
)
def test_lines_and_offsets(chunks: list[bytes], lines: list[bytes], offsets: list[int]) -> None:
    got_lines, got_offsets, overlong = split_all(chunks)
    assert got_lines == lines
    assert got_offsets == offsets
    assert overlong == set()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=1, max_value=40), max_size=20))
def test_any_chunking_gives_the_lines_of_a_plain_split(data: bytes, cuts: list[int]) -> None:
    chunks, position = [], 0
    for size in cuts:
        chunks.append(data[position : position + size])
        position += size
    chunks.append(data[position:])
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    expected_offsets, offset = [], 0
    for line in expected:
        expected_offsets.append(offset)
        offset += len(line) + 1
    lines, offsets, _ = split_all(chunks)
    assert lines == expected
    assert offsets == expected_offsets


@pytest.mark.parametrize("chunk_size", [3, 7, 1000])
def test_an_overlong_line_is_cut_and_flagged_and_the_next_line_keeps_its_offset(chunk_size: int) -> None:
    data = b"ok\n" + b"x" * 50 + b"\nafter\n"
    chunks = [data[start : start + chunk_size] for start in range(0, len(data), chunk_size)]
    lines, offsets, overlong = split_all(chunks, max_line=20)
    assert [line[:2] for line in lines] == [b"ok", b"xx", b"af"]
    assert lines[2] == b"after"
    assert offsets == [0, 3, 54]
    assert overlong == {1}


def test_resuming_at_a_saved_line_start_numbers_offsets_from_there() -> None:
    splitter = LineSplitter(line_start=100)
    assert splitter.feed(b"a\nbc") == ([b"a"], [100], set())
    assert splitter.line_start == 102  # "bc" is not a line yet: a restart reads it again


def test_batcher_cuts_by_lines_and_numbers_them() -> None:
    batcher = Batcher("src", max_lines=2)
    full = batcher.add([b"a", b"b", b"c"], [0, 2, 4], set())
    assert [(batch.lines, batch.first_line_no) for batch in full] == [([b"a", b"b"], 1)]
    last = batcher.flush()
    assert last is not None
    assert (last.lines, last.offsets, last.first_line_no) == ([b"c"], [4], 3)
    assert batcher.flush() is None


def test_batcher_cuts_by_bytes() -> None:
    batcher = Batcher("src", max_lines=100, max_bytes=5)
    full = batcher.add([b"abc", b"def", b"g"], [0, 4, 8], {1})
    assert [batch.lines for batch in full] == [[b"abc", b"def"]]
    assert full[0].overlong == frozenset({1})


def test_content_key_names_position_and_content() -> None:
    one = RawBatch("s", [b"a", b"b"], [0, 2], 1)
    same = RawBatch("s", [b"a", b"b"], [0, 2], 1)
    other = RawBatch("s", [b"a", b"c"], [0, 2], 1)
    assert one.content_key() == same.content_key()
    assert one.content_key() != other.content_key()
    assert one.content_key().startswith("0-4:")


def test_content_keys_stay_those_earlier_versions_stored() -> None:
    # A file ingested before is recognised batch by batch when ingested again after an upgrade: the key is
    # the batch's span and the SHA-256 of its lines, each followed by a newline.
    lines = [b'{"a":1}', b"", b"x" * 5000]
    assert RawBatch("s", lines, [10, 18, 19], 1).content_key() == (
        "10-5020:" + hashlib.sha256(b'{"a":1}\n\n' + b"x" * 5000 + b"\n").hexdigest()[:32]
    )
    assert RawBatch("s", [], [], 1).content_key() == "0-0:" + hashlib.sha256(b"").hexdigest()[:32]


async def test_a_slow_stream_is_flushed_by_age() -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    queue.put_nowait(b"first\n")

    async def read() -> bytes:
        return await queue.get()

    batches = read_batches(read, "s", max_lines=1000, max_age=0.05)
    first = await asyncio.wait_for(anext(batches), 2)  # nothing else comes: age cuts the batch
    assert first.lines == [b"first"]
    queue.put_nowait(b"second\nthird")
    queue.put_nowait(b"")
    rest = [batch async for batch in batches]
    assert [line for batch in rest for line in batch.lines] == [b"second", b"third"]
    assert rest[0].first_line_no == 2
