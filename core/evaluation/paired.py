"""Two models compared on the same images: McNemar's test, the confusion matrices' difference, and the
images on which they disagree (issue 24: a comparison on different images says nothing).

Numbers and dataframes only; the Evaluate page draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from core.classes import display_name
from core.errors import WorkbenchError
from core.evaluation.result import EvaluationResult

CLEAR = 0.05  # below this p-value the difference is called clear


@dataclass(frozen=True)
class PairedComparison:
    """Model A against model B on the images both were scored on."""

    run_a: str
    run_b: str
    n_images: int
    both_right: int
    only_a_right: int  # A right, B wrong
    only_b_right: int  # B right, A wrong
    both_wrong: int
    p_value: float  # exact two-sided McNemar (binomial on the discordant pairs)
    confusion_difference: pd.DataFrame  # B's counts minus A's: rows true class, columns predicted class
    disagreements: pd.DataFrame  # file, true, a_predicted, b_predicted, right (which model was right)

    def sentence(self) -> str:
        """The result in words, with the p-value explained."""
        a, b, n = self.only_a_right, self.only_b_right, self.n_images
        head = (f"On the same {n} images, {self.run_a} was right where {self.run_b} was wrong on {a} image(s), "
                f"and {self.run_b} right where {self.run_a} was wrong on {b}.")
        if a + b == 0:
            return head + " The two models never disagree on right and wrong here: no difference to test."
        chance = f"{self.p_value:.0%}" if self.p_value >= 0.01 else "less than 1 %"
        if self.p_value < CLEAR:
            winner = self.run_a if a > b else self.run_b
            return (head + f" Two equally good models would differ this much in only {chance} of such comparisons "
                    f"(McNemar's test, p = {self.p_value:.3g}): {winner} is clearly better on these images.")
        return (head + f" Two equally good models would differ this much in {chance} of such comparisons "
                f"(McNemar's test, p = {self.p_value:.3g}): no clear winner; more test images would be needed.")


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: the discordant pairs against a fair coin (1.0 when there are none)."""
    n = only_a + only_b
    return 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)


def paired_comparison(a: EvaluationResult, b: EvaluationResult, leakage_free: bool = True) -> PairedComparison:
    """A and B on the images they were both scored on (same folder, same files).

    Raises:
        WorkbenchError: the two were scored on different folders, other class lists, or on no common image.
    """
    if a.root != b.root:
        raise WorkbenchError("the two models were scored on different folders; pick one test set for both "
                             "(the active dataset's test split, or a folder) and evaluate again", "comparison")
    if list(a.class_names) != list(b.class_names):
        raise WorkbenchError("the two models know different classes, so their answers cannot be paired",
                             "comparison")
    pa, pb = a.subset(leakage_free), b.subset(leakage_free)
    both = pa[["file", "true", "predicted"]].merge(pb[["file", "true", "predicted"]], on=["file", "true"],
                                                   suffixes=("_a", "_b"))
    if both.empty:
        raise WorkbenchError("the two models were scored on different images (for example each on its own "
                             "test split): evaluate both on the same test set", "comparison")
    right_a = (both["predicted_a"] == both["true"]).to_numpy()
    right_b = (both["predicted_b"] == both["true"]).to_numpy()
    only_a, only_b = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
    names = [display_name(c) for c in a.class_names]

    def matrix(column: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(a.class_names)}
        m = np.zeros((len(names), len(names)), dtype=np.int64)
        np.add.at(m, (both["true"].map(index).to_numpy(), both[column].map(index).to_numpy()), 1)
        return m

    diff = pd.DataFrame(matrix("predicted_b") - matrix("predicted_a"), index=pd.Index(names, name="true class"),
                        columns=names)
    differ = both[both["predicted_a"] != both["predicted_b"]].copy()
    differ["right"] = np.select([differ["predicted_a"] == differ["true"], differ["predicted_b"] == differ["true"]],
                                ["A", "B"], "neither")
    differ = differ.rename(columns={"predicted_a": "a_predicted", "predicted_b": "b_predicted"})
    return PairedComparison(a.run_id, b.run_id, len(both), int((right_a & right_b).sum()), only_a, only_b,
                            int((~right_a & ~right_b).sum()), mcnemar_p(only_a, only_b), diff,
                            differ[["file", "true", "a_predicted", "b_predicted", "right"]].reset_index(drop=True))


#: comparison_table's columns as a trainer reads them.
COMPARISON_COLUMNS = {"run": "Model", "arch": "Architecture", "val_accuracy": "Validation accuracy",
                      "test_accuracy": "Test accuracy", "leakage_free_macro_f1": "Macro-F1 (leakage-free test)",
                      "eval_set": "Scored on", "train_seconds": "Training time (s)", "size_mb": "Size (MB)",
                      "params": "Parameters", "best": "Best"}
