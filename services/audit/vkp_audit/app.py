"""How the runner starts the audit service."""

from __future__ import annotations

import grpc

from vkp.audit.v1 import audit_pb2, audit_pb2_grpc
from vkp_audit.log import AuditLog
from vkp_audit.permissions import PERMISSIONS
from vkp_audit.servicer import AuditServicer
from vkp_audit.settings import AuditSettings
from vkp_audit.signing import CheckpointSigner
from vkp_audit.store import AuditStore
from vkp_lib.db import Database
from vkp_lib.db.settings import DatabaseSettings
from vkp_lib.errors import StartupError
from vkp_lib.identity.setup import build_authentication
from vkp_lib.logging import get_logger
from vkp_lib.runner import Service
from vkp_lib.settings import AuthSettings, RuntimeSettings

FULL_NAME = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
log = get_logger("vkp.audit")


def _signer(
    audit: AuditSettings, database: DatabaseSettings, development: bool
) -> CheckpointSigner:
    key_file = audit.checkpoint_key_file
    if key_file is None:
        if not development:
            raise StartupError(
                "VKP_AUDIT_CHECKPOINT_KEY_FILE is required: the key that signs the audit "
                "checkpoints, kept outside the database"
            )
        key_file = database.data_dir / "audit-checkpoint-key.pem"
        if not key_file.exists():
            CheckpointSigner.create_file(key_file)
            log.info("development checkpoint key made", path=str(key_file))
    try:
        return CheckpointSigner.from_file(key_file)
    except (OSError, ValueError) as exc:
        raise StartupError(f"the checkpoint key {key_file} cannot be read ({exc})") from None


#: The settings `build_service` takes after the runtime's and authentication's, in order:
#: `vkp serve` validates them all before the service starts.
SETTINGS = (DatabaseSettings, AuditSettings)


def build_service(
    settings: RuntimeSettings,
    auth: AuthSettings,
    database: DatabaseSettings,
    audit: AuditSettings,
) -> Service[None]:
    authentication = build_authentication(PERMISSIONS, auth, settings)
    db = Database.from_url(database.url_for("audit"), name="audit")
    store = AuditStore(db)
    signer = _signer(audit, database, settings.development)
    audit_log = AuditLog(store, signer)

    async def open_store() -> None:
        await db.start()
        if database.migrate_on_start:
            await store.migrate()

    def register(server: grpc.aio.Server) -> None:
        audit_pb2_grpc.add_AuditServiceServicer_to_server(AuditServicer(audit_log), server)

    return Service(
        name="audit",
        full_name=FULL_NAME,
        register=lambda server, _: register(server),
        tasks=lambda _: [
            audit_log.appender.run,
            AuditLog.every(
                audit.checkpoint_interval_seconds, audit_log.checkpoint_all, "checkpoints"
            ),
            AuditLog.every(audit.verify_interval_seconds, audit_log.verify_all, "verification"),
        ],
        readiness=lambda _: [db.ready],
        authenticator=authentication.authenticator,
        on_start=[*authentication.on_start, open_store],
        on_close=[*authentication.on_close, db.close],
    )
