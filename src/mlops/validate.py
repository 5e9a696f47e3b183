"""Stage `make validate`: pandera schema and quality checks of train, test and current."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pandas as pd
import pandera.pandas as pa

from mlops import files, layout
from mlops.config import Config
from mlops.errors import CheckFailed

log = logging.getLogger(__name__)
REPORT = layout.VALIDATION
SPLITS = ("train", "test", "current")
EXAMPLES = 5


def missing_share_at_most(limit: float) -> pa.Check:
    """A column passes while its share of missing values is at most `limit` (the limit passes)."""
    return pa.Check(lambda s: s.isna().mean() <= limit, ignore_na=False, name="max_missing")


def build_schema(config: Config, *, labelled: bool = True) -> pa.DataFrameSchema:
    """The declared schema (params.yaml `schema`) as a pandera DataFrameSchema.

    Categorical values are compared as the file holds them (strings, integers, booleans); numeric
    columns must hold numbers. Each feature may miss up to its max_missing share of values.
    """
    spec = config.schema

    def column(name: str, check: pa.Check, dtype: str | None) -> pa.Column:
        limit = config.max_missing(name)
        checks = [check, *([missing_share_at_most(limit)] if limit > 0 else [])]
        return pa.Column(dtype, checks=checks, coerce=dtype is not None, nullable=limit > 0)

    columns = {
        name: column(name, pa.Check.isin(values), None)
        for name, values in config.categorical.items()
    }
    for name, bounds in config.numeric.items():
        columns[name] = column(name, pa.Check.in_range(bounds.min, bounds.max), "float64")
    frame_checks = [
        pa.Check(lambda df: len(df) >= spec.min_rows, name="min_rows"),
        pa.Check(
            lambda df: df.duplicated().mean() <= spec.max_duplicate_share, name="duplicate_rows"
        ),
    ]
    if labelled:
        columns[spec.target] = pa.Column(checks=[pa.Check.isin(spec.labels)])

        def balanced(df: pd.DataFrame) -> bool:
            shares = df[spec.target].value_counts(normalize=True).reindex(spec.labels)
            return bool(shares.fillna(0).min() >= spec.min_label_share)

        frame_checks.append(pa.Check(balanced, name="label_balance"))
    return pa.DataFrameSchema(columns, checks=frame_checks, strict=False)


def reasons(config: Config) -> dict[str, str]:
    """What each check demands, in words, for the report."""
    spec = config.schema
    return {
        "present": "column is present",
        "dtype": "values are numbers",
        "not_null": "no missing values",
        "max_missing": "at most the column's max_missing share missing",
        "isin": "only declared values or labels",
        "in_range": "within the declared range",
        "min_rows": f"at least {spec.min_rows} rows",
        "duplicate_rows": f"at most {spec.max_duplicate_share:.0%} duplicate rows",
        "label_balance": f"each label at least {spec.min_label_share:.0%} of rows",
    }


def _check_name(raw: str) -> str:
    name = re.sub(r"\(.*", "", str(raw))
    return {
        "coerce_dtype": "dtype",
        "not_nullable": "not_null",
        "column_in_dataframe": "present",
    }.get(name, name)


def check_frame(
    frame: pd.DataFrame, config: Config, *, labelled: bool = True
) -> list[dict[str, Any]]:
    """Every check's result on one frame: column, check, passed, failures and example rows."""
    schema = build_schema(config, labelled=labelled)
    try:
        schema.validate(frame, lazy=True)
        failures = pd.DataFrame(columns=["column", "check", "failure_case", "index"])
    except pa.errors.SchemaErrors as errors:
        failures = errors.failure_cases
    failures = failures.assign(check=failures["check"].map(_check_name))
    absent = failures["check"] == "present"
    failures.loc[absent, "column"] = failures.loc[absent, "failure_case"]
    failures["column"] = failures["column"].fillna("(rows)").astype(str)
    declared = [
        (name, kind)
        for name, col in schema.columns.items()
        for kind in [
            "present",
            *([] if col.dtype is None else ["dtype"]),
            *([] if col.nullable else ["not_null"]),
            *(_check_name(c.name) for c in col.checks),
        ]
    ]
    declared += [("(rows)", check.name) for check in schema.checks]
    why = reasons(config)
    results = []
    for column_name, check in declared:
        hits = failures[(failures["column"] == column_name) & (failures["check"] == check)]
        results.append({**_result(frame, column_name, check, hits), "requires": why[check]})
    return results


def _result(frame: pd.DataFrame, column: str, check: str, hits: pd.DataFrame) -> dict[str, Any]:
    examples = []
    for _, hit in hits.head(EXAMPLES).iterrows():
        row = hit["index"]
        record = (
            json.loads(frame.loc[[row]].to_json(orient="records"))[0]
            if pd.notna(row) and row in frame.index
            else None
        )
        examples.append(
            {
                "row": None if pd.isna(row) else int(row),
                "value": None if pd.isna(hit["failure_case"]) else str(hit["failure_case"]),
                "record": record,
            }
        )
    return {
        "column": column,
        "check": check,
        "passed": hits.empty,
        "failures": len(hits),
        "examples": examples,
    }


def unseen_is_warning(check: dict[str, Any], split: str, config: Config) -> bool:
    """Categories the schema does not list, in the current batch: a finding, not a failure.

    The schema lists what the model was trained on; production data may bring new values. The
    model reads them as missing, drift reports them; train and test must hold listed values only.
    """
    return split == "current" and check["check"] == "isin" and check["column"] in config.categorical


def run(config: Config) -> dict[str, Any]:
    """Validate every split, write reports/validation.json, raise CheckFailed on any failure."""
    report: dict[str, Any] = {"status": "passed", "splits": {}}
    failed, warnings = [], []
    for split in SPLITS:
        frame = files.read_parquet(config.data.processed_dir / f"{split}.parquet")
        checks = check_frame(frame, config)
        for check in checks:
            if check["passed"]:
                continue
            where = f"{split}.{check['column']}.{check['check']}"
            if unseen_is_warning(check, split, config):
                check["severity"] = "warning"
                warnings.append(where)
            else:
                failed.append(where)
        bad = [c for c in checks if not c["passed"] and c.get("severity") != "warning"]
        report["splits"][split] = {
            "rows": len(frame),
            "status": "failed" if bad else "passed",
            "checks": checks,
        }
        log.info("%s: %d checks, %d failed", split, len(checks), len(bad))
    for where in warnings:
        log.warning("warning: %s: categories the schema does not list (read as missing)", where)
    report["status"] = "failed" if failed else "passed"
    report["failed_checks"] = failed
    report["warnings"] = warnings
    files.write_json(REPORT, report)
    if failed:
        raise CheckFailed(
            f"validation failed: {len(failed)} check(s): {', '.join(failed[:5])}"
            + (" …" if len(failed) > 5 else "")
            + f" (details in {REPORT})"
        )
    return report
