"""Configuration handling for the samplers: the ``config`` dict, ``from_config``,
``save_pretrained`` / ``from_pretrained``, in the file format of diffusers' ``ConfigMixin``.

A scheduler's configuration is the set of its constructor arguments. It is stored as a
:class:`FrozenDict` (key and attribute access, read-only) and written to
``scheduler_config.json`` with the same keys, ``_class_name`` and ``_diffusers_version`` that
diffusers writes, so a file saved by genfast loads in diffusers and vice versa.

Mirrors ``diffusers.configuration_utils.ConfigMixin`` and ``diffusers.SchedulerMixin``
(diffusers 0.42); written without importing diffusers.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import sys
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

logger = logging.getLogger("genfast.samplers")

SCHEDULER_CONFIG_NAME = "scheduler_config.json"

# The diffusers release whose scheduler API and file format these classes mirror; written as
# ``_diffusers_version`` so that diffusers reads our files as its own.
DIFFUSERS_API_VERSION = "0.42.1"

# Hub download arguments that ``load_config`` consumes (the rest go to ``from_config``).
_HUB_KWARGS = (
    "cache_dir", "force_download", "proxies", "token", "local_files_only", "revision", "local_dir",
    "user_agent", "mirror", "local_dir_use_symlinks",
)


class UnknownArgumentError(ValueError, TypeError):
    """An argument name the constructor does not accept.

    A ``ValueError`` (genfast's rule for bad options) that is also a ``TypeError``, which is what
    Python, and so diffusers, raises for an unexpected keyword argument.
    """


class FrozenDict(OrderedDict):
    """A read-only ordered dict whose keys are also readable as attributes.

    ``config["beta_schedule"]`` and ``config.beta_schedule`` give the same value. Mirrors
    ``diffusers.configuration_utils.FrozenDict`` (a diffusers ``from_config`` accepts it, since
    it is a ``dict``).

    Raises:
        TypeError: on any attempt to modify it (item or attribute assignment, ``del``, ``pop``,
            ``update``, ``setdefault``). Build a new one instead:
            ``FrozenDict({**config, "clip_sample": False})``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        for key, value in OrderedDict(*args, **kwargs).items():
            OrderedDict.__setitem__(self, key, value)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no key or attribute {name!r}") from None

    def _frozen(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is read-only; build a new one instead")

    __setitem__ = __delitem__ = __setattr__ = __delattr__ = _frozen
    pop = popitem = update = setdefault = clear = move_to_end = _frozen

    def __reduce__(self):
        # OrderedDict's pickling refills the dict item by item, which __setitem__ forbids.
        return (type(self), (list(self.items()),))

    def __copy__(self):
        return type(self)(self)

    def __deepcopy__(self, memo):
        import copy

        return type(self)(copy.deepcopy(list(self.items()), memo))


def register_to_config(init):
    """Decorator for a scheduler's ``__init__``: records every constructor argument in the config.

    Arguments that start with ``_`` (``_class_name``, ``_diffusers_version`` when a saved config
    is splatted into the constructor) go into the config and are not passed to ``__init__``.
    Names listed in ``cls.ignore_for_config`` are passed to ``__init__`` but not recorded.
    The names of the arguments left at their defaults are recorded under ``_use_default_values``
    (as diffusers does), so that ``from_config`` of another class uses that class's defaults.

    Raises:
        UnknownArgumentError: an argument name that ``__init__`` does not accept.

    Mirrors ``diffusers.configuration_utils.register_to_config``.
    """
    signature = inspect.signature(init)
    params = [
        p for p in list(signature.parameters.values())[1:]
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    names = [p.name for p in params]

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        private = {k: v for k, v in kwargs.items() if k.startswith("_")}
        public = {k: v for k, v in kwargs.items() if not k.startswith("_")}
        unknown = sorted(set(public) - set(names))
        if unknown:
            raise UnknownArgumentError(
                f"{type(self).__name__}: unknown argument(s) {unknown}; accepted arguments are {names}"
            )
        try:
            bound = signature.bind(self, *args, **public)
        except TypeError as exc:
            raise UnknownArgumentError(f"{type(self).__name__}: {exc}") from None
        ignore = set(getattr(self, "ignore_for_config", ()))
        values = {}
        for p in params:
            if p.name not in ignore:
                values[p.name] = bound.arguments.get(p.name, p.default)
        defaults_used = [k for k in values if k not in bound.arguments]
        if defaults_used:
            values["_use_default_values"] = defaults_used
        self.register_to_config(**{**private, **values})
        init(self, *args, **public)

    return wrapper


def _json_value(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


class SchedulerConfigMixin:
    """Config storage, loading and saving shared by the genfast schedulers.

    Class attributes:
        config_name: the file name, ``"scheduler_config.json"`` (as diffusers).
        ignore_for_config: constructor arguments kept out of the config (``backend``).
        has_compatibles: ``from_config`` quietly drops the arguments of compatible classes.
        _compatibles: names of the genfast classes that can be built from this class's config.

    Mirrors ``diffusers.ConfigMixin`` and ``diffusers.SchedulerMixin``.
    """

    config_name = SCHEDULER_CONFIG_NAME
    ignore_for_config: list = []
    has_compatibles = True
    _compatibles: list = []

    # ----------------------------------------------------------------------------- config
    def register_to_config(self, **kwargs) -> None:
        """Add or replace config entries (builds a new :class:`FrozenDict`).

        Args:
            **kwargs: config keys and values.

        Mirrors ``diffusers.ConfigMixin.register_to_config``.
        """
        kwargs.pop("kwargs", None)
        current = self.__dict__.get("_internal_dict")
        merged = {**current, **kwargs} if current is not None else kwargs
        self._internal_dict = FrozenDict(merged)

    @property
    def config(self) -> FrozenDict:
        """The constructor arguments, as a read-only dict with attribute access
        (``scheduler.config.beta_schedule == scheduler.config["beta_schedule"]``).

        Mirrors ``diffusers.ConfigMixin.config``.
        """
        return self._internal_dict

    def __getattr__(self, name: str) -> Any:
        # diffusers still lets ``scheduler.num_train_timesteps`` read the config, with a
        # deprecation warning; keep that working for drop-in use.
        internal = self.__dict__.get("_internal_dict")
        if internal is not None and name in internal:
            warnings.warn(
                f"Accessing config attribute `{name}` directly via '{type(self).__name__}' object "
                f"attribute is deprecated (as in diffusers); use 'scheduler.config.{name}' instead.",
                FutureWarning,
                stacklevel=2,
            )
            return internal[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    # ----------------------------------------------------------------------------- saving
    def to_json_string(self) -> str:
        """The config as the JSON text of ``scheduler_config.json``.

        Adds ``_class_name`` (this class's name, which is also the diffusers class name),
        ``_diffusers_version`` (the diffusers API version mirrored) and ``_genfast_version``
        (diffusers ignores private keys); drops ``_use_default_values``.

        Returns:
            str: indented JSON with sorted keys and a final newline (diffusers' layout).

        Mirrors ``diffusers.ConfigMixin.to_json_string``.
        """
        import genfast

        config = {k: _json_value(v) for k, v in dict(self.config).items()}
        config["_class_name"] = type(self).__name__
        config["_diffusers_version"] = DIFFUSERS_API_VERSION
        config["_genfast_version"] = genfast.__version__
        config.pop("_use_default_values", None)
        config.pop("_ignore_files", None)
        return json.dumps(config, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: Union[str, os.PathLike]) -> None:
        """Write :meth:`to_json_string` to ``json_file_path``.

        Args:
            json_file_path: the file to write.
        """
        with open(json_file_path, "w", encoding="utf-8") as writer:
            writer.write(self.to_json_string())

    def save_pretrained(self, save_directory: Union[str, os.PathLike], push_to_hub: bool = False,
                        **kwargs) -> None:
        """Write ``scheduler_config.json`` into ``save_directory`` (created if missing).

        Args:
            save_directory: a directory (not a file).
            push_to_hub: not supported by genfast; must be False.
            **kwargs: accepted for signature compatibility and ignored.

        Raises:
            ValueError: ``save_directory`` is an existing file.
            NotImplementedError: ``push_to_hub=True``.

        Mirrors ``diffusers.SchedulerMixin.save_pretrained``.
        """
        if push_to_hub:
            raise NotImplementedError(
                f"{type(self).__name__}.save_pretrained: push_to_hub is not supported by genfast; "
                "save locally and upload with huggingface_hub"
            )
        if os.path.isfile(save_directory):
            raise ValueError(
                f"{type(self).__name__}.save_pretrained: save_directory ({save_directory}) should be "
                "a directory, not a file"
            )
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, self.config_name)
        self.to_json_file(path)
        logger.info("Configuration saved in %s", path)

    save_config = save_pretrained

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def load_config(cls, pretrained_model_name_or_path: Union[str, os.PathLike],
                    return_unused_kwargs: bool = False, subfolder: Optional[str] = None, **kwargs):
        """Read a ``scheduler_config.json``.

        Args:
            pretrained_model_name_or_path: the JSON file itself, a directory holding it (or
                holding ``subfolder/scheduler_config.json``), or a Hugging Face Hub repo id
                (downloaded with ``huggingface_hub`` when it is installed).
            return_unused_kwargs: also return the kwargs this method did not consume.
            subfolder: the folder inside the directory or repo (e.g. ``"scheduler"``).
            **kwargs: Hub download options (``cache_dir``, ``revision``, ``token``,
                ``local_files_only``, ...); the others are returned when
                ``return_unused_kwargs`` is True.

        Returns:
            dict, or ``(dict, unused_kwargs)``.

        Raises:
            OSError: no config file found, or it is not valid JSON.

        Mirrors ``diffusers.ConfigMixin.load_config``.
        """
        hub_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _HUB_KWARGS}
        path = str(pretrained_model_name_or_path)
        if os.path.isfile(path):
            config_file = path
        elif os.path.isdir(path):
            candidates = []
            if subfolder is not None:
                candidates.append(os.path.join(path, subfolder, cls.config_name))
            candidates.append(os.path.join(path, cls.config_name))
            config_file = next((c for c in candidates if os.path.isfile(c)), None)
            if config_file is None:
                raise OSError(f"Error no file named {cls.config_name} found in directory {path}.")
        else:
            config_file = cls._download_config(path, subfolder, hub_kwargs)
        try:
            with open(config_file, encoding="utf-8") as reader:
                config = json.load(reader)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise OSError(
                f"It looks like the config file at '{config_file}' is not a valid JSON file."
            ) from exc
        if not isinstance(config, dict):
            raise OSError(f"The config file at '{config_file}' does not hold a JSON object.")
        return (config, kwargs) if return_unused_kwargs else config

    @classmethod
    def _download_config(cls, repo_id: str, subfolder: Optional[str], hub_kwargs: dict) -> str:
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            raise OSError(
                f"{repo_id!r} is not a local file or directory, and huggingface_hub is not installed "
                "to download it from the Hub."
            ) from None
        for unused in ("user_agent", "mirror", "local_dir_use_symlinks"):
            hub_kwargs.pop(unused, None)
        try:
            return hf_hub_download(repo_id, filename=cls.config_name, subfolder=subfolder, **hub_kwargs)
        except Exception as exc:
            raise OSError(
                f"Can't load {cls.config_name} for {repo_id!r}: it is not a local file or directory "
                f"and the Hub download failed ({type(exc).__name__}: {exc})."
            ) from exc

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike, None] = None,
                        subfolder: Optional[str] = None, return_unused_kwargs: bool = False, **kwargs):
        """Build a scheduler from a saved ``scheduler_config.json``.

        Args:
            pretrained_model_name_or_path: a directory written by ``save_pretrained`` (by genfast
                or diffusers), the JSON file, or a Hub repo id (see :meth:`load_config`).
            subfolder: e.g. ``"scheduler"`` for a saved pipeline.
            return_unused_kwargs: also return the kwargs that were not used.
            **kwargs: Hub options for :meth:`load_config`, then config overrides and ``backend``
                for :meth:`from_config`.

        Returns:
            The scheduler, or ``(scheduler, unused_kwargs)``.

        Raises:
            OSError: no readable config found.
            ValueError: an invalid option in the file or in the overrides.

        Mirrors ``diffusers.SchedulerMixin.from_pretrained``.
        """
        if pretrained_model_name_or_path is None:
            pretrained_model_name_or_path = kwargs.pop("pretrained_model_name_or_path", None)
        if pretrained_model_name_or_path is None:
            raise ValueError(f"{cls.__name__}.from_pretrained: pretrained_model_name_or_path is required")
        config, kwargs = cls.load_config(
            pretrained_model_name_or_path, return_unused_kwargs=True, subfolder=subfolder, **kwargs
        )
        return cls.from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    @classmethod
    def _init_keys(cls, klass=None) -> set:
        klass = cls if klass is None else klass
        keys = set(inspect.signature(klass.__init__).parameters) - {"self", "kwargs"}
        return keys

    @classmethod
    def from_config(cls, config: Union[dict, FrozenDict, str, os.PathLike, None] = None,
                    return_unused_kwargs: bool = False, **kwargs):
        """Build a scheduler from a config dict, such as another scheduler's ``.config``.

        This is how diffusers users swap schedulers::

            pipe.scheduler = genfast.samplers.DDIMScheduler.from_config(pipe.scheduler.config)

        Keys that this class does not take are handled as diffusers does: the arguments of
        compatible schedulers (and, when diffusers is imported, of the config's own
        ``_class_name``) are kept quietly in the new config, for a later swap back; any other key
        is kept too and logged as a warning on the ``genfast.samplers`` logger. Keys listed in
        ``_use_default_values`` are dropped, so that this class's defaults apply.

        Args:
            config: a dict or FrozenDict (a diffusers config works). A path is accepted, as in
                diffusers, but deprecated: use :meth:`from_pretrained`.
            return_unused_kwargs: also return the kwargs and keys that were not used.
            **kwargs: overrides of config entries, and the genfast-only ``backend``.

        Returns:
            The scheduler, or ``(scheduler, unused_kwargs)``.

        Raises:
            ValueError: no config given, or an invalid option value.

        Mirrors ``diffusers.ConfigMixin.from_config``.
        """
        if config is None:
            config = kwargs.pop("pretrained_model_name_or_path", None)
        if config is None:
            raise ValueError(
                f"{cls.__name__}.from_config: pass a config dict as the first positional argument"
            )
        if not isinstance(config, dict):
            warnings.warn(
                f"Passing a path to {cls.__name__}.from_config is deprecated (as in diffusers); "
                f"use {cls.__name__}.from_pretrained(...) instead.",
                FutureWarning,
                stacklevel=2,
            )
            config, kwargs = cls.load_config(config, return_unused_kwargs=True, **kwargs)

        init_dict, unused, hidden = cls._extract_init_dict(config, kwargs)
        scheduler = cls(**init_dict)
        if "_class_name" in hidden:
            hidden["_class_name"] = cls.__name__
        scheduler.register_to_config(**hidden)
        unused = {**unused, **hidden}
        return (scheduler, unused) if return_unused_kwargs else scheduler

    @classmethod
    def _extract_init_dict(cls, config: dict, kwargs: dict):
        used_defaults = set(config.get("_use_default_values", ()))
        config = {k: v for k, v in config.items() if k not in used_defaults and k != "_use_default_values"}
        original = dict(config)
        kwargs = dict(kwargs)

        expected = cls._init_keys() - set(cls.ignore_for_config)
        quiet = set()
        for name in cls._compatibles:
            other = _GENFAST_CLASSES.get(name)
            if other is not None:
                quiet |= cls._init_keys(other)
        orig_name = config.get("_class_name", cls.__name__)
        if not isinstance(orig_name, (str, list, tuple)):
            raise ValueError(
                f"{cls.__name__}.from_config: _class_name must be a string, got {type(orig_name).__name__}"
            )
        if isinstance(orig_name, str):
            quiet |= _diffusers_quiet_keys(cls.__name__, orig_name)
        public = {k: v for k, v in config.items() if not k.startswith("_") and k != "quantization_config"}

        init_dict = {}
        for key in expected:
            if key in kwargs:
                init_dict[key] = kwargs.pop(key)
                public.pop(key, None)
            elif key in public:
                init_dict[key] = public.pop(key)
        # Genfast-only constructor arguments that are kept out of the config.
        for key in cls.ignore_for_config:
            if key in kwargs:
                init_dict[key] = kwargs.pop(key)

        unexpected = {k: v for k, v in public.items() if k not in quiet}
        if unexpected:
            logger.warning(
                "The config attributes %s were passed to %s, but are not expected and will be ignored. "
                "Please verify your %s configuration file.", unexpected, cls.__name__, cls.config_name,
            )
        unused = {**public, **kwargs}
        hidden = {k: v for k, v in original.items() if k not in init_dict}
        return init_dict, unused, hidden

    @property
    def compatibles(self) -> list:
        """The genfast scheduler classes that can be built from this scheduler's config
        (``from_config``), this class included.

        Mirrors ``diffusers.SchedulerMixin.compatibles`` (which lists diffusers classes).
        """
        return self._get_compatibles()

    @classmethod
    def _get_compatibles(cls) -> list:
        names = list(dict.fromkeys([cls.__name__, *cls._compatibles]))
        return [_GENFAST_CLASSES[n] for n in names if n in _GENFAST_CLASSES]


# Filled by the scheduler modules as they are defined: class name -> class.
_GENFAST_CLASSES: dict = {}


def _diffusers_quiet_keys(name: str, orig_name: str) -> frozenset:
    """Constructor arguments that diffusers' ``from_config`` drops without a warning: those of
    the diffusers classes compatible with ``name`` and of the config's own class ``orig_name``.
    Only consulted when the user has imported diffusers (genfast never imports it)."""
    if "diffusers" not in sys.modules:
        return frozenset()
    return _diffusers_quiet_keys_cached(name, orig_name)


@functools.cache
def _diffusers_quiet_keys_cached(name: str, orig_name: str) -> frozenset:
    mod = sys.modules["diffusers"]
    keys: set = set()

    def add(class_name):
        try:
            klass = getattr(mod, class_name, None)
            if inspect.isclass(klass):
                keys.update(inspect.signature(klass.__init__).parameters)
        except Exception:  # an optional dependency of diffusers is missing
            pass

    try:
        compatibles = list(getattr(getattr(mod, name, None), "_compatibles", []) or [])
    except Exception:
        compatibles = []
    for class_name in [*compatibles, orig_name]:
        add(class_name)
    return frozenset(keys - {"self", "kwargs"})
