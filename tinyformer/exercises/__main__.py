"""``python -m tinyformer.exercises init DIR`` and ``python -m tinyformer.exercises check DIR``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from . import CHAPTERS, DEFAULT_TIMEOUT, MAX_TIMEOUT, check_dir, init, validate_timeout


def rights(directory: str = "DIR") -> str:
    """What check does with the reader's files, said plainly (init's message and --help)."""
    return (f"Check imports and runs the .py files in {directory} with your own rights, like any script you run "
            f"(in a child process with a time limit, not a sandbox): check only code you trust.")


def main(argv=None) -> int:
    if (threading.current_thread() is threading.main_thread()
            and getattr(signal.getsignal(signal.SIGINT), "tinyformer_startup", False)):
        # tinyformer/__init__.py installed a start-up handler while torch was imported: from
        # here on a Ctrl-C is a KeyboardInterrupt, handled below (and the checker's children).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(
        prog="python -m tinyformer.exercises",
        description="Write the starter files, then check your implementations against tinyformer and PyTorch.",
        epilog=rights(),
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p_init = commands.add_parser("init", help="write one starter file per chapter (never overwrites)")
    p_init.add_argument("directory")
    p_check = commands.add_parser(
        "check", help="check the implementations in DIR; exit code 1 unless all pass",
        description="Check the implementations in DIR against tinyformer and PyTorch; exit code 1 unless all pass. "
        + rights(),
    )
    p_check.add_argument("directory")
    p_check.add_argument("--chapter", choices=CHAPTERS, help="check only this chapter's components")
    p_check.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT,
        help=f"seconds per component (default {DEFAULT_TIMEOUT:g}, at most {MAX_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    if args.command == "check":
        try:
            validate_timeout(args.timeout)
        except ValueError:
            parser.error(f"--timeout must be positive and at most {MAX_TIMEOUT:g} seconds, got {args.timeout:g}")

    try:
        if args.command == "init":
            try:
                init(args.directory)
            except OSError as exc:
                parser.error(str(exc))
            print(f"Now fill in the functions, then: python -m tinyformer.exercises check {args.directory}")
            print(rights(args.directory))
            return 0
        start = time.perf_counter()
        try:
            report = check_dir(args.directory, args.chapter, timeout=args.timeout)
        except FileNotFoundError as exc:
            parser.error(str(exc))
        print(f"({time.perf_counter() - start:.1f} s)")
        return 0 if report.passed else 1
    except KeyboardInterrupt:
        # The component being checked runs in a child, which is killed on the way out.
        print("\ninterrupted" if sys.stderr.isatty() else "interrupted", file=sys.stderr, flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
