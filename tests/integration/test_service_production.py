"""The service in its production shape: PostgreSQL storage and NATS JetStream bus."""

from __future__ import annotations

import asyncio
from pathlib import Path

from _service_helpers import demo_positions, running_service

from marginproof.bus.jetstream import NatsBus
from marginproof.storage.postgres import PostgresRepository


def test_service_on_postgres_and_nats_margins_streams_and_publishes(
        tmp_path: Path, pg_dsn: str, nats_url: str, unique: str) -> None:
    try:
        with running_service(tmp_path, database_url=f"{pg_dsn}?schema={unique}",
                             bus_url=nats_url, bus_stream=unique.upper(),
                             bus_prefix=unique) as svc:
            assert svc.container.repo.dialect == "postgres"
            pos, coll = demo_positions()
            r = svc.client.post("/accounts", json={"account_id": "desk", "positions": pos,
                                                   "collateral": coll}, headers=svc.op())
            assert r.status_code == 202
            first = svc.wait_margin("desk", r.json()["seq"])
            key = svc.account_key("desk")
            with svc.client.websocket_connect(f"/accounts/desk/stream?api_key={key}") as ws:
                assert ws.receive_json()["seq"] == first["seq"]
                r = svc.client.post("/accounts/desk/fills",
                                    json={"instrument": "BTC-PERPETUAL", "quantity": -5000},
                                    headers=svc.op())
                while True:  # via JetStream: summary -> row read back from PostgreSQL
                    msg = ws.receive_json()
                    if msg.get("type") == "margin" and msg["seq"] == r.json()["seq"]:
                        break
            bus = svc.container.bus
            assert isinstance(bus, NatsBus) and bus.published >= 3
            health = svc.client.get("/health").json()
            assert health["bus"] == "nats" and health["engines"]["engine-p0of1"] >= 3
    finally:
        PostgresRepository(pg_dsn, unique).drop_schema()

        async def cleanup() -> None:
            b = await NatsBus.connect(nats_url, stream=unique.upper(), prefix=unique)
            await b.delete_stream()
            await b.close()

        asyncio.run(cleanup())
