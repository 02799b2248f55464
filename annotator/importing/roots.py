"""Confining a browser import to the server's import roots: the folder an admin names, and every file its
rows name, must resolve (symlinks followed) inside one of ``settings.IMPORT_ROOTS``.

The manifest's own checks stop a row's ``..`` or absolute path; a symlink inside the folder pointing out
of the root passes them, so each image and mask is resolved here too (the CLI, run by whoever owns the
server, may follow links anywhere).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from ..errors import ApplicationError
from .records import ImageSpec, RowError

__all__ = ["folder_in_roots", "specs_inside"]


def folder_in_roots(given: str, roots: list[str]) -> tuple[Path, Path]:
    """The real paths of the folder ``given`` (absolute, or relative to the first root) and of the root it
    lies in.

    Refuses ``..`` anywhere, a folder that resolves outside every root (an absolute path elsewhere, or a
    symlink leading out) and one that is not a folder, each with its own message.
    """
    if not roots:
        raise ApplicationError("importing from a server folder is off: the server's IMPORT_ROOTS setting is empty")
    text = given.strip()
    if not text:
        raise ApplicationError("name a folder under the import root")
    if "\x00" in text or ".." in PurePath(text.replace("\\", "/")).parts:
        raise ApplicationError(f"folder {given!r} may not contain '..'")
    candidate = Path(text) if os.path.isabs(text) else Path(roots[0]) / text
    real = Path(os.path.realpath(candidate))
    inside = [root for root in map(os.path.realpath, roots) if _inside(real, Path(root))]
    if not inside:
        raise ApplicationError(f"folder {given!r} is outside the import roots ({', '.join(roots)})")
    if not real.is_dir():
        raise ApplicationError(f"folder {given!r} does not exist under the import roots")
    return real, Path(inside[0])


def specs_inside(specs: list[ImageSpec], root: Path) -> tuple[list[ImageSpec], list[RowError]]:
    """The specs whose image and masks all resolve inside ``root``, and a bad row for each file that
    resolves outside it (a symlink leading out); the files outside are never opened."""
    real_root = Path(os.path.realpath(root))
    inside: list[ImageSpec] = []
    errors: list[RowError] = []
    for spec in specs:
        named = [("image", spec.line, spec.path)] + [("mask", f.line, f.mask_path) for f in spec.findings]
        outside = [(c, line, p) for c, line, p in named if not _inside(Path(os.path.realpath(p)), real_root)]
        for column, line, path in outside:
            reason = f"{column} {path.name} is a link leading outside the import root"
            errors.append(RowError(line, reason, spec.file))
        if not outside:
            inside.append(spec)
    return inside, errors


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)
