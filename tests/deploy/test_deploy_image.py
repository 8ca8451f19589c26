"""deploy/Dockerfile: one multi-stage, non-root, slim, pinned image with its data baked in."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

from deploy_support import DOCKERFILE, REPO, dockerfile, tool

APP_ROOT = PurePosixPath("/app")


def instructions(name: str, stage: int | None = None) -> list[dict[str, object]]:
    return [
        i
        for i in dockerfile()
        if i["instruction"] == name and (stage is None or i["stage"] == stage)
    ]


def final_stage() -> int:
    return max(int(str(i["stage"])) for i in dockerfile())


def global_args() -> dict[str, str]:
    args = {}
    for item in dockerfile():
        if item["stage"] == -1 and item["instruction"] == "ARG":
            name, _, default = str(item["value"]).partition("=")
            args[name] = default
    return args


def base_images() -> list[str]:
    args = global_args()
    images = []
    for item in instructions("FROM"):
        image = str(item["value"]).split()[0]
        images.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), image))
    return images


def stage_env(stage: int) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in instructions("ENV", stage):
        for word in shlex.split(str(item["value"])):
            name, sep, value = word.partition("=")
            if sep:
                env[name] = value
    return env


def copies(stage: int) -> list[tuple[str | None, list[str], str]]:
    """(from-stage or None, sources, destination) for each COPY of a stage."""
    result = []
    for item in instructions("COPY", stage):
        words = shlex.split(str(item["value"]))
        origin = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
        paths = [w for w in words if not w.startswith("--")]
        result.append((origin, paths[:-1], paths[-1]))
    return result


def resolve(path: str, workdir: str) -> PurePosixPath:
    return PurePosixPath(workdir) / path if not path.startswith("/") else PurePosixPath(path)


def test_is_multi_stage_from_one_pinned_slim_base() -> None:
    images = base_images()
    assert len(images) >= 2, "a build stage and a runtime stage"
    assert len(set(images)) == 1, f"both stages share one base image: {images}"
    name, _, tag = images[0].partition(":")
    assert name in {"python", "docker.io/library/python"}, images[0]
    assert "slim" in tag, f"slim base expected, got {images[0]}"
    assert re.match(r"\d+\.\d+\.\d+-", tag), f"pin the Python patch release: {images[0]}"


def test_runs_as_a_numeric_non_root_user() -> None:
    users = instructions("USER", final_stage())
    assert users, "the runtime stage sets USER"
    user = str(users[-1]["value"]).split(":")[0]
    assert user.isdigit(), "numeric uid, so Kubernetes' runAsNonRoot can verify it"
    assert int(user) != 0


def test_pip_installs_only_pinned_requirements() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    for requirement in pyproject["project"]["dependencies"]:
        assert "==" in requirement, f"unpinned dependency in pyproject.toml: {requirement}"
    installs = [str(i["value"]) for i in instructions("RUN") if "pip install" in str(i["value"])]
    assert installs
    for run in installs:
        for command in re.split(r"&&|;", run):
            words = shlex.split(command)
            if words[:2] != ["pip", "install"]:
                continue
            arguments = words[2:]
            for position, word in enumerate(arguments):
                if word.startswith("-") or word == ".":
                    continue
                if position and arguments[position - 1] == "-r":
                    assert "--require-hashes" in arguments, command
                    assert_locked(REPO / word)
                    continue
                assert re.fullmatch(r"[A-Za-z0-9._\[\],-]+==[\w.]+", word), (
                    f"unpinned pip install argument {word!r} in: {command.strip()}"
                )


def assert_locked(lock: Path) -> None:
    """Every requirement of ``lock`` pinned with == and carrying at least one hash."""
    requirements = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text().split("\n", 1)[1])
    assert len(requirements) > 50, lock
    for requirement in requirements:
        name = requirement.split()[0]
        assert re.fullmatch(r"[A-Za-z0-9._\[\],-]+==[\w.]+", name), f"{lock.name}: {name}"
        assert "--hash=sha256:" in requirement, f"{lock.name}: {name} has no hash"


def test_the_lock_files_pin_what_pyproject_names() -> None:
    """`make lock` was run after the last change to pyproject.toml's dependencies."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = set(project["dependencies"])
    development = runtime | set(project["optional-dependencies"]["dev"])
    for lock, wanted in (("requirements.lock", runtime), ("requirements-dev.lock", development)):
        pinned = {
            line.split()[0].lower()
            for line in (REPO / lock).read_text().splitlines()
            if re.match(r"[A-Za-z0-9]", line)
        }
        for requirement in wanted:
            bare = re.sub(r"\[[^\]]*\]", "", requirement).lower()
            assert bare.replace("_", "-") in {p.replace("_", "-") for p in pinned}, (
                f"{lock} does not pin {requirement}: run make lock"
            )
    assert not any(
        line.startswith("pytest==")
        for line in (REPO / "requirements.lock").read_text().splitlines()
    )


def test_provisions_lexicon_and_model_at_build_time_into_the_code_defaults() -> None:
    from services.classifier.adapters.local import MODEL_FILE, SHIPPED_DATA
    from services.classifier.settings import DEFAULT_MODEL_DIR
    from services.sentiment.lexicon import VADER_RESOURCE
    from services.sentiment.settings import DEFAULT_NLTK_DATA

    provision = next(
        (i for i in instructions("RUN") if "incidentflow provision" in str(i["value"])), None
    )
    assert provision is not None, "the image runs `incidentflow provision` at build time"
    stage = int(str(provision["stage"]))
    before = [
        i for i in dockerfile() if i["stage"] == stage and i["startline"] < provision["startline"]
    ]
    workdir = next(str(i["value"]) for i in reversed(before) if i["instruction"] == "WORKDIR")
    assert PurePosixPath(workdir) == APP_ROOT

    # The code's default paths, relative to the repository root, land under the app root.
    lexicon = APP_ROOT / DEFAULT_NLTK_DATA.relative_to(REPO)
    model = APP_ROOT / DEFAULT_MODEL_DIR.relative_to(REPO)
    data = SHIPPED_DATA.relative_to(REPO)
    env = stage_env(stage)
    assert env.get("PYTHONPATH") == str(APP_ROOT), "the code runs from the app root"
    assert env.get("SENTIMENT_NLTK_DATA", str(lexicon)) == str(lexicon)
    assert env.get("CLASSIFIER_MODEL_DIR", str(model)) == str(model)
    copied_data = [
        src
        for origin, sources, dest in copies(stage)
        if origin is None
        for src in sources
        if str(data).startswith(src.rstrip("/")) and resolve(dest, workdir) == APP_ROOT / src
    ]
    assert copied_data, f"{data.parts[0]}/ is copied to {APP_ROOT} before provisioning"
    assert f"{lexicon}/{VADER_RESOURCE}" in str(provision["value"])
    assert f"{model}/{MODEL_FILE}" in str(provision["value"])

    # The runtime stage carries the provisioned files and runs with the same app root.
    runtime = final_stage()
    carried = [resolve(dest, "/") for origin, _, dest in copies(runtime) if origin is not None]
    for path in (lexicon, model, APP_ROOT / data):
        assert any(path == c or c in path.parents for c in carried), f"{path} not in the image"
    assert stage_env(runtime).get("PYTHONPATH") == str(APP_ROOT)
    workdirs = instructions("WORKDIR", runtime)
    assert workdirs and PurePosixPath(str(workdirs[-1]["value"])) == APP_ROOT


def test_the_classifier_training_set_exists_for_the_build() -> None:
    from services.classifier.adapters.local import SHIPPED_DATA

    assert SHIPPED_DATA.is_file(), (
        f"{SHIPPED_DATA.relative_to(REPO)} is missing: `incidentflow provision` in the image "
        "build trains the local model from it"
    )


def test_healthcheck_probes_the_service_port() -> None:
    checks = instructions("HEALTHCHECK", final_stage())
    assert len(checks) == 1
    check = str(checks[0]["value"])
    assert "CMD" in check and "NONE" not in check.split()
    assert "incidentflow.healthcheck" in check, check
    source = (REPO / "incidentflow" / "healthcheck.py").read_text()
    assert "/health/ready" in source and "SERVICE_PORT = 8000" in source


def test_default_command_is_a_service_on_port_8000() -> None:
    cmd = instructions("CMD", final_stage())
    assert cmd, "the image has a default command"
    argv = json.loads(str(cmd[-1]["value"]))
    assert argv[0] == "uvicorn" and argv[2:] == ["--host", "0.0.0.0", "--port", "8000"], argv
    exposed = instructions("EXPOSE", final_stage())
    assert exposed and str(exposed[-1]["value"]).split() == ["8000"]


def test_build_context_keeps_what_the_build_copies() -> None:
    ignore = REPO / ".dockerignore"
    assert ignore.is_file(), "the build context is the repository root: .dockerignore there"
    patterns = [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns), "keep the ignore file simple"

    def ignored(path: str) -> bool:
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        return any(
            fnmatch.fnmatch(prefix, p.strip("/")) or fnmatch.fnmatch(prefix, f"**/{p}")
            for p in patterns
            for prefix in prefixes
        )

    for stage in range(final_stage() + 1):
        for origin, sources, _ in copies(stage):
            if origin is not None:
                continue
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert not ignored(source), f"COPY {source}: excluded by .dockerignore"
    for heavy in (".git", ".venv", "var"):
        assert ignored(heavy), f"{heavy} should stay out of the build context"


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_only_smtp_server_in_a_service_is_the_mail_intake() -> None:
    """aiosmtpd is a runtime dependency for ingest's mail intake alone, which stores what it
    receives and relays nothing (docs/adr/0052); the dev inbox that writes every mail to disk
    (incidentflow_tools/mailbox.py) is started by `make up`, never by a deploy file."""
    users = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "services").rglob("*.py")
        if re.search(r"^\s*(from|import) aiosmtpd", path.read_text(), re.MULTILINE)
    )
    assert users == ["services/ingest/intake/smtp.py"]
    deploy_files = [*(REPO / "deploy").rglob("*.yaml"), *(REPO / "deploy").rglob("Dockerfile*")]
    assert deploy_files
    assert not [f for f in deploy_files if "incidentflow mailbox" in f.read_text()]
