"""Where the checkout's files are (the product itself never needs to know: it runs installed)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FEATURE_REPO = REPO_ROOT / "feature_repo"
