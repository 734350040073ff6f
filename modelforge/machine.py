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
