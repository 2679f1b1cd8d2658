"""Flag files (`NAME.ok`): `<file name>|<size in bytes>|<record count>|<MD5 hex lowercase>` + CRLF.

A data file is complete only when its flag exists; the reader verifies all four values (specs/README.md). For a
gzip file the flag names the compressed file, its size and MD5, and the uncompressed file's record count.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from formats.errors import FlagMismatch

_FLAG = re.compile(rb"^([^|\r\n]+)\|(\d+)\|(\d+)\|([0-9a-f]{32})\r\n$")


@dataclass(frozen=True)
class Flag:
    name: str
    size: int
    record_count: int
    md5: str

    def render(self) -> bytes:
        return f"{self.name}|{self.size}|{self.record_count}|{self.md5}\r\n".encode("ascii")


def parse_flag(data: bytes, flag_name: str = "flag file") -> Flag:
    """Parse the bytes of a flag file; a malformed one raises FlagMismatch naming what was found."""
    m = _FLAG.match(data)
    if not m:
        raise FlagMismatch(flag_name, "malformed flag file", expected="NAME|SIZE|COUNT|md5hex + CRLF",
                           found=data[:120])
    return Flag(m.group(1).decode("ascii", "replace"), int(m.group(2)), int(m.group(3)), m.group(4).decode())


def md5_of(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def flag_for(path: Path, record_count: int) -> Flag:
    """The flag the bank writes after a file it sends back."""
    return Flag(path.name, path.stat().st_size, record_count, md5_of(path))


def write_flag(path: Path, record_count: int) -> Path:
    flag_path = path.with_name(path.name + ".ok")
    flag_path.write_bytes(flag_for(path, record_count).render())
    return flag_path


def verify_file(path: Path, flag: Flag) -> None:
    """Check a data file's name, size and MD5 against its flag (the record count is checked by the reader)."""
    if flag.name != path.name:
        raise FlagMismatch(path.name, "flag names another file", expected=path.name, found=flag.name)
    size = path.stat().st_size
    if size != flag.size:
        raise FlagMismatch(path.name, "size differs from the flag (incomplete or changed file?)",
                           expected=flag.size, found=size)
    md5 = md5_of(path)
    if md5 != flag.md5:
        raise FlagMismatch(path.name, "MD5 differs from the flag", expected=flag.md5, found=md5)


def verify_count(file_name: str, flag: Flag, counted: int) -> None:
    if counted != flag.record_count:
        raise FlagMismatch(file_name, "record count differs from the flag file", expected=flag.record_count,
                           found=counted)
