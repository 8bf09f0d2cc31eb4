"""The Admin gRPC service: decode, call core tenancy, encode."""
from __future__ import annotations

from datetime import timedelta

import grpc
import orjson

from idnode.api.grpc.base import Servicer
from idnode.api.grpc.convert import ts
from idnode.core.audit import Actor
from idnode.core.auth import Authenticator
from idnode.core.errors import InvalidArgument
from idnode.core.tenancy import IssuedKey, Tenancy, expires
from idnode.metrics import NodeMetrics
from idnode.model.rows import CredentialRow, EnterpriseRow
from idnode.v1 import admin_pb2 as pb
from idnode.v1 import admin_pb2_grpc as pb_grpc


def _enterprise(row: EnterpriseRow) -> pb.Enterprise:
    return pb.Enterprise(id=row.id, name=row.name, uscc=row.uscc, contact=row.contact,
                         prefixes=row.prefixes, created_at=ts(row.created_at))


def _credential(row: CredentialRow) -> pb.Credential:
    out = pb.Credential(key_id=row.key_id, role=row.role, enterprise_id=row.enterprise_id or 0,
                        scopes=row.scopes, prefixes=row.prefixes or (), label=row.label,
                        has_certificate=row.has_certificate, created_at=ts(row.created_at),
                        handle_admin=row.handle_admin or "")
    if row.expires_at is not None:
        out.expires_at.CopyFrom(ts(row.expires_at))
    if row.revoked_at is not None:
        out.revoked_at.CopyFrom(ts(row.revoked_at))
    return out


def _issued(issued: IssuedKey) -> pb.IssueKeyResponse:
    return pb.IssueKeyResponse(credential=_credential(issued.credential), api_key=issued.api_key)


class AdminService(Servicer, pb_grpc.AdminServicer):
    def __init__(self, tenancy: Tenancy, authenticator: Authenticator,
                 metrics: NodeMetrics) -> None:
        super().__init__(authenticator, metrics)
        self.tenancy = tenancy

    async def CreateEnterprise(self, request: pb.CreateEnterpriseRequest,
                               context: grpc.aio.ServicerContext) -> pb.Enterprise:
        async def run(actor: Actor) -> pb.Enterprise:
            return _enterprise(await self.tenancy.create_enterprise(
                actor, request.name, request.uscc, request.contact))
        return await self.call("CreateEnterprise", context, run)

    async def ListEnterprises(self, request: pb.ListEnterprisesRequest,
                              context: grpc.aio.ServicerContext) -> pb.ListEnterprisesResponse:
        async def run(actor: Actor) -> pb.ListEnterprisesResponse:
            rows = await self.tenancy.enterprises(actor)
            return pb.ListEnterprisesResponse(enterprises=[_enterprise(r) for r in rows])
        return await self.call("ListEnterprises", context, run)

    async def AllocatePrefix(self, request: pb.AllocatePrefixRequest,
                             context: grpc.aio.ServicerContext) -> pb.AllocatePrefixResponse:
        async def run(actor: Actor) -> pb.AllocatePrefixResponse:
            prefix = await self.tenancy.allocate_prefix(actor, request.enterprise_id,
                                                        request.prefix)
            return pb.AllocatePrefixResponse(prefix=prefix)
        return await self.call("AllocatePrefix", context, run)

    async def SetPrefixStatus(self, request: pb.SetPrefixStatusRequest,
                              context: grpc.aio.ServicerContext) -> pb.SetPrefixStatusResponse:
        async def run(actor: Actor) -> pb.SetPrefixStatusResponse:
            await self.tenancy.set_prefix_status(actor, request.prefix, request.status,
                                                 request.refuse_resolution)
            return pb.SetPrefixStatusResponse()
        return await self.call("SetPrefixStatus", context, run)

    async def IssueKey(self, request: pb.IssueKeyRequest,
                       context: grpc.aio.ServicerContext) -> pb.IssueKeyResponse:
        async def run(actor: Actor) -> pb.IssueKeyResponse:
            return _issued(await self.tenancy.issue_key(
                actor, request.enterprise_id or None, list(request.scopes), list(request.prefixes),
                request.label, expires(request.expires_in_days), request.client_certificate_pem,
                request.handle_admin, request.public_key))
        return await self.call("IssueKey", context, run)

    async def RotateKey(self, request: pb.RotateKeyRequest,
                        context: grpc.aio.ServicerContext) -> pb.IssueKeyResponse:
        async def run(actor: Actor) -> pb.IssueKeyResponse:
            grace = (timedelta(seconds=request.grace_seconds) if request.grace_seconds
                     else timedelta(hours=24))
            return _issued(await self.tenancy.rotate_key(actor, request.key_id, grace))
        return await self.call("RotateKey", context, run)

    async def RevokeKey(self, request: pb.RevokeKeyRequest,
                        context: grpc.aio.ServicerContext) -> pb.RevokeKeyResponse:
        async def run(actor: Actor) -> pb.RevokeKeyResponse:
            await self.tenancy.revoke_key(actor, request.key_id)
            return pb.RevokeKeyResponse()
        return await self.call("RevokeKey", context, run)

    async def ListKeys(self, request: pb.ListKeysRequest,
                       context: grpc.aio.ServicerContext) -> pb.ListKeysResponse:
        async def run(actor: Actor) -> pb.ListKeysResponse:
            rows = await self.tenancy.keys(actor, request.enterprise_id or None)
            return pb.ListKeysResponse(credentials=[_credential(r) for r in rows])
        return await self.call("ListKeys", context, run)

    async def SetTemplate(self, request: pb.SetTemplateRequest,
                          context: grpc.aio.ServicerContext) -> pb.SetTemplateResponse:
        async def run(actor: Actor) -> pb.SetTemplateResponse:
            schema = None
            if request.schema_json:
                try:
                    schema = orjson.loads(request.schema_json)
                except orjson.JSONDecodeError as exc:
                    raise InvalidArgument(f"schema_json is not JSON: {exc}",
                                          field="schema_json") from None
            await self.tenancy.set_template(actor, request.prefix, request.name, schema)
            return pb.SetTemplateResponse()
        return await self.call("SetTemplate", context, run)

    async def GetTemplate(self, request: pb.GetTemplateRequest,
                          context: grpc.aio.ServicerContext) -> pb.Template:
        async def run(actor: Actor) -> pb.Template:
            found = await self.tenancy.template(request.prefix)
            if found is None:
                return pb.Template(prefix=request.prefix)
            return pb.Template(prefix=request.prefix, name=found[0],
                               schema_json=orjson.dumps(found[1]).decode())
        return await self.call("GetTemplate", context, run)

    async def ListAudit(self, request: pb.ListAuditRequest,
                        context: grpc.aio.ServicerContext) -> pb.ListAuditResponse:
        async def run(actor: Actor) -> pb.ListAuditResponse:
            rows = await self.tenancy.audit_trail(
                actor, prefix=request.prefix or None, enterprise_id=request.enterprise_id or None,
                after_id=request.after_id, limit=request.page_size or 100)
            out = pb.ListAuditResponse()
            for id_, e in rows:
                assert e.at is not None
                out.events.add(id=id_, at=ts(e.at), actor=e.actor,
                               enterprise_id=e.enterprise_id or 0, client=e.client,
                               action=e.action, target=e.target, prefix=e.prefix or "",
                               before_version=e.before_version or 0,
                               after_version=e.after_version or 0,
                               detail_json=orjson.dumps(e.detail).decode())
            return out
        return await self.call("ListAudit", context, run)
