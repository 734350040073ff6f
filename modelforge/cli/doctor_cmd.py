"""`modelforge doctor`: what this machine can do and what is installed, with plain-language consequences."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _int8_advice(flags: list[str]) -> str:
    if "amx_int8" in flags or "avx512_vnni" in flags or "avx_vnni" in flags:
        return "VNNI present: INT8 on CPU runs several times faster than FP32 on compute-bound models"
    if "avx2" in flags:
        return "no VNNI: expect little INT8 speed-up on CPU (consider reduce_range: true against int16 saturation)"
    return "no AVX2 or VNNI: INT8 on this CPU will gain size, not speed"


def _memory() -> dict[str, int | None]:
    info: dict[str, int | None] = {"total_bytes": None, "available_bytes": None}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                info["total_bytes" if key == "MemTotal" else "available_bytes"] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return info


def _cuda_devices() -> list[dict[str, Any]]:
    """CUDA devices as torch sees them (only when torch is installed; importing it is slow but doctor may)."""
    if _version("torch") is None:
        return []
    try:
        import torch

        return [
            {
                "name": torch.cuda.get_device_name(i),
                "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
            }
            for i in range(torch.cuda.device_count())
        ]
    except Exception:  # a broken CUDA install must not break doctor
        return []


def _runtimes() -> list[dict[str, Any]]:
    """CPU runtimes, installed or not, and the precisions each can use on this CPU (and why)."""
    from modelforge.runtimes.serving import precision_matrix

    return precision_matrix()


def collect() -> dict[str, Any]:
    from modelforge.machine import cpu_info

    cpu = cpu_info()
    providers: list[str] = []
    try:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
    except ImportError:
        pass
    from modelforge.optional import extras as optional_extras

    extras = {  # from the table `require` reads, so doctor lists what the error messages name
        extra: {"usable": all(_version(p) for p in packages), "packages": {p: _version(p) for p in packages}}
        for extra, packages in optional_extras().items()
    }
    disk = shutil.disk_usage(Path.cwd())
    return {
        "modelforge": _version("modelforge"),
        "cpu": {**cpu, "int8_advice": _int8_advice(cpu["int8_instruction_sets"])},
        "onnx": _version("onnx"),
        "onnxruntime": {"version": _version("onnxruntime"), "execution_providers": providers},
        "extras": extras,
        "runtimes": _runtimes(),
        "cuda_devices": _cuda_devices(),
        "memory": _memory(),
        "disk_free_bytes": disk.free,
    }


def doctor(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for CI.")] = False) -> None:
    """What this machine can do for INT8 and bf16, which runtimes and precisions it can use and why, and what is
    installed (frameworks, providers, GPUs, memory, disk)."""
    info = collect()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    from modelforge.cli.console import out_console
    from modelforge.report.format import fmt_bytes

    cpu = info["cpu"]
    table = Table(title="modelforge doctor", show_header=False)
    table.add_column("What")
    table.add_column("Value")
    table.add_row("modelforge", str(info["modelforge"]))
    table.add_row("CPU", f"{cpu['model']} ({cpu['arch']}, {cpu['cores']} cores)")
    table.add_row("INT8 instruction sets", ", ".join(cpu["int8_instruction_sets"]) or "none")
    table.add_row("INT8 on this CPU", cpu["int8_advice"])
    ort = info["onnxruntime"]
    table.add_row("onnxruntime", f"{ort['version']} ({', '.join(ort['execution_providers'])})")
    for extra, state in info["extras"].items():
        versions = ", ".join(f"{p} {v or 'missing'}" for p, v in state["packages"].items())
        hint = "" if state["usable"] else f"  → pip install 'modelforge[{extra}]'"
        verdict = ("usable: " if state["usable"] else "not usable: ") + versions + hint
        table.add_row(escape(f"extra [{extra}]"), escape(verdict))
    for row in info["runtimes"]:
        usable = [p for p, v in row["precisions"].items() if v["usable"]]
        why = "; ".join(f"{p}: {v['why']}" for p, v in row["precisions"].items())
        state = "installed" if row["installed"] else f"not installed ({row['install']})"
        table.add_row(escape(f"runtime {row['runtime']}"), escape(f"{state}; usable: {', '.join(usable)} ({why})"))
    gpus = info["cuda_devices"]
    table.add_row("CUDA devices", ", ".join(f"{g['name']} (sm {g['compute_capability']})" for g in gpus) or "none")
    memory = info["memory"]
    table.add_row("Memory", f"{fmt_bytes(memory['available_bytes'])} free of {fmt_bytes(memory['total_bytes'])}")
    table.add_row("Disk free (here)", fmt_bytes(info["disk_free_bytes"]))
    out_console.print(table)
