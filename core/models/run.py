"""One registered model run: its folder, its card, and what the card says about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import paths
from core.classes import canonical_class
from core.errors import WorkbenchError
from core.models.card import MODEL_FILE, ModelCard, card_from_json_lenient


@dataclass
class Run:
    """One registered model run."""

    run_id: str
    path: Path
    card: ModelCard
    problems: list[str] = field(default_factory=list)  # why the run cannot be used (empty: usable)

    def __post_init__(self) -> None:
        if not isinstance(self.card, ModelCard):  # parsed JSON (tests, tools): checked like a card on disk
            self.card, problems = card_from_json_lenient(self.card)
            self.problems = self.problems or problems

    @property
    def usable(self) -> bool:
        """False when the card is malformed or the folder breaks the registry's rules."""
        return not self.problems

    @property
    def synthetic(self) -> bool:
        """True when the model was trained on synthetic (demo) images."""
        return self.card.synthetic

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def partial(self) -> bool:
        return not self.card.complete

    @property
    def class_names(self) -> list[str]:
        return list(self.card.class_names)

    @property
    def image_size(self) -> int:
        return self.card.image_size

    @property
    def preprocessing(self) -> str:
        """The preprocessing recipe id the model was trained with (older cards: the legacy one)."""
        return self.card.preprocessing_id

    @property
    def created(self) -> str:
        return self.card.created

    @property
    def data_root(self) -> Path:
        """The training data folder recorded in the card.

        A relative path (as typed on the command line) is tried from the working directory, then
        from the project root, so the committed default model finds ``../shared/data`` from anywhere.
        """
        root = Path(str(self.card.data.get("root", "")))
        if root.is_absolute() or root.is_dir():
            return root
        beside_project = paths.PROJECT_ROOT / root  # read now: tests move the project root
        return beside_project if beside_project.is_dir() else root

    def validation_set(self) -> tuple[list[Path], np.ndarray]:
        """(paths, class indices) of the validation images recorded in the card, read from its data folder.

        Raises:
            WorkbenchError: the card lists none, or some are not on this machine.
        """
        files = list(self.card.data.get("val_files") or [])
        root = self.data_root
        paths = [root / f for f in files]
        missing = [str(p) for p in paths if not p.is_file()]
        if not files or missing:
            raise WorkbenchError(f"{len(missing) or 'the'} validation images are missing"
                                 + (f", e.g. {missing[0]}" if missing else ""), str(root))
        labels = np.array([self.class_names.index(canonical_class(Path(f).parent.name)) for f in files])
        return paths, labels

    def leakage_free_macro_f1(self) -> float | None:
        """Leakage-free macro-F1 on the card's own held-out test split (None: not evaluated on it).

        Evaluations on other folders are kept under ``evaluations`` and never count here: a
        score on 20 images of another folder is not comparable with another run's held-out one.
        """
        return self.card.leakage_free_macro_f1()

    @property
    def lineage(self) -> dict:
        """What an adapted run was adapted from (core.training.adapt_card); {} for other runs."""
        value = self.card.extra.get("lineage")
        return dict(value) if isinstance(value, dict) and value.get("parent_run") else {}

    @property
    def adapted(self) -> bool:
        """True for a run adapted to one site's images (never the default for other data)."""
        return bool(self.lineage)

    def adapted_note(self) -> str:
        """'adapted to <site> from <parent>' ('' for runs that were not adapted)."""
        lin = self.lineage
        site = (lin.get("site") or {}).get("name") or "a site"
        return f"adapted to {site} from {lin['parent_run']}" if lin else ""

    def label(self) -> str:
        if self.problems:
            return f"{self.run_id} [UNUSABLE: {self.problems[0]}]"
        acc = self.card.val_accuracy
        extra = f", val acc {acc:.1%}" if acc is not None else ""
        tag = " [PARTIAL]" if self.partial else ""
        note = f" · {self.adapted_note()}" if self.adapted else ""
        return f"{self.run_id} · {self.card.title}{note}{extra}{tag}"
