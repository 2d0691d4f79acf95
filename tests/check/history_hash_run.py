"""One consim check run in virtual time; prints its history hash and operation count
(test_campaign.py runs it in three processes with different PYTHONHASHSEED).

    python tests/check/history_hash_run.py SEED
"""

from __future__ import annotations

import sys

from consim.check.campaign import CheckConfig, run_check


def main() -> None:
    config = CheckConfig(
        duration=15,
        nemesis=("partition", "kill", "pause", "loss", "delay", "membership"),
        interval=2,
    )
    run = run_check(config, int(sys.argv[1]))
    print(run.history.hash(), run.result["ops"])


if __name__ == "__main__":
    main()
