"""Device detection from fixture files (a Pi 5, a Jetson Orin, an x86 server) and the artifact choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.manifest import Artifact
from edgekit.runtime import choose
from edgekit.runtime.device import (board, cpu_flags, cpu_frequencies, cpu_model, describe_throttled, device_info,
                                    fingerprint, nvidia_gpus)

PI5_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b

Revision\t: d04170
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""
X86_CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse sse2 avx avx2 fma f16c avx512f avx512_vnni
"""


def make_root(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        p = tmp_path / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return tmp_path


def test_raspberry_pi_5(tmp_path):
    root = make_root(tmp_path, {
        "/proc/device-tree/model": b"Raspberry Pi 5 Model B Rev 1.0\x00",
        "/proc/cpuinfo": PI5_CPUINFO,
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "2400000\n",
        "/sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq": "1500000\n",
    })
    b = board(root)
    assert b == {"model": "Raspberry Pi 5 Model B Rev 1.0", "raspberry_pi": True, "jetson": False, "l4t": None}
    assert cpu_model(root) == "Raspberry Pi 5 Model B Rev 1.0"
    assert {"asimd", "asimddp", "fphp"} <= set(cpu_flags(root))
    assert cpu_frequencies(root) == [2400000, 1500000]
    assert nvidia_gpus(root, use_smi=False) == []


def test_jetson_orin_l4t(tmp_path):
    root = make_root(tmp_path, {
        "/proc/device-tree/model": b"NVIDIA Jetson AGX Orin Developer Kit\x00",
        "/etc/nv_tegra_release": "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13\n",
    })
    b = board(root)
    assert b["jetson"] is True and b["l4t"] == "36.4.0" and b["raspberry_pi"] is False
    assert nvidia_gpus(root, use_smi=False) == ["NVIDIA Jetson AGX Orin Developer Kit (integrated)"]


def test_desktop_gpu_from_driver_proc(tmp_path):
    root = make_root(tmp_path, {
        "/proc/driver/nvidia/gpus/0000:01:00.0/information": "Model: \t\t NVIDIA GeForce RTX 4090\nIRQ: 1\n",
        "/proc/cpuinfo": X86_CPUINFO,
    })
    assert nvidia_gpus(root, use_smi=False) == ["NVIDIA GeForce RTX 4090"]
    assert cpu_model(root) == "AMD EPYC 9R14 96-Core Processor"
    assert cpu_flags(root) == ["avx2", "avx512_vnni", "avx512f", "f16c", "fma"]
    info = device_info(root)
    assert info["gpus"] == ["NVIDIA GeForce RTX 4090"] and info["board"] is None
    assert fingerprint(info).endswith("/AMD EPYC 9R14 96-Core Processor/" + f"{info['cores']}c/NVIDIA GeForce RTX 4090")


def test_no_files_is_not_an_error(tmp_path):
    assert board(tmp_path) == {"model": None, "raspberry_pi": False, "jetson": False, "l4t": None}
    assert cpu_flags(tmp_path) == [] and cpu_frequencies(tmp_path) == []


def test_throttled_bits():
    assert describe_throttled(0) == []
    assert describe_throttled(0x4) == ["throttled now"]
    assert describe_throttled(0x20000) == ["frequency capped since boot"]


ARTS = [Artifact(t, t.split(":")[0], t.split(":")[1], "passed", path=t) for t in
        ("tflite:fp32", "tflite:fp16", "tflite:int8", "onnx:fp32", "onnx:int8", "tensorrt:fp16")]


@pytest.mark.parametrize("device, runnable_formats, expected, why", [
    ({"machine": "aarch64", "cpu_flags": ["asimd", "asimddp", "neon"], "gpus": []}, {"tflite", "onnx"}, "tflite:int8", "dot-product"),
    ({"machine": "aarch64", "cpu_flags": [], "gpus": ["Orin (integrated)"], "jetson": True}, {"tflite", "onnx", "tensorrt"}, "tensorrt:fp16", "TensorRT"),
    ({"machine": "aarch64", "cpu_flags": [], "gpus": ["Orin (integrated)"]}, {"tflite", "onnx"}, "onnx:fp32", "NVIDIA GPU"),
    ({"machine": "x86_64", "cpu_flags": ["avx2"], "gpus": []}, {"tflite", "onnx"}, "tflite:fp32", "without VNNI"),
    ({"machine": "x86_64", "cpu_flags": ["avx2", "avx512_vnni"], "gpus": []}, {"tflite", "onnx"}, "tflite:int8", "VNNI"),
    ({"machine": "x86_64", "cpu_flags": ["avx2"], "gpus": []}, {"onnx"}, "onnx:fp32", "without VNNI"),
])
def test_choice_per_device(device, runnable_formats, expected, why):
    ranked = choose.rank(ARTS, device, lambda a: None if a.format in runnable_formats else "engine missing")
    assert ranked[0][0].target == expected
    assert why in ranked[0][1]


def test_choice_skips_failed_and_unrunnable_and_says_why():
    arts = [Artifact("tflite:int8", "tflite", "int8", "failed", path="a"),
            Artifact("onnx:fp32", "onnx", "fp32", "passed", path="b"),
            Artifact("coreml:fp16", "coreml", "fp16", "not_validated", path="c"),
            Artifact("tftrt:fp16", "tftrt", "fp16", "unsupported")]
    dev = {"machine": "aarch64", "cpu_flags": ["asimddp"], "gpus": [], "system": "Linux"}
    assert choose.rank(arts, dev, lambda a: "pip install 'edgekit[onnx]'" if a.format == "onnx" else None) == []
    why = choose.skipped(arts, dev, lambda a: "pip install 'edgekit[onnx]'" if a.format == "onnx" else None)
    assert why == ["tflite:int8: validation failed", "onnx:fp32: pip install 'edgekit[onnx]'",
                   "coreml:fp16: not validated and cannot run on this platform", "tftrt:fp16: no file (unsupported)"]
    mac = {"machine": "arm64", "cpu_flags": [], "gpus": [], "system": "Darwin"}
    assert choose.rank(arts, mac, lambda a: None)[0][0].target == "coreml:fp16"


# --- Board fixtures (tests/data/boards: written from the files' documented formats) ---------------------------

BOARDS = Path(__file__).resolve().parents[1] / "data" / "boards"


@pytest.mark.parametrize("board_dir, machine, core, cores, model, flags_in, flags_out, pi, jetson, l4t", [
    ("pi4", "aarch64", "Cortex-A72", 4, "Raspberry Pi 4 Model B Rev 1.4", {"asimd", "neon"}, {"asimddp", "fphp"}, True, False, None),
    ("pi5", "aarch64", "Cortex-A76", 4, "Raspberry Pi 5 Model B Rev 1.0", {"asimd", "neon", "asimddp", "fphp"}, set(), True, False, None),
    ("jetson-orin", "aarch64", "Cortex-A78AE", 12, "NVIDIA Jetson AGX Orin Developer Kit", {"asimddp", "neon"}, set(), False, True, "35.4.1"),
])
def test_board_fixture_device_info(board_dir, machine, core, cores, model, flags_in, flags_out, pi, jetson, l4t):
    info = device_info(BOARDS / board_dir)
    assert (info["machine"], info["cpu_core"], info["cores"], info["board"]) == (machine, core, cores, model)
    assert flags_in <= set(info["cpu_flags"]) and not flags_out & set(info["cpu_flags"])
    assert (info["raspberry_pi"], info["jetson"], info["l4t"]) == (pi, jetson, l4t)
    # A Jetson's cpuinfo names no model: the core is the CPU's description; a Pi's firmware names the board.
    assert info["cpu"] == (f"ARM {core}" if jetson else model)
    assert fingerprint(info) == f"aarch64/{model}/{cores}c" + ("/NVIDIA Jetson AGX Orin Developer Kit (integrated)" if jetson else "")


def test_big_little_and_unknown_parts(tmp_path):
    from edgekit.runtime.device import cpu_core, cpu_cores

    blocks = [f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: {part}\n" for i, part in
              enumerate(["0xd05"] * 4 + ["0xd0b"] * 4 + ["0xfff"])]
    root = make_root(tmp_path, {"/proc/cpuinfo": "\n".join(blocks)})
    assert cpu_cores(root) == {"Cortex-A55": 4, "Cortex-A76": 4, "part 0xfff (implementer 0x41)": 1}
    assert cpu_core(root).startswith("4x Cortex-A55 + 4x Cortex-A76")


BOARD_ARTS = [Artifact(t, t.split(":")[0], t.split(":")[1], "passed", path=t) for t in
              ("tflite:fp32", "tflite:fp16", "tflite:int8", "onnx:fp32", "onnx:int8", "tensorrt:fp16", "tensorrt:int8")]


@pytest.mark.parametrize("board_dir, engines, expected, why", [
    # Pi 4 (A72, no dot-product) and Pi 5 (A76, dot-product): XNNPACK's int8 kernels first on both.
    ("pi4", {"tflite", "onnx"}, "tflite:int8", "Cortex-A72, NEON without dot-product"),
    ("pi5", {"tflite", "onnx"}, "tflite:int8", "Cortex-A76, with dot-product int8 kernels"),
    ("pi5", {"onnx"}, "onnx:int8", "Cortex-A76"),
    # Jetson Orin: TensorRT on its GPU when TensorRT is there, else the ARM CPU's order (int8 TFLite).
    ("jetson-orin", {"tflite", "onnx", "tensorrt"}, "tensorrt:int8", "TensorRT on the GPU first"),
    ("jetson-orin", {"tflite", "onnx"}, "tflite:int8", "Cortex-A78AE, with dot-product"),
    ("jetson-orin", {"onnx"}, "onnx:int8", "NVIDIA Jetson AGX Orin Developer Kit"),
])
def test_choice_per_board(board_dir, engines, expected, why):
    info = device_info(BOARDS / board_dir)
    ranked = choose.rank(BOARD_ARTS, info, lambda a: None if a.format in engines else "engine missing")
    assert ranked[0][0].target == expected
    assert why in ranked[0][1], ranked[0][1]
