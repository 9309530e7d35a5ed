"""Training a TransformerLM: ``python -m tinyformer.train --help``, or :func:`train` from Python.

    config       TrainConfig: every field that determines a run, checked on construction
    prepare      corpus -> tokenizer -> tokens; the model, optimiser and sampler of a run (restored on resume)
    loop         train(): the steps, evaluation and checkpoints; RunResult
    run_folder   the --out folder: which files, when they may be written, resume checks, signals
    cli          the command line (flags, --config files, exit codes)

Taught in: Training (book/training.md)
"""

from .cli import main
from .config import NAMED_CORPORA, ConfigError, TrainConfig
from .loop import RunResult, TrainingDiverged, evaluate, train
from .prepare import check_data_sizes, prepare_data
from .run_folder import RESUMABLE_FIELDS, RUN_FILES, ResumeError, TrainingInterrupted

__all__ = [
    "train",
    "TrainConfig",
    "RunResult",
    "ConfigError",
    "ResumeError",
    "TrainingInterrupted",
    "TrainingDiverged",
    "main",
    "prepare_data",
    "check_data_sizes",
    "evaluate",
    "RUN_FILES",
    "RESUMABLE_FIELDS",
    "NAMED_CORPORA",
]
