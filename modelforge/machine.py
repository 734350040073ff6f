"""What machine a figure was measured on: CPU model, instruction sets that matter for INT8, versions."""

from __future__ import annotations

import os
import platform
import sys
from functools import cache
from importlib import metadata

# Instruction sets that decide INT8 speed on x86 (VNNI: 4x int8 dot products; AMX: tile matrix units).
INT8_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
# Vector / matrix instruction sets that matter for inference speed (x86 and Arm names as /proc/cpuinfo spells them).
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "fma",
    "f16c",
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)


@cache
def cpu_info() -> dict[str, object]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": model,
        "arch": platform.machine(),
        "cores": cores,
        "int8_instruction_sets": [f for f in INT8_FLAGS if f in flags],
        "instruction_sets": [f for f in ISA_FLAGS if f in flags],
    }


def package_versions(
    names: tuple[str, ...] = ("modelforge", "onnx", "onnxruntime", "numpy"),
) -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine_record(frameworks: tuple[str, ...] = ()) -> dict[str, object]:
    """`frameworks`: extra packages this run used (e.g. torch for a PyTorch input)."""
    names = ("modelforge", "onnx", "onnxruntime", "numpy", *frameworks)
    return {"cpu": cpu_info(), "os": platform.platform(), "versions": package_versions(names)}


# Instruction sets that let a CPU compute in bf16 natively (OpenVINO's bf16 kernels need one of them; without
# them bf16 is emulated and slower than fp32).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# Instruction sets that make INT8 dot products fast (VNNI, AMX); without them INT8 gains size more than speed.
FAST_INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")


def cpu_flags() -> frozenset[str]:
    """This CPU's instruction sets (of those modelforge looks at)."""
    return frozenset(cpu_info()["instruction_sets"])


def precision_support(precision: str, flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """Whether `precision` is worth offering on a CPU with `flags` (default: this CPU), and why.

    The one place that decides it: doctor, bench, `--target openvino --precision` and `--target auto` ask here.
    """
    flags = cpu_flags() if flags is None else flags
    if precision == "fp32":
        return True, "every CPU"
    if precision == "bf16":
        present = [f for f in BF16_FLAGS if f in flags]
        if present:
            return True, f"native bf16 ({', '.join(present)})"
        return False, f"no native bf16 on this CPU (needs {' or '.join(BF16_FLAGS)})"
    if precision == "int8":
        present = [f for f in FAST_INT8_FLAGS if f in flags]
        if present:
            return True, f"fast INT8 dot products ({', '.join(present)})"
        if "avx2" in flags or "avx512f" in flags:
            return True, "INT8 runs (no VNNI/AMX: expect a small speed-up at best)"
        return True, "INT8 runs, but without AVX2/VNNI expect size savings, not speed"
    return False, f"unknown precision '{precision}'"
