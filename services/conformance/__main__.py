"""Run Calico's conformance vectors against Ringfence: ``python -m services.conformance DIR``.

DIR is laid out like ``shared/conformance/``: ``calico-selectors.json``, ``calico-policy-hits.json`` and
``calico-tier-evaluation.json``. Each file present is run by its checker; the last line reads
``N passed, M failed`` and the exit status is non-zero when anything failed or no file was found.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

# vector file -> module of services.conformance whose run(data) -> (passed, failures) checks it
CHECKERS: dict[str, str] = {
    "calico-selectors.json": "selectors",
    "calico-policy-hits.json": "hits",
    "calico-tier-evaluation.json": "tiers",
}


def run_folder(folder: Path, out: list[str]) -> tuple[int, int]:
    """Run every known vector file in ``folder``; append report lines to ``out``; return (passed, failed)."""
    passed = failed = 0
    for filename, module_name in CHECKERS.items():
        path = folder / filename
        if not path.exists():
            out.append(f"{filename}: not present, skipped")
            continue
        module = importlib.import_module(f"services.conformance.{module_name}")
        data = json.loads(path.read_text(encoding="utf-8"))
        file_passed, failures = module.run(data)
        passed += file_passed
        failed += len(failures)
        out.append(f"{filename}: {file_passed} passed, {len(failures)} failed")
        out.extend(f"  FAIL {failure}" for failure in failures)
    return passed, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.conformance", description=__doc__)
    parser.add_argument("folder", type=Path, help="folder holding the conformance vector files")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"{args.folder}: not a folder")
    lines: list[str] = []
    passed, failed = run_folder(args.folder, lines)
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.write(f"conformance: {passed} passed, {failed} failed\n")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
