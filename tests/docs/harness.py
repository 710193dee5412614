"""Runs a page's script blocks in order in one namespace, as ``python -m asyncio`` would:
a block with top-level ``await`` runs on the one event loop, the others as plain code.

``python harness.py blocks.json``, where the file holds ``[{"name": ..., "source": ...}]``.
Run as a program of its own (not imported by the tests), in the directory the page's
files should land in.
"""

import ast
import asyncio
import inspect
import json
import linecache
import sys


def main(path: str) -> None:
    with open(path, encoding="utf-8") as file:
        blocks = json.load(file)
    namespace = {"__name__": "__main__"}
    loop = asyncio.new_event_loop()
    try:
        for block in blocks:
            name, source = block["name"], block["source"]
            # Tracebacks show the page's lines.
            linecache.cache[name] = (len(source), None, source.splitlines(True), name)
            code = compile(
                source, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
            )
            if code.co_flags & inspect.CO_COROUTINE:
                asyncio.set_event_loop(loop)
                loop.run_until_complete(eval(code, namespace))
            else:
                exec(code, namespace)
    finally:
        asyncio.set_event_loop(loop)  # a block's asyncio.run() leaves none set
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


if __name__ == "__main__":
    main(sys.argv[1])
