"""The contracts say what the code does: the internal RPCs are listed in one place (the README)
and marked in the protos, matching the services' permissions."""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_services import PERMISSIONS
from vkp_lib.identity.permissions import HUB_SERVICE

ROOT = Path(__file__).resolve().parents[1]


def _internal_in_readme() -> dict[str, set[str]]:
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^  \| (\w+) \| ((?:`\w+`(?:, )?)+) \|$", readme, re.MULTILINE)
    return {service: set(re.findall(r"`(\w+)`", rpcs)) for service, rpcs in rows}


def test_the_internal_rpcs_listed_in_the_readme_are_those_only_hub_services_may_call() -> None:
    internal = {
        name: {rpc for rpc, rule in permissions.rules.items() if rule == HUB_SERVICE}
        for name, permissions in PERMISSIONS.items()
    }
    assert _internal_in_readme() == {name: rpcs for name, rpcs in internal.items() if rpcs}


def test_each_internal_rpc_says_so_first_in_its_contract() -> None:
    for service, rpcs in _internal_in_readme().items():
        proto = (ROOT / "protos" / "vkp" / service / "v1" / f"{service}.proto").read_text()
        for rpc in rpcs:
            comment = re.search(rf"((?:  //[^\n]*\n)+)  rpc {rpc}\(", proto)
            assert comment is not None, rpc
            assert comment.group(1).lstrip().startswith("// Internal."), rpc
