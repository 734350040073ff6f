"""Distillation losses: what the student is trained to imitate.

- `kd_loss`: Hinton et al.'s soft targets, KL(teacher_T || student_T) * T^2 (the T^2 keeps the soft term's
  gradients on the hard term's scale when T changes), weighted alpha against cross-entropy on the labels.
- `output_loss`: MSE or cosine distance between student and teacher outputs (regression or embedding teachers).
- `HintProjections`: a learned 1x1 convolution (or linear map) per named layer pair, taking the student's
  feature map to the teacher's channel count, so an MSE "hint" term can pull intermediate features together.
- `DistillationLoss`: the callable the shared training loop calls as loss(outputs, labels, inputs).

torch is imported inside the functions (modelforge must import without it).
"""

from __future__ import annotations

from typing import Any


def kd_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(student, labels)."""
    import torch.nn.functional as F

    t = float(temperature)
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    if alpha >= 1.0 or labels is None:
        return soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student_logits, labels)


def output_loss(student_out, teacher_out, kind: str):
    """MSE, or 1 - cosine similarity per sample (outputs flattened after the batch axis), averaged."""
    import torch.nn.functional as F

    if kind == "mse":
        return F.mse_loss(student_out, teacher_out)
    s, t = student_out.flatten(1), teacher_out.flatten(1)
    return (1.0 - F.cosine_similarity(s, t, dim=1)).mean()


def _layer(module, name: str, role: str):
    from modelforge.errors import InputError

    named = dict(module.named_modules())
    if name not in named or name == "":
        layers = [n for n in named if n][:12]
        raise InputError(f"hint layer {name!r} is not a layer of the {role} (layers: {', '.join(layers)}, ...)")
    return named[name]


class FeatureTap:
    """Forward hooks that keep the latest output of named layers (the teacher's and the student's hints)."""

    def __init__(self, module, names: list[str], role: str):
        self.features: dict[str, Any] = {}
        self.handles = [_layer(module, n, role).register_forward_hook(self._keep(n)) for n in names]

    def _keep(self, name: str):
        def hook(_module, _inputs, output):
            self.features[name] = output[0] if isinstance(output, tuple | list) else output

        return hook

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def hint_projections(student_shapes: dict[str, tuple], teacher_shapes: dict[str, tuple], pairs: list[tuple]):
    """One learned map per (teacher, student) pair: 1x1 conv for feature maps, linear for vectors."""
    import torch

    from modelforge.errors import InputError

    maps = torch.nn.ModuleList()
    for teacher_name, student_name in pairs:
        s, t = student_shapes[student_name], teacher_shapes[teacher_name]
        if len(s) != len(t) or (len(s) == 4 and s[2:] != t[2:]):
            raise InputError(
                f"hint pair {teacher_name} -> {student_name}: teacher features {list(t)} and student features "
                f"{list(s)} differ in rank or spatial size"
            )
        if len(s) == 4:
            maps.append(torch.nn.Conv2d(s[1], t[1], kernel_size=1, bias=False))
        else:
            maps.append(torch.nn.Linear(s[-1], t[-1], bias=False))
    return maps


def _student_with_hints_class():
    import torch

    class StudentWithHints(torch.nn.Module):
        """The student plus its hint projections: trained together (one optimizer, one DDP wrapper); only
        `student` is exported. The projections run inside forward so DDP sees every trained parameter used."""

        def __init__(self, student, projections, student_layers: list[str]):
            super().__init__()
            self.student = student
            self.projections = projections
            self.tap = FeatureTap(student, student_layers, "student")
            self.student_layers = student_layers
            self.projected: list[Any] = []

        def forward(self, *inputs):
            out = self.student(*inputs)
            pairs = zip(self.projections, self.student_layers, strict=True)
            self.projected = [projection(self.tap.features[name]) for projection, name in pairs]
            return out

    return StudentWithHints


def with_hints(student, projections, student_layers: list[str]):
    return _student_with_hints_class()(student, projections, student_layers)


class DistillationLoss:
    """loss(outputs, labels, inputs, indices=...) for the training loop: the teacher term (KD, MSE or cosine),
    plus hint terms when layer pairs are set. Teacher outputs come from the per-sample cache when one was
    built (no augmentation, no hints), else from running the teacher in inference mode on the batch."""

    takes_indices = True

    def __init__(
        self,
        teacher,
        *,
        kind: str = "kl",
        temperature: float = 4.0,
        alpha: float = 0.9,
        cache=None,
        hints: tuple | None = None,
        hint_weight: float = 1.0,
    ):
        self.teacher, self.kind, self.temperature, self.alpha = teacher, kind, temperature, alpha
        self.cache = cache
        self.hints = hints  # (teacher FeatureTap, student wrapper, teacher layer names)
        self.hint_weight = hint_weight

    def teacher_outputs(self, inputs: tuple, indices):
        import torch

        if self.cache is not None and indices is not None:
            return self.cache.lookup(indices).to(inputs[0].device)
        with torch.inference_mode():
            out = self.teacher(*inputs)
        out = out[0] if isinstance(out, tuple | list) else out
        return out.clone()  # an inference tensor cannot be saved for backward; a plain copy can

    def __call__(self, outputs, labels, inputs: tuple, indices=None):
        teacher_out = self.teacher_outputs(inputs, indices)
        if self.kind == "kl":
            value = kd_loss(outputs, teacher_out, labels, self.temperature, self.alpha)
        else:
            value = output_loss(outputs, teacher_out, self.kind)
            if self.alpha < 1.0 and labels is not None and outputs.dim() == 2:
                import torch.nn.functional as F

                value = self.alpha * value + (1.0 - self.alpha) * F.cross_entropy(outputs, labels)
        if self.hints is not None:
            import torch.nn.functional as F

            tap, wrapper, teacher_layers = self.hints
            for projected, name in zip(wrapper.projected, teacher_layers, strict=True):
                value = value + self.hint_weight * F.mse_loss(projected, tap.features[name].clone())
        return value
