"""The files that ship inside the package besides its code, found wherever it is installed:
the study recipes (`recipes/NAME.yaml`, read as `alignkit study --config recipe:NAME`) and the
launch configs of `accelerate launch` (`configs/accelerate/`). In a checkout, the folders
`recipes/` and `configs/` at the repository root are links to these.
"""

from __future__ import annotations

import re
from pathlib import Path

from alignkit.errors import AlignkitError

PACKAGE_DIR = Path(__file__).resolve().parent
RECIPES_DIR = PACKAGE_DIR / "recipes"
ACCELERATE_CONFIGS_DIR = PACKAGE_DIR / "configs" / "accelerate"
RECIPE_PREFIX = "recipe:"


def recipe_names() -> list[str]:
    """The recipes shipped with alignkit (file names without `.yaml`), sorted."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def recipe_summary(name: str) -> str:
    """The first sentence of a recipe's header comment (what it compares)."""
    header = []
    for line in (RECIPES_DIR / f"{name}.yaml").read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# ").strip())
    text = " ".join(header)
    return re.split(r"(?<=[.?!])\s(?=[A-Z])", text, maxsplit=1)[0]


def recipe_file(spec: str) -> str:
    """`recipe:NAME` as the path of that shipped recipe; any other spec (a path) unchanged.
    An unknown name is an error listing the recipes."""
    if not spec.startswith(RECIPE_PREFIX):
        return spec
    name = spec[len(RECIPE_PREFIX) :].removesuffix(".yaml")
    if name not in recipe_names():
        raise AlignkitError(
            f"no recipe {name!r} ships with alignkit; recipes: {', '.join(recipe_names())} "
            f"(in {RECIPES_DIR})"
        )
    return str(RECIPES_DIR / f"{name}.yaml")


def relative_to_file(value: str, file: str | Path) -> str:
    """A path written in a config `file`, read relative to that file's folder when it names
    something there (so a recipe runs from any directory); anything else (an absolute path,
    a Hugging Face id, `hf:NAME`, a path that exists only from the working directory) stays
    as written."""
    if not value or Path(value).is_absolute() or ":" in value:
        return value
    near = Path(file).resolve().parent / value
    return str(near.resolve()) if near.exists() else value
