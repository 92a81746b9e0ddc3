"""The ``fraudscore`` command: one entry point, a subcommand per job.

Each subcommand lives in the module that does the work; that module exposes
``add_arguments(parser)`` and ``main(args) -> int``. Only the chosen command's
module is imported, so ``fraudscore generate`` does not pay for TensorFlow.
Before that, TensorFlow's C++ start-up lines are turned off (on with ``-v``) for
this process and its children (:mod:`fraudscore.native_logs`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from fraudscore import native_logs

# name -> (module, one-line help shown by `fraudscore --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("fraudscore.dev.generate", "write synthetic transactions in the Kaggle creditcard.csv schema"),
    "emulators": (
        "fraudscore.dev.emulators",
        "run the local Pub/Sub and Bigtable emulators with the project's resources",
    ),
    "train": ("trainer.cli", "fit tf.Transform statistics and the autoencoder; export a versioned model and report"),
    "serve": ("scorer.server", "serve the newest model over gRPC (Score, ScoreBatch, ScoreStream, GetModelInfo)"),
    "score": ("scorer.client", "score transactions by hand against a running `fraudscore serve`"),
    "stream": ("stream.cli", "run the Beam job: Pub/Sub -> score -> per-card windows -> Bigtable cases + alerts"),
    "publish": ("fraudscore.dev.publish", "replay a CSV of transactions into the Pub/Sub transactions topic"),
    "cases": ("cases.cli", "list, show and label flagged cases stored in Bigtable"),
    "console": ("console.cli", "the analysts' case console in the browser: queue, case pages, decisions, overview"),
    "calibrate": (
        "trainer.recalibrate",
        "precision from analysts' labels; propose (and --apply as a new version) a threshold for a precision or budget",
    ),
    "demo": ("fraudscore.dev.demo", "everything at once on local emulators: train, serve, stream, publish, Prometheus"),
}

VERBOSE_FLAGS = ("-v", "--verbose")


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudscore",
        description="Streaming fraud scoring for card transactions with an autoencoder. "
        "Typical flow: generate (or bring creditcard.csv) -> train -> serve / stream -> publish -> cases.",
    )
    parser.add_argument(
        *VERBOSE_FLAGS, action="store_true", help="log debug messages, and TensorFlow's C++ start-up lines"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_name).add_arguments(cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    # Before any command's module is imported: TensorFlow takes its log level from the environment as it loads.
    global_flags = argv[: argv.index(command)] if command is not None else argv
    native_logs.configure(any(a in VERBOSE_FLAGS for a in global_flags), os.environ)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
