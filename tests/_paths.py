"""Paths the tests share, independent of how deep a test file sits in the mirrored layout."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
ARTIFACTS = TESTS / "artifacts"  # screenshots and other outputs a reviewer looks at (git-ignored)
