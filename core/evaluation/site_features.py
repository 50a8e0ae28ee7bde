"""What the network sees, for the site check: the pooled features of a run, or of every member (and
sentinel) of an ensemble.

An ensemble has no network of its own; each member looks at its own input (head crop or whole
frame, its own size, as its card says), so each member's features are taken on that input and
reduced on their own (principal components), then set side by side as one signal. A shift that
only one member's input shows (a head crop hides a changed background, a whole frame does not)
is then still seen. An ensemble's sentinels are read too: a check model kept because it still sees
the image's style is the network most likely to tell a new site's images from the training ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.data.site_images import ImageSample
from core.models.ensemble import is_ensemble, member_runs, sentinel_runs
from core.models.runs import Run

FEATURE_COMPONENTS = 16  # principal components of a single network's features fed to the classifier
MIN_MEMBER_COMPONENTS = 6  # an ensemble shares the 16 among its members, but each keeps at least this many


def feature_runs(run: Run) -> list[Run]:
    """The single-model runs whose networks describe ``run``: itself, or an ensemble's members and sentinels.

    Raises:
        WorkbenchError: an ensemble member or sentinel is missing, damaged or was changed after registration.
    """
    return member_runs(run) + sentinel_runs(run) if is_ensemble(run) else [run]


def model_inputs(runs: Sequence[Run]) -> list[tuple[str, int]]:
    """The (preprocessing, image size) inputs ``runs`` need, each once, for :func:`core.data.site_images.read_sample`."""
    return list(dict.fromkeys((r.preprocessing, r.image_size) for r in runs))


def network_outputs(runs: Sequence[Run], sample: ImageSample) -> list[Any]:
    """One :class:`core.inference.runner.RunnerOutput` per run, on its own input: pooled ``features``
    ((N, D), None when the network has no 'features' layer) and ``logits``."""
    return [_runner(r).run(sample.model_images[(r.preprocessing, r.image_size)]) for r in runs]


def class_shares(voters: Sequence[Run], outputs: Sequence[Any]) -> np.ndarray:
    """(K,) the share of each class among a sample's images, as the voting networks see them: the mean of
    their calibrated probabilities (an ensemble's answer), averaged over the images."""
    from core.inference.calibration import softmax

    probs = np.mean([softmax(o.logits, r.card.temperature) for r, o in zip(voters, outputs)], axis=0)
    return probs.mean(axis=0)


def components_per_network(n_networks: int) -> int:
    """Components kept of each network's features: a single model's budget shared among an ensemble's
    members (a wider table would cost the classifier time, and measured no sharper verdicts; 6 of
    16 still carry each member's main directions of variation)."""
    return max(MIN_MEMBER_COMPONENTS, -(-FEATURE_COMPONENTS // max(n_networks, 1)))


def principal_components(x: np.ndarray, seed: int, k: int = FEATURE_COMPONENTS) -> np.ndarray:
    """The first ``k`` principal components of standardised rows (fewer when there are fewer columns or rows)."""
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float64)
    k = min(k, x.shape[1], len(x) - 1)
    return PCA(n_components=k, random_state=seed).fit_transform((x - x.mean(0)) / (x.std(0) + 1e-9))


_RUNNERS: dict[tuple[str, str], Any] = {}


def _runner(run: Run):
    """One loaded model and traced runner per (run, file checksum): a page checking twice loads once.

    Only the models of the run last checked are kept (an ensemble's members together), so memory
    stays bounded when a user switches models.
    """
    from core.inference.runner import ModelRunner
    from core.models.runs import load_model

    key = (str(run.path), run.card.model_sha256)
    if key not in _RUNNERS:
        _RUNNERS[key] = ModelRunner(load_model(run), "none", batch_size=64)
    return _RUNNERS[key]


def keep_only(runs: Sequence[Run]) -> None:
    """Forget the cached models of runs other than ``runs`` (called before a check)."""
    wanted = {(str(r.path), r.card.model_sha256) for r in runs}
    for key in [k for k in _RUNNERS if k not in wanted]:
        del _RUNNERS[key]
