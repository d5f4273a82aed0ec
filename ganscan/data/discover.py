"""Streaming file discovery: deterministic order, symlinks followed without loops."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from typing import Iterator

from ganscan.errors import GanscanError


@dataclass(frozen=True)
class Found:
    path: str
    explicit: bool  # named on the command line (always gets a row) vs found in a folder


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)


def discover(paths, recursive: bool = True, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
             follow_symlinks: bool = True) -> Iterator[Found]:
    """Yield files under ``paths`` one at a time (folders sorted by name, never listed whole in memory
    beyond one directory). Directory symlink loops are detected by (device, inode)."""
    for top in paths:
        top = os.fspath(top)
        if not os.path.lexists(top):
            raise GanscanError(f"path not found: {top}")
        if os.path.isdir(top):
            seen: set[tuple[int, int]] = set()
            yield from _walk(top, recursive, include, exclude, follow_symlinks, seen)
        else:
            if exclude and _matches(top, exclude):
                continue
            yield Found(top, True)


def _walk(folder: str, recursive, include, exclude, follow, seen) -> Iterator[Found]:
    try:
        st = os.stat(folder)
    except OSError:
        return
    key = (st.st_dev, st.st_ino)
    if key in seen:
        return
    seen.add(key)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        return
    subdirs = []
    for entry in entries:
        path = entry.path
        try:
            is_dir = entry.is_dir(follow_symlinks=follow)
        except OSError:
            is_dir = False
        if is_dir:
            if entry.name.startswith(".") or (exclude and _matches(path, exclude)):
                continue
            subdirs.append(path)
            continue
        if entry.name.startswith("."):
            continue
        try:
            if not entry.is_file(follow_symlinks=follow):
                # a broken symlink is still a file the user has: report it (as an error row)
                if not entry.is_symlink():
                    continue
        except OSError:
            pass
        if exclude and _matches(path, exclude):
            continue
        if include and not _matches(path, include):
            continue
        yield Found(path, False)
    if recursive:
        for sub in subdirs:
            yield from _walk(sub, recursive, include, exclude, follow, seen)
