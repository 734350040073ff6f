"""The cascade as ONE ONNX graph any runtime serves: the small model on the whole batch, the rows it is unsure of
gathered (NonZero + Gather), run through the large model inside an `If` (skipped when no row needs it), and
scattered back over the small model's answers (ScatterND).

Inputs: the models' own inputs (batch axis dynamic) and `cascade_threshold`, a float scalar whose default is an
initializer of the same name, so an operator moves it per request or per deployment without a rebuild.
Outputs: the class output (the large model's name, [batch, classes]) and `escalated` ([batch] bool).
The chosen threshold, the measure and the curve go into metadata_props: metadata for people, never read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelforge.errors import InputError, PassError

if TYPE_CHECKING:
    import onnx

THRESHOLD_INPUT = "cascade_threshold"
ESCALATED_OUTPUT = "escalated"
MIN_OPSET = 13  # Squeeze/ReduceSum take axes as an input from 13: one form of the confidence nodes
SMALL_PREFIX, LARGE_PREFIX, OWN_PREFIX = "small/", "large/", "cascade/"
METADATA_PREFIX = "modelforge.cascade."


@dataclass(frozen=True)
class ClassOutput:
    """A model's first output, checked to be class scores [batch, classes >= 2]."""

    name: str
    elem_type: int
    classes: int


def _dims(value_info: Any) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for d in value_info.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return dims


def _shape_text(dims: list[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def class_output(model: onnx.ModelProto, role: str) -> ClassOutput:
    """The rule for "has a class output": the first output is a float tensor [batch, C] with a fixed C >= 2.
    A regression head ([batch, 1] or [batch]) or a sequence/embedding tensor of another rank has no per-row
    class distribution to take a confidence from. (A 2-D embedding [batch, D] looks like D classes by shape;
    the eval labels, when given, must still be class ids below C.)"""
    import onnx

    if not model.graph.output:
        raise InputError(f"{role} model: no outputs")
    out = model.graph.output[0]
    dims = _dims(out)
    elem = out.type.tensor_type.elem_type
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
    if len(dims) != 2 or not isinstance(dims[1], int) or dims[1] < 2 or elem not in floats:
        raise InputError(
            f"{role} model: output '{out.name}' is {_shape_text(dims)}, not class scores [batch, classes >= 2] "
            "(a regression or embedding model has no confidence to escalate on)"
        )
    return ClassOutput(out.name, elem, int(dims[1]))


def check_compatible(small: onnx.ModelProto, large: onnx.ModelProto) -> tuple[ClassOutput, ClassOutput]:
    """Both models take the same inputs (names, dtypes, shapes but the batch axis, which must be dynamic) and
    give the same number of classes; every refusal names both sides."""
    small_inputs = {i.name: i for i in _real_inputs(small)}
    large_inputs = {i.name: i for i in _real_inputs(large)}
    if set(small_inputs) != set(large_inputs):
        raise InputError(
            f"the models' inputs differ: small takes {sorted(small_inputs)}, large takes {sorted(large_inputs)}"
        )
    for name, s in small_inputs.items():
        l_ = large_inputs[name]
        s_dims, l_dims = _dims(s), _dims(l_)
        s_type, l_type = s.type.tensor_type.elem_type, l_.type.tensor_type.elem_type
        if s_type != l_type or len(s_dims) != len(l_dims) or not _same_dims(s_dims[1:], l_dims[1:]):
            raise InputError(
                f"input '{name}' differs: small {_shape_text(s_dims)} {_type_name(s_type)}, "
                f"large {_shape_text(l_dims)} {_type_name(l_type)}"
            )
        for role, dims in (("small", s_dims), ("large", l_dims)):
            if dims and isinstance(dims[0], int):
                raise InputError(
                    f"{role} model: input '{name}' {_shape_text(dims)} has a fixed batch axis; the cascade sends "
                    "a varying number of rows to each model",
                    hint="export the model with a dynamic batch axis (dim 0)",
                )
    small_out, large_out = class_output(small, "small"), class_output(large, "large")
    taken = set(small_inputs) | {large_out.name}
    if taken & {THRESHOLD_INPUT, ESCALATED_OUTPUT}:
        raise InputError(
            f"the models use the name '{sorted(taken & {THRESHOLD_INPUT, ESCALATED_OUTPUT})[0]}', which the cascade "
            "graph adds itself (its threshold input and escalation output)",
            hint="rename that input or output when exporting the model",
        )
    if small_out.classes != large_out.classes:
        s_dims, l_dims = _dims(small.graph.output[0]), _dims(large.graph.output[0])
        raise InputError(
            f"the models' outputs differ: small '{small_out.name}' {_shape_text(s_dims)}, "
            f"large '{large_out.name}' {_shape_text(l_dims)}"
        )
    return small_out, large_out


def _same_dims(a: list[int | str | None], b: list[int | str | None]) -> bool:
    """Fixed sizes must be equal; two dynamic axes match whatever their names ("sequence" vs "seq_len")."""
    return all(
        x == y if isinstance(x, int) and isinstance(y, int) else not (isinstance(x, int) or isinstance(y, int))
        for x, y in zip(a, b, strict=True)
    )


def _real_inputs(model: onnx.ModelProto) -> list[Any]:
    """Graph inputs that are not initializers (old exporters list weights as inputs too)."""
    weights = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in weights]


def _type_name(elem_type: int) -> str:
    import onnx

    return onnx.TensorProto.DataType.Name(elem_type).lower()


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def align_opsets(small: onnx.ModelProto, large: onnx.ModelProto) -> tuple[onnx.ModelProto, onnx.ModelProto, int]:
    """One default-domain opset for the combined graph: the higher of the two (at least MIN_OPSET); the lower
    model is converted with onnx's version converter, or the run stops naming it."""
    target = max(default_opset(small), default_opset(large), MIN_OPSET)
    converted = []
    for role, model in (("small", small), ("large", large)):
        if default_opset(model) != target:
            from onnx import version_converter

            try:
                model = version_converter.convert_version(model, target)
            except Exception as exc:  # the converter raises bare RuntimeErrors per operator
                raise PassError(
                    "cascade",
                    f"{role} model: cannot convert opset {default_opset(model)} to {target} "
                    f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                    hint="export both models with the same opset",
                ) from exc
        converted.append(model)
    return converted[0], converted[1], target


def _rename_graph(graph: Any, prefix: str, keep: set[str], functions: set[tuple[str, str]]) -> None:
    """Prefix every tensor name (but `keep`), node name and call of a model-local function, subgraphs included:
    the same name gets the same new name in every scope, so outer-scope references stay wired."""

    def new(name: str) -> str:
        return name if not name or name in keep else prefix + name

    for collection in (graph.input, graph.output, graph.value_info):
        for vi in collection:
            vi.name = new(vi.name)
    for init in graph.initializer:
        init.name = new(init.name)
    for sparse in graph.sparse_initializer:
        sparse.values.name = new(sparse.values.name)
        sparse.indices.name = new(sparse.indices.name)
    _rename_nodes(graph.node, prefix, new, functions, keep)


def _rename_nodes(nodes: Any, prefix: str, new: Any, functions: set[tuple[str, str]], keep: set[str]) -> None:
    for node in nodes:
        node.name = prefix + node.name if node.name else node.name
        node.input[:] = [new(n) for n in node.input]
        node.output[:] = [new(n) for n in node.output]
        if (node.domain, node.op_type) in functions:
            node.op_type = prefix + node.op_type
        for attribute in node.attribute:
            if attribute.HasField("g"):
                _rename_graph(attribute.g, prefix, keep, functions)
            for sub in attribute.graphs:
                _rename_graph(sub, prefix, keep, functions)


def _prefixed_functions(model: onnx.ModelProto, prefix: str) -> list[Any]:
    """The model's local functions renamed with `prefix` (two torch exports often define the same names);
    calls between them are renamed too, their bodies' own tensor names stay (a function is its own scope)."""
    import onnx

    local = {(f.domain, f.name) for f in model.functions}
    renamed = []
    for function in model.functions:
        copy = onnx.FunctionProto()
        copy.CopyFrom(function)
        copy.name = prefix + copy.name
        for node in copy.node:
            if (node.domain, node.op_type) in local:
                node.op_type = prefix + node.op_type
        renamed.append(copy)
    return renamed


def build_cascade(
    small: onnx.ModelProto,
    large: onnx.ModelProto,
    *,
    measure: str,
    small_probabilities: bool,
    large_probabilities: bool,
    threshold: float,
    metadata: dict[str, str] | None = None,
) -> onnx.ModelProto:
    """The combined graph. `*_probabilities`: the model's class output already is a softmax (detected on the
    eval data): the confidence then skips its own softmax, and when the two differ both are served as
    probabilities so every row of the output means the same thing."""
    import onnx
    from onnx import TensorProto, helper

    from modelforge.cascade.confidence import ENTROPY_EPS, MEASURES

    if measure not in MEASURES:
        raise InputError(f"--confidence {measure}: expected one of {', '.join(MEASURES)}")
    small_out, large_out = check_compatible(small, large)
    small, large, opset = align_opsets(small, large)
    inputs = [i for i in _real_inputs(small)]
    input_names = {i.name for i in inputs}

    small_functions = {(f.domain, f.name) for f in small.functions}
    large_functions = {(f.domain, f.name) for f in large.functions}
    s_graph, l_graph = onnx.GraphProto(), onnx.GraphProto()
    s_graph.CopyFrom(small.graph)
    l_graph.CopyFrom(large.graph)
    _rename_graph(s_graph, SMALL_PREFIX, input_names, small_functions)
    _rename_graph(l_graph, LARGE_PREFIX, set(), large_functions)
    s_class, l_class = SMALL_PREFIX + small_out.name, LARGE_PREFIX + large_out.name

    def own(name: str) -> str:
        return OWN_PREFIX + name

    def const(name: str, values: Any, dtype: int = TensorProto.INT64) -> Any:
        dims = [] if not isinstance(values, list) else [len(values)]
        vals = values if isinstance(values, list) else [values]
        return helper.make_tensor(own(name), dtype, dims, vals)

    as_probabilities = small_probabilities or large_probabilities  # mixed: both served as probabilities
    nodes = list(s_graph.node)
    constants = [
        const("axes_last", [-1]),
        const("axes_first", [0]),
        const("zero", 0),
    ]
    probs = s_class
    if not small_probabilities:
        nodes.append(helper.make_node("Softmax", [s_class], [own("probs")], axis=-1, name=own("softmax")))
        probs = own("probs")
    answer = probs if as_probabilities else s_class  # what the rows the small model keeps hold
    if measure in ("max-prob", "margin"):
        constants.append(const("k", [2 if measure == "margin" else 1]))
        nodes.append(
            helper.make_node("TopK", [probs, own("k")], [own("top"), own("top_index")], axis=-1, name=own("topk"))
        )
        if measure == "max-prob":
            nodes.append(helper.make_node("Squeeze", [own("top"), own("axes_last")], [own("conf")], name=own("max")))
        else:
            nodes += [
                helper.make_node("Split", [own("top")], [own("top1"), own("top2")], axis=-1, name=own("split")),
                helper.make_node("Sub", [own("top1"), own("top2")], [own("margin")], name=own("margin")),
                helper.make_node("Squeeze", [own("margin"), own("axes_last")], [own("conf")], name=own("squeeze")),
            ]
        conf = own("conf")
    else:  # 1 - H / log C, as confidence.py computes it
        import math

        constants += [
            const("eps", ENTROPY_EPS, small_out.elem_type),
            const("inv_log_c", 1.0 / math.log(small_out.classes), small_out.elem_type),
            const("one", 1.0, small_out.elem_type),
        ]
        nodes += [
            helper.make_node("Max", [probs, own("eps")], [own("clipped")], name=own("clip")),
            helper.make_node("Log", [own("clipped")], [own("log_p")], name=own("log")),
            helper.make_node("Mul", [probs, own("log_p")], [own("p_log_p")], name=own("p_log_p")),
            helper.make_node(
                "ReduceSum", [own("p_log_p"), own("axes_last")], [own("neg_h")], keepdims=0, name=own("sum")
            ),
            helper.make_node("Mul", [own("neg_h"), own("inv_log_c")], [own("scaled")], name=own("scale")),
            helper.make_node("Add", [own("one"), own("scaled")], [own("conf")], name=own("flip")),
        ]
        conf = own("conf")
    nodes += [
        helper.make_node("Cast", [conf], [own("conf32")], to=TensorProto.FLOAT, name=own("cast_conf")),
        helper.make_node("Less", [own("conf32"), THRESHOLD_INPUT], [ESCALATED_OUTPUT], name=own("escalate")),
        helper.make_node("NonZero", [ESCALATED_OUTPUT], [own("rows_2d")], name=own("rows")),
        helper.make_node("Transpose", [own("rows_2d")], [own("scatter_index")], perm=[1, 0], name=own("transpose")),
        helper.make_node("Squeeze", [own("rows_2d"), own("axes_first")], [own("rows")], name=own("flat_rows")),
        helper.make_node("Size", [own("rows")], [own("count")], name=own("count")),
        helper.make_node("Greater", [own("count"), own("zero")], [own("any")], name=own("any")),
    ]

    # The large model's branch: its own inputs are the gathered rows; its weights live in the branch.
    branch_nodes = [
        helper.make_node("Gather", [i.name, own("rows")], [LARGE_PREFIX + i.name], axis=0, name=own(f"gather/{i.name}"))
        for i in inputs
    ]
    branch_nodes += list(l_graph.node)
    large_answer = l_class
    if as_probabilities and not large_probabilities:
        branch_nodes.append(helper.make_node("Softmax", [l_class], [own("large_probs")], axis=-1, name=own("lsm")))
        large_answer = own("large_probs")
    if large_out.elem_type != small_out.elem_type:
        branch_nodes.append(
            helper.make_node("Cast", [large_answer], [own("large_cast")], to=small_out.elem_type, name=own("lcast"))
        )
        large_answer = own("large_cast")
    branch_nodes.append(
        helper.make_node("ScatterND", [answer, own("scatter_index"), large_answer], [own("mixed")], name=own("scatter"))
    )
    out_type = small_out.elem_type
    then_graph = helper.make_graph(
        branch_nodes,
        "large_branch",
        [],
        [helper.make_tensor_value_info(own("mixed"), out_type, [None, small_out.classes])],
        initializer=list(l_graph.initializer),
        value_info=list(l_graph.value_info),
    )
    then_graph.sparse_initializer.extend(l_graph.sparse_initializer)
    else_graph = helper.make_graph(
        [helper.make_node("Identity", [answer], [own("kept")], name=own("small_only"))],
        "small_only",
        [],
        [helper.make_tensor_value_info(own("kept"), out_type, [None, small_out.classes])],
    )
    nodes.append(
        helper.make_node(
            "If", [own("any")], [large_out.name], then_branch=then_graph, else_branch=else_graph, name=own("if")
        )
    )

    graph_inputs = []
    for i in inputs:
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(i)
        if copy.type.tensor_type.shape.dim:  # an input of unknown rank keeps it
            copy.type.tensor_type.shape.dim[0].Clear()
            copy.type.tensor_type.shape.dim[0].dim_param = "batch"
        graph_inputs.append(copy)
    graph_inputs.append(helper.make_tensor_value_info(THRESHOLD_INPUT, TensorProto.FLOAT, []))
    outputs = [
        helper.make_tensor_value_info(large_out.name, out_type, ["batch", small_out.classes]),
        helper.make_tensor_value_info(ESCALATED_OUTPUT, TensorProto.BOOL, ["batch"]),
    ]
    initializers = [
        *s_graph.initializer,
        *constants,
        helper.make_tensor(THRESHOLD_INPUT, TensorProto.FLOAT, [], [float(threshold)]),
    ]
    graph = helper.make_graph(
        nodes, "cascade", graph_inputs, outputs, initializer=initializers, value_info=list(s_graph.value_info)
    )
    graph.sparse_initializer.extend(s_graph.sparse_initializer)
    opsets: dict[str, int] = {}
    for model in (small, large):
        for o in model.opset_import:
            domain = "" if o.domain == "ai.onnx" else o.domain
            opsets[domain] = max(opsets.get(domain, 0), o.version)
    opsets[""] = opset
    combined = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
        producer_name="modelforge",
        functions=[*_prefixed_functions(small, SMALL_PREFIX), *_prefixed_functions(large, LARGE_PREFIX)],
    )
    combined.ir_version = max(small.ir_version, large.ir_version, 7)
    for key, value in (metadata or {}).items():
        combined.metadata_props.add(key=METADATA_PREFIX + key, value=value)
    return combined


def set_threshold(model: onnx.ModelProto, threshold: float, metadata: dict[str, str]) -> None:
    """The chosen threshold as the default of the `cascade_threshold` input, and the metadata (replacing any)."""
    for init in model.graph.initializer:
        if init.name == THRESHOLD_INPUT:
            init.ClearField("raw_data")
            init.float_data[:] = [float(threshold)]
    kept = [p for p in model.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        model.metadata_props.add(key=METADATA_PREFIX + key, value=value)
