"""Sizes in bytes, as a model file writes them (``2GiB``) and as messages print them."""

from __future__ import annotations


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024


_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(size: int | str) -> int:
    """``2GiB`` → 2147483648; an integer is a number of bytes."""
    if isinstance(size, int):
        return size
    text = size.strip().upper()
    unit = text.lstrip("0123456789. ")
    return int(float(text[:len(text) - len(unit)]) * _UNITS[unit.strip()])
