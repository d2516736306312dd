"""The transfer RPCs of the Admin service (translation only: the work is in ``engine.transfer``).

ExportTransfer writes the next packet into the data directory's ``jobs/transfer-export`` folder,
streams it out in chunks and removes it. ImportTransfer writes the client's stream into
``jobs/transfer-incoming``, then checks and imports it like ``nasname transfer import``: a refused
packet is removed at once; an accepted one stays until its import job is done, so a server stopped
mid-import resumes it when the same packet is sent again.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from engine.errors import InvalidInput
from engine.fsutil import open_private
from server import errors
from server._gen.nasname.v1 import nasname_pb2 as pb
from server.interceptor import current_call

if TYPE_CHECKING:
    from engine.datadir import DataDir
    from engine.engine import Engine

__all__ = ["CHUNK", "TransferMixin"]

CHUNK = 1 << 20  # bytes per streamed message (well under gRPC's default 4 MiB limit)
MAX_PACKET_BYTES = 64 << 30


class TransferMixin:
    """ExportTransfer / ImportTransfer / TransferStatus and the peers (TrustPeer / RevokePeer /
    ListPeers) for ``AdminServicer``."""

    if TYPE_CHECKING:

        def _engine(self) -> Engine: ...

    def ExportTransfer(self, request: pb.ExportTransferRequest,
                       context: grpc.ServicerContext) -> Iterator[pb.TransferChunk]:
        from engine.transfer.export import export_to_file

        call = current_call()
        path: Path | None = None
        try:
            engine = self._engine()
            if not request.to_site:
                raise InvalidInput("to_site is required", reason="MISSING_TO_SITE")
            path = engine.datadir.jobs_dir("transfer-export") / f"{uuid.uuid4().hex}.nastx"
            result = export_to_file(engine.datadir, request.to_site, path,
                                    since=request.since if request.HasField("since") else None,
                                    partition=request.partition or None, with_images=request.with_images,
                                    actor=call.actor)
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield pb.TransferChunk(data=chunk)
            yield pb.TransferChunk(summary_json=json.dumps({**result.to_json(), "summary": result.summary()}))
        except Exception as exc:
            errors.abort(context, exc, call.request_id)
        finally:
            if path is not None:
                path.unlink(missing_ok=True)

    def ImportTransfer(self, requests: Iterator[pb.TransferChunk],
                       context: grpc.ServicerContext) -> pb.ImportTransferResponse:
        from engine.transfer.importer import start_import

        call = current_call()
        path: Path | None = None
        keep = False
        try:
            engine = self._engine()
            path = engine.datadir.jobs_dir("transfer-incoming") / f"{uuid.uuid4().hex}.nastx"
            size = 0
            re_extract = False
            with open_private(path, "wb") as f:
                for chunk in requests:
                    size += len(chunk.data)
                    re_extract = re_extract or chunk.re_extract
                    if size > MAX_PACKET_BYTES:
                        raise InvalidInput("transfer packet is larger than 64 GiB", reason="PACKET_TOO_LARGE")
                    f.write(chunk.data)
            job = start_import(engine, path, actor=call.actor, re_extract=re_extract)
            keep = True  # from here, the job may need the file to resume
            summary = job.run()
            keep = False
        except Exception as exc:
            errors.abort(context, exc, call.request_id)
        finally:
            if path is not None and not keep:
                path.unlink(missing_ok=True)
        return pb.ImportTransferResponse(request_id=call.request_id, sender=summary.sender,
                                         packet=summary.packet, summary=summary.text(),
                                         counts_json=json.dumps(summary.counts))

    def TransferStatus(self, request: pb.TransferStatusRequest,
                       context: grpc.ServicerContext) -> pb.TransferStatusResponse:
        from engine.transfer.status import transfer_status

        call = current_call()
        try:
            doc = transfer_status(self._engine().datadir)
        except Exception as exc:
            errors.abort(context, exc, call.request_id)
        return pb.TransferStatusResponse(request_id=call.request_id, status_json=json.dumps(doc))

    def TrustPeer(self, request: pb.TrustPeerRequest, context: grpc.ServicerContext) -> pb.PeerResponse:
        from engine.transfer.site import parse_public, trust

        rid, doc = self._peers_call(
            context, lambda d, actor: trust(d, parse_public(request.public_json), actor=actor).to_json()
        )
        return pb.PeerResponse(request_id=rid, peer_json=doc)

    def RevokePeer(self, request: pb.RevokePeerRequest, context: grpc.ServicerContext) -> pb.PeerResponse:
        from engine.transfer.site import revoke

        def work(datadir: DataDir, actor: str) -> Any:
            if not request.site_id:
                raise InvalidInput("site_id is required", reason="MISSING_SITE_ID")
            return revoke(datadir, request.site_id, actor=actor).to_json()

        rid, doc = self._peers_call(context, work)
        return pb.PeerResponse(request_id=rid, peer_json=doc)

    def ListPeers(self, request: pb.ListPeersRequest, context: grpc.ServicerContext) -> pb.ListPeersResponse:
        from engine.transfer.site import peers

        rid, doc = self._peers_call(context, lambda d, _: [p.to_json() for p in peers(d)])
        return pb.ListPeersResponse(request_id=rid, peers_json=doc)

    def _peers_call(
        self, context: grpc.ServicerContext, work: Callable[[DataDir, str], Any]
    ) -> tuple[str, str]:
        """``work(data directory, caller)`` as JSON text, with the request id; errors per the one table."""
        call = current_call()
        try:
            doc = work(self._engine().datadir, call.actor)
        except Exception as exc:
            errors.abort(context, exc, call.request_id)
        return call.request_id, json.dumps(doc)
