"""The models being served, loaded eagerly at start-up and at run time through the repository API."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from . import repository as repo
from .config import ServerConfig
from .errors import ErrorKind, ServerError
from .layout import cpus_per_model
from .loading import ModelEvents, load_model
from .model import ServedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelState:
    """One model as the registry knows it: loaded (`ready`, its version) or not (why: `reason`)."""

    name: str
    version: int | None  # None unless loaded
    ready: bool
    reason: str


def _check_name(name: str) -> None:
    try:
        repo.validate_model_name(name)
    except repo.RepositoryError as exc:
        raise ServerError(ErrorKind.INVALID_INPUT, str(exc), param="model") from None


class ModelRegistry:
    def __init__(self, config: ServerConfig, events: ModelEvents) -> None:
        self._config = config
        self._events = events
        self._models: dict[str, ServedModel] = {}
        self._unavailable: dict[str, str] = {}
        self._retiring: set[ServedModel] = set()  # replaced by a reload, finishing what they had queued
        self._lock = asyncio.Lock()

    @property
    def repository(self):
        return self._config.model_repository

    def __iter__(self):
        return iter(list(self._models.values()))

    def __len__(self) -> int:
        return len(self._models)

    def is_serving(self, model: ServedModel) -> bool:
        """Whether `model` is the instance its name routes to (not one a reload replaced, nor unloaded)."""
        return self._models.get(model.info.name) is model

    def names(self) -> list[str]:
        return sorted(self._models)

    def get(self, name: str, version: str | None = None) -> ServedModel:
        model = self._models.get(name)
        if model is None:
            raise ServerError(ErrorKind.NOT_FOUND, f"Request for unknown model: '{name}' is not found", param="model",
                              code="model_not_found")
        if version not in (None, "", str(model.info.version)):
            raise ServerError(ErrorKind.NOT_FOUND, f"Request for unknown model: '{name}' version {version} is not found",
                              param="model", code="model_not_found")
        return model

    def named_or_default(self, name: str | None) -> ServedModel:
        """The model a request names, else the default one (for APIs whose model field is optional)."""
        return self.get(name) if name else self.default()

    def default(self) -> ServedModel:
        if not self._models:
            raise ServerError(ErrorKind.UNAVAILABLE, "no model is loaded", retry_after_s=5)
        return self._models[sorted(self._models)[0]]

    def _load_blocking(self, name: str, loaded: set[str]) -> ServedModel:
        """Load `name`; its CPU instances get the CPUs divided among `loaded` plus itself (see layout.py)."""
        entry = repo.find_model(self._config.model_repository, name)
        cpu_share = cpus_per_model(len(loaded | {name}))
        return load_model(entry, self._config, self._events, cpu_share)

    def load_startup_models(self) -> None:
        """Load every model (or the configured ones) before the server is ready. Blocking; raises on any failure."""
        names = list(self._config.models) or repo.model_names(self._config.model_repository)
        if not names:
            raise repo.RepositoryError(f"no model found in repository {self._config.model_repository}")
        for name in names:
            self._models[name] = self._load_blocking(name, set(names))

    async def load(self, name: str) -> None:
        """Load or reload `name` off the event loop; the old instance keeps serving until the new one is ready,
        then drains everything it had accepted (in the background: the load returns when the new one serves)."""
        _check_name(name)
        async with self._lock:
            loop = asyncio.get_running_loop()
            try:
                model = await loop.run_in_executor(None, self._load_blocking, name, set(self._models))
            except repo.ModelNotFound as exc:
                raise ServerError(ErrorKind.NOT_FOUND, str(exc)) from exc
            except Exception as exc:
                log.exception("loading model %s failed", name)
                self._unavailable[name] = f"load failed: {type(exc).__name__}"
                raise ServerError(ErrorKind.INVALID_INPUT,
                                  f"failed to load model '{name}'; the server log has the cause") from exc
            old = self._models.get(name)
            self._models[name] = model
            self._unavailable.pop(name, None)
        if old is not None:
            old.retire(model)
            self._retiring.add(old)
            task = asyncio.ensure_future(old.stop(None))
            task.add_done_callback(lambda _: self._retiring.discard(old))

    async def unload(self, name: str) -> None:
        """Stop routing to `name`; requests already queued on it finish first."""
        _check_name(name)
        async with self._lock:
            model = self._models.pop(name, None)
            if model is None:
                raise ServerError(ErrorKind.NOT_FOUND, f"failed to unload '{name}', no version is available")
            self._unavailable[name] = "unloaded"
        await model.stop(self._config.shutdown_grace_s)

    def entries(self) -> list[ModelState]:
        """Every model the repository holds or this server loaded or tried to load, by name."""
        try:
            names = set(repo.model_names(self._config.model_repository))
        except repo.RepositoryError:
            names = set()
        states = []
        for name in sorted(names | set(self._models) | set(self._unavailable)):
            model = self._models.get(name)
            if model is not None:
                states.append(ModelState(name, model.info.version, True, ""))
            else:
                states.append(ModelState(name, None, False, self._unavailable.get(name, "unloaded")))
        return states

    async def stop_all(self) -> None:
        """Stop every instance, serving or still draining after a reload, within the shutdown grace."""
        models, self._models = [*self._models.values(), *self._retiring], {}
        await asyncio.gather(*(m.stop(self._config.shutdown_grace_s) for m in models))
