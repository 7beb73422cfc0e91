"""Where a benchmark script writes its tables: a temporary folder unless told otherwise.

Every script under ``experiments/`` takes ``--out DIR`` (write there) and ``--update-results``
(write the tracked tables under ``experiments/results/``, which the docs link to); with
neither, it writes to a new temporary folder and says where, so a trial run never changes the
project's recorded figures.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> add_output_options(parser, Path("experiments/results"))
    >>> output_folder(parser.parse_args(["--update-results"]), Path("experiments/results"))
    PosixPath('experiments/results')
    >>> output_folder(parser.parse_args(["--out", "x"]), Path("experiments/results"))
    PosixPath('x')
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def add_output_options(parser: argparse.ArgumentParser, results: Path) -> None:
    """Add ``--out`` and ``--update-results`` (``results``: the tracked tables' folder)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--out", type=Path, default=None,
                       help="folder for the result tables (default: a new temporary folder)")
    group.add_argument("--update-results", action="store_true",
                       help=f"write the tracked tables in {results.name}/ instead")


def output_folder(args: argparse.Namespace, results: Path) -> Path:
    """The folder the parsed ``args`` ask for (created; a temporary one is announced)."""
    if args.update_results:
        folder = results
    elif args.out is not None:
        folder = args.out
    else:
        folder = Path(tempfile.mkdtemp(prefix="dora_rl-results-"))
        print(f"tables go to {folder} (--update-results writes {results})", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


__all__ = ["add_output_options", "output_folder"]
