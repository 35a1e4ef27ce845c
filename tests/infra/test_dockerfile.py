"""The image's intent, read from infra/docker/Dockerfile (no Docker engine needed): multi-stage,
non-root, no secrets, pinned dependencies, the project installed, every copied path present."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra.manifests import INFRA
from tests.paths import REPO_ROOT

DOCKERFILE = INFRA / "docker" / "Dockerfile"
DOCKERIGNORE = INFRA / "docker" / "Dockerfile.dockerignore"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|ACCESS_KEY|PRIVATE_KEY|API_KEY", re.I)


@dataclass(frozen=True)
class Instruction:
    op: str
    args: str


def parse(text: str) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        op, _, args = full.partition(" ")
        out.append(Instruction(op.upper(), args.strip()))
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.op == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_parser_joins_continuations_and_drops_comments():
    parsed = parse("FROM a AS b\n# c\nRUN x \\\n  && y\nUSER 1\n")
    assert parsed == [
        Instruction("FROM", "a AS b"),
        Instruction("RUN", "x  && y"),
        Instruction("USER", "1"),
    ]


def test_multi_stage_on_a_pinned_python_matching_the_project(instructions):
    args = {i.args.split("=")[0]: i.args.split("=", 1)[1] for i in instructions if i.op == "ARG"}
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base  # patch version pinned
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert "3.11" in requires["requires-python"]
    built = stages(instructions)
    assert len(built) >= 2
    assert built[-1][0].args.endswith("AS runtime")
    assert any(i.op == "COPY" and i.args.startswith("--from=build") for i in built[-1])


def test_runs_as_a_non_root_user(instructions):
    final = stages(instructions)[-1]
    users = [i for i in final if i.op == "USER"]
    assert users, "the runtime stage never switches away from root"
    uid = users[-1].args.split(":")[0]
    assert uid not in ("0", "root")
    last_user = final.index(users[-1])
    assert all(i.op != "RUN" for i in final[last_user:]), "RUN after USER runs as that user"
    assert any(f"--uid {uid}" in i.args for i in final if i.op == "RUN"), "user not created"


def test_no_secrets_in_the_image(instructions):
    for ins in instructions:
        if ins.op in ("ENV", "ARG"):
            for name in re.findall(r"(\w+)=", ins.args) or [ins.args.split()[0]]:
                assert not SECRET_NAME.search(name), f"{ins.op} {name} bakes a secret in"
        if ins.op in ("COPY", "ADD"):
            sources = [a for a in ins.args.split()[:-1] if not a.startswith("--")]
            for source in sources:
                assert not re.search(r"\.env|\.pem|\.key|id_rsa|\.aws|\.mlops|\.venv|\.git", source)
        assert ins.op != "ADD", "ADD can fetch remote content; COPY only"
    ignore = [line for line in DOCKERIGNORE.read_text().splitlines() if line and line[0] != "#"]
    assert ignore[0] == "**", "the build context must start from nothing (an allowlist)"
    for pattern in ("**/.env", "**/*.pem", "**/*.key"):
        assert pattern in ignore


def test_dependencies_pinned_and_the_project_installed(instructions):
    runs = " ".join(i.args for i in instructions if i.op == "RUN")
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    torch_pin = next(d for d in pyproject["dependencies"] if d.startswith("torch=="))
    assert f'pip install --index-url "${{TORCH_INDEX_URL}}" {torch_pin}' in runs
    assert "requirements.lock > /tmp/constraints.txt" in runs
    assert "pip install -c /tmp/constraints.txt ." in runs
    assert "pip wheel --no-deps --no-build-isolation -w /wheels ." in runs
    assert "pip install --no-deps /wheels/flight_mlops-*.whl" in runs
    assert " -e " not in runs, "the image installs the built wheel, not an editable checkout"


def test_every_copied_path_exists_and_the_runtime_has_what_the_code_reads(instructions):
    copied = []
    for ins in instructions:
        if ins.op == "COPY" and "--from=" not in ins.args:
            parts = [a for a in ins.args.split() if not a.startswith("--")]
            copied += parts[:-1]
    for path in copied:
        assert (REPO_ROOT / path).exists(), path
    for needed in ("dagster_project", "feature_repo", "airflow_dags"):
        assert needed in copied, needed
    allowed = {
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    for path in copied:
        assert Path(path).as_posix().rstrip("/") in allowed, f"{path} is excluded from the context"


def test_default_command_is_the_serving_endpoint(instructions):
    cmd = next(i for i in reversed(instructions) if i.op == "CMD")
    assert '"dagster_project.serving"' in cmd.args
    assert '"0.0.0.0"' in cmd.args
    env = " ".join(i.args for i in instructions if i.op == "ENV")
    assert "AIRFLOW__CORE__DAGS_FOLDER=/app/airflow_dags" in env
