"""Where this project's checkout lies (for its git commit in env.json and in exports)."""

from pathlib import Path

import bench

PROJECT_ROOT = Path(bench.__file__).resolve().parent.parent
