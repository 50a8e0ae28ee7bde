"""One line per augmentation preset, for the Train page and the Augmentation Preview (issue 24)."""

from __future__ import annotations

#: preset name (a key of core.config.AUGMENT_PRESETS) -> what it does and when to pick it, in one line.
PRESET_NOTES: dict[str, str] = {
    "none": "No changes: the network sees each training image as it is. For comparisons and quick tests.",
    "light": "Small turns, zooms and shifts, mirrored left-right. For data from one scanner.",
    "standard": "Moderate turns, zooms and shifts, mirroring, slight brightness and contrast changes.",
    "robust": "Standard plus blur and noise, which stand in for other scanners' resolution and field strength.",
    "generalise": "Wider framing, contrast, blur, noise and resolution changes for other hospitals' scans "
                  "(the shipped model's).",
    "strong": "Large turns, zooms and shifts and stronger brightness and contrast changes; can slow learning.",
}

#: The preset the Train page starts with: the one the shipped default model was trained with.
DEFAULT_PRESET = "generalise"


def preset_label(name: str) -> str:
    """``generalise: Wider framing ...`` for a select box; a custom setting says where it came from."""
    return f"{name}: {PRESET_NOTES[name]}" if name in PRESET_NOTES else "custom (from Augmentation Preview)"
