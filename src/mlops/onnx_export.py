"""The production model as ONNX: exported at promotion, parity-checked by the gate (#28).

The ONNX graph scores what serving, scoring and drift already build: mlops.encoding's coded
matrix (categories as codes, missing and unseen as NaN). It has one float64 input of shape
[N, 1] per feature, named exactly as config.features (the schema's columns in order), and one
output, "probabilities" ([N, classes], float64, in the order of metadata "classes"); labels are
derived from them by the same rule as everywhere else (mlops.predictions.predict).

skl2onnx's stock converters do not cover this pipeline on scikit-learn 1.9 (HistGradientBoosting
trees with uint32 node ids and native categorical splits, and trees' learned missing-value
directions are not converted), so the graph is built here from the fitted estimators with
ONNX's own operators (ai.onnx.ml TreeEnsemble, opset 5: float64 thresholds, set membership,
missing-value directions); skl2onnx's ONNX helpers are not needed. The build is deterministic:
the same model gives the same bytes.

Supported: the three estimators of mlops.estimators after mlops.train.build_matrix_pipeline's
preprocessing. Anything else (a legacy model, another preprocessing) raises Unsupported: that
version is served by scikit-learn and the registry says so.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

ONNX_FILE = "model.onnx"
OUTPUT = "probabilities"
TOLERANCE = 1e-5  # the gate's limit on any probability's difference from scikit-learn's
OPSETS = {"": 21, "ai.onnx.ml": 5}
IR_VERSION = 10
PRODUCER = "mlops.onnx_export"
LEQ, MEMBER = 0, 6  # TreeEnsemble node modes


class Unsupported(Exception):
    """A model ONNX export does not represent: it is served by scikit-learn instead."""


class _Graph:
    """A tiny deterministic graph builder: numbered names, constants as initializers."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, value: Any, dtype: Any = np.float64) -> str:
        from onnx import numpy_helper

        name = self.name("const")
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, kind: str, inputs: list[str], domain: str = "", **attributes: Any) -> str:
        from onnx import helper

        out = self.name(kind.lower())
        node = helper.make_node(kind, inputs, [out], name=out, domain=domain, **attributes)
        self.nodes.append(node)
        return out


def _tensor(values: Any, dtype: Any) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(values, dtype=dtype))


def _columns(graph: _Graph, x: str, indices: list[int]) -> str:
    return graph.op("Gather", [x, graph.const(indices, np.int64)], axis=1)


def _recode(graph: _Graph, x: str, categories: list[np.ndarray], unknown: float) -> str:
    """An OrdinalEncoder on coded columns: value → its position; NaN stays NaN, others unknown."""
    coded = []
    for index, values in enumerate(categories):
        column = _columns(graph, x, [index])
        known = [float(v) for v in values if not np.isnan(v)]
        mapped = graph.op(
            "LabelEncoder",
            [column],
            domain="ai.onnx.ml",
            keys_tensor=_tensor(known or [np.inf], np.float64),
            values_tensor=_tensor(list(range(len(known))) or [unknown], np.float64),
            default_tensor=_tensor([unknown], np.float64),
        )
        nan = graph.op("IsNaN", [column])
        coded.append(graph.op("Where", [nan, column, mapped]))
    return coded[0] if len(coded) == 1 else graph.op("Concat", coded, axis=1)


class _Trees:
    """Nodes and leaves of one TreeEnsemble (ai.onnx.ml opset 5)."""

    def __init__(self) -> None:
        self.roots: list[int] = []
        self.modes: list[int] = []
        self.features: list[int] = []
        self.splits: list[float] = []
        self.true_ids: list[int] = []
        self.true_leaf: list[int] = []
        self.false_ids: list[int] = []
        self.false_leaf: list[int] = []
        self.missing_true: list[int] = []
        self.members: list[float] = []
        self.leaf_targets: list[int] = []
        self.leaf_weights: list[float] = []

    def add_tree(self, nodes: list[dict[str, Any]], target_weights: Any) -> None:
        """nodes: dicts with leaf / feature, mode, split, members, left, right, missing_left;
        target_weights(node) → [(target, weight)] of a leaf."""
        node_ids: dict[int, int] = {}
        leaf_ids: dict[int, int] = {}
        for index, node in enumerate(nodes):
            if node["leaf"]:
                leaf_ids[index] = len(self.leaf_weights)
                ((target, weight),) = target_weights(node)  # one target per leaf
                self.leaf_targets.append(target)
                self.leaf_weights.append(weight)
            else:
                node_ids[index] = len(self.modes) + len(node_ids)
        if not node_ids:  # a tree that is a single leaf: one node whose both branches reach it
            self.roots.append(len(self.modes))
            self._node(LEQ, 0, 0.0, [], 0, True, 0, True, True)
            self.true_ids[-1] = self.false_ids[-1] = leaf_ids[0]
            return
        self.roots.append(node_ids[0])
        for node in nodes:
            if node["leaf"]:
                continue
            left, right = node["left"], node["right"]
            self._node(
                node["mode"],
                node["feature"],
                node["split"],
                node.get("members", []),
                node_ids.get(left, leaf_ids.get(left, 0)),
                left in leaf_ids,
                node_ids.get(right, leaf_ids.get(right, 0)),
                right in leaf_ids,
                node["missing_left"],
            )

    def _node(
        self,
        mode: int,
        feature: int,
        split: float,
        members: list[float],
        true_id: int,
        true_leaf: bool,
        false_id: int,
        false_leaf: bool,
        missing_true: bool,
    ) -> None:
        self.modes.append(mode)
        self.features.append(int(feature))
        self.splits.append(float(split) if mode == LEQ else np.nan)
        self.true_ids.append(int(true_id))
        self.true_leaf.append(int(true_leaf))
        self.false_ids.append(int(false_id))
        self.false_leaf.append(int(false_leaf))
        self.missing_true.append(int(missing_true))
        if mode == MEMBER:
            self.members.extend([*map(float, members), np.nan])

    def op(self, graph: _Graph, x: str, targets: int) -> str:
        extra = {}
        if self.members:
            extra["membership_values"] = _tensor(self.members, np.float64)
        return graph.op(
            "TreeEnsemble",
            [x],
            domain="ai.onnx.ml",
            aggregate_function=1,  # SUM
            post_transform=0,
            n_targets=targets,
            tree_roots=self.roots,
            nodes_modes=_tensor(self.modes, np.uint8),
            nodes_featureids=self.features,
            nodes_splits=_tensor(self.splits, np.float64),
            nodes_truenodeids=self.true_ids,
            nodes_trueleafs=self.true_leaf,
            nodes_falsenodeids=self.false_ids,
            nodes_falseleafs=self.false_leaf,
            nodes_missing_value_tracks_true=self.missing_true,
            leaf_targetids=self.leaf_targets,
            leaf_weights=_tensor(self.leaf_weights, np.float64),
            **extra,
        )


def build(model: Any, metadata: dict[str, Any]) -> bytes:
    """The ONNX bytes of a fitted raw-rows pipeline (mlops.train.build_pipeline); Unsupported
    when it cannot be represented."""
    return _build(model, metadata).SerializeToString()


def _build(model: Any, metadata: dict[str, Any]) -> Any:
    from onnx import TensorProto, helper

    from mlops.predictions import takes_raw_frame

    if not takes_raw_frame(metadata):
        raise Unsupported("the model file predates raw-row pipelines (retrain: make train)")
    features = list(metadata["features"])
    classes = list(metadata.get("classes") or model.classes_.tolist())
    steps = list(model.named_steps.items())[1:]
    if len(steps) != 2 or [name for name, _ in steps] != ["preprocess", "model"]:
        raise Unsupported(f"pipeline steps {[name for name, _ in steps]}")
    preprocess, estimator = steps[0][1], steps[1][1]
    kind = type(estimator).__name__
    graph = _Graph()
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.DOUBLE, [None, 1]) for name in features
    ]
    x = graph.op("Concat", features, axis=1) if len(features) > 1 else features[0]
    n_cat = len(metadata.get("categories") or {})
    if kind == "LogisticRegression":
        proba = _logistic(graph, x, preprocess, estimator, n_cat, len(features))
    elif kind == "HistGradientBoostingClassifier":
        proba = _boosting(graph, _tree_input(graph, x, preprocess, n_cat, np.nan), estimator)
    elif kind == "RandomForestClassifier":
        proba = _random_forest(graph, _tree_input(graph, x, preprocess, n_cat, -1.0), estimator)
    else:
        raise Unsupported(f"estimator {kind}")
    graph.nodes.append(helper.make_node("Identity", [proba], [OUTPUT], name=OUTPUT))
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, [None, len(classes)])]
    onnx_graph = helper.make_graph(
        graph.nodes, "mlops_model", inputs, outputs, initializer=graph.initializers
    )
    onnx_model = helper.make_model(
        onnx_graph,
        opset_imports=[helper.make_opsetid(domain, version) for domain, version in OPSETS.items()],
        producer_name=PRODUCER,
    )
    onnx_model.ir_version = IR_VERSION
    described = {
        "features": json.dumps(features),
        "classes": json.dumps(classes),
        "model_sha256": str(metadata.get("model_sha256", "")),
        "estimator": kind,
    }
    helper.set_model_props(onnx_model, described)
    return onnx_model


def _tree_input(graph: _Graph, x: str, preprocess: Any, n_cat: int, unknown: float) -> str:
    """The coded matrix as a tree ensemble's input: passthrough, or ordinal-recoded categories
    first (mlops.train.build_matrix_pipeline's ColumnTransformer) and the numbers after them;
    unseen categories become `unknown` (-1; NaN for HistGradientBoosting, which treats negative
    categories as missing anyway)."""
    if preprocess == "passthrough":
        return x
    transformers = dict((name, (step, columns)) for name, step, columns in preprocess.transformers_)
    parts = []
    for name, (step, columns) in transformers.items():
        if name == "remainder" and step == "drop":
            continue
        columns = list(columns)
        if name == "categorical" and type(step).__name__ == "OrdinalEncoder":
            if columns != list(range(n_cat)) or step.unknown_value != -1:
                raise Unsupported("categorical preprocessing")
            part = _recode(graph, _columns(graph, x, columns), step.categories_, unknown)
        elif name == "numeric" and _passthrough(step):
            part = _columns(graph, x, columns)
        else:
            raise Unsupported(f"preprocessing step {name}")
        parts.append(part)
    return parts[0] if len(parts) == 1 else graph.op("Concat", parts, axis=1)


def _passthrough(step: Any) -> bool:
    """ "passthrough", or the identity FunctionTransformer a fitted ColumnTransformer makes."""
    if isinstance(step, str):
        return step == "passthrough"
    return type(step).__name__ == "FunctionTransformer" and step.func is None


def _tree_nodes(tree: Any) -> list[dict[str, Any]]:
    """A scikit-learn decision tree's nodes as _Trees.add_tree takes them."""
    nodes: list[dict[str, Any]] = []
    for index in range(tree.node_count):
        left = int(tree.children_left[index])
        if left == -1:
            nodes.append({"leaf": True, "index": index})
            continue
        nodes.append(
            {
                "leaf": False,
                "mode": LEQ,
                "feature": int(tree.feature[index]),
                "split": float(tree.threshold[index]),
                "left": left,
                "right": int(tree.children_right[index]),
                "missing_left": bool(tree.missing_go_to_left[index]),
            }
        )
    return nodes


def _random_forest(graph: _Graph, x: str, forest: Any) -> str:
    """RandomForestClassifier.predict_proba: the mean of its trees' class shares at the leaves.

    One TreeEnsemble per class (a TreeEnsemble leaf carries one target), each the sum over trees
    of that class's share, divided by the number of trees at the end as scikit-learn does.
    """
    rounded = graph.op("Cast", [graph.op("Cast", [x], to=1)], to=11)  # trees compare float32
    per_class = []
    for k in range(len(forest.classes_)):
        trees = _Trees()
        for estimator in forest.estimators_:
            tree = estimator.tree_
            shares = tree.value[:, 0, :]

            def weights(node: dict[str, Any], shares: np.ndarray = shares, k: int = k) -> list:
                row = shares[node["index"]]
                total = row.sum()
                return [(0, float(row[k] / total if total > 0 else 0.0))]

            trees.add_tree(_tree_nodes(tree), weights)
        per_class.append(trees.op(graph, rounded, 1))
    summed = per_class[0] if len(per_class) == 1 else graph.op("Concat", per_class, axis=1)
    return graph.op("Div", [summed, graph.const(float(len(forest.estimators_)))])


def _boosting(graph: _Graph, x: str, model: Any) -> str:
    """HistGradientBoostingClassifier.predict_proba: baseline + the trees' sum, then the link."""
    inner = getattr(model, "_preprocessor", None)
    if inner is not None:  # native categories: its own OrdinalEncoder (unseen → NaN) first
        mask = np.asarray(model.is_categorical_, dtype=bool)
        n_cat = int(mask.sum())
        if not mask[:n_cat].all():
            raise Unsupported("HistGradientBoosting with categorical features after numeric ones")
        encoder = inner.named_transformers_["encoder"]
        parts = [
            _recode(graph, _columns(graph, x, list(range(n_cat))), encoder.categories_, np.nan)
        ]
        if n_cat < len(mask):
            parts.append(_columns(graph, x, list(range(n_cat, len(mask)))))
        x = parts[0] if len(parts) == 1 else graph.op("Concat", parts, axis=1)
    known = getattr(model, "_bin_mapper", None)
    assert known is not None  # a fitted HistGradientBoosting model
    known_bitsets, feature_map = known.make_known_categories_bitsets()
    per_iteration = model.n_trees_per_iteration_
    trees = _Trees()
    for iteration in model._predictors:
        for target, predictor in enumerate(iteration):
            nodes: list[dict[str, Any]] = []
            for node in predictor.nodes:
                if node["is_leaf"]:
                    nodes.append({"leaf": True, "value": float(node["value"])})
                    continue
                feature = int(node["feature_idx"])
                entry: dict[str, Any] = {
                    "leaf": False,
                    "feature": feature,
                    "left": int(node["left"]),
                    "right": int(node["right"]),
                    "missing_left": bool(node["missing_go_to_left"]),
                }
                if node["is_categorical"]:
                    left = _bitset_values(predictor.raw_left_cat_bitsets[node["bitset_idx"]])
                    seen = _bitset_values(known_bitsets[feature_map[feature]])
                    if node["missing_go_to_left"]:
                        # unknown categories go where missing values go: left, as members
                        left = sorted(set(left) | (set(range(256)) - set(seen)))
                    entry.update(mode=MEMBER, split=np.nan, members=left)
                else:
                    entry.update(mode=LEQ, split=float(node["num_threshold"]))
                nodes.append(entry)
            trees.add_tree(nodes, lambda node, target=target: [(target, node["value"])])
    raw = trees.op(graph, x, per_iteration)
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(1, -1)
    raw = graph.op("Add", [raw, graph.const(baseline)])
    return _link(graph, raw, per_iteration)


def _bitset_values(bitset: np.ndarray) -> list[int]:
    """The category values (0-255) a scikit-learn bitset of 8 uint32 words holds."""
    return [value for value in range(256) if bitset[value // 32] >> np.uint32(value % 32) & 1]


def _link(graph: _Graph, raw: str, columns: int) -> str:
    """Raw scores → probabilities: logistic for one column ([1 - p, p]), softmax for several."""
    if columns > 1:
        return graph.op("Softmax", [raw], axis=1)
    positive = graph.op("Sigmoid", [raw])
    negative = graph.op("Sub", [graph.const(1.0), positive])
    return graph.op("Concat", [negative, positive], axis=1)


def _logistic(
    graph: _Graph, x: str, preprocess: Any, model: Any, n_cat: int, n_features: int
) -> str:
    """One-hot categories and scaled numbers (build_matrix_pipeline), then the linear model."""
    parts = []
    for name, step, columns in preprocess.transformers_:
        columns = list(columns)
        if name == "remainder" and step == "drop":
            continue
        if name == "categorical" and type(step).__name__ == "OneHotEncoder":
            if step.drop is not None or getattr(step, "infrequent_categories_", None):
                raise Unsupported("one-hot encoding with dropped or infrequent categories")
            parts.append(_one_hot(graph, x, columns, step.categories_))
        elif name == "numeric":
            parts.append(_scaled(graph, _columns(graph, x, columns), step))
        else:
            raise Unsupported(f"preprocessing step {name}")
    design = parts[0] if len(parts) == 1 else graph.op("Concat", parts, axis=1)
    coefficients = np.asarray(model.coef_, dtype=np.float64).T
    decision = graph.op("MatMul", [design, graph.const(coefficients)])
    decision = graph.op("Add", [decision, graph.const(np.asarray(model.intercept_, np.float64))])
    return _link(graph, decision, coefficients.shape[1])


def _one_hot(graph: _Graph, x: str, columns: list[int], categories: list[np.ndarray]) -> str:
    """OneHotEncoder(handle_unknown="ignore") on codes: NaN is a category when it was seen."""
    slots, values, nan_slots = [], [], []
    for column, found in zip(columns, categories, strict=True):
        for value in found:
            slots.append(column)
            is_nan = bool(np.isnan(value))
            values.append(0.0 if is_nan else float(value))
            nan_slots.append(is_nan)
    spread = _columns(graph, x, slots)
    hit = graph.op("Cast", [graph.op("Equal", [spread, graph.const(np.array([values]))])], to=11)
    if any(nan_slots):  # a NaN slot matches NaN only (its placeholder 0.0 is never compared)
        mask = graph.const(np.array([nan_slots]), np.bool_)
        nan = graph.op("Cast", [graph.op("IsNaN", [spread])], to=11)
        hit = graph.op("Where", [mask, nan, hit])
    return hit


def _scaled(graph: _Graph, x: str, step: Any) -> str:
    """StandardScaler, after a median SimpleImputer when the pipeline has one."""
    steps = [s for _, s in step.steps] if hasattr(step, "steps") else [step]
    for part in steps:
        kind = type(part).__name__
        if kind == "SimpleImputer":
            fill = np.asarray(part.statistics_, dtype=np.float64).reshape(1, -1)
            x = graph.op("Where", [graph.op("IsNaN", [x]), graph.const(fill), x])
        elif kind == "StandardScaler":
            if part.with_mean:
                x = graph.op("Sub", [x, graph.const(np.asarray(part.mean_).reshape(1, -1))])
            if part.with_std:
                x = graph.op("Div", [x, graph.const(np.asarray(part.scale_).reshape(1, -1))])
        else:
            raise Unsupported(f"numeric preprocessing {kind}")
    return x


def check(model: Any, metadata: dict, frame: Any, config: Any) -> dict[str, Any]:
    """Export model and compare ONNX Runtime with scikit-learn on frame (the test split).

    {passed, supported, max_difference, row, labels_differ, note, data}: data holds the ONNX
    bytes when supported; passed is True for an unsupported model (scikit-learn serves it).
    """
    from mlops.predictions import (
        decide,
        matrix_model,
        model_matrix,
        model_positive,
        positive_column,
        predict,
    )

    try:
        data = build(model, metadata)
    except Unsupported as exc:
        note = f"served by scikit-learn: ONNX export does not represent it ({exc})"
        return {"passed": True, "supported": False, "max_difference": None, "note": note}
    names = list(metadata["features"])
    x = model_matrix(frame, metadata, config)
    positive = model_positive(model, metadata)
    sk_labels, sk = predict(matrix_model(model, metadata), x, positive)
    from pathlib import Path

    from mlops.onnx_runtime import OnnxModel

    exported = OnnxModel(data, names, list(model.classes_), Path(ONNX_FILE), threads=1)
    proba = exported.predict_proba(x)
    classes = np.asarray(model.classes_)
    onnx_labels = decide(proba, classes, positive_column(classes, positive))[0]
    difference = np.abs(proba - sk)
    largest = float(difference.max()) if difference.size else 0.0
    worst = int(np.unravel_index(np.argmax(difference), difference.shape)[0]) if len(x) else 0
    labels_differ = int(np.sum(onnx_labels != sk_labels))
    return {
        "passed": largest <= TOLERANCE and labels_differ == 0,
        "supported": True,
        "max_difference": largest,
        "row": worst,
        "labels_differ": labels_differ,
        "data": data,
    }
