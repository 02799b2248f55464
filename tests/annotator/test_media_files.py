"""Media files are written readable by their group (FILE_UPLOAD_PERMISSIONS, 0640 here) whatever the
process's umask, so a web server or worker running as another user of the group can read them; and a
folder written whole (a deep zoom pyramid) appears complete or not at all."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from annotator.files import (
    delete_quietly,
    delete_tree_quietly,
    media_path,
    write_bytes_atomic,
    write_png_atomic,
    write_tree_atomic,
)


@pytest.fixture
def strict_umask() -> Iterator[None]:
    """The umask a hardened service runs with: alone it would leave files 0600."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_are_group_readable_by_default(settings, strict_umask: None) -> None:
    assert settings.FILE_UPLOAD_PERMISSIONS == 0o640  # the project's setting
    write_bytes_atomic("a/b.bin", b"x")
    write_png_atomic("a/c.png", np.zeros((4, 4), dtype=np.uint8))
    write_tree_atomic("tree/t1", [("x/1.jpg", b"1"), ("d.dzi", b"2")])
    for name in ("a/b.bin", "a/c.png", "tree/t1/x/1.jpg", "tree/t1/d.dzi"):
        assert _mode(media_path(name)) == 0o640, name
    assert _mode(media_path("tree/t1")) & 0o050 == 0o050  # the group may list and enter the folder


def test_the_mode_follows_file_upload_permissions(settings, strict_umask: None) -> None:
    settings.FILE_UPLOAD_PERMISSIONS = 0o660
    write_bytes_atomic("m/b.bin", b"x")
    write_tree_atomic("m/t", [("f", b"1")])
    assert _mode(media_path("m/b.bin")) == 0o660 and _mode(media_path("m/t/f")) == 0o660
    settings.FILE_UPLOAD_PERMISSIONS = None  # Django's "as the umask says": this module still says 0640
    write_bytes_atomic("m/c.bin", b"x")
    assert _mode(media_path("m/c.bin")) == 0o640


def test_a_folder_written_whole_keeps_the_first_writer_and_leaves_no_staging(media_root: Path) -> None:
    assert write_tree_atomic("deepzoom/x", [("a", b"first")]) is True
    assert write_tree_atomic("deepzoom/x", [("a", b"second")]) is False
    assert media_path("deepzoom/x/a").read_bytes() == b"first"

    def failing():
        yield "a", b"half"
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_tree_atomic("deepzoom/y", failing())
    assert sorted(p.name for p in media_path("deepzoom").iterdir()) == ["x"]  # no .tmp-* left behind


def test_clean_up_removes_what_was_written_ignores_what_is_gone_and_never_the_media_root(media_root: Path) -> None:
    kept = write_bytes_atomic("kept/a.bin", b"a")
    write_tree_atomic("deepzoom/7", [("a.dzi", b"<Image/>"), ("a_files/0/0_0.png", b"png")])
    written = write_bytes_atomic("rolled-back/b.bin", b"b")
    delete_quietly([written, "rolled-back/never-written.bin", ""])
    delete_tree_quietly("deepzoom/7")
    delete_tree_quietly("deepzoom/never-written")  # a step that failed before writing its folder
    for nothing in ("", "/"):  # an empty name must not mean the whole media root
        delete_tree_quietly(nothing)
    assert not media_path(written).exists() and not media_path("deepzoom/7").exists()
    assert media_path(kept).read_bytes() == b"a"


def test_a_folder_written_whole_may_sit_under_folders_that_do_not_exist_yet(media_root: Path) -> None:
    assert write_tree_atomic("deepzoom/12/level", [("a.dzi", b"<Image/>")])
    assert media_path("deepzoom/12/level/a.dzi").read_bytes() == b"<Image/>"
