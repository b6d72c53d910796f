"""``serve``, ``keys`` and ``engine`` commands: run the service, manage API keys, run engines."""

from __future__ import annotations

from typing import Any

import typer

from marginproof.cli.common import console, handle_errors, print_json
from marginproof.errors import InputError


def _settings(database_url: str | None, bus_url: str | None,  # type: ignore[no-untyped-def]
              model: str | None = None):
    from marginproof.config.settings import Settings
    from marginproof.models.registry import model_class

    if model is not None:
        model_class(model)  # unknown name: InputError naming the field, exit 2
    pairs = (("database_url", database_url), ("bus_url", bus_url), ("engine_model", model))
    overrides: dict[str, Any] = {k: v for k, v in pairs if v is not None}
    return Settings(**overrides)


DB_OPT = typer.Option(None, "--database-url", help="Overrides MARGINPROOF_DATABASE_URL")
BUS_OPT = typer.Option(None, "--bus-url", help="Overrides MARGINPROOF_BUS_URL")
MODEL_OPT = typer.Option(None, "--model", help="Model in force at start (overrides "
                         "MARGINPROOF_ENGINE_MODEL; default dynamic)")


def register(app: typer.Typer) -> None:
    keys = typer.Typer(help="Manage API keys (stored hashed).", no_args_is_help=True)
    engine = typer.Typer(help="Run margin engines on the input log.", no_args_is_help=True)
    app.add_typer(keys, name="keys")
    app.add_typer(engine, name="engine")

    @app.command()
    @handle_errors
    def serve(host: str = typer.Option(None, help="Bind address (default from settings)"),
              port: int = typer.Option(None, help="Port (default from settings)"),
              database_url: str = DB_OPT, bus_url: str = BUS_OPT,
              model: str = MODEL_OPT,
              demo: bool = typer.Option(False, "--demo", help="First start never empty: seed "
                                        "demo accounts (if the log has none) and replay the "
                                        "shipped day 2022-04-15"),
              demo_accounts: int = typer.Option(200, min=1, max=100_000,
                                                help="Accounts seeded by --demo"),
              demo_speed: float = typer.Option(120.0, min=0.0, help="--demo replay speed-up "
                                               "(120: an hourly bar every 30 s; 0: at once)"),
              ) -> None:
        """Run the HTTP/WebSocket service with its engines and feeds (see docs/service.md)."""
        import uvicorn

        from marginproof.bootstrap import bootstrap
        from marginproof.service.app import create_app

        s = _settings(database_url, bus_url, model)
        if demo:
            from marginproof.demo.serve import demo_settings, seed_demo
            from marginproof.storage.factory import open_repository

            repo = open_repository(s.database_url)
            try:
                added = seed_demo(repo, n_accounts=demo_accounts)
            finally:
                repo.close()
            s = demo_settings(s, speed=demo_speed)
            console.print(f"demo: {added} accounts seeded" if added else
                          "demo: the log has accounts already (none seeded)")
        container = bootstrap(s)
        console.print(f"marginproof serving on http://{host or s.host}:{port or s.port} "
                      f"(database {s.public()['database_url']}, bus {s.public()['bus_url']}, "
                      f"model {s.engine_model})")
        uvicorn.run(create_app(container), host=host or s.host, port=port or s.port,
                    log_level="info")

    @keys.command("create")
    @handle_errors
    def keys_create(scope: str = typer.Option(..., help="account or operator"),
                    account_id: str = typer.Option(None, help="Account of an account key"),
                    label: str = typer.Option("", help="Who or what the key is for"),
                    database_url: str = DB_OPT) -> None:
        """Create a key and print it once (only its SHA-256 is stored)."""
        from marginproof.service.auth import create_key
        from marginproof.storage.factory import open_repository
        from marginproof.storage.sql import wall_clock_ms

        repo = open_repository(_settings(database_url, None).database_url)
        key, rec = create_key(repo, scope, account_id, label or scope, "cli", wall_clock_ms())
        print_json({"key": key, "key_id": rec.key_id, "scope": rec.scope,
                    "account_id": rec.account_id})

    @keys.command("revoke")
    @handle_errors
    def keys_revoke(key_id: str, database_url: str = DB_OPT) -> None:
        """Revoke a key at once."""
        from marginproof.storage.factory import open_repository
        from marginproof.storage.sql import wall_clock_ms

        repo = open_repository(_settings(database_url, None).database_url)
        if not repo.revoke_key(key_id, wall_clock_ms()):
            raise InputError("key_id", f"no active key {key_id!r}")
        console.print(f"revoked {key_id}")

    @keys.command("list")
    @handle_errors
    def keys_list(database_url: str = DB_OPT) -> None:
        """List keys (never secrets)."""
        from marginproof.storage.factory import open_repository

        repo = open_repository(_settings(database_url, None).database_url)
        print_json([{"key_id": k.key_id, "scope": k.scope, "account_id": k.account_id,
                     "label": k.label, "revoked_at_ms": k.revoked_at_ms}
                    for k in repo.list_keys()])

    @engine.command("run")
    @handle_errors
    def engine_run(database_url: str = DB_OPT,
                   replay_date: str = typer.Option(None, help="Also append this shipped "
                                                   "day (hourly) to the log first"),
                   symbols: str = typer.Option("BTCUSDT,ETHUSDT", help="Replayed pairs"),
                   accounts: int = typer.Option(0, help="Also append N synthetic accounts"),
                   fills: int = typer.Option(0, help="... and N synthetic fills"),
                   commit_every: int = typer.Option(256, help="Entries per commit"),
                   snapshot_every: int = typer.Option(100_000, help="Engine snapshot every N "
                                                      "entries (0: never)"),
                   snapshot_replay_s: float = typer.Option(1.0, help="... and after this many "
                                                           "seconds of engine time (0: never)"),
                   digest: bool = typer.Option(False, help="Print the margin-history digest"),
                   model: str = MODEL_OPT) -> None:
        """Append an optional replay workload (idempotent), then process the log until idle.

        The same command restarted after ``kill -9`` resumes: the workload's dedupe keys skip
        what is already in the log and the engine recovers from its checkpoint.
        """
        from marginproof.engine.core import EngineConfig
        from marginproof.feeds.replay import replay_day
        from marginproof.models.registry import get_model
        from marginproof.service.runner import EngineRunner
        from marginproof.service.workload import synthetic_accounts, synthetic_fills
        from marginproof.storage.factory import open_repository

        s = _settings(database_url, None, model)
        repo = open_repository(s.database_url)
        if replay_date:
            day = replay_day(replay_date, tuple(symbols.split(",")))
            repo.append([day.seed_entry()])
            if accounts:
                entries = synthetic_accounts(accounts, day.market)
                for i in range(0, len(entries), 1000):
                    repo.append(entries[i:i + 1000])
            ticks = day.tick_entries()
            extra = synthetic_fills(fills, max(accounts, 1)) if fills and accounts else []
            # interleave: fills spread between ticks, in a fixed order
            per = max(1, len(extra) // max(len(ticks), 1))
            for k, t in enumerate(ticks):
                repo.append([t, *extra[k * per:(k + 1) * per]])
            if extra[len(ticks) * per:]:
                repo.append(extra[len(ticks) * per:])
        runner = EngineRunner(repo, get_model(s.engine_model, s.engine_params_file),
                              EngineConfig(), commit_every=commit_every,
                              snapshot_every=snapshot_every,
                              snapshot_replay_s=snapshot_replay_s)
        ckpt = runner.recover()
        recovered_from = runner.recovered_from
        n = runner.run_until_idle()
        out: dict[str, Any] = {"recovered_at": ckpt, "recovered_from_snapshot": recovered_from,
                               "processed": n, "log_seq": repo.last_seq(),
                               "model": s.engine_model}
        if digest:
            out["history_digest"] = repo.history_digest()
        print_json(out)
