"""The repository root, for tests that read the source tree's own files (docs, plugins,
manifests). The package itself never depends on where the source tree is."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
