"""Teacher outputs cached per training sample: without augmentation, the teacher sees the same sample every
epoch, so its outputs are computed once (in inference mode) instead of once per epoch.

The time saved is reported as measured: the cache's build time is one teacher pass over the training set, and
each later epoch would have paid that pass again.
"""

from __future__ import annotations

import time


class TeacherCache:
    def __init__(self, outputs, seconds: float):
        self.outputs = outputs  # [samples, ...] float32 on CPU
        self.seconds = seconds  # one teacher pass over every training sample

    @classmethod
    def build(cls, teacher, inputs: tuple, batch_size: int = 256) -> TeacherCache:
        import torch

        started = time.perf_counter()
        chunks = []
        teacher.eval()
        with torch.inference_mode():
            for start in range(0, inputs[0].shape[0], batch_size):
                out = teacher(*(t[start : start + batch_size] for t in inputs))
                chunks.append((out[0] if isinstance(out, tuple | list) else out).float().cpu())
        outputs = torch.cat(chunks).clone()  # a plain tensor (inference tensors cannot join autograd graphs)
        return cls(outputs, time.perf_counter() - started)

    def lookup(self, indices):
        return self.outputs[indices.cpu()]

    def record(self, epochs_run: int) -> dict[str, float | int | bool | str]:
        saved = self.seconds * max(0, epochs_run - 1)
        return {
            "enabled": True,
            "samples": int(self.outputs.shape[0]),
            "build_seconds": round(self.seconds, 4),
            "epochs": epochs_run,
            "seconds_saved": round(saved, 4),
            "note": f"teacher run once over the training set ({self.seconds:.2f} s) instead of once per epoch: "
            f"about {saved:.2f} s saved over {epochs_run} epochs",
        }


def cache_disabled(reason: str) -> dict[str, str | bool]:
    return {"enabled": False, "reason": reason}
