"""Scoring a human classification study: answer files against the key."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from sis_attr._core.validation import format_flag
from sis_attr.exceptions import SISTypeError, SISValueError, SISWarning
from sis_attr.overinterpretation.report._format import fmt_num, fmt_pct, json_safe
from sis_attr.overinterpretation.report._writer import staged_directory
from sis_attr.overinterpretation.study import _render
from sis_attr.overinterpretation.study._make import ANSWERS_FORMAT, FORMAT_VERSION, Study, fraction_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["StudyScore", "score_study"]

AnswersSource = str | os.PathLike[str] | Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class StudyScore:
    """Human accuracy on a study, from the participants' answer files (Table 2 and Figure S5 of Carter et al.).

    Attributes
    ----------
    study_id, title : str
        Of the study scored.
    fractions : tuple of float
        Fraction of the features kept in each batch (``1.0``: full images), in the order shown.
    classes : tuple of int
        The classes offered; ``class_names`` their names. Positions in ``classes`` index the class axes below.
    class_names : tuple of str
    participants : tuple of str
        One label per answer file scored: the participant code typed on the page, else ``"session <id>"``.
    files : tuple of str
        The answer files scored (``"<dict #i>"`` for answers passed as dicts).
    accuracy : Tensor
        ``(participants, batches)`` float64: each participant's accuracy on each batch.
    per_class_accuracy : Tensor
        ``(batches, classes)`` float64: accuracy on the images of each class, over all participants.
    confusion : Tensor
        ``(batches, classes, classes)`` int64 counts over all participants: row = true class, column = answer.
    model_accuracy : Tensor
        ``(batches,)`` float64: the model's accuracy on the same items (from the key).
    r_squared : float
        Squared Pearson correlation of the fraction kept with human accuracy over the subset batches (not the
        full-image control), one point per participant and batch (the paper's R^2 = 0.94); NaN with fewer than two
        subset fractions or no variation.
    skipped : tuple of str
        Why each refused file was skipped (with ``skip_invalid=True``).
    """

    study_id: str
    title: str
    fractions: tuple[float, ...]
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    participants: tuple[str, ...]
    files: tuple[str, ...]
    accuracy: Tensor
    per_class_accuracy: Tensor
    confusion: Tensor
    model_accuracy: Tensor
    r_squared: float
    skipped: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_participants(self) -> int:
        return len(self.participants)

    @property
    def mean_accuracy(self) -> Tensor:
        """``(batches,)`` mean of the participants' accuracies."""
        return self.accuracy.mean(dim=0)

    @property
    def std_accuracy(self) -> Tensor:
        """``(batches,)`` sample standard deviation across participants (NaN for one participant)."""
        if self.n_participants < 2:
            return torch.full((len(self.fractions),), math.nan, dtype=torch.float64)
        return self.accuracy.std(dim=0, correction=1)

    @property
    def chance(self) -> float:
        """Accuracy of uniform guessing: ``1 / len(classes)``."""
        return 1.0 / len(self.classes)

    # ------------------------------------------------------------------ text
    def summary_rows(self) -> list[tuple[str, str, str]]:
        """``(batch, people mean +- std, model)`` per batch."""
        rows = []
        for f, m, s, a in zip(
            self.fractions,
            self.mean_accuracy.tolist(),
            self.std_accuracy.tolist(),
            self.model_accuracy.tolist(),
            strict=True,
        ):
            spread = "" if math.isnan(s) else f" ± {100 * s:.1f}%"
            rows.append((fraction_label(f) + ("" if f >= 1.0 else " kept"), fmt_pct(m) + spread, fmt_pct(a)))
        return rows

    def summary(self) -> str:
        """Accuracy per batch (people and model), the R^2 and the files skipped, as text."""
        lines = [
            f"Human classification study {self.study_id}: {self.title}",
            f"{self.n_participants} participant(s), {len(self.classes)} classes (chance {fmt_pct(self.chance)})",
            f"{'batch':<16}{'people (mean ± std)':<24}model",
        ]
        lines += [f"{b:<16}{p:<24}{m}" for b, p, m in self.summary_rows()]
        n_points = self.n_participants * sum(1 for f in self.fractions if f < 1.0)
        lines.append(f"R^2 of subset size with human accuracy: {fmt_num(self.r_squared)} ({n_points} points)")
        lines += [f"skipped: {s}" for s in self.skipped]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        """Every number (JSON-serialisable; NaN becomes None)."""
        return json_safe(
            {
                "study_id": self.study_id,
                "title": self.title,
                "fractions": list(self.fractions),
                "classes": list(self.classes),
                "class_names": list(self.class_names),
                "participants": list(self.participants),
                "files": list(self.files),
                "accuracy": self.accuracy,
                "mean_accuracy": self.mean_accuracy,
                "std_accuracy": self.std_accuracy,
                "per_class_accuracy": self.per_class_accuracy,
                "confusion": self.confusion,
                "model_accuracy": self.model_accuracy,
                "r_squared": self.r_squared,
                "chance": self.chance,
                "skipped": list(self.skipped),
            }
        )

    # ------------------------------------------------------------------ figures
    def plot(self, ax: Axes | None = None) -> Axes:
        """Human accuracy against the fraction of pixels kept, beside the model's accuracy on the same images.

        Grey lines: each participant; error bars: mean +- std across participants; dashed: the model; dotted:
        chance.
        """
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(5.5, 4.0))
        x = [100 * f for f in self.fractions]
        for i, row in enumerate(self.accuracy.tolist()):
            ax.plot(
                x, [100 * v for v in row], color="0.75", lw=0.8, marker=".", label="participants" if i == 0 else None
            )
        std = [0.0 if math.isnan(s) else 100 * s for s in self.std_accuracy.tolist()]
        ax.errorbar(
            x,
            [100 * m for m in self.mean_accuracy.tolist()],
            yerr=std,
            marker="o",
            capsize=3,
            label="people (mean ± std)",
        )
        ax.plot(x, [100 * a for a in self.model_accuracy.tolist()], marker="s", ls="--", label="model")
        ax.axhline(100 * self.chance, color="0.4", ls=":", lw=1, label="chance")
        ax.set_xticks(x, [fraction_label(f).replace("full images", "full") for f in self.fractions])
        ax.set_xlabel("pixels kept by backward selection")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 103)
        ax.set_title(f"Human classification (R² = {fmt_num(self.r_squared)})")
        ax.legend(loc="lower right", fontsize="small")
        return ax

    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``score.json``, ``human_accuracy.png`` and an ``index.html`` summary; return the page's path.

        Files of these names in an existing ``directory`` that sis_attr did not write are replaced only with
        ``overwrite`` (otherwise :class:`~sis_attr.exceptions.ReportWriteError`).
        """
        from sis_attr.overinterpretation.report._figures import new_figure

        with staged_directory(directory, "StudyScore.save", overwrite=overwrite) as staging:
            fig = new_figure(5.5, 4.0)
            self.plot(fig.add_subplot(1, 1, 1))
            fig.tight_layout()
            fig.savefig(staging / "human_accuracy.png", format="png")
            (staging / "score.json").write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False), encoding="utf-8")
            page = _render.render(
                "score.html.jinja",
                title=self.title,
                study_id=self.study_id,
                n_participants=self.n_participants,
                chance=fmt_pct(self.chance),
                r_squared=fmt_num(self.r_squared),
                rows=self.summary_rows(),
                participants=[
                    {"name": p, "file": Path(f).name, "accuracy": [fmt_pct(a) for a in row]}
                    for p, f, row in zip(self.participants, self.files, self.accuracy.tolist(), strict=True)
                ],
                batches=[fraction_label(f) for f in self.fractions],
                class_names=list(self.class_names),
                per_class=[[fmt_pct(a) for a in row] for row in self.per_class_accuracy.tolist()],
                confusion=self.confusion.tolist(),
                skipped=list(self.skipped),
            )
            (staging / "index.html").write_text(page, encoding="utf-8")
        return Path(directory) / "index.html"


# ------------------------------------------------------------------------------------------------ reading
def _sources(answers: Sequence[object]) -> list[AnswersSource]:
    """Answer files (paths or dicts), lists and tuples flattened and directories expanded to their ``*.json``."""
    out: list[AnswersSource] = []
    for a in answers:
        if isinstance(a, (list, tuple)):
            out.extend(_sources(a))
        elif isinstance(a, (str, os.PathLike)) and Path(a).is_dir():
            out.extend(sorted(Path(a).glob("*.json")))
        elif isinstance(a, (str, os.PathLike, Mapping)):
            out.append(a)
        else:
            raise SISTypeError(
                "The `answers` of score_study must be paths of answer files (or folders of them) or dicts. "
                f"Got {type(a).__name__} instead."
            )
    return out


@dataclass(frozen=True)
class _Answers:
    name: str
    session: str
    participant: str
    choices: dict[str, int]


def _read(source: AnswersSource, index: int) -> tuple[str, object]:
    """``(name for messages, parsed JSON or an error message)``."""
    if isinstance(source, Mapping):
        return f"<dict #{index}>", dict(source)
    path = Path(source)
    try:
        return str(path), json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return str(path), "does not exist"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return str(path), f"is not a JSON file ({type(err).__name__}: {err})"


def _check(name: str, payload: object, study: Study, offered: set[int]) -> _Answers | str:
    """The answers of one file, or why they cannot be scored."""
    if isinstance(payload, str):
        return payload
    if not isinstance(payload, dict) or payload.get("format") != ANSWERS_FORMAT:
        return "is not an answer file of a sis_attr study (no format 'sis-attr-study-answers')"
    if payload.get("format_version") != FORMAT_VERSION:
        return f"has format version {payload.get('format_version')!r}; this sis_attr reads version {FORMAT_VERSION}"
    if payload.get("study_id") != study.study_id:
        return f"is from another study (study id {payload.get('study_id')!r}; this key is for {study.study_id!r})"
    choices, session = payload.get("answers"), payload.get("session")
    if not isinstance(choices, dict) or not isinstance(session, str) or not session:
        return "is damaged (no answers or no session id)"
    ids = set(study.item_ids)
    unknown = [k for k in choices if k not in ids]
    if unknown:
        return f"answers {len(unknown)} image ids that are not in this study (edited or damaged?)"
    bad = [v for v in choices.values() if isinstance(v, bool) or not isinstance(v, int) or v not in offered]
    if bad:
        return f"holds answers that are not classes of this study: {bad[:3]}"
    if len(choices) < study.n_items:
        return f"is incomplete: {len(choices)} of {study.n_items} images answered"
    participant = payload.get("participant", "")
    return _Answers(name, session, participant.strip() if isinstance(participant, str) else "", dict(choices))


def _format_key(key: object) -> Study:
    if isinstance(key, Study):
        return key
    if isinstance(key, (str, os.PathLike)):
        return Study.from_key(key)
    raise SISTypeError(
        f"The `key` parameter of score_study must be a Study or the path of its key file. Got {type(key).__name__}."
    )


def _r_squared(fractions: Sequence[float], accuracy: Tensor) -> float:
    cols = [b for b, f in enumerate(fractions) if f < 1.0]
    x = torch.tensor([fractions[b] for b in cols], dtype=torch.float64).repeat(accuracy.shape[0])
    y = accuracy[:, cols].reshape(-1)
    if len(cols) < 2 or float(y.std()) == 0.0:
        return math.nan
    r = torch.corrcoef(torch.stack([x, y]))[0, 1]
    return float(r * r)


# ------------------------------------------------------------------------------------------------ the door
def score_study(key: Study | str | os.PathLike[str], *answers: Any, skip_invalid: bool = False) -> StudyScore:
    """Score the answer files of a study made by :func:`make_study` against its key.

    Each file must come from this study (same study id), answer every image with a class offered, and be
    given once: the same file twice, two copies of one session, or two files with the same participant code
    are refused. By default any refused file is an error naming every problem; with ``skip_invalid=True`` the
    refused files are skipped with a warning and listed in :attr:`StudyScore.skipped`.

    Parameters
    ----------
    key : Study, str or os.PathLike
        The study, or its key file.
    *answers : str, os.PathLike, dict, or a list of them
        Answer files downloaded from the page (or folders holding them: their ``*.json`` files; or their
        parsed contents).
    skip_invalid : bool, default False
        Skip refused files with a :class:`~sis_attr.exceptions.SISWarning` instead of raising.

    Returns
    -------
    StudyScore
        Accuracy per batch and participant (mean +- std across participants), per class, the confusion
        matrices, the R^2 of subset size with human accuracy and the model's accuracy on the same images;
        ``print(score.summary())``, ``score.plot()``, ``score.save(directory)``.

    Raises
    ------
    SISValueError
        If a file is refused (another study, incomplete, duplicate, not an answer file) and ``skip_invalid`` is
        False, or if no file can be scored.

    Examples
    --------
    Answer files are what the page downloads; here two are written by hand, one always right, one always
    answering the first class:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import torch
    >>> from sis_attr.overinterpretation import make_study
    >>> from sis_attr.testing import SumGridClassifier
    >>> model = SumGridClassifier()  # two classes: the sign of the sum of a 2x2 grid
    >>> images = torch.randn(20, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    >>> labels = model(images).argmax(dim=1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     study = make_study(model, (images, labels), out=Path(tmp) / "s", per_class=3, threshold=0.6,
    ...                        show_progress=False)
    ...     def answers(session, choices):
    ...         return {"format": "sis-attr-study-answers", "format_version": 1, "study_id": study.study_id,
    ...                 "session": session, "participant": "", "answers": dict(zip(study.item_ids, choices))}
    ...     score = score_study(study.key, answers("a", study.item_labels.tolist()),
    ...                         answers("b", [study.classes[0]] * study.n_items))
    >>> score.accuracy.tolist()[0], round(score.accuracy[1].mean().item(), 3)
    ([1.0, 1.0, 1.0, 1.0], 0.5)
    >>> score.confusion[0].sum().item(), score.n_participants
    (12, 2)
    """
    caller = "score_study"
    study = _format_key(key)
    skip_invalid = format_flag(skip_invalid, "skip_invalid", caller)
    sources = _sources(answers)
    if not sources:
        raise SISValueError(f"{caller} needs at least one answer file. Got none.")
    offered = set(study.classes)
    accepted: list[_Answers] = []
    problems: list[str] = []
    seen_paths: dict[Path, str] = {}
    seen_sessions: dict[str, str] = {}
    seen_codes: dict[str, str] = {}
    for i, source in enumerate(sources):
        name, payload = _read(source, i)
        if not isinstance(source, Mapping):
            resolved = Path(source).resolve()
            if resolved in seen_paths:
                problems.append(f"{name}: given twice")
                continue
            seen_paths[resolved] = name
        result = _check(name, payload, study, offered)
        if isinstance(result, str):
            problems.append(f"{name} {result}")
            continue
        if result.session in seen_sessions:
            problems.append(f"{name}: the same answers as {seen_sessions[result.session]} (one session, two copies)")
            continue
        if result.participant and result.participant in seen_codes:
            problems.append(
                f"{name}: participant code {result.participant!r} also answered in {seen_codes[result.participant]}"
            )
            continue
        seen_sessions[result.session] = name
        if result.participant:
            seen_codes[result.participant] = name
        accepted.append(result)
    if problems and not skip_invalid:
        raise SISValueError(
            f"{caller} refused {len(problems)} of {len(sources)} answer files: " + "; ".join(problems) + ". "
            f"Remove {'it' if len(problems) == 1 else 'them'}, or pass skip_invalid=True to score the others."
        )
    for problem in problems:
        warnings.warn(f"{caller} skipped {problem}.", SISWarning, stacklevel=2)
    if not accepted:
        raise SISValueError(f"{caller}: none of the {len(sources)} answer files can be scored.")

    n_batches, n_classes = len(study.fractions), len(study.classes)
    position = {c: p for p, c in enumerate(study.classes)}
    truth = torch.tensor([position[int(c)] for c in study.item_labels.tolist()], dtype=torch.long)
    chosen = torch.tensor(
        [[position[a.choices[item]] for item in study.item_ids] for a in accepted], dtype=torch.long
    )  # (participants, items), class positions
    right = (chosen == truth).double()
    accuracy = torch.stack([right[:, study.item_batches == b].mean(dim=1) for b in range(n_batches)], dim=1)
    per_class = torch.full((n_batches, n_classes), math.nan, dtype=torch.float64)
    confusion = torch.zeros(n_batches, n_classes, n_classes, dtype=torch.long)
    for b in range(n_batches):
        in_batch = study.item_batches == b
        for c in range(n_classes):
            cols = in_batch & (truth == c)
            if bool(cols.any()):
                per_class[b, c] = right[:, cols].mean()
        pairs = truth[in_batch].expand(len(accepted), -1).reshape(-1) * n_classes + chosen[:, in_batch].reshape(-1)
        confusion[b] = torch.bincount(pairs, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    return StudyScore(
        study_id=study.study_id,
        title=study.title,
        fractions=study.fractions,
        classes=study.classes,
        class_names=study.class_names,
        participants=tuple(a.participant or f"session {a.session[:8]}" for a in accepted),
        files=tuple(a.name for a in accepted),
        accuracy=accuracy,
        per_class_accuracy=per_class,
        confusion=confusion,
        model_accuracy=study.model_accuracy,
        r_squared=_r_squared(study.fractions, accuracy),
        skipped=tuple(problems),
    )
