"""The contracts say what the code does: the internal RPCs are listed in one place (the README)
and marked in the protos, matching the services' permissions; and the ErrorInfo reasons listed
above each service are exactly those it can raise — its own (domain/reasons.py, raised only
through that enum), and those of the libraries it uses and of its requests' field rules."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import Descriptor

from buf.validate import validate_pb2
from tests.conftest import SERVICES
from tests.test_contracts import CONTRACTS
from tests.test_services import PERMISSIONS
from vkp.common.v1 import rules_pb2
from vkp.registry.v1 import registry_pb2
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


# -- ErrorInfo reasons: documented above each service == what the service can raise -------------

#: Reasons the libraries raise for a service, by the library module that raises them: a service
#: that imports the module can answer them. (A test below checks each is in its module's text.)
LIBRARY_REASONS = {
    "vkp_lib.interceptors": {"MALFORMED_REQUEST"},
    "vkp_lib.validation": {"INVALID_FORMAT"},
    "vkp_lib.paging": {"INVALID_PAGE_TOKEN"},
    "vkp_lib.registry_client": {"REGISTRY_UNAVAILABLE", "REGISTRY_BEHIND"},
    "vkp_lib.denials": {"NOT_ACTIVE", "NOT_ALLOWED", "NO_ACCESS", "UNKNOWN_ORGANIZATION"},
}
#: Every service goes through the runner's interceptors and the contract's field rules.
EVERY_SERVICE = ("vkp_lib.interceptors", "vkp_lib.validation")
#: The field rules whose violations carry a reason of their own (vkp_lib.validation).
RULE_REASONS = {
    "national_id": "INVALID_NATIONAL_ID",
    "organization_number": "INVALID_ORGANIZATION_NUMBER",
    "municipality_number": "INVALID_MUNICIPALITY_NUMBER",
}
#: Status code names, which the comments list the reasons under.
CODES = {code.name for code in grpc.StatusCode}
#: Reasons of authentication and of the runner itself, which the comments name as a group ("the
#: reasons of the hub's authentication") or not at all (NOT_IMPLEMENTED, INTERNAL).
NOT_LISTED = {
    "NOT_IMPLEMENTED",
    "INTERNAL",
    "MISSING_SCOPE",
    "SERVICE_IDENTITY_REQUIRED",
    "NO_ACCESS_RULE",
}


def _documented(service: str) -> set[str]:
    proto = (ROOT / "protos" / "vkp" / service / "v1" / f"{service}.proto").read_text()
    block = proto.split("// ErrorInfo reasons", 1)[1].split("\nservice ", 1)[0]
    return set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", block)) - CODES - NOT_LISTED


def _rule_reasons(message: Descriptor, seen: set[str]) -> set[str]:
    if message.full_name in seen:
        return set()
    seen.add(message.full_name)
    found: set[str] = set()
    for field in message.fields:
        rules = field.GetOptions().Extensions[validate_pb2.field]
        for strings in (rules.string, rules.repeated.items.string):
            for rule, reason in RULE_REASONS.items():
                if strings.Extensions[getattr(rules_pb2, rule)]:
                    found.add(reason)
        if field.message_type is not None:
            found |= _rule_reasons(field.message_type, seen)
    return found


def _own_reasons(service: str) -> set[str]:
    module = importlib.import_module(f"vkp_{service}.domain.reasons")
    return {reason.value for reason in module.Reason}


def _sources(service: str) -> dict[Path, str]:
    package = ROOT / "services" / service / f"vkp_{service}"
    return {
        path: path.read_text() for path in package.rglob("*.py") if "migrations" not in path.parts
    }


def _imports(text: str, module: str) -> bool:
    """Whether `text` imports `module` (`import a.b`, `from a.b import x`, `from a import b`)."""
    package, _, name = module.rpartition(".")
    return bool(
        re.search(rf"^\s*(?:from|import) {re.escape(module)}\b", text, re.MULTILINE)
        or re.search(rf"^\s*from {re.escape(package)} import [^\n]*\b{name}\b", text, re.MULTILINE)
    )


def _raisable(service: str) -> set[str]:
    text = "\n".join(_sources(service).values())
    used = {m for m in LIBRARY_REASONS if _imports(text, m)}
    modules = {*used, *EVERY_SERVICE}
    library = set().union(*(LIBRARY_REASONS[m] for m in modules))
    contract = CONTRACTS[service].DESCRIPTOR.services_by_name[f"{service.capitalize()}Service"]
    rules: set[str] = set()
    for method in contract.methods:
        rules |= _rule_reasons(method.input_type, set())
    return library | rules | _own_reasons(service)


@pytest.mark.parametrize("service", SERVICES)
def test_the_reasons_above_each_service_are_exactly_those_it_can_raise(service: str) -> None:
    documented = _documented(service)
    raisable = _raisable(service)
    listed_never_raised, raised_not_listed = documented - raisable, raisable - documented
    assert sorted(listed_never_raised) == []
    assert sorted(raised_not_listed) == []


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_raises_its_own_reasons_only_through_its_reason_enum(service: str) -> None:
    sources = _sources(service)
    bare = [
        f"{path.name}: {m.group(0)}"
        for path, text in sources.items()
        for m in re.finditer(
            r"\b(?:InvalidArgument|NotFound|AlreadyExists|PermissionDenied|FailedPrecondition|"
            r"Aborted|ResourceExhausted|Unavailable|DeadlineExceeded|OutOfRange)\(\s*\"",
            text,
        )
    ]
    assert bare == []
    uses = "\n".join(t for p, t in sources.items() if p.name != "reasons.py")
    unused = [r for r in _own_reasons(service) if not re.search(rf"\bReason\.{r}\b", uses)]
    assert unused == []


def test_each_library_reason_is_raised_by_the_module_it_is_listed_under() -> None:
    missing = {
        module: sorted(
            r
            for r in reasons
            if f'"{r}"' not in Path(importlib.import_module(module).__file__ or "").read_text()
            and module != "vkp_lib.denials"
        )
        for module, reasons in LIBRARY_REASONS.items()
    }
    assert all(not found for found in missing.values()), missing
    denial_names = {n.removeprefix("DENIAL_REASON_") for n in registry_pb2.DenialReason.keys()}  # noqa: SIM118 - an enum wrapper, not a dict
    assert LIBRARY_REASONS["vkp_lib.denials"] == denial_names - {"UNSPECIFIED"}
