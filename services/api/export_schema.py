"""Export the GraphQL schema to ``graphql/schema.graphql`` (or check that the file is current).

python -m services.api.export_schema            # write the file
python -m services.api.export_schema --check    # exit 1 when the file differs from the code
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from services.api.schema import build_schema

SCHEMA_PATH: Final = Path(__file__).resolve().parents[2] / "graphql" / "schema.graphql"
HEADER: Final = "# Generated from services/api/schema by `python -m services.api.export_schema`: do not edit.\n\n"


def schema_text() -> str:
    """The schema's SDL as the exported file holds it."""
    return HEADER + build_schema().as_str() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when the file is not what the code exports")
    parser.add_argument("--output", type=Path, default=SCHEMA_PATH, help="where to write (default: %(default)s)")
    options = parser.parse_args(argv)
    text = schema_text()
    if options.check:
        current = options.output.read_text(encoding="utf-8") if options.output.exists() else ""
        if current != text:
            sys.stderr.write(f"{options.output} is stale: run `python -m services.api.export_schema`\n")
            return 1
        return 0
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {options.output}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
