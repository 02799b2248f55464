"""How high Network Dissection's IoU can go for each concept the mammogram phantoms plant (issue 9, item 7).

A unit of the patch network's last block sees a 128-px patch as a 4 x 4 map (ResNet layer4), and mining
binarises its response, upsampled bilinearly, above its top-0.5% level over the split. So even a perfect
detector of a concept, one whose response in each cell is the share of the cell the concept covers, has
a dataset-wide IoU below 1: the upsampled map cannot follow a structure thinner than a cell. This test
builds that detector for every concept (one "oracle unit" each) and scores it with the product's own
threshold and tally (``mining.topk.UnitTopK``, ``mining.dissection.ConceptIoUTally``) over every patch of
40 phantoms (20 patients).

Measured here (40 phantoms of seed 2): spiculated masses 0.66, the nipple 0.24, oval masses 0.23,
intramammary lymph nodes 0.21, vascular calcifications 0.13, grouped fine pleomorphic calcifications
0.09; but the normal vessels 0.025, the pectoral muscle's edge 0.024 and the skin line 0.014. The three
long, thin anatomy concepts cannot pass the 0.04 cut-off at this map size whatever a unit learns, so the
science check's normal-anatomy aim can only be met by units that detect the nipple or the lymph nodes.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mining.dissection import INTERPRETABLE_IOU, ConceptIoUTally
from mining.patches import crop_patches, extract_patches
from mining.phantoms import PhantomImage, generate_mammogram_phantoms
from mining.topk import UnitTopK

GRID = 4  # layer4 of a ResNet on a 128-px patch
REACHABLE = (
    "mass_shape.irregular",
    "mass_shape.oval",
    "calc_suspicious.fine_pleomorphic",
    "calc_distribution.grouped",
    "calc_benign.vascular",
    "anatomy.nipple",
    "special_case.intramammary_lymph_node",
)


def _concept_crops(image: PhantomImage) -> tuple[dict[str, np.ndarray], int]:
    """code -> uint8 (n, S, S) masks of the image's kept patches (every planted code, zeros where absent)."""
    lesions = [(f.mask, f.pathology) for f in image.findings if f.pathology != "normal"]
    patches = extract_patches(image.pixels, lesions)
    union: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(image.pixels.shape, dtype=np.uint8))
    for finding in image.findings:
        for code in finding.concepts:
            union[code] |= finding.mask.astype(np.uint8)
    return {code: crop_patches(mask, patches.boxes) for code, mask in union.items()}, patches.side


def _oracle_responses(crops: dict[str, np.ndarray], codes: list[str], count: int, side: int) -> torch.Tensor:
    """float (n, U, 4, 4): unit u's response is the share of each cell that concept ``codes[u]`` covers."""
    masks = torch.zeros((count, len(codes), side, side))
    for u, code in enumerate(codes):
        if code in crops:
            masks[:, u] = torch.from_numpy(crops[code]).float()
    shares = F.adaptive_avg_pool2d(masks, GRID)
    # Break ties (many cells are exactly 0 or 1) so the top-0.5% level is one value, not a plateau.
    jitter = torch.rand(shares.shape, generator=torch.Generator().manual_seed(count)) * 1e-6
    return shares + jitter


@pytest.fixture(scope="module")
def reach() -> dict[str, float]:
    images = list(generate_mammogram_phantoms(40, seed=2))
    per_image = [_concept_crops(image) for image in images]
    codes = sorted({code for crops, _ in per_image for code in crops})
    side = per_image[0][1]
    counts = [len(next(iter(crops.values()))) for crops, _ in per_image]
    topk = UnitTopK(len(codes), total_positions=sum(counts) * GRID * GRID)
    start = 0
    for (crops, _), count in zip(per_image, counts, strict=True):  # first pass: the thresholds
        topk.update(_oracle_responses(crops, codes, count, side), torch.arange(start, start + count))
        start += count
    tally = ConceptIoUTally(topk.thresholds(), side)
    for (crops, _), count in zip(per_image, counts, strict=True):  # second pass: the tally
        concepts = [{code: crops[code][i].astype(bool) for code in crops} for i in range(count)]
        tally.update(_oracle_responses(crops, codes, count, side), concepts)
    ious = tally.ious()
    result = {code: float(ious[code][u]) for u, code in enumerate(codes)}
    print({code: round(value, 3) for code, value in result.items()})
    return result


def test_a_perfect_detector_of_each_lesion_the_nipple_or_a_lymph_node_passes_the_cut_off(reach):
    for code in REACHABLE:
        assert reach[code] > 2 * INTERPRETABLE_IOU, (code, reach)


def test_the_long_thin_anatomy_is_beyond_reach_at_a_4x4_map(reach):
    """What limits the science check's normal-anatomy aim: recorded here so a change to how the phantoms
    mask the vessels, the skin line or the muscle's edge shows up as a change to that aim's reach."""
    for code in ("anatomy.normal_vessels", "anatomy.skin_line", "anatomy.pectoral_muscle"):
        assert reach[code] < INTERPRETABLE_IOU, (code, reach)
