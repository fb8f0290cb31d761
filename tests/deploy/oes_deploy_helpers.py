"""Helpers for tests/deploy: a small Dockerfile parser, a .dockerignore matcher, manifest loading and the
server contract (routes, port, env names) the deployment files must agree with."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"
DEPLOY = ROOT / "deploy"
K8S_DIR = DEPLOY / "kubernetes"
KSERVE_DIR = DEPLOY / "kserve"
README = DEPLOY / "README.md"

# The server contract (issue text): every route on the single port, the port, the env configuration.
ROUTES = {
    "/v2/health/live",
    "/v2/health/ready",
    "/health",
    "/metrics",
    "/v1/embeddings",
    "/embed",
}
INFER_ROUTE = re.compile(r"^/v2/models/[^/]+/infer$")
SERVER_PORT = 8000
GRPC_PORT = 8001  # the server's --grpc-port default (Triton's)
READY_PATH = "/v2/health/ready"
LIVE_PATH = "/v2/health/live"
METRICS_PATH = "/metrics"
OES_ENV = {
    "OES_MODEL_REPOSITORY",
    "OES_MODELS",
    "OES_HOST",
    "OES_PORT",
    "OES_DEVICE",
    "OES_CUDA_OPTIONS",
    "OES_INTRA_OP_THREADS",
    "OES_MAX_BATCH_SIZE",
    "OES_MAX_BATCH_TOKENS",
    "OES_MAX_QUEUE_DELAY_US",
    "OES_MAX_QUEUE_SIZE",
    "OES_REQUEST_TIMEOUT_MS",
    "OES_API_KEY",
    "OES_SHUTDOWN_GRACE_S",
    "OES_LOG_LEVEL",
}
DEFAULT_SHUTDOWN_GRACE_S = 30
# Packages of the export install set that must never reach a runtime image.
EXPORT_ONLY = ("torch", "transformers", "sentence-transformers", "sentence_transformers", "optimum")


def is_server_route(path: str) -> bool:
    return path in ROUTES or bool(INFER_ROUTE.match(path))


# --------------------------------------------------------------------------------------------- Dockerfile


@dataclass
class Instr:
    line: int
    cmd: str  # upper-case instruction
    args: str  # everything after the instruction, continuations joined

    def script(self) -> str:
        """A RUN's shell script without its leading --mount/--network/... options."""
        return re.sub(r"^(?:--[a-z-]+=\S+\s+)+", "", self.args)

    def flags(self) -> dict[str, str]:
        """Leading --flag=value options (COPY --from=..., HEALTHCHECK --interval=...)."""
        out = {}
        for m in re.finditer(r"--([a-z-]+)=(\S+)", self.args.split(" CMD ")[0]):
            out[m.group(1)] = m.group(2)
        return out

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, None for shell form."""
        text = self.args
        if self.cmd == "HEALTHCHECK":
            text = text.split("CMD", 1)[1] if "CMD" in text else ""
        text = text.strip()
        if not text.startswith("["):
            return None
        try:
            val = json.loads(text)
        except json.JSONDecodeError:
            return None
        return val if isinstance(val, list) and all(isinstance(v, str) for v in val) else None


@dataclass
class Stage:
    index: int
    base: str
    name: str | None
    instructions: list[Instr] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instr]:
        return [i for i in self.instructions if i.cmd == cmd]

    def last(self, cmd: str) -> Instr | None:
        found = self.all(cmd)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for i in self.all("ENV"):
            for m in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', i.args):
                out[m.group(1)] = m.group(2).strip('"')
        return out


@dataclass
class Dockerfile:
    text: str
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def resolve(self, value: str) -> str:
        return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: self.global_args.get(m.group(1), m.group(0)), value)

    def chain(self, stage: Stage) -> list[Stage]:
        """The stage and the stages it is built FROM (for every value of the build args it references)."""
        out = [stage]
        base = stage.base
        names = {s.name for s in self.stages if s.name}
        if "$" in base:
            # `FROM runtime-${DEVICE}`: every earlier stage the variable can select. `FROM ${CUDA_IMAGE}`
            # (no literal prefix): an external image named by a build arg.
            prefix = base.split("$", 1)[0]
            parents = [
                s for s in self.stages if prefix and s.name and s.name.startswith(prefix) and s.index < stage.index
            ]
        else:
            parents = [s for s in self.stages if s.name == base] if base in names else []
        for p in parents:
            out.extend(self.chain(p))
        return out

    def image_env(self, device: str) -> dict[str, str]:
        """ENV of the final image for one DEVICE (its runtime base's ENV, then the final stage's)."""
        env: dict[str, str] = {}
        for stage in (self.stage(f"runtime-{device}"), self.final):
            env.update(stage.env())
        values = {**self.global_args, "DEVICE": device}
        return {k: re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), v) for k, v in env.items()}

    def comments(self) -> list[str]:
        return [ln.strip()[1:].strip() for ln in self.text.splitlines() if ln.strip().startswith("#")]


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continuation lines; drop comment lines and blank lines (as Docker does)."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comments inside a continued instruction are removed
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf.append(raw.rstrip()[:-1])
            continue
        buf.append(raw)
        out.append((start, " ".join(part.strip() for part in buf if part.strip())))
        buf = []
    if buf:
        out.append((start, " ".join(part.strip() for part in buf)))
    return out


def parse_dockerfile(text: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, content in logical_lines(text):
        cmd, _, args = content.partition(" ")
        cmd = cmd.upper()
        args = args.strip()
        if cmd == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?\s*$", args, re.IGNORECASE)
            assert m, f"cannot parse FROM at line {line}: {args}"
            stages.append(Stage(index=len(stages), base=m.group(1), name=m.group(2)))
            continue
        if not stages:
            if cmd == "ARG":
                key, _, default = args.partition("=")
                global_args[key.strip()] = default.strip().strip('"')
            continue
        stages[-1].instructions.append(Instr(line=line, cmd=cmd, args=args))
    return Dockerfile(text=text, global_args=global_args, stages=stages)


def load_dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text())


# ------------------------------------------------------------------------------------------ .dockerignore


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """moby/patternmatcher semantics: `**` any number of path segments, `*`/`?` within one segment."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i : i + 2] == "**":
                i += 2
                if pattern[i : i + 1] == "/":
                    i += 1
                    out += "(?:.*/)?"
                else:
                    out += ".*"
                continue
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.find("]", i)
            if j == -1:
                out += re.escape(c)
            else:
                cls = pattern[i + 1 : j]
                out += "[" + ("^" + cls[1:] if cls.startswith("!") else cls) + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile("^" + out + "$")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:].strip()
        line = line.strip("/") if line != "/" else line
        line = re.sub(r"/+", "/", line)
        if line.startswith("./"):
            line = line[2:]
        rules.append((negate, _pattern_regex(line)))
    return rules


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether a context path is left out: the last rule matching the path or one of its parents wins."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    ignored = False
    for negate, rx in rules:
        if any(rx.match(c) for c in candidates):
            ignored = not negate
    return ignored


# -------------------------------------------------------------------------------------------- manifests


def load_docs(directory: Path) -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


def one(docs: list[tuple[Path, dict]], kind: str) -> dict:
    found = [d for _, d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    return found[0]


def env_map(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def resolve_port(port: int | str, container: dict) -> int:
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"named port {port!r} is not declared by container {container.get('name')}")


def sleep_seconds(prestop: dict) -> float:
    """Seconds a preStop handler holds the pod before SIGTERM (exec `sleep N` or the native sleep action)."""
    if "sleep" in prestop:
        return float(prestop["sleep"]["seconds"])
    cmd = prestop.get("exec", {}).get("command", [])
    text = " ".join(cmd)
    m = re.search(r"\bsleep\s+(\d+(?:\.\d+)?)", text)
    assert m, f"preStop does not sleep: {prestop}"
    return float(m.group(1))


def arg_value(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


# ------------------------------------------------------------------------------------------- pyproject


def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


def pinned(requirements: list[str], name: str) -> str:
    for r in requirements:
        m = re.match(rf"^\s*{re.escape(name)}(\[[^\]]*\])?\s*==\s*([^\s;,]+)", r)
        if m:
            return m.group(2)
    raise AssertionError(f"{name} is not pinned with == in {requirements}")


def expected_cuda_major(ort_gpu_version: str) -> int:
    """CUDA major of the PyPI onnxruntime-gpu build: 1.19-1.26 -> 12, 1.27+ -> 13 (CUDA 12 deprecated)."""
    major, minor = (int(x) for x in ort_gpu_version.split(".")[:2])
    if (major, minor) >= (1, 27):
        return 13
    if (major, minor) >= (1, 19):
        return 12
    return 11
