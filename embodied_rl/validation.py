"""Range checks of settings (agent hyperparameters, trainer and IDM settings), so that a bad value is one clear
error naming every offending key before anything is built or run; `flatten` gives a nested config's dotted keys."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

# "> 0", ">= 1", "[0, 1]", "(0, 1]", ... optionally preceded by "None or " when None is allowed (meaning "off")
_THRESHOLD = re.compile(r"(>=?)\s*(-?[\d.]+)")
_INTERVAL = re.compile(r"([\[(])\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*([\])])")


def in_range(value: Any, spec: str) -> bool:
    """Whether `value` satisfies `spec`: a threshold (`"> 0"`, `">= 1"`) or an interval in the usual notation
    (`"[0, 1]"`, `"(0, 1]"`, `"[0, 1)"`), optionally prefixed `"None or "`. Anything that is not a real number
    (a string, a bool, NaN) is out of every range."""
    if spec.startswith("None or "):
        if value is None:
            return True
        spec = spec.removeprefix("None or ")
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return False
    if match := _THRESHOLD.fullmatch(spec):
        op, bound = match[1], float(match[2])
        return value >= bound if op == ">=" else value > bound
    if match := _INTERVAL.fullmatch(spec):
        low, high = float(match[2]), float(match[3])
        above = value >= low if match[1] == "[" else value > low
        below = value <= high if match[4] == "]" else value < high
        return above and below
    raise ValueError(f"unknown range {spec!r}")


def check_ranges(what: str, values: Mapping[str, Any], ranges: Mapping[str, str], prefix: str = "") -> None:
    """One ValueError naming every key of `ranges` whose value in `values` is out of its range (see `in_range`),
    as `<prefix><key>=<value> (must be <range>)`, in the order of `values`; e.g. `invalid trainer settings:
    trainer.batch_size=0 (must be > 0)`. `what` names the kind of settings in the message."""
    bad = []
    for key in sorted(ranges, key=list(values).index):  # in the order of `values` (a signature's, a config's)
        spec = ranges[key]
        if not in_range(values[key], spec):
            body = spec.removeprefix("None or ")
            phrase = body if body.startswith(">") else f"in {body}"
            phrase = phrase if body == spec else f"None or {phrase}"
            bad.append(f"{prefix}{key}={values[key]} (must be {phrase})")
    if bad:
        raise ValueError(f"invalid {what}: {', '.join(bad)}")


def _is_int(value: Any) -> bool:
    """An integer, or a float with a whole value (`1e6` in a YAML file or an override is read as 1000000.0)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_int_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and all(_is_int(x) for x in value)


# Annotations `check_types` understands (others are not checked), what fits each, and its name in messages.
# `X | None` also allows None.
_TYPE_CHECKS = {
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int": (_is_int, "an integer"),
    "float": (lambda v: isinstance(v, int | float) and not isinstance(v, bool), "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "Sequence[int]": (_is_int_sequence, "a list of integers"),
    "tuple[int, ...]": (_is_int_sequence, "a list of integers"),
}


def check_types(
    what: str, values: Mapping[str, Any], annotations: Mapping[str, Any], prefix: str = ""
) -> dict[str, Any]:
    """One ValueError naming every value of `values` whose annotation in `annotations` (type hints as strings,
    as `from __future__ import annotations` leaves them, or types) it does not fit: a flag given as `no` (which
    would count as true), a count given as 2.5, a list given as one number. Annotations other than bool, int,
    float, str and Sequence[int] / tuple[int, ...] (each optionally `| None`) are not checked.

    Returns a copy of `values` with whole-number floats of integer settings made ints (1000000.0 -> 1000000)."""
    bad, checked = [], dict(values)
    for key, value in values.items():
        hint = annotations.get(key)
        hint = getattr(hint, "__name__", hint) if isinstance(hint, type) else hint
        if not isinstance(hint, str):
            continue
        optional, base = hint.endswith(" | None"), hint.removesuffix(" | None")
        check = _TYPE_CHECKS.get(base)
        if check is None or (optional and value is None):
            continue
        if not check[0](value):
            bad.append(f"{prefix}{key}={value!r} (must be {check[1]}{' or None' if optional else ''})")
        elif base == "int":
            checked[key] = int(value)
        elif base in ("Sequence[int]", "tuple[int, ...]"):
            checked[key] = type(value)(int(x) for x in value) if isinstance(value, list | tuple) else value
    if bad:
        raise ValueError(f"invalid {what}: {', '.join(bad)}")
    return checked


def check_field_types(config: Any, what: str, prefix: str = "") -> None:
    """`check_types` on the fields of a dataclass instance, by their annotations; whole-number floats of integer
    fields become ints."""
    checked = check_types(what, vars(config), {f.name: f.type for f in dataclasses.fields(config)}, prefix)
    for key, value in checked.items():
        setattr(config, key, value)


def settings_from_mapping(cls: type, values: Mapping[str, Any] | None, what: str) -> Any:
    """The settings dataclass `cls` from a dict or OmegaConf node (missing keys take the defaults); an unknown key
    is one ValueError, `unknown <what> config keys [...]; known: [...]` (the known ones in field order)."""
    values = dict(values or {})
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} config keys {unknown}; known: {known}")
    return cls(**values)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and empty dicts are leaves."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
