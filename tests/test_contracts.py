"""The contracts: their field rules (protovalidate), the breaking-change check, and the client
defaults beside them."""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor

from vkp.audit.v1 import audit_pb2
from vkp.common.v1 import common_pb2, event_pb2
from vkp.ingest.v1 import ingest_pb2
from vkp.journaling.v1 import journaling_pb2
from vkp.lookup.v1 import lookup_pb2
from vkp.registry.v1 import registry_pb2, registry_pb2_grpc
from vkp_lib.clients import insecure_channel, service_config
from vkp_lib.errors import InvalidArgument
from vkp_lib.national_id import is_valid_organization_number, synthetic_organization_number
from vkp_lib.rpc import Context
from vkp_lib.testing.events import PAYLOAD_KINDS, sample_event
from vkp_lib.validation import field_violations, validate
from vkp_registry.servicer import RegistryServicer

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS: dict[str, ModuleType] = {
    "registry": registry_pb2,
    "ingest": ingest_pb2,
    "journaling": journaling_pb2,
    "lookup": lookup_pb2,
    "audit": audit_pb2,
}
Mutation = Callable[[event_pb2.Event], None]


def service_of(name: str) -> ServiceDescriptor:
    descriptor: ServiceDescriptor = CONTRACTS[name].DESCRIPTOR.services_by_name[
        f"{name.capitalize()}Service"
    ]
    return descriptor


def violations_of(event: event_pb2.Event) -> dict[str, str]:
    return {v.field: v.reason for v in field_violations(event)}


@pytest.mark.parametrize("kind", PAYLOAD_KINDS)
def test_a_well_formed_event_of_each_payload_kind_passes_the_rules(kind: str) -> None:
    validate(sample_event(kind))


def _set(path: str, value: object) -> Mutation:
    def mutate(event: event_pb2.Event) -> None:
        *parents, leaf = path.split(".")
        target = event
        for part in parents:
            target = getattr(target, part)
        setattr(target, leaf, value)

    return mutate


MALFORMED: dict[str, tuple[str, Mutation, str]] = {
    # name: (payload kind, what is wrong, the field the violation names)
    "unknown dispense event code": (
        "medication_dispense",
        _set("medication_dispense.event_code", "4.1"),
        "medication_dispense.event_code",
    ),
    "medication text over its length": (
        "medication_dispense",
        _set("medication_dispense.medication_text", "x" * 1001),
        "medication_dispense.medication_text",
    ),
    "dispense code as a dispenser alert": (
        "dispenser_alert",
        _set("dispenser_alert.alert_code", "1.1.1"),
        "dispenser_alert.alert_code",
    ),
    "supervision mode out of the code system": (
        "supervision",
        _set("supervision.mode_code", "5"),
        "supervision.mode_code",
    ),
    "supervision observation with a dispenser code": (
        "supervision",
        lambda e: setattr(e.supervision.observations[0], "alert_code", "1.1"),
        "supervision.observations[0].alert_code",
    ),
    "supervision period without a start": (
        "supervision",
        lambda e: e.supervision.period.ClearField("start_time"),
        "supervision.period",
    ),
    "alarm step without an alarm id": (
        "alarm_step",
        _set("alarm_step.alarm_id", ""),
        "alarm_step.alarm_id",
    ),
    "alarm step with a space in its alarm id": (
        "alarm_step",
        _set("alarm_step.alarm_id", "alarm 1"),
        "alarm_step.alarm_id",
    ),
    "alarm step with an unknown triage": (
        "alarm_step",
        _set("alarm_step.triage_code", "PURPLE"),
        "alarm_step.triage_code",
    ),
    "alarm step with a timeline code VKP does not have": (
        "alarm_step",
        _set("alarm_step.timeline_code", "2"),
        "alarm_step.timeline_code",
    ),
    "measurement with a code that is not LOINC": (
        "home_measurement",
        _set("home_measurement.loinc_code", "8867"),
        "home_measurement.loinc_code",
    ),
    "measurement that is not a number": (
        "home_measurement",
        _set("home_measurement.value", math.nan),
        "home_measurement.value",
    ),
    "measurement without a unit": (
        "home_measurement",
        _set("home_measurement.unit", ""),
        "home_measurement.unit",
    ),
}


@pytest.mark.parametrize(("kind", "mutate", "field"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_event_is_refused_naming_the_field(
    kind: str, mutate: Mutation, field: str
) -> None:
    event = sample_event(kind)
    mutate(event)
    assert violations_of(event) == {field: "INVALID_FORMAT"}


@pytest.mark.parametrize(
    "value", ["0285009721", "028500972190", "0285009721X", " 2850097219", "", "٠٢٨٥٠٠٩٧٢١٩"]
)
def test_a_national_id_not_of_eleven_digits_is_refused_as_invalid_national_id(value: str) -> None:
    event = sample_event("medication_dispense")
    event.patient.value = value
    with pytest.raises(InvalidArgument) as caught:
        validate(event)
    assert caught.value.reason == "INVALID_NATIONAL_ID"
    assert [(v.field, v.reason) for v in caught.value.violations] == [
        ("patient.value", "INVALID_NATIONAL_ID")
    ]


def test_an_organisation_number_not_of_nine_digits_is_refused() -> None:
    event = sample_event("dispenser_alert")
    event.municipality = "31222954"
    assert violations_of(event) == {"municipality": "INVALID_ORGANIZATION_NUMBER"}


def test_the_contracts_organisation_number_rule_is_the_mod_11_check() -> None:
    """The predefined rule computes the check digit in CEL; it agrees with the registry's
    `is_valid_organization_number` on every number tried."""
    rng = random.Random(11)
    event = sample_event("dispenser_alert")
    numbers = [f"{rng.randrange(10**9):09d}" for _ in range(3000)]
    numbers += [synthetic_organization_number(rng) for _ in range(300)]
    disagreements = []
    for number in numbers:
        event.municipality = number
        if (not violations_of(event)) != is_valid_organization_number(number):
            disagreements.append(number)
    assert disagreements == []
    assert sum(is_valid_organization_number(n) for n in numbers) > 500  # both kinds were tried


def test_an_organisation_number_with_a_wrong_check_digit_names_the_field() -> None:
    event = sample_event("dispenser_alert")
    event.municipality = event.municipality[:8] + str((int(event.municipality[8]) + 1) % 10)
    with pytest.raises(InvalidArgument) as caught:
        validate(event)
    assert caught.value.reason == "INVALID_ORGANIZATION_NUMBER"
    assert [(v.field, v.description) for v in caught.value.violations] == [
        ("municipality", "the check digit (mod-11) does not match")
    ]


def test_an_event_without_a_payload_is_refused() -> None:
    event = sample_event("home_measurement")
    event.ClearField("home_measurement")
    assert violations_of(event) == {"payload": "INVALID_FORMAT"}


@pytest.mark.parametrize(
    ("kind", "service_code"),
    [
        ("medication_dispense", common_pb2.SERVICE_CODE_DT),
        ("supervision", common_pb2.SERVICE_CODE_MD),
        ("alarm_step", common_pb2.SERVICE_CODE_DHO),
        ("home_measurement", common_pb2.SERVICE_CODE_TA),
    ],
)
def test_a_service_code_that_does_not_fit_the_payload_is_refused(
    kind: str, service_code: common_pb2.ServiceCode.ValueType
) -> None:
    event = sample_event(kind)
    event.service_code = service_code
    violations = field_violations(event)
    assert [v.field for v in violations] == [""]
    assert "service_code does not fit the payload" in violations[0].description


def test_a_device_is_required_but_for_an_alarm_step() -> None:
    event = sample_event("supervision")
    event.ClearField("device")
    assert [v.description for v in field_violations(event)] == [
        "device is required for every payload but an alarm step"
    ]


def test_several_broken_rules_are_reported_together_as_invalid_format() -> None:
    event = sample_event("medication_dispense")
    event.patient.value = "1"
    event.event_id = ""
    with pytest.raises(InvalidArgument) as caught:
        validate(event)
    assert caught.value.reason == "INVALID_FORMAT"
    assert {v.field for v in caught.value.violations} == {"patient.value", "event_id"}


def test_a_batch_is_checked_for_its_size_but_leaves_each_event_to_its_own_result() -> None:
    bad = sample_event("alarm_step")
    bad.alarm_step.alarm_id = ""
    assert field_violations(ingest_pb2.SubmitEventsRequest(events=[bad])) == []
    too_many = ingest_pb2.SubmitEventsRequest(events=[sample_event("alarm_step")] * 501)
    assert [v.field for v in field_violations(too_many)] == ["events"]
    assert [v.field for v in field_violations(ingest_pb2.SubmitEventsRequest())] == ["events"]


def test_paths_into_repeated_fields_name_the_item() -> None:
    request = journaling_pb2.AcknowledgeRequest(
        municipality="312229544",
        acknowledgements=[
            journaling_pb2.Acknowledgement(
                entry="entries/a1", outcome=journaling_pb2.ACKNOWLEDGEMENT_OUTCOME_JOURNALED
            ),
            journaling_pb2.Acknowledgement(
                entry="a2", outcome=journaling_pb2.ACKNOWLEDGEMENT_OUTCOME_JOURNALED
            ),
        ],
    )
    assert [v.field for v in field_violations(request)] == ["acknowledgements[1].entry"]


def test_an_update_mask_may_name_only_the_fields_an_administrator_changes() -> None:
    request = registry_pb2.UpdateMunicipalityRequest(
        municipality=registry_pb2.Municipality(
            name="municipalities/312229544",
            organization_number="312229544",
            municipality_number="0301",
            display_name="Oslo kommune",
        )
    )
    request.update_mask.paths.append("state")
    assert field_violations(request) == []
    request.update_mask.paths.append("organization_number")
    assert [v.field for v in field_violations(request)] == ["update_mask"]


def test_a_partner_profile_maps_each_service_code_once() -> None:
    mapping = registry_pb2.ServiceTypeMapping(
        service_code=common_pb2.SERVICE_CODE_MD, service_type_patterns=["27"]
    )
    profile = registry_pb2.PartnerProfile(mappings=[mapping])
    assert field_violations(profile) == []
    profile.mappings.append(mapping)
    assert [v.description for v in field_violations(profile)] == [
        "each service code may be mapped once"
    ]


def test_an_optional_request_id_must_be_a_uuid_when_given() -> None:
    request = registry_pb2.CreateVendorRequest(
        vendor=registry_pb2.Vendor(organization_number="312229544", display_name="Leverandør AS")
    )
    assert field_violations(request) == []
    request.request_id = "retry-1"
    assert [v.field for v in field_violations(request)] == ["request_id"]


def _workspace_copy(tmp_path: Path) -> Path:
    for part in ("protos", "third_party"):
        shutil.copytree(ROOT / part, tmp_path / part)
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    return tmp_path


def _buf_breaking(workspace: Path) -> subprocess.CompletedProcess[str]:
    buf = Path(sys.executable).parent / "buf"
    return subprocess.run(
        [str(buf), "breaking", "--against", "protos/baseline.binpb"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_buf_breaking_passes_on_the_contracts_as_committed(tmp_path: Path) -> None:
    result = _buf_breaking(_workspace_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_catches_a_field_removed_from_a_contract(tmp_path: Path) -> None:
    workspace = _workspace_copy(tmp_path)
    proto = workspace / "protos/vkp/ingest/v1/ingest.proto"
    text = proto.read_text()
    removed = "  // True when this is the receipt of an earlier submission of the same event.\n"
    removed += "  bool replayed = 5;\n"
    assert removed in text
    proto.write_text(text.replace(removed, ""))
    result = _buf_breaking(workspace)
    assert result.returncode != 0
    assert 'Previously present field "5" with name "replayed"' in result.stdout


RETRIED_LEVELS = {
    descriptor_pb2.MethodOptions.IDEMPOTENT,
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
}


@pytest.mark.parametrize("name", CONTRACTS)
def test_the_service_config_retries_exactly_the_methods_a_repeat_cannot_harm(name: str) -> None:
    service = service_of(name)
    config = service_config(service.full_name)
    named: dict[str, dict[str, object]] = {}
    for method_config in config["methodConfig"]:
        for entry in method_config["name"]:
            assert entry["service"] == service.full_name
            assert entry["method"] not in named, f"{entry['method']} configured twice"
            named[entry["method"]] = method_config
    assert set(named) == {m.name for m in service.methods}
    for method in service.methods:
        options = descriptor_pb2.MethodOptions()
        options.ParseFromString(method.GetOptions().SerializeToString())
        policy = named[method.name].get("retryPolicy")
        should_retry = options.idempotency_level in RETRIED_LEVELS and not method.server_streaming
        assert (policy is not None) == should_retry, method.name
        if isinstance(policy, dict):
            assert policy["retryableStatusCodes"] == ["UNAVAILABLE"], method.name
        # Every call but a long-lived stream has a deadline.
        assert ("timeout" in named[method.name]) != method.server_streaming, method.name


def test_the_service_configs_beside_the_protos_are_the_ones_the_clients_load() -> None:
    for name, module in CONTRACTS.items():
        beside = ROOT / f"protos/vkp/{name}/v1/{name}_grpc_service_config.json"
        full_name = module.DESCRIPTOR.services_by_name[f"{name.capitalize()}Service"].full_name
        assert json.loads(beside.read_text()) == service_config(full_name)


class FlakyRegistry(RegistryServicer):
    """Answers UNAVAILABLE to the first `failures` calls of every method, then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: dict[str, int] = {}

    async def _flaky(self, method: str, context: Context) -> None:
        self.calls[method] = self.calls.get(method, 0) + 1
        if self.calls[method] <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")

    async def GetVendor(
        self, request: registry_pb2.GetVendorRequest, context: Context
    ) -> registry_pb2.GetVendorResponse:
        await self._flaky("GetVendor", context)
        return registry_pb2.GetVendorResponse(vendor=registry_pb2.Vendor(name=request.name))

    async def CreateVendor(
        self, request: registry_pb2.CreateVendorRequest, context: Context
    ) -> registry_pb2.CreateVendorResponse:
        await self._flaky("CreateVendor", context)
        return registry_pb2.CreateVendorResponse(vendor=request.vendor)


async def test_a_client_retries_an_idempotent_method_on_unavailable_but_not_a_create() -> None:
    flaky = FlakyRegistry(failures=2)
    server = grpc.aio.server()
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(flaky, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        target = f"127.0.0.1:{port}"
        async with insecure_channel(target, "vkp.registry.v1.RegistryService") as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            got = await stub.GetVendor(registry_pb2.GetVendorRequest(name="vendors/312229544"))
            assert got.vendor.name == "vendors/312229544"
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CreateVendor(registry_pb2.CreateVendorRequest())
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        assert flaky.calls == {"GetVendor": 3, "CreateVendor": 1}
    finally:
        await server.stop(None)
