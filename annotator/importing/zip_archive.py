"""A dataset zip from the browser: its members checked before anything is unpacked, then unpacked.

Refused, each with its own message, from the central directory alone: too many members, a member name
that is absolute, holds ``..`` or a NUL, or appears twice, a symlink member, an encrypted member, a total
uncompressed size over the cap, and a compression ratio over the cap (the whole archive, or any member of
a MiB or more: small files compress well without being a bomb). Unpacking never writes more than a
member's declared size (zipfile stops there and checks the CRC) and never follows a link.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mining.progress import ProgressFn

from ..errors import ApplicationError

__all__ = ["ZipLimits", "zip_members_check", "zip_unpack"]

_CHUNK = 1 << 20
_RATIO_MIN_MEMBER = 1 << 20  # members under a MiB are not ratio-checked on their own
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipLimits:
    max_members: int
    max_bytes: int  # total uncompressed
    max_ratio: float


def zip_members_check(archive: zipfile.ZipFile, limits: ZipLimits) -> list[zipfile.ZipInfo]:
    """The archive's file members (directories left out), or ApplicationError naming the first problem."""
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise ApplicationError(f"the zip holds {len(members):,} members; at most {limits.max_members:,} are allowed")
    seen: set[str] = set()
    files: list[zipfile.ZipInfo] = []
    for member in members:
        name = _member_name(member)
        if name in seen:
            raise ApplicationError(f"zip member {member.filename!r} appears twice")
        seen.add(name)
        if stat.S_ISLNK(member.external_attr >> 16):
            raise ApplicationError(f"zip member {member.filename!r} is a symbolic link; links are not unpacked")
        if member.flag_bits & 0x1:
            raise ApplicationError(f"zip member {member.filename!r} is encrypted; upload an unencrypted zip")
        if not member.is_dir():
            _check_ratio(member.file_size, member.compress_size, limits, f"zip member {member.filename!r}")
            files.append(member)
    total = sum(member.file_size for member in files)
    if total > limits.max_bytes:
        raise ApplicationError(f"the zip unpacks to {total:,} bytes; at most {limits.max_bytes:,} are allowed")
    _check_ratio(total, sum(member.compress_size for member in files), limits, "the zip", small_too=True)
    return files


def _member_name(member: zipfile.ZipInfo) -> str:
    """The member's relative posix name; refuses names that would land outside the unpacking folder."""
    raw = member.filename
    name = raw.replace("\\", "/")
    if "\x00" in name or not name.strip("/"):
        raise ApplicationError(f"zip member name {raw!r} is not a usable file name")
    if name.startswith("/") or _DRIVE.match(name):
        raise ApplicationError(f"zip member {raw!r} has an absolute path; members must be relative")
    if ".." in name.split("/"):
        raise ApplicationError(f"zip member {raw!r} leads out of the archive with '..'")
    return posixpath.normpath(name)


def _check_ratio(size: int, compressed: int, limits: ZipLimits, what: str, *, small_too: bool = False) -> None:
    if size < _RATIO_MIN_MEMBER and not small_too:
        return
    ratio = size / max(compressed, 1)
    if size and ratio > limits.max_ratio:
        raise ApplicationError(
            f"{what} is compressed {ratio:,.0f} to 1 (at most {limits.max_ratio:g} to 1 is allowed): "
            "it looks like a zip bomb"
        )


def zip_unpack(
    archive: zipfile.ZipFile,
    members: list[zipfile.ZipInfo],
    folder: Path,
    *,
    progress: ProgressFn,
    check_cancelled: Callable[[], None],
) -> None:
    """Unpack checked ``members`` into the empty ``folder`` (files 0600, folders 0700).

    ``check_cancelled`` raises to stop between members; what was unpacked stays for the caller to remove.
    """
    for index, member in enumerate(members, start=1):
        check_cancelled()
        target = folder / _member_name(member)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL | O_NOFOLLOW: a file is created new, never through a link (none can exist here, but cheap).
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "wb") as out, archive.open(member) as source:
                while chunk := source.read(_CHUNK):
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise ApplicationError(f"zip member {member.filename!r} is damaged: {exc}") from exc
        progress(index, len(members), f"unpacked {index}/{len(members)} files")
