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
