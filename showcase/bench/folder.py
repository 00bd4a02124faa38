"""A run folder on disk: its tables and JSON files, written whole and read back checked.

This module owns how a run folder is written (every file replaced whole, several files all or
none, so a reader or a full disk never leaves half a point) and read (plain files only, CSV text,
numbers where numbers belong, JSON validated into its type), and the two errors a folder can
raise: `StorageError` when it cannot be written, `RunFolderError` when a file is damaged. What the
files hold is `run`'s, `metrics`' and `compare`'s; this module knows nothing about running.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from pydantic import BaseModel

from showcase.bench import tables
from showcase.errors import UserError

M = TypeVar("M", bound=BaseModel)


class RunFolder:
    """The files of one run; every write replaces a whole file so readers never see half a row."""

    def __init__(self, root: Path, name: str) -> None:
        root = Path(root)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.path = root / f"{stamp}-{name}"
        suffix = 1
        while self.path.exists():
            suffix += 1
            self.path = root / f"{stamp}-{name}-{suffix}"
        self.path.mkdir(parents=True)

    @classmethod
    def reopen(cls, path: Path) -> RunFolder:
        """An existing run folder, to add points to (an experiment runs its arms into one folder)."""
        folder = cls.__new__(cls)
        folder.path = Path(path)
        return folder

    def write_model(self, name: str, model: BaseModel) -> None:
        """A JSON file of the folder (run.json, capacity.json, experiment.json)."""
        replace_all({self.path / name: model.model_dump_json(indent=2)})

    def write_tables(self, tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """CSV tables, all or none (a point's summary row never without its requests)."""
        replace_all({self.path / name: pd.DataFrame(rows).to_csv(index=False) for name, rows in tables.items()})


class RunFolderError(UserError):
    """A run folder's file that cannot be read as what it should be; the message names the file and what is wrong."""


# Columns read as numbers; a cell that is not one is refused, a column that is missing (an older
# run, another tool's summary) is empty.
NUMERIC = {
    "summary.csv": tables.NUMERIC,
    "requests.csv": ("point", "index", "ttft_ms", "tpot_ms", "e2el_ms", "turn", "prompt_tokens", "output_tokens"),
    "timeline.csv": ("t_s", "point", "kv_cache_usage", "running", "waiting"),
}
PLAUSIBLE = 1e12  # larger than any count, time or rate a benchmark can measure


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """One of a run folder's tables, checked: plain file, CSV text, numbers where numbers belong.
    A table not written yet, or without rows, is empty; one that is damaged is `RunFolderError`."""
    path = Path(folder) / name
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise RunFolderError(f"{path}: not a plain file (a link or a folder); a run folder's tables are files")
    try:
        df = pd.read_csv(path, low_memory=False)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise RunFolderError(f"{path}: cannot be read as CSV ({type(exc).__name__}: {str(exc)[:200]})") from exc
    return _checked(df, name, path)


def table(name: str, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One of a run's tables from its rows in memory, as `read_table` would give it back (an empty
    cell is NaN, as CSV reads it; the columns a table may lack, empty), so a run hands back what it
    wrote without reading it again."""
    if not rows:
        return pd.DataFrame()
    return _checked(pd.DataFrame(rows).replace("", math.nan), name, Path(name))


def _checked(df: pd.DataFrame, name: str, path: Path) -> pd.DataFrame:
    for col in NUMERIC.get(name, ()):
        if col not in df.columns:
            df[col] = math.nan
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            raise RunFolderError(f"{path}: column {col} holds {df[col][bad].iloc[0]!r} where a number belongs")
        huge = values.abs().gt(PLAUSIBLE) & ~(values == math.inf) if col == "request_rate" else values.abs().gt(PLAUSIBLE)
        if huge.any():
            raise RunFolderError(f"{path}: column {col} holds {values[huge].iloc[0]:g}, beyond anything measured")
        df[col] = values
    return df


Tables = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]  # a run's summary, requests and timeline


def read_tables(folder: Path) -> Tables:
    """A run folder's summary, requests and timeline (see `read_table`)."""
    return read_table(folder, "summary.csv"), read_table(folder, "requests.csv"), read_table(folder, "timeline.csv")


class StorageError(UserError):
    """The run folder cannot be written (a full disk, a folder gone read-only); the message names
    the file and the disk. What was written before stays as it was."""


def replace_all(files: dict[Path, str]) -> None:
    """Write several files as one: every new text goes to a temporary file first, and only when all
    were written are they renamed into place (a rename needs no room). If any cannot be written, none
    is replaced and the temporary files are removed, so the folder stays as consistent as it was."""
    tmps = {path: path.with_name(f".{path.name}.tmp") for path in files}
    try:
        for path, text in files.items():
            tmps[path].write_text(text)
    except OSError as exc:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
        folder = next(iter(files)).parent
        raise StorageError(f"cannot write the run folder {folder}: {exc.strerror or exc} (the disk of {folder}); "
                           "what was written before is kept") from exc
    for path, tmp in tmps.items():
        tmp.replace(path)


def read_model(path: Path, model: type[M]) -> M:
    try:
        return model.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RunFolderError(f"{path}: damaged or not a {path.name} ({detail})") from exc
