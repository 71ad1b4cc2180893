"""WAD files, Doom's data archives, and the music stored in them.

A WAD is a 12-byte header (``<4sii``: the magic ``IWAD`` or ``PWAD``, the number of
lumps, the offset of the directory) and a directory of 16-byte entries (``<ii8s``: the
lump's offset, its size, its name padded with NUL bytes).  Songs are the lumps named
``D_*``; in Freedoom (Debian package ``freedoom``, BSD-style licence) every one is a
standard MIDI file.  Original Doom WADs store songs in the MUS format instead, which is
not read here: such a lump is refused with a reason, as any non-MIDI lump is.

Only the directory and the lumps asked for are read, never the whole file (a Freedoom
WAD is 27 MB, its music about 1 MB).
"""
import os
import struct
from dataclasses import dataclass

from engine.errors import InvalidMidi

HEADER = struct.Struct("<4sii")
ENTRY = struct.Struct("<ii8s")
MAGICS = (b"IWAD", b"PWAD")
MUSIC_PREFIX = "D_"
#: Where Debian's ``freedoom`` package puts its WADs (``dpkg -L freedoom``).
FREEDOOM_DIR = "/usr/share/games/doom"
FREEDOOM_WADS = ("freedoom1.wad", "freedoom2.wad")


@dataclass(frozen=True)
class Lump:
    """One directory entry: the lump's name, its byte offset and size in the file."""

    name: str
    offset: int
    size: int


def read_directory(path):
    """The lumps of a WAD file, in directory order.

    InvalidMidi naming the file and what is wrong: missing or unreadable, shorter than
    its header, a magic other than IWAD/PWAD, a negative lump count, a directory that
    lies outside the file, a lump that lies outside the file.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(HEADER.size)
            if len(head) < HEADER.size:
                raise InvalidMidi(f"{name}: not a WAD file: {size} bytes, shorter than the "
                                  f"{HEADER.size}-byte header (truncated)")
            magic, count, dir_offset = HEADER.unpack(head)
            if magic not in MAGICS:
                raise InvalidMidi(f"{name}: not a WAD file: magic {magic!r}, expected "
                                  "b'IWAD' or b'PWAD'")
            if count < 0:
                raise InvalidMidi(f"{name}: corrupt WAD header: lump count {count} is negative")
            dir_end = dir_offset + count * ENTRY.size
            if dir_offset < HEADER.size or dir_end > size:
                raise InvalidMidi(f"{name}: corrupt WAD: the directory ({count} entries at "
                                  f"byte {dir_offset}) lies outside the file of {size} bytes "
                                  "(truncated?)")
            f.seek(dir_offset)
            raw = f.read(count * ENTRY.size)
    except OSError as exc:
        raise InvalidMidi(f"{name}: cannot read the WAD file: {exc.strerror or exc}") from None
    lumps = []
    for i, (offset, length, raw_name) in enumerate(ENTRY.iter_unpack(raw)):
        lump = raw_name.split(b"\0", 1)[0].decode("latin-1")
        if offset < 0 or length < 0 or offset + length > size:
            raise InvalidMidi(f"{name}: corrupt WAD: lump {i} ({lump!r}, {length} bytes at "
                              f"byte {offset}) lies outside the file of {size} bytes")
        lumps.append(Lump(lump, offset, length))
    return lumps


def music_lumps(path):
    """The song lumps (named ``D_*``) of a WAD file, in directory order."""
    return [lump for lump in read_directory(path) if lump.name.upper().startswith(MUSIC_PREFIX)]


def read_lump(path, lump_name):
    """The bytes of the lump named ``lump_name`` (the first of that name, as Doom finds
    it); InvalidMidi naming the file when it has no such lump."""
    name = os.fspath(path)
    for lump in read_directory(name):
        if lump.name == lump_name:
            with open(name, "rb") as f:
                f.seek(lump.offset)
                return f.read(lump.size)
    raise InvalidMidi(f"{name}: the WAD has no lump named {lump_name!r}")


def read_song(path, lump_name):
    """The standard MIDI file stored in a music lump; InvalidMidi when the lump is not
    MIDI (a MUS song, say), naming the file, the lump and the bytes it starts with."""
    data = read_lump(path, lump_name)
    if data[:4] != b"MThd":
        kind = "a MUS song (Doom's own format, not read)" if data[:4] == b"MUS\x1a" else \
            f"starts with {data[:4]!r}"
        raise InvalidMidi(f"{os.fspath(path)}: lump {lump_name!r} is not a standard MIDI "
                          f"file: {kind}")
    return data


def freedoom_wads(folder=FREEDOOM_DIR):
    """The Freedoom WADs that are installed, as paths (none when the package is not)."""
    return [os.path.join(folder, w) for w in FREEDOOM_WADS
            if os.path.isfile(os.path.join(folder, w))]
