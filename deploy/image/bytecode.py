"""Bytecode for the engine image, written once at build time (the image itself never writes any).

Every module that ``aiops serve`` imports at start with every backend configured (Kafka, the HTTP API, PostgreSQL or
SQLite, MLflow, Kubernetes) is compiled ahead, so that the container starts as fast as with everything compiled:

- the engine's own modules (``engine``, ``detectors``) keep their sources, with their bytecode in ``__pycache__``,
  so that a traceback quotes the engine's code;
- the libraries' modules ship as bytecode only, in their source's place (Python imports a ``module.pyc`` that has no
  ``module.py`` beside it). That halves what those modules take: sources and bytecode are about the same size;
- the Kubernetes client's bytecode leaves out its docstrings (about 9 MB of generated API documentation), as
  ``python -OO`` would; nothing reads them at run time.

Modules no start-up imports keep their sources and are compiled in memory when a command imports them.

Run with the image's interpreter: ``python deploy/image/bytecode.py``.
"""

from __future__ import annotations

import importlib
import py_compile
import sys
import sysconfig
from pathlib import Path

START_UP = (
    "engine.app.cli",
    "engine.app.cli_serve",
    "engine.app.kafka_engine",
    "engine.app.prometheus_engine",
    "engine.app.action_backends",
    "engine.adapters.api.app",
    "engine.adapters.actions.mlflow_aliases",
    "engine.adapters.actions.kubernetes_api",
    "engine.adapters.actions.kubernetes_jobs",
    "engine.adapters.actions.kubernetes_workloads",
    "sqlalchemy.dialects.postgresql.asyncpg",
    "sqlalchemy.dialects.sqlite.aiosqlite",
    "uvicorn.loops.asyncio",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.lifespan.on",
)
OWN = frozenset({"engine", "detectors"})
WITHOUT_DOCSTRINGS = frozenset({"kubernetes"})


def main() -> None:
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    for name in START_UP:
        importlib.import_module(name)
    kept = only_bytecode = 0
    for module in list(sys.modules.values()):
        source = Path(getattr(module, "__file__", None) or "-")
        if source.suffix != ".py" or not source.is_file() or site not in source.resolve().parents:
            continue
        top = source.resolve().relative_to(site).parts[0]
        if top in OWN:
            py_compile.compile(str(source), doraise=True)
            kept += 1
        else:
            optimize = 2 if top in WITHOUT_DOCSTRINGS else 0
            py_compile.compile(str(source), cfile=str(source.with_suffix(".pyc")), optimize=optimize, doraise=True)
            source.unlink()
            only_bytecode += 1
    print(f"bytecode: {kept} engine modules beside their sources, {only_bytecode} library modules as bytecode only")


if __name__ == "__main__":
    main()
