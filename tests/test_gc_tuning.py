"""consim.gc_tuning: a process serving live servers collects its young objects less often."""

import gc

from consim.gc_tuning import YOUNG_THRESHOLD, tune_for_serving


def test_serving_raises_the_young_threshold_once_and_keeps_the_older_ones() -> None:
    _, older, oldest = gc.get_threshold()
    tune_for_serving()
    tune_for_serving()  # once per process: a second call changes nothing
    assert gc.get_threshold() == (YOUNG_THRESHOLD, older, oldest)
    assert gc.get_freeze_count() > 0  # start-up objects are out of every collection
