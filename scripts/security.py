"""`make security`: the hostile-input suite (tests/security/, real servers), with a count.

Runs pytest on tests/security/ and ends with ``checks=N failed=N``, a check being one test
(one parametrised case each). `make test` runs the same tests among the others.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


class Count:
    """Each test's outcome, from its call phase (or its setup when that failed)."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.passed:
                self.passed += 1
            elif report.failed or report.skipped:
                # A skip here means a server was missing: the check did not hold.
                self.failed += 1


def main() -> int:
    count = Count()
    code = pytest.main(["-q", str(REPO / "tests" / "security"), *sys.argv[1:]], plugins=[count])
    print(f"checks={count.passed + count.failed} failed={count.failed}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
