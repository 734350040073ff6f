"""Turn a `torch.export` program back into a trainable module made of real nn layers.

`torch.export.load(...).module()` holds functional `aten.conv2d` / `aten.batch_norm` / `aten.linear` calls on
plain attributes, and refuses `.eval()`/`.train()`: neither Torch-Pruning's dependency graph nor a training loop
can work on it. This FX rewrite replaces each such call with the equivalent `nn.Conv2d`, `nn.ConvTranspose2d`,
`nn.Linear` or `nn.BatchNorm2d`, sharing the very same parameter tensors (outputs are identical), and
BatchNorm follows `.train()`/`.eval()` again. Layers keep their original dotted names (`features.0`) where
the program's attribute layout allows, so names in reports and skip lists are the user's own.
"""

from __future__ import annotations

from typing import Any

# aten overload -> (layer kind, schema-order argument names we read)
_REWRITTEN = (
    "aten.conv2d.default",
    "aten.conv_transpose2d.input",
    "aten.linear.default",
    "aten.batch_norm.default",
    "aten._native_batch_norm_legit_no_training.default",
)


def _arguments(node) -> dict[str, Any]:
    """The call's arguments by schema name, defaults filled in."""
    schema = node.target._schema
    values: dict[str, Any] = {}
    for index, arg in enumerate(schema.arguments):
        if index < len(node.args):
            values[arg.name] = node.args[index]
        elif arg.name in node.kwargs:
            values[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            values[arg.name] = arg.default_value
        else:
            values[arg.name] = None
    return values


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = list(value)
    return (value[0], value[0]) if len(value) == 1 else (value[0], value[1])


def _attribute(root, node):
    """The tensor behind a get_attr node (None for None)."""
    if node is None:
        return None
    if getattr(node, "op", None) != "get_attr":
        raise ValueError("a layer's parameter is computed in the graph, not stored")
    value = root
    for part in node.target.split("."):
        value = getattr(value, part)
    return value


def _as_parameter(torch, tensor, trainable: bool = True):
    if isinstance(tensor, torch.nn.Parameter):
        return tensor
    return torch.nn.Parameter(tensor, requires_grad=trainable)


def _build_layer(torch, node, root):
    """The nn layer equivalent to one aten call (parameters shared), and the get_attr nodes it absorbs."""
    nn = torch.nn
    a = _arguments(node)
    name = str(node.target)
    if name.startswith("aten.conv2d"):
        weight, bias = _attribute(root, a["weight"]), _attribute(root, a["bias"])
        groups = int(a["groups"])
        layer = nn.Conv2d(
            weight.shape[1] * groups,
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=_pair(a["stride"]),
            padding=_pair(a["padding"]) if not isinstance(a["padding"], str) else a["padding"],
            dilation=_pair(a["dilation"]),
            groups=groups,
            bias=bias is not None,
            device="meta",
        )
        absorbed = [a["weight"], a["bias"]]
    elif name.startswith("aten.conv_transpose2d"):
        weight, bias = _attribute(root, a["weight"]), _attribute(root, a["bias"])
        groups = int(a["groups"])
        layer = nn.ConvTranspose2d(
            weight.shape[0],
            weight.shape[1] * groups,
            tuple(weight.shape[2:]),
            stride=_pair(a["stride"]),
            padding=_pair(a["padding"]),
            output_padding=_pair(a["output_padding"]),
            groups=groups,
            dilation=_pair(a["dilation"]),
            bias=bias is not None,
            device="meta",
        )
        absorbed = [a["weight"], a["bias"]]
    elif name.startswith("aten.linear"):
        weight, bias = _attribute(root, a["weight"]), _attribute(root, a["bias"])
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        absorbed = [a["weight"], a["bias"]]
    else:  # batch norm (either overload)
        weight, bias = _attribute(root, a["weight"]), _attribute(root, a["bias"])
        mean, var = _attribute(root, a["running_mean"]), _attribute(root, a["running_var"])
        if mean is None or var is None:
            raise ValueError("batch norm without running statistics")
        layer = nn.BatchNorm2d(
            mean.shape[0], eps=float(a["eps"]), momentum=float(a["momentum"]), affine=weight is not None
        )
        layer.running_mean = mean
        layer.running_var = var
        absorbed = [a["weight"], a["bias"], a["running_mean"], a["running_var"]]
        tracked = _sibling(root, a["running_mean"], "num_batches_tracked")
        if tracked is not None:
            layer.num_batches_tracked = tracked
    if weight is not None:
        layer.weight = _as_parameter(torch, weight)
    if bias is not None:
        layer.bias = _as_parameter(torch, bias)
    return layer, [n for n in absorbed if n is not None]


def _sibling(root, node, attr: str):
    prefix = node.target.rsplit(".", 1)[0] if "." in node.target else ""
    holder = root
    for part in filter(None, prefix.split(".")):
        holder = getattr(holder, part, None)
        if holder is None:
            return None
    return getattr(holder, attr, None)


def _layer_path(root, absorbed, taken: set[str]) -> str:
    """The dotted name the layer takes: its parameters' owner (`features.0`) when that holds nothing else."""
    prefixes = {n.target.rsplit(".", 1)[0] if "." in n.target else "" for n in absorbed}
    if len(prefixes) == 1:
        [prefix] = prefixes
        if prefix and prefix not in taken:
            owner = root.get_submodule(prefix)
            own = {n for n, _ in owner.named_parameters(recurse=False)}
            own |= {n for n, _ in owner.named_buffers(recurse=False)}
            mine = {n.target.rsplit(".", 1)[1] for n in absorbed} | {"num_batches_tracked"}
            if own <= mine and not list(owner.children()):
                return prefix
    base = "_".join(sorted(prefixes)).replace(".", "_") or "layer"
    path, i = base + "_layer", 1
    while path in taken:
        path, i = f"{base}_layer{i}", i + 1
    return path


def _set_submodule(torch, root, path: str, module) -> None:
    parent = root
    parts = path.split(".")
    for part in parts[:-1]:
        if not hasattr(parent, part):
            parent.add_module(part, torch.nn.Module())
        parent = getattr(parent, part)
    if parts[-1] in parent._modules:
        parent._modules[parts[-1]] = module
    else:
        for store in (parent._parameters, parent._buffers, parent.__dict__):
            store.pop(parts[-1], None)
        parent.add_module(parts[-1], module)


def rebuild_modules(program) -> Any:
    """A `torch.fx.GraphModule` with real nn layers from an ExportedProgram (its graph otherwise unchanged).

    Raises ValueError when a layer's parameters are not plain stored tensors (nothing to rebuild then)."""
    import torch

    source = program.module()
    graph = source.graph
    taken: set[str] = set()
    layers = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or str(node.target) not in _REWRITTEN:
            continue
        layer, absorbed = _build_layer(torch, node, source)
        path = _layer_path(source, absorbed, taken)
        taken.add(path)
        _set_submodule(torch, source, path, layer)
        data_input = node.args[0]
        with graph.inserting_before(node):
            call = graph.call_module(path, (data_input,))
        if str(node.target).startswith("aten._native_batch_norm_legit"):
            for user in list(node.users):  # (out, mean, invstd)[0] -> the module's output
                if user.op == "call_function" and user.args[1] == 0:
                    user.replace_all_uses_with(call)
                    graph.erase_node(user)
        node.replace_all_uses_with(call)
        graph.erase_node(node)
        for attr in absorbed:
            if not attr.users:
                graph.erase_node(attr)
        layers += 1
    for node in list(graph.nodes):
        if node.op == "get_attr" and not node.users:  # the now unused num_batches_tracked reads
            graph.erase_node(node)
        elif node.op == "call_module" and node.target == "_guards_fn" and not node.users:
            # export's input-shape guards hold the original program's batch range; the re-export states its own
            graph.erase_node(node)
            delattr(source, "_guards_fn")
    # A plain GraphModule (not export's stateful wrapper): .train()/.eval() work again.
    rebuilt = torch.fx.GraphModule(source, graph, class_name="RebuiltProgram")
    rebuilt.graph.lint()
    rebuilt.recompile()
    rebuilt.rebuilt_layers = layers
    return rebuilt.eval()
