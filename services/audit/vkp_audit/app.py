"""How the runner starts the audit service: its settings, its dependencies (built and closed in
one lifespan), the servicer, and the background tasks (the appender's group commit, the periodic
checkpoints and verification)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from vkp.audit.v1 import audit_pb2, audit_pb2_grpc
from vkp_audit.permissions import PERMISSIONS
from vkp_audit.service import AuditService
from vkp_audit.servicer import AuditServicer
from vkp_audit.settings import AuditSettings
from vkp_audit.signing import CheckpointSigner
from vkp_audit.store import AuditStore
from vkp_lib.db import Database
from vkp_lib.db.settings import DatabaseSettings
from vkp_lib.errors import StartupError
from vkp_lib.identity.setup import build_authentication
from vkp_lib.logging import get_logger
from vkp_lib.runner import BackgroundTask, ReadinessCheck, Service
from vkp_lib.settings import AuthSettings, RuntimeSettings

FULL_NAME = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
log = get_logger("vkp.audit")

#: The settings `build_service` takes after the runtime's and authentication's, in order:
#: `vkp serve` validates them all before the service starts.
SETTINGS = (DatabaseSettings, AuditSettings)


@dataclass(frozen=True)
class Dependencies:
    db: Database
    store: AuditStore
    signer: CheckpointSigner
    service: AuditService


def _key_file(audit: AuditSettings, database: DatabaseSettings, development: bool) -> Path:
    """The checkpoint key's file: the setting, or in development mode one in the data folder."""
    if audit.checkpoint_key_file is not None:
        return audit.checkpoint_key_file
    if not development:
        raise StartupError(
            "VKP_AUDIT_CHECKPOINT_KEY_FILE is required: the key that signs the audit "
            "checkpoints, kept outside the database"
        )
    return database.data_dir / "audit-checkpoint-key.pem"


def _signer(key_file: Path, *, make: bool) -> CheckpointSigner:
    """The checkpoint signer of the key in `key_file`, made first when `make` and missing."""
    if make and not key_file.exists():
        CheckpointSigner.create_file(key_file)
        log.info("development checkpoint key made", path=str(key_file))
    try:
        return CheckpointSigner.from_file(key_file)
    except (OSError, ValueError) as exc:
        raise StartupError(f"the checkpoint key {key_file} cannot be read ({exc})") from None


def build_service(
    settings: RuntimeSettings,
    auth: AuthSettings,
    database: DatabaseSettings,
    audit: AuditSettings,
) -> Service[Dependencies]:
    authentication = build_authentication(PERMISSIONS, auth, settings)
    # Refused before anything starts: a deployment without its checkpoint key.
    key_file = _key_file(audit, database, settings.development)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[Dependencies]:
        signer = _signer(key_file, make=audit.checkpoint_key_file is None)
        db = Database.from_url(database.url_for("audit"), name="audit")
        await db.start()
        try:
            store = AuditStore(db)
            if database.migrate_on_start:
                await store.migrate()
            service = AuditService(
                store,
                signer,
                checkpoint_seconds=audit.checkpoint_interval_seconds,
                verify_seconds=audit.verify_interval_seconds,
            )
            yield Dependencies(db, store, signer, service)
        finally:
            await db.close()

    def register(server: grpc.aio.Server, deps: Dependencies) -> None:
        audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(deps.service), server)

    def tasks(deps: Dependencies) -> Sequence[BackgroundTask]:
        return [deps.service.appender.run, deps.service.checkpoints, deps.service.verification]

    def readiness(deps: Dependencies) -> Sequence[ReadinessCheck]:
        return [deps.db.ready]

    return Service(
        name="audit",
        full_name=FULL_NAME,
        lifespan=lifespan,
        register=register,
        tasks=tasks,
        readiness=readiness,
        authenticator=authentication.authenticator,
        on_start=authentication.on_start,
        on_close=authentication.on_close,
    )
