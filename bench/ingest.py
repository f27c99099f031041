"""Ingestion throughput: ``ringfence ingest --direct`` end to end against PostgreSQL's own COPY FROM.

    .venv/bin/python bench/ingest.py [--lines 1000000] [--repeat 3] [--database-url URL] [--parse-mode process]

Generates N realistic Calico flow-log lines (bench/flowgen.py) into a file, then:
1. times ``ringfence ingest --direct FILE`` (a subprocess) into a fresh, migrated database, sampling the
   resident memory of its whole process tree;
2. prepares the same rows as CSV and times ``COPY flows FROM STDIN (FORMAT csv)`` into another fresh
   database: the physical limit of this machine for storing those rows.
Prints rows/s of both, the ratio (target >= 0.5), the peak RSS (target < 300 MiB) and the ingest's own CPU time.
With ``--repeat N`` both are timed N times, interleaved, and the best of each is compared (a shared machine
only ever adds time: single runs here have varied by a third), with the ratio of the medians beside it.
The server is RINGFENCE_DATABASE_URL, else the one given, else a local default; databases are dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import os
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.flowgen import generate
from services.collector.parse import TimeWindow, parse_lines
from services.common.db import flows, migrate

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
CSV_COLUMNS = ("start_time", "end_time", *flows.STAGE_COLUMNS[2:])


def database_url_for(server_url: str, database: str) -> str:
    return urlsplit(server_url)._replace(path=f"/{database}").geturl()


async def create_database(server_url: str) -> tuple[str, str]:
    name = f"ringfence_bench_{secrets.token_hex(4)}"
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = database_url_for(server_url, name)
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    return name, url


async def drop_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


class RssSampler:
    """Peak resident memory of a process and all its descendants, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                tree = [self.process, *self.process.children(recursive=True)]
                total = 0
                for member in tree:
                    with contextlib.suppress(psutil.Error):  # a child that just exited
                        total += member.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_ingest(
    path: Path, database_url: str, parse_mode: str, batch_lines: int | None
) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds of the ingest process tree, peak RSS and the summary line."""
    env = {**os.environ, "RINGFENCE_DATABASE_URL": database_url}
    args = [
        sys.executable,
        "-c",
        "import sys; from services.collector.cli import ingest_command; ingest_command(sys.argv[1:])",
        "--direct",
        "--no-progress",
        f"--parse-mode={parse_mode}",
        str(path),
    ]
    if batch_lines:
        args.append(f"--batch-lines={batch_lines}")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1]
    )
    sampler = RssSampler(process.pid)
    out, err = process.communicate()
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak = sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"ingest failed ({process.returncode}):\n{err.decode()}")
    return elapsed, cpu, peak, out.decode().strip()


def write_csv(path: Path, csv_path: Path) -> tuple[int, set[int]]:
    """The rows the collector would store, as CSV for COPY (not timed)."""
    days: set[int] = set()
    rows = 0
    window = TimeWindow(0, 2**40)
    with path.open("rb") as source, csv_path.open("w", newline="") as target:
        writer = csv.writer(target)
        while True:
            lines = [line.rstrip(b"\n") for line in _take(source, 20_000)]
            if not lines:
                break
            chunk = parse_lines(lines, [0] * len(lines), source="bench", first_line_no=1, fmt=None, window=window)
            days |= chunk.encoded.days
            for row in chunk.encoded.rows:
                values = list(row)
                values[0] = datetime.fromtimestamp(values[0], UTC).isoformat()
                values[1] = datetime.fromtimestamp(values[1], UTC).isoformat()
                if values[21] is not None:
                    values[21] = "{" + ",".join(f'"{domain}"' for domain in values[21]) + "}"
                writer.writerow(["" if value is None else str(value) for value in values])
                rows += 1
    return rows, days


def _take(source: io.BufferedReader, count: int) -> list[bytes]:
    lines = []
    for _ in range(count):
        line = source.readline()
        if not line:
            break
        lines.append(line)
    return lines


async def run_copy(csv_path: Path, database_url: str, days: set[int]) -> float:
    connection = await asyncpg.connect(database_url)
    try:
        await flows.ensure_partitions(connection, flows.day_of(min(days)), flows.day_of(max(days)))
        started = time.perf_counter()
        with csv_path.open("rb") as source:
            await connection.copy_to_table("flows", source=source, columns=CSV_COLUMNS, format="csv")
        return time.perf_counter() - started
    finally:
        await connection.close()


async def count_flows(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM flows")
        return count
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=os.environ.get("RINGFENCE_DATABASE_URL") or DEFAULT_SERVER)
    parser.add_argument("--parse-mode", default="thread", choices=["inline", "thread", "process"])
    parser.add_argument("--batch-lines", type=int, default=None)
    parser.add_argument("--skip-copy", action="store_true", help="only time the collector")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of both timings, interleaved (the best of each is compared)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ringfence-bench-") as folder:
        log = Path(folder) / "flows.log"
        with log.open("wb") as target:
            for line in generate(args.lines, end=int(time.time())):
                target.write(line)
        size = log.stat().st_size
        print(f"{args.lines} lines, {size / 2**20:.0f} MiB, parse mode {args.parse_mode}, {args.repeat} round(s)")
        csv_path = Path(folder) / "flows.csv"
        rows, days = (0, set()) if args.skip_copy else write_csv(log, csv_path)

        ingest_times: list[float] = []
        copy_times: list[float] = []
        for round_no in range(1, args.repeat + 1):
            name, url = asyncio.run(create_database(args.database_url))
            try:
                elapsed, cpu, peak, summary = run_ingest(log, url, args.parse_mode, args.batch_lines)
                stored = asyncio.run(count_flows(url))
            finally:
                asyncio.run(drop_database(args.database_url, name))
            ingest_times.append(elapsed)
            print(f"round {round_no}")
            rate = args.lines / elapsed
            print(f"  ringfence ingest: {elapsed:.1f} s, {rate:,.0f} rows/s, peak RSS {peak / 2**20:.0f} MiB")
            # The ingest's own CPU (the Python side; PostgreSQL's is in its server processes): near the wall
            # time means the ingest is bound by its Python work, not by the database.
            print(f"    ingest CPU: {cpu:.1f} s ({cpu / args.lines * 1e6:.1f} us a line)")
            print(f"    summary: {summary}; rows in flows: {stored}")
            if args.skip_copy:
                continue
            name, url = asyncio.run(create_database(args.database_url))
            try:
                copy_elapsed = asyncio.run(run_copy(csv_path, url, days))
            finally:
                asyncio.run(drop_database(args.database_url, name))
            copy_times.append(copy_elapsed)
            print(f"  COPY FROM (csv):  {copy_elapsed:.1f} s, {rows / copy_elapsed:,.0f} rows/s")
            print(f"  ratio collector / COPY, this round: {copy_elapsed / elapsed:.2f}")
        if copy_times:
            # A shared machine only ever adds time: the best round of each is the least disturbed.
            best_ingest, best_copy = min(ingest_times), min(copy_times)
            print(f"best of {args.repeat}: ringfence ingest {best_ingest:.1f} s, COPY {best_copy:.1f} s")
            print(f"ratio collector / COPY: {best_copy / best_ingest:.2f} (target >= 0.5)")
            if args.repeat > 1:
                middle = statistics.median(copy_times) / statistics.median(ingest_times)
                print(f"ratio of the medians: {middle:.2f}")


if __name__ == "__main__":
    main()
