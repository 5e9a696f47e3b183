"""The /predict request and response models, generated from the feature schema in params.yaml."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    create_model,
)
from pydantic.functional_validators import AfterValidator
from pydantic_core import PydanticCustomError

from mlops import encoding
from mlops.config import Config

MAX_ERRORS = 50  # validation errors listed in one 422 response


def _coder(values: list[Any]) -> Callable[[Any], float]:
    """A validator that turns an allowed category into the model's code, or names the allowed."""
    table = {(type(value), value): code for value, code in encoding.codes(values).items()}
    text = ", ".join(json.dumps(value) for value in values)

    def code(value: Any) -> float:
        found = table.get((type(value), value))
        if found is None and type(value) is int:  # 3 for a category listed as 3.0
            found = table.get((float, float(value)))
        if found is None:
            raise PydanticCustomError(
                "category_code",
                "Input should be one of the allowed values: {allowed}",
                {"allowed": text},
            )
        return found

    return code


def _category_type(values: list[Any]) -> Any:
    """The strict JSON type of a categorical feature: its values' own (str, bool, int, number)."""
    kinds = {type(value) for value in values}
    for kind, strict in ((str, StrictStr), (bool, StrictBool), (int, StrictInt)):
        if kinds == {kind}:
            return strict
    return (
        Annotated[float, Field(strict=True, allow_inf_nan=False)] if kinds <= {int, float} else Any
    )


def _missing(value: Any) -> Any:
    return math.nan if value is None else value


def feature_fields(config: Config) -> dict[str, Any]:
    """One pydantic field per feature, in config.features order, named f0, f1, ... (aliases).

    A validated field holds the model's input for that feature: a category's code, or the number;
    null (a missing value, where the column's max_missing allows it) becomes NaN.
    """
    fields: dict[str, Any] = {}

    def add(name: str, kind: Any, description: str, **extra: Any) -> None:
        if config.max_missing(name) > 0:  # null allowed, read as NaN (no cost for the others)
            kind = Annotated[kind | None, AfterValidator(_missing)]
            description += "; null when missing"
        field = Field(alias=name, title=name, description=description, **extra)
        fields[f"f{len(fields)}"] = (Annotated[kind, field], ...)

    for name, values in config.categorical.items():
        coded: Any = Annotated[_category_type(values), AfterValidator(_coder(values))]
        enum = {"enum": list(values)}
        add(name, coded, f"one of {', '.join(map(str, values))}", json_schema_extra=enum)
    for name, bounds in config.numeric.items():
        number = Annotated[
            float, Field(strict=True, allow_inf_nan=False, ge=bounds.min, le=bounds.max)
        ]
        add(name, number, f"number from {bounds.min:g} to {bounds.max:g}")
    return fields


def example_instance(config: Config) -> dict[str, Any]:
    """A valid row for the docs: each feature's first allowed value, or the middle of its range."""
    row: dict[str, Any] = {name: values[0] for name, values in config.categorical.items()}
    for name, bounds in config.numeric.items():
        middle = (bounds.min + bounds.max) / 2
        row[name] = int(middle) if middle.is_integer() else middle
    return row


def request_model(config: Config) -> type[BaseModel]:
    """The /predict body, generated from the schema: strict types, no extra or missing field."""
    instance = create_model(
        "Instance",
        __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True),
        **feature_fields(config),
    )
    # a model made at run time from the schema: no static type to check
    rows = Annotated[list[instance], Field(min_length=1, max_length=config.serve.max_batch)]  # type: ignore[valid-type]
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(
            extra="forbid",
            strict=True,
            json_schema_extra={"examples": [{"instances": [example_instance(config)]}]},
        ),
        instances=(rows, Field(description=f"1 to {config.serve.max_batch} rows")),
    )


class Prediction(BaseModel):
    label: StrictBool | StrictInt | float | str = Field(description="predicted label")
    probability: float = Field(
        description="binary: probability of the positive label; multiclass: of the predicted one"
    )
    probabilities: dict[str, float] | None = Field(
        None, description="multiclass only: the probability of every class"
    )


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    model_version: str


class ErrorItem(BaseModel):
    field: str
    reason: str
    type: str


class ValidationErrorResponse(BaseModel):
    detail: list[ErrorItem]


def error_items(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic errors as {field, reason, type}, field like instances[0].AGEP; no input echoed."""
    items = []
    for error in errors[:MAX_ERRORS]:
        loc = list(error.get("loc", ()))
        field = ""
        for part in loc:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else part)
        reason = error.get("msg", "invalid")
        if error.get("type") == "json_invalid":
            field = "body"
            reason = "malformed JSON: " + str(error.get("msg", "")).removeprefix("Invalid JSON: ")
        elif not loc:  # the body as a whole is not an object
            reason = 'not a JSON object: expected {"instances": [...]}'
        items.append({"field": field or "body", "reason": reason, "type": error.get("type", "")})
    if len(errors) > MAX_ERRORS:
        more = len(errors) - MAX_ERRORS
        items.append({"field": "", "reason": f"{more} more error(s) not shown", "type": "more"})
    return items
