"""Handler files: loading one (compile, import, find `handle`), saying exactly where it went wrong
when it cannot be loaded, and noticing when it changed on disk."""

from __future__ import annotations

import inspect
import itertools
import os
import sys
import threading
import traceback
import types
from dataclasses import dataclass

_names = itertools.count(1)


@dataclass(frozen=True)
class Problem:
    """Why a handler file cannot run, located: `where` is FILE:LINE[:COL]."""

    where: str
    message: str
    details: str = ""  # the traceback, when there is one

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def innermost_line(tb, path: str) -> int | None:
    """The line of the deepest frame of `tb` that runs in `path` (the handler's own code)."""
    return innermost_in(traceback.extract_tb(tb), path)


def innermost_in(frames, path: str) -> int | None:
    """The line of the last of `frames` (a traceback.StackSummary) that runs in `path`."""
    path = os.path.abspath(path)
    line = None
    for frame in frames:
        if os.path.abspath(frame.filename) == path:
            line = frame.lineno
    return line


def check_source(path: str, source: str) -> Problem | None:
    """Compiles the file; a syntax error as FILE:LINE:COL."""
    try:
        compile(source, path, "exec")
    except SyntaxError as error:
        where = f"{path}:{error.lineno or 1}:{error.offset or 1}"
        return Problem(where, f"{type(error).__name__}: {error.msg}")
    return None


def load(path: str):
    """Imports the handler file: returns (module, None) or (None, Problem). Problems name the file
    as `path` says it."""
    try:
        with open(path, encoding="utf-8") as file:
            source = file.read()
    except OSError as error:
        return None, Problem(path, f"cannot read the handler file: {error.strerror}")
    except UnicodeDecodeError as error:
        return None, Problem(path, f"the handler file is not UTF-8 text: {error.reason}")
    problem = check_source(path, source)
    if problem:
        return None, problem
    name = f"edgetrail_handler_{next(_names)}_{os.path.splitext(os.path.basename(path))[0]}"
    module = types.ModuleType(name)
    module.__file__ = path
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.append(directory)  # a handler may import helper modules beside it
    sys.modules[name] = module
    try:
        exec(compile(source, path, "exec"), module.__dict__)
    except BaseException as error:  # noqa: BLE001 - whatever the file does on import is its problem
        sys.modules.pop(name, None)
        if isinstance(error, KeyboardInterrupt):
            raise
        line = innermost_line(error.__traceback__, path)
        details = "".join(traceback.format_exception(error))
        return None, Problem(f"{path}:{line or 1}", f"importing it raised {type(error).__name__}: {error}", details)
    handle = getattr(module, "handle", None)
    if not callable(handle):
        return None, Problem(path, "defines no handle(event, ctx)")
    try:
        inspect.signature(handle).bind(None, None)
    except TypeError:
        line = getattr(getattr(handle, "__code__", None), "co_firstlineno", 1)
        return None, Problem(f"{path}:{line}", "handle must take two arguments: handle(event, ctx)")
    except ValueError:
        pass  # a builtin or C callable: no signature to check
    return module, None


def _stamp(path: str):
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class HandlerFile:
    """The handler bound to one event: the module in use, or why there is none. `refresh` loads
    the file again when it changed on disk; a version that does not load is refused and the one
    in use stays."""

    def __init__(self, event: str, path: str):
        self.event = event
        self.path = path
        self.name = os.path.basename(path)
        self._lock = threading.Lock()
        self.module = None
        self.problem: Problem | None = None
        self.version = 0
        self._stamp = _stamp(self.path)
        self.module, self.problem = load(self.path)
        if self.module is not None:
            self.version = 1

    def current(self):
        """(handle function or None, Problem or None, version) — what an event runs now."""
        with self._lock:
            return (self.module.handle if self.module else None), self.problem, self.version

    def refresh(self) -> str | None:
        """Reloads a changed file; returns a line saying what happened, or None if unchanged."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        module, problem = load(self.path)
        with self._lock:
            if module is not None:
                self.module, self.problem = module, None
                self.version += 1
                return f"handler {self.name} ({self.event}) reloaded: version {self.version}"
            if self.module is None:
                self.problem = problem
                return f"handler {self.name} ({self.event}) still cannot run: {problem}"
        return f"handler {self.name} ({self.event}) not reloaded, version {self.version} stays: {problem}"
