"""A Jetson bundle: what a person copies to the board to build and check a TensorRT engine there.

Files (beside the run's model.onnx, report and manifest.json): `build_engine.sh` (trtexec with the precision,
optimization profile, workspace, timing cache and DLA flags), `verify.sh` (every file against manifest.json's
sha256 before building: an over-the-air update with a tampered file stops there), `calibration.cache` for
TensorRT's implicit INT8 path, and `README.md` for the person at the device.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from modelforge.export.calibration_cache import write_calibration_cache
from modelforge.export.shapes import Shape, trtexec_shapes
from modelforge.safe_files import write_text

CACHE_NAME = "calibration.cache"


@dataclass(frozen=True)
class EngineFlags:
    """What build_engine.sh asks trtexec for."""

    precision: str  # fp32 | fp16 | int8
    profiles: dict[str, tuple[Shape, Shape, Shape]]
    workspace_mib: int
    calibration_cache: bool  # implicit INT8 (a float model): trtexec --calib
    dla_core: int | None = None
    sparse_weights: bool = False

    def trtexec_args(self) -> list[str]:
        args = ["--onnx=model.onnx", "--saveEngine=model.plan", "--timingCacheFile=timing.cache"]
        if self.precision == "int8":
            args += ["--int8", "--fp16"]  # layers left in float may still run in FP16
            if self.calibration_cache:
                args.append(f"--calib={CACHE_NAME}")
        elif self.precision == "fp16":
            args.append("--fp16")
        if any(low != high for low, _, high in self.profiles.values()):
            args += trtexec_shapes(self.profiles)
        args.append(f"--memPoolSize=workspace:{self.workspace_mib}")
        if self.sparse_weights:
            args.append("--sparsity=enable")
        if self.dla_core is not None:
            args += [f"--useDLACore={self.dla_core}", "--allowGPUFallback"]
        return args


VERIFY_SH = r"""#!/usr/bin/env bash
# Check every file of this bundle against manifest.json (sha256) before it is used.
# Compare manifest.json's own sha256 with the one published beside the bundle: it vouches for the rest.
set -euo pipefail
cd "$(dirname "$0")"
[ -f manifest.json ] || { echo "verify: manifest.json is missing" >&2; exit 1; }
if command -v sha256sum >/dev/null 2>&1; then HASH="sha256sum"; else HASH="shasum -a 256"; fi
# manifest.json lists {"path": ..., "sha256": ...} per file, one key per line (modelforge writes it so).
pairs=$(awk -F'"' '/"path":/ {path=$4} /"sha256":/ && path != "" {print $4 "  " path; path=""}' manifest.json)
[ -n "$pairs" ] || { echo "verify: manifest.json lists no files" >&2; exit 1; }
failed=0
while IFS= read -r line; do
  expected=${line%%  *}
  file=${line#*  }
  if [ ! -f "$file" ]; then echo "verify: MISSING $file" >&2; failed=1; continue; fi
  actual=$($HASH "$file" | cut -d' ' -f1)
  if [ "$actual" != "$expected" ]; then echo "verify: MODIFIED $file" >&2; failed=1; fi
done <<< "$pairs"
if [ "$failed" -ne 0 ]; then echo "verify: FAILED: do not build from this bundle" >&2; exit 1; fi
echo "verify: OK ($(printf '%s\n' "$pairs" | wc -l) files match manifest.json)"
"""

BUILD_SH = """#!/usr/bin/env bash
# Build the TensorRT engine on the Jetson (JetPack {jetpack}, TensorRT {trt}); extra arguments go to trtexec.
set -euo pipefail
cd "$(dirname "$0")"
bash ./verify.sh
TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}}"
[ -x "$TRTEXEC" ] || {{ echo "build_engine: trtexec not found (set TRTEXEC=/path/to/trtexec)" >&2; exit 2; }}
"$TRTEXEC" {args} "$@"
echo "build_engine: wrote model.plan (timing cache: timing.cache, reused by the next build)"
"""

README = """# Jetson bundle: {name}

Built by modelforge for **JetPack {jetpack}** (TensorRT {trt}); precision **{precision}**.
Every operator was checked against TensorRT {trt}'s ONNX parser when this bundle was made.

## On the device
1. `bash verify.sh` checks every file against `manifest.json` (sha256). Compare the sha256 of `manifest.json`
   itself with the one published with the bundle (`sha256sum manifest.json`): it is what vouches for the rest.
2. `bash build_engine.sh` runs verify.sh, then trtexec:

       trtexec {args}

   It writes `model.plan` (the engine: valid only for this device and TensorRT version) and `timing.cache`
   (kept: the next build reuses it). Add trtexec flags after the script, e.g. `--verbose`.
3. `trtexec --loadEngine=model.plan{shapes}` measures the engine on the device.

## Files
- `model.onnx`: the model TensorRT parses{qdq}.
{cache}- `baseline_stats.json`: input and confidence statistics; score live requests with
  `modelforge drift baseline_stats.json requests.npz --max-psi 0.2`.
- `report.*`: accuracy and speed of this model against the original, measured where it was exported.

Inputs: {inputs}
"""


def write_jetson_bundle(
    folder: Path,
    *,
    name: str,
    jetpack: str,
    tensorrt_version: str,
    flags: EngineFlags,
    scales: dict[str, float] | None,
    explicit_int8: bool,
    inputs_text: str,
) -> list[str]:
    """Write the bundle's own files into `folder`; returns their names."""
    written = []
    if scales:
        write_calibration_cache(folder / CACHE_NAME, scales, tensorrt_version)
        written.append(CACHE_NAME)
    args = " ".join(shlex.quote(a) for a in flags.trtexec_args())
    write_text(folder / "verify.sh", VERIFY_SH, mode=0o755)
    build = BUILD_SH.format(jetpack=jetpack, trt=tensorrt_version, args=args)
    write_text(folder / "build_engine.sh", build, mode=0o755)
    opt_shapes = [a for a in flags.trtexec_args() if a.startswith("--optShapes")]
    cache_line = (
        f"- `{CACHE_NAME}`: TensorRT INT8 calibration cache (`--calib`), scales from modelforge's calibration.\n"
        if scales and not explicit_int8
        else f"- `{CACHE_NAME}`: the Q/DQ scales as a TensorRT calibration cache (for tools that want one).\n"
        if scales
        else ""
    )
    write_text(
        folder / "README.md",
        README.format(
            name=name,
            jetpack=jetpack,
            trt=tensorrt_version,
            precision=flags.precision.upper()
            + (f" (DLA core {flags.dla_core}, GPU fallback)" if flags.dla_core is not None else ""),
            args=args,
            shapes=(" " + shlex.quote(opt_shapes[0].replace("--optShapes", "--shapes"))) if opt_shapes else "",
            qdq=" (symmetric INT8 Q/DQ: explicit quantization)" if explicit_int8 else "",
            cache=cache_line,
            inputs=inputs_text,
        ),
    )
    return [*written, "verify.sh", "build_engine.sh", "README.md"]
