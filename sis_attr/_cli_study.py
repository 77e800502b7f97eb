"""``sis-attr study make`` and ``sis-attr study score``: the human classification study on the command line.

``sis-attr study make`` builds a study with :func:`sis_attr.overinterpretation.make_study` from a model and data
named as for ``sis-attr audit`` (``--model MODULE:CALLABLE``, ``--weights``, ``--data``, ``--mean``/``--std``, ...):
a folder holding the one page to give to participants, and a key file beside it to keep.
``sis-attr study score KEY ANSWERS...`` scores the answer files that participants send back with
:func:`sis_attr.overinterpretation.score_study`, prints the summary and, with ``--out``, writes it as a page.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sis_attr.cli import (
    _add_input_options,
    _add_normalisation_options,
    _add_selection_options,
    _images_of,
    _model_and_baselines,
    _non_negative_int,
    _positive_int,
    _probability,
    _resolve_device,
)
from sis_attr.exceptions import CLIError

__all__ = ["add_study_parser", "run_study"]


def add_study_parser(sub: Any) -> None:
    """Add ``study`` (with ``make`` and ``score``) to the sub-commands ``sub`` of the ``sis-attr`` parser."""
    study = sub.add_parser(
        "study",
        help="make a human classification study (a page for participants) and score the answers",
        description=(
            "The human classification study of Carter et al. (Section 3.4, Table 2): people classify the "
            "backward-selection pixel subsets of images your model classifies confidently. 'make' writes the "
            "page to give to participants and a key to keep; 'score' scores the answer files they send back."
        ),
    )
    actions = study.add_subparsers(dest="study_command", metavar="{make,score}")
    actions.required = True

    make = actions.add_parser(
        "make",
        help="write the participant page and its key",
        description=(
            "Sample images that the model classifies correctly and confidently, keep the pixels that backward "
            "selection ranks highest, and write OUT/index.html (the only file to give to participants) and the key "
            "(OUT-key.json beside the folder by default: keep it private)."
        ),
        epilog="Model and data options are those of 'sis-attr audit' (see sis-attr audit --help).",
    )
    _add_input_options(make, limit_help="sample from the first N images only")
    make.add_argument("--out", default="sis-attr-study", help="folder of the participant page (default: %(default)s)")
    make.add_argument("--key", metavar="PATH", help="key file (default: OUT-key.json beside the folder)")
    make.add_argument(
        "--fractions",
        type=_probability,
        nargs="+",
        default=[0.05, 0.3, 0.5],
        metavar="F",
        help="fractions of pixels kept, one batch each (default: 0.05 0.3 0.5)",
    )
    make.add_argument("--no-control", action="store_true", help="no last batch of full images")
    make.add_argument("--per-class", type=_positive_int, default=10, help="images per class (default: %(default)s)")
    make.add_argument("--classes", type=_non_negative_int, nargs="+", metavar="C", help="class indices offered")
    make.add_argument(
        "--threshold", type=_probability, default=0.99, help="minimum model confidence (default: %(default)s)"
    )
    _add_selection_options(make)
    _add_normalisation_options(make, baseline_help="what the model sees in hidden pixels (default: %(default)s)")
    make.add_argument("--batch-size", type=_positive_int, default=256, help="masked images per forward pass")
    make.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda (default: cpu)")
    make.add_argument("--title", default="Which class is it?", help="title of the page (default: %(default)r)")
    make.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default: %(default)s)")
    make.add_argument("--overwrite", action="store_true", help="replace an existing key file")
    make.add_argument("--no-progress", action="store_true", help="hide progress bars")

    score = actions.add_parser(
        "score",
        help="score the answer files participants sent back",
        description=(
            "Score answer files (or folders of them) against the study key: accuracy per subset size (mean +- std "
            "across participants), per class, confusion matrices, and the R^2 of subset size with human accuracy."
        ),
    )
    score.add_argument("key", help="the key file written by 'sis-attr study make'")
    score.add_argument("answers", nargs="+", help="answer files, or folders holding them")
    score.add_argument("--out", metavar="DIR", help="also write the summary page, score.json and the figure to DIR")
    score.add_argument("--overwrite", action="store_true", help="replace files in --out that sis-attr did not write")
    score.add_argument(
        "--skip-invalid", action="store_true", help="skip (with a warning) answer files that cannot be scored"
    )


def _run_make(args: argparse.Namespace) -> int:
    from sis_attr.overinterpretation import block_feature_mask
    from sis_attr.overinterpretation.study import make_study

    device = _resolve_device(args.device)
    if args.method == "exact" and (args.k is not None or args.shortlist is not None):
        raise CLIError("--k and --shortlist apply to --method gradient only.")
    images, labels, names = _images_of(args)
    model, baselines = _model_and_baselines(args, images)
    feature_mask: Any = "pixel"
    if args.superpixel is not None:
        feature_mask = block_feature_mask(int(images.shape[2]), int(images.shape[3]), args.superpixel)
    study = make_study(
        model.to(device),
        (images, labels, names),
        out=args.out,
        key=args.key,
        fractions=args.fractions,
        control=not args.no_control,
        per_class=args.per_class,
        classes=args.classes,
        threshold=args.threshold,
        method=args.method,
        baselines=baselines,
        feature_mask=feature_mask,
        k=args.k,
        shortlist=args.shortlist,
        batch_size=args.batch_size,
        display_images=images,
        title=args.title,
        seed=args.seed,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
    )
    print(study.summary())
    print(
        f"\nGive participants {study.page} (one file; it works offline). Keep {study.key} to yourself.\n"
        f"Score the answers they send back with: sis-attr study score {study.key} ANSWERS.json ..."
    )
    return 0


def _run_score(args: argparse.Namespace) -> int:
    from sis_attr.overinterpretation.study import score_study

    key = Path(args.key)
    if not key.is_file():
        raise CLIError(f"the key {args.key!r} {'is a directory' if key.is_dir() else 'does not exist'}.")
    score = score_study(key, list(args.answers), skip_invalid=args.skip_invalid)
    print(score.summary())
    if args.out is not None:
        print(f"\nSummary: {score.save(args.out, overwrite=args.overwrite)}")
    return 0


def run_study(args: argparse.Namespace) -> int:
    """Run ``sis-attr study make`` or ``sis-attr study score`` from parsed arguments; return the exit status."""
    if args.study_command == "make":
        return _run_make(args)
    return _run_score(args)
