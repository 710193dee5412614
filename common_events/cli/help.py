"""How the command line's help is laid out."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.HelpFormatter):
    """Fills a description to the terminal's width, like argparse's own, but keeps a
    text written with line breaks (a list of examples) as it is."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)
