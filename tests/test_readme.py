"""The README's walkthrough, run against a real ``ringfence up --demo``: the README cannot rot.

The README marks what is executable with an HTML comment just before a fenced block:

* ``<!-- readme-test: file NAME -->``: the block is a file the reader saves as NAME; written into the
  working directory;
* ``<!-- readme-test: run -->``: a shell block, run with bash in that directory, with ``RINGFENCE_URL``
  and ``RINGFENCE_TOKEN`` set and the virtualenv's ``ringfence`` on the PATH;
* ``<!-- readme-test: graphql -->``: a GraphQL document, posted to ``/graphql`` with the admin token;
* ``<!-- readme-test: run retry=SECONDS -->`` (or ``graphql retry=...``): the step is run again until
  its answer matches, for at most that long (what the worker refreshes periodically);
* ``<!-- readme-test: answer -->``: what the step just before answers. A ``json`` block is compared
  as JSON (one document, or one document per line); any other block as text.

The steps run in README order against one ``up`` (the walkthrough changes state as it goes). What
varies from one run to the next is normalised:

* ids, resource versions, timestamps and cursors: any value is accepted, and the value the README
  shows stands for the actual one in the commands that follow (a job id the README shows is replaced
  by the job id this run got);
* counts (flows, bytes, board and preview counters): the demo's traffic depends on the time of day it
  is loaded, so a count must be zero where the README shows zero and positive where it shows a
  positive number (in text answers every number is compared that way);
* a README list ending with the string ``"…"`` (JSON), or a line ``…`` (text), means "and more":
  the actual answer starts with the items shown.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent / "services"))
from test_up import ADMIN_TOKEN, RunningUp, running_up, wait_started

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r"^<!-- readme-test: (?P<kind>file|run|graphql|answer)(?: (?P<arg>\S+))? -->$")
FENCE = re.compile(r"^(?P<fence>```+)(?P<info>[\w-]*)\s*$")
ELLIPSIS = "…"
COMMAND_TIMEOUT = 60.0
RETRY_PAUSE = 2.0

VOLATILE_KEYS = frozenset(
    {"id", "resourceVersion", "at", "startTime", "endTime", "createdAt", "startedAt", "finishedAt", "updatedAt"}
    | {"cursor", "endCursor", "from", "to"}
)
COUNT_KEYS = frozenset(
    {"numFlows", "totalCount", "allowed", "denied", "passed", "bytes", "packets", "bytesIn", "bytesOut"}
    | {"examined", "changed", "newlyDenied", "newlyAllowed", "uncertain", "processed", "total", "flows"}
)


@dataclass
class Block:
    kind: str  # file, run, graphql, answer
    arg: str | None
    info: str  # the fence's info string (sh, graphql, json, text, ...)
    text: str
    line: int  # 1-based line of the block's first content line


@dataclass
class Step:
    block: Block
    answer: Block | None


@dataclass
class Walk:
    """The state of the walkthrough: the working directory and README values seen -> actual values."""

    up: RunningUp
    workdir: Path
    aliases: dict[str, str] = field(default_factory=dict)

    def substitute(self, text: str) -> str:
        for shown, actual in sorted(self.aliases.items(), key=lambda item: -len(item[0])):
            text = text.replace(shown, actual)
        return text


def readme_blocks(text: str) -> Iterator[Block]:
    """The marked fenced blocks of ``text``, in order."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        marker = MARKER.match(lines[index].strip())
        index += 1
        if marker is None:
            continue
        while index < len(lines) and not lines[index].strip():
            index += 1
        opening = FENCE.match(lines[index]) if index < len(lines) else None
        if opening is None:
            raise AssertionError(f"README line {index}: a readme-test marker must be followed by a fenced block")
        start = index + 1
        end = start
        while end < len(lines) and lines[end].rstrip() != opening["fence"]:
            end += 1
        yield Block(marker["kind"], marker["arg"], opening["info"], "\n".join(lines[start:end]) + "\n", start + 1)
        index = end + 1


def readme_steps() -> list[Step]:
    steps: list[Step] = []
    for block in readme_blocks(README.read_text()):
        if block.kind == "answer":
            assert steps, f"README line {block.line}: an answer with no step before it"
            assert steps[-1].answer is None, f"README line {block.line}: two answers for one step"
            assert steps[-1].block.kind in ("run", "graphql"), f"README line {block.line}: only commands answer"
            steps[-1].answer = block
        else:
            steps.append(Step(block, None))
    return steps


STEPS = readme_steps()


# --- comparing answers ----------------------------------------------------------------------------


def json_values(text: str) -> list[Any]:
    """One JSON document, or one per line."""
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def match_json(shown: Any, actual: Any, path: str, aliases: dict[str, str]) -> None:
    key = path.rsplit(".", 1)[-1].split("[", 1)[0]
    if isinstance(shown, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        assert sorted(shown) == sorted(actual), f"{path}: keys {sorted(actual)} instead of {sorted(shown)}"
        for name, value in shown.items():
            match_json(value, actual[name], f"{path}.{name}", aliases)
    elif isinstance(shown, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        if shown and shown[-1] == ELLIPSIS:
            shown = shown[:-1]
            assert len(actual) >= len(shown), f"{path}: {len(actual)} items, the README shows {len(shown)} and more"
            actual = actual[: len(shown)]
        assert len(shown) == len(actual), f"{path}: {len(actual)} items instead of {len(shown)}: {actual!r}"
        for position, (one, other) in enumerate(zip(shown, actual, strict=True)):
            match_json(one, other, f"{path}[{position}]", aliases)
    elif key in VOLATILE_KEYS and isinstance(shown, str) and isinstance(actual, str):
        aliases.setdefault(shown, actual)
    elif key in COUNT_KEYS and isinstance(shown, int | float) and isinstance(actual, int | float):
        assert (shown > 0) == (actual > 0), f"{path}: {actual} where the README shows {shown}"
    else:
        assert shown == actual, f"{path}: {actual!r} where the README shows {shown!r}"


NUMBER = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?(?![\w-])")


def text_shape(line: str) -> str:
    """A line with its whitespace collapsed and each number reduced to zero or not (0 / N)."""
    line = NUMBER.sub(lambda m: "0" if float(m.group()) == 0 else "N", line)
    return " ".join(line.split())


def match_text(shown: str, actual: str) -> None:
    expected = [text_shape(line) for line in shown.strip("\n").splitlines()]
    got = [text_shape(line) for line in actual.strip("\n").splitlines()]
    if expected and expected[-1] == ELLIPSIS:
        expected = expected[:-1]
        got = got[: len(expected)]
    assert got == expected, f"answer:\n{actual}"


# --- running steps --------------------------------------------------------------------------------


def run_shell(walk: Walk, script: str) -> str:
    bin_dir = str(Path(sys.executable).parent)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RINGFENCE_")}
    env |= {
        "RINGFENCE_URL": walk.up.base_url,
        "RINGFENCE_TOKEN": ADMIN_TOKEN,
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=walk.workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # as a terminal shows them: messages on stderr are part of the answer
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"exit status {done.returncode}\n{done.stdout}"
    return done.stdout


def run_graphql(walk: Walk, document: str) -> str:
    response = httpx.post(
        f"{walk.up.base_url}/graphql",
        json={"query": document},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=COMMAND_TIMEOUT,
    )
    return response.text


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> Iterator[Walk]:
    with running_up(tmp_path_factory.mktemp("readme-up") / "data", "--demo") as up:
        wait_started(up)
        yield Walk(up, tmp_path_factory.mktemp("readme-work"))


def test_the_readme_marks_a_walkthrough():
    kinds = [step.block.kind for step in STEPS]
    assert kinds.count("graphql") >= 5
    assert kinds.count("run") >= 5
    assert all(step.answer is not None for step in STEPS if step.block.kind == "graphql")


@pytest.mark.parametrize("step", STEPS, ids=[f"line{step.block.line}-{step.block.kind}" for step in STEPS])
def test_readme_step(walk, step: Step):
    block = step.block
    text = walk.substitute(block.text)
    if block.kind == "file":
        assert block.arg, f"README line {block.line}: file marker without a name"
        (walk.workdir / block.arg).write_text(text)
        return
    patience = float(block.arg.removeprefix("retry=")) if block.arg and block.arg.startswith("retry=") else 0.0
    deadline = time.monotonic() + patience
    while True:
        output = run_shell(walk, text) if block.kind == "run" else run_graphql(walk, text)
        if step.answer is None:
            return
        try:
            check_answer(walk, step.answer, output)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(RETRY_PAUSE)
        else:
            return


def check_answer(walk: Walk, answer: Block, output: str) -> None:
    """Compare ``output`` with the README's ``answer``; README values of volatile fields become aliases."""
    if answer.info == "json":
        shown, actual = json_values(answer.text), json_values(output)
        assert len(shown) == len(actual), f"{len(actual)} JSON values instead of {len(shown)}:\n{output}"
        aliases = dict(walk.aliases)
        for position, (one, other) in enumerate(zip(shown, actual, strict=True)):
            try:
                match_json(one, other, f"answer[{position}]", aliases)
            except AssertionError as error:
                raise AssertionError(f"README line {answer.line}: {error}\nanswer:\n{output}") from None
        walk.aliases = aliases
    else:
        match_text(answer.text, output)
