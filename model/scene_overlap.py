"""Which LoL test frames show a training scene again, at the brightness its training target had.

LoL was shot in sequences: one scene several times, each low-light shot paired with a
normal-light shot, and the normal-light shots of a scene mostly taken at the same settings.
So a test frame's ground truth is often a re-shot, or the very image, of a training target:
against our450, 6 of eval15's 15 ground truths are re-shots of a training scene at its
brightness (means within 0.5 %), and 14 of the validation split's 49 ground truths are
training targets too. A network that remembers how bright each training scene's target was
scores those frames well without enhancing any better: the frame's brightness decides most of
its PSNR, and from the low-light frame alone it is hard to know (docs/decisions). Every frame a
board's camera sees is a scene no network has seen. `tinymirnet eval` therefore scores three
groups apart:

* **seen**: the nearest training ground truth is the same scene (the Pearson correlation of the
  two ground truths' 48x32 bilinear thumbnails is at least SAME_SCENE) and as bright (mean
  brightness within SAME_BRIGHTNESS: |ln(mean / training mean)| <= 0.01);
* **other brightness**: the same scene as a training ground truth, at another brightness, where
  memory would mislead;
* **new scene**: no training ground truth correlates SAME_SCENE or more: what a camera sees.

The grouping reads the ground truths, as the GT-mean PSNR does: it describes the benchmark,
it is never an input to a method.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .data import Pair, read_rgb

THUMBNAIL = (48, 32)     # width, height: LoL's 3:2 frames
SAME_SCENE = 0.95        # thumbnail correlation; LoL's re-shots score 0.95-1.0, other scenes below 0.7
SAME_BRIGHTNESS = 0.01   # |ln(mean / training mean)|: identical targets differ by < 0.001 (JPEG)
GROUPS = ("seen", "other_brightness", "new_scene")
GROUP_TITLES = {"seen": "seen", "other_brightness": "known scene, other brightness", "new_scene": "new scene"}


def _signature(high_u8: np.ndarray) -> tuple[np.ndarray, float]:
    """A ground truth's zero-mean, unit-length thumbnail and its mean brightness on [0, 1]."""
    thumb = np.asarray(Image.fromarray(np.asarray(high_u8, np.uint8)).resize(THUMBNAIL, Image.BILINEAR),
                       np.float64).reshape(-1)
    thumb -= thumb.mean()
    length = np.sqrt(np.sum(thumb * thumb))
    return (thumb / length if length > 0 else thumb), float(np.mean(high_u8, dtype=np.float64) / 255.0)


@dataclass
class TrainingScenes:
    """The training ground truths, each as its thumbnail signature and mean brightness."""
    stems: list[str]
    signatures: np.ndarray  # N x (48 * 32 * 3), zero mean, unit length
    means: np.ndarray       # N, on [0, 1]

    @classmethod
    def from_pairs(cls, pairs: list[Pair]) -> "TrainingScenes":
        if not pairs:
            raise ValueError("no training pairs to match scenes against")
        signatures, means = zip(*(_signature(read_rgb(p.high)) for p in pairs))
        return cls([p.stem for p in pairs], np.stack(signatures), np.array(means))

    def match(self, high_u8: np.ndarray) -> dict:
        """The nearest training ground truth of one ground truth, and whether the frame is seen."""
        signature, mean = _signature(high_u8)
        correlation = self.signatures @ signature
        i = int(np.argmax(correlation))
        ratio = float(np.log(max(mean, 1e-6) / max(self.means[i], 1e-6)))
        known = bool(correlation[i] >= SAME_SCENE)
        group = "new_scene" if not known else "seen" if abs(ratio) <= SAME_BRIGHTNESS else "other_brightness"
        return {"training_stem": self.stems[i], "correlation": float(correlation[i]),
                "brightness_ln_ratio": ratio, "group": group}


RULE = (f"seen: the nearest training ground truth (Pearson correlation of {THUMBNAIL[0]}x{THUMBNAIL[1]} "
        f"thumbnails) is the same scene (>= {SAME_SCENE}) at the same brightness (|ln mean ratio| <= "
        f"{SAME_BRIGHTNESS}); other brightness: the same scene at another brightness; new scene: no "
        f"training ground truth correlates >= {SAME_SCENE} (model/scene_overlap.py)")
