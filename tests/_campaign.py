"""The size of a slow campaign: full by default, a bounded slice in CI.

`VERITY_CAMPAIGN_SCALE` (default 1.0) scales the number of examples of every
`@pytest.mark.slow` campaign; `.ci/run` sets it so the slice fits the time
budget. The full campaigns are `python -m pytest -m slow`.
"""

from __future__ import annotations

import os


def campaign(full_examples: int) -> int:
    scale = float(os.environ.get("VERITY_CAMPAIGN_SCALE", "1"))
    return max(1, int(full_examples * scale))
