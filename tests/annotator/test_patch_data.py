"""Pure helpers of annotator.services.patch_data, without a database or a worker."""

from __future__ import annotations

from annotator.services.patch_data import shard_bounds


def test_shards_are_runs_of_whole_images_with_about_equal_patch_counts():
    assert shard_bounds([10] * 10, 2) == [0, 5, 10]
    assert shard_bounds([30] + [3] * 10, 2) == [0, 1, 11]  # 30 patches each, not 5 images each
    assert shard_bounds([100, 1, 1], 3) == [0, 1, 2, 3]  # every shard gets an image
    assert shard_bounds([5, 5, 5], 1) == [0, 3]
