"""Run Calico's selector conformance vectors (``calico-selectors.json``) against ``ringfence.selector``.

Pure: the caller loads the JSON and passes the parsed document; the result is the number of vectors
that passed and a description of each failure. A malformed vector is reported as a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from ringfence.selector import SelectorError, parse_selector

# Each check returns None when the vector passes, else a description of the failure.
Check = Callable[[object], "str | None"]


def run(data: Mapping[str, object]) -> tuple[int, list[str]]:
    """Check every match vector, parse failure and canonical form vector; return (passed, failures)."""
    passed = 0
    failures: list[str] = []
    for where, vector, check in _vectors(data):
        try:
            failure = check(vector)
        except (KeyError, TypeError, AttributeError) as error:
            failure = f"malformed vector ({type(error).__name__}: {error})"
        if failure is None:
            passed += 1
        else:
            failures.append(f"{where}: {failure}")
    return passed, failures


def _vectors(data: Mapping[str, object]) -> Iterator[tuple[str, object, Check]]:
    for index, vector in enumerate(_list(data.get("match_vectors"))):
        yield f"match_vectors[{index}]", vector, _check_match
    failures = data.get("parse_failures")
    groups = failures.items() if isinstance(failures, dict) else [("", failures)]
    for group, texts in groups:
        for index, text in enumerate(_list(texts)):
            yield f"parse_failures.{group}[{index}]", text, _check_parse_failure
    for index, vector in enumerate(_list(data.get("canonical_form_vectors"))):
        yield f"canonical_form_vectors[{index}]", vector, _check_canonical


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _object(vector: object) -> dict[str, object]:
    if not isinstance(vector, dict):
        raise TypeError(f"expected an object, found {type(vector).__name__}")
    return vector


def _check_match(raw: object) -> str | None:
    vector = _object(raw)
    text, expected = vector["selector"], vector["expected_match"]
    labels = {str(k): str(v) for k, v in _object(vector["labels"]).items()}
    if not isinstance(text, str):
        raise TypeError("selector is not a string")
    try:
        selector = parse_selector(text)
        canonical = parse_selector(str(selector))
    except SelectorError as error:
        return f"{text!r} does not parse: {error}"
    if selector.matches(labels) != expected:
        return f"{text!r} on {labels}: expected match={expected}"
    if canonical.matches(labels) != expected:
        return f"{text!r} on {labels}: canonical form {str(selector)!r} gives match={not expected}"
    return None


def _check_parse_failure(text: object) -> str | None:
    if not isinstance(text, str):
        raise TypeError("selector is not a string")
    try:
        selector = parse_selector(text)
    except SelectorError as error:
        if 0 <= error.position <= len(text):
            return None
        return f"{text[:80]!r}: error position {error.position} outside the text"
    return f"{text[:80]!r} parsed as {str(selector)!r}, expected a SelectorError"


def _check_canonical(raw: object) -> str | None:
    vector = _object(raw)
    text, expected, unique_id = vector["input"], vector["canonical"], vector.get("unique_id")
    if not isinstance(text, str):
        raise TypeError("input is not a string")
    try:
        selector = parse_selector(text)
        reparsed = parse_selector(str(selector))
    except SelectorError as error:
        return f"{text!r} does not parse: {error}"
    if str(selector) != expected:
        return f"{text!r}: canonical form {str(selector)!r}, expected {expected!r}"
    if str(reparsed) != expected:
        return f"{text!r}: canonical form is not a fixed point ({str(reparsed)!r})"
    if unique_id is not None and selector.unique_id != unique_id:
        return f"{text!r}: unique id {selector.unique_id!r}, expected {unique_id!r}"
    return None
