"""``python -m tinyformer.exercises init DIR`` and ``python -m tinyformer.exercises check DIR``."""

from __future__ import annotations

import argparse
import sys
import time

from . import CHAPTERS, DEFAULT_TIMEOUT, check_dir, init


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinyformer.exercises",
        description="Write the starter files, then check your implementations against tinyformer and PyTorch.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p_init = commands.add_parser("init", help="write one starter file per chapter (never overwrites)")
    p_init.add_argument("directory")
    p_check = commands.add_parser("check", help="check the implementations in DIR; exit code 1 unless all pass")
    p_check.add_argument("directory")
    p_check.add_argument("--chapter", choices=CHAPTERS, help="check only this chapter's components")
    p_check.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help=f"seconds per component (default {DEFAULT_TIMEOUT:g})"
    )
    args = parser.parse_args(argv)

    if args.command == "init":
        try:
            init(args.directory)
        except OSError as exc:
            parser.error(str(exc))
        print(f"Now fill in the functions, then: python -m tinyformer.exercises check {args.directory}")
        return 0
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")
    start = time.perf_counter()
    try:
        report = check_dir(args.directory, args.chapter, timeout=args.timeout)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
