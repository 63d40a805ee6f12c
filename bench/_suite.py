"""``python -m bench._suite NAME OUT [--quick]``: run one benchmark, write its Section JSON.

The child side of ``python -m bench``: a fresh process per benchmark (see ``__main__``).
Progress goes to stderr and each benchmark's own tables to stdout, as when run alone.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from bench.results import Section, to_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench._suite")
    parser.add_argument("name")
    parser.add_argument("out", type=Path)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    module = importlib.import_module(f"bench.{args.name}")
    section: Section = module.run(args.quick)
    args.out.write_text(json.dumps(to_json(section), indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
