"""The guide's hook tables are the bases' HOOKS tables: a hook added, removed or redocumented in
harness/policy.py or harness/modern.py without the guide (or the reverse) fails here."""
import re
from pathlib import Path

import pytest

from harness.modern import Modern
from harness.policy import Policy, hook_table

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "adding-a-policy.md"


@pytest.mark.parametrize("base", [Policy, Modern])
def test_guide_hook_table_is_generated_from_hooks(base):
    text = GUIDE.read_text()
    m = re.search(rf"<!-- hooks:{base.__name__} -->\n(.*?)<!-- /hooks -->", text, re.S)
    assert m, f"no hook table for {base.__name__} in the guide"
    assert m.group(1) == hook_table(base.HOOKS), (
        f"regenerate: python -c 'from harness.policy import hook_table; "
        f"print(hook_table({base.__module__}.{base.__name__}.HOOKS))'")


def test_every_hook_is_a_method_of_its_base():
    for base in (Policy, Modern):
        for name, hook in base.HOOKS.items():
            assert callable(getattr(base, name)), name


def test_2_4_extension_points_are_declared_hooks():
    """A method a 2.4 policy inherits from another policy and overrides is an extension point:
    it must be a row of Policy.HOOKS, so that discovery checks it and the guide lists it."""
    from harness import registry
    from harness.policy import Base
    found, _errors = registry.discover(registry.POLICY_DIR)
    undeclared = []
    for name, cls in found.items():
        if registry.base_of(cls) is not Policy:
            continue
        for meth, fn in vars(cls).items():
            if not callable(fn) or meth.startswith("__"):
                continue
            if any(meth in c.__dict__ for c in cls.__mro__[1:] if c not in (Policy, Base)) \
                    and meth not in Policy.HOOKS:
                undeclared.append(f"{name}.{meth}")
    assert undeclared == []
