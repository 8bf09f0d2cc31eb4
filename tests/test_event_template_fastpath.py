"""The compiled template checks (event_templates._accepts) never accept what jsonschema
refuses, and do accept the ordinary valid attributes (else they would only cost time)."""
from __future__ import annotations

import random
from typing import Any

import pytest

from idnode.core import event_templates
from idnode.core.errors import TemplateViolation

ODD: list[Any] = [0, -1, 1, 1.0, 1.5, -0.5, 99.9, 100, 100.5, 101, 10**20, 1e300,
                  float("nan"), True, False, None, "", "x", "稻" * 201, "y" * 501, [], [1],
                  ["a"], {}, {"a": 1}]


def _values(schema: dict[str, Any], rng: random.Random) -> Any:
    pool = list(ODD)
    pool += schema.get("enum", [])
    if "minimum" in schema:
        pool += [schema["minimum"], schema["minimum"] + 0.25]
    if "maximum" in schema:
        pool += [schema["maximum"], schema["maximum"] - 1]
    return rng.choice(pool)


@pytest.mark.parametrize("kind", event_templates.KINDS)
def test_the_fast_check_accepts_only_what_jsonschema_accepts(kind: str) -> None:
    accepts = event_templates._accepts(kind)
    assert accepts is not None  # every shipped template compiles
    validator = event_templates._validator(kind)
    props = event_templates.schemas()[kind].get("properties", {})
    rng = random.Random(kind)
    agreed = valid = 0
    for _ in range(3000):
        attrs = {name: _values(sub, rng) for name, sub in props.items() if rng.random() < 0.6}
        if rng.random() < 0.2:
            attrs[rng.choice(["extra", "note", "x"])] = rng.choice(ODD)
        fast, slow = accepts(attrs), validator.is_valid(attrs)
        assert slow or not fast, attrs
        agreed += fast and slow
        valid += slow
        if slow and not fast:  # only where jsonschema is wider: 1.0 an integer, NaN in range
            assert any(isinstance(v, float) and (v != v or v.is_integer())
                       for v in attrs.values()), attrs
    assert agreed > valid / 2  # it answers for the common valid case


def test_check_still_names_every_violation_through_jsonschema() -> None:
    with pytest.raises(TemplateViolation):
        event_templates.check("harvest", {"moisture": 101}, field="events[0].attrs")
    with pytest.raises(TemplateViolation):
        event_templates.check("recall", {}, field="events[0].attrs")
    event_templates.check("harvest", {"moisture": 14.5, "quantity_kg": 6000},
                          field="events[0].attrs")
