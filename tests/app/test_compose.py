"""docker-compose.yml, checked without a Docker engine: every service the README promises is there,
the MySQL pair is set up for GTID replication with green replicating from blue, every file it mounts
exists, and every command it runs is one the project really provides — parsed by the real Celery
and bgqueue command lines (click), with the Celery app found the way ``celery -A`` finds it."""
from __future__ import annotations

import re
import shlex

import click
import pytest
import yaml

from tests.fixtures.bgq import REPO

COMPOSE = REPO / "docker-compose.yml"
CELERY_SUBCOMMANDS = {"worker", "beat", "flower"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # safe_load resolves the x-… anchors and << merges


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def argv(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def flags(args: list[str]) -> dict[str, str]:
    """``--name=value`` / ``--name value`` options of a server command line, names normalised (- not _)."""
    out: dict[str, str] = {}
    for i, a in enumerate(args):
        if a.startswith("--"):
            name, sep, value = a[2:].partition("=")
            if not sep and i + 1 < len(args) and not args[i + 1].startswith("-"):
                value = args[i + 1]
            out[name.replace("_", "-")] = value
    return out


def _rest(ctx: click.Context) -> list[str]:
    # click < 9 keeps the subcommand's name apart (_protected_args); click 9 leaves all in args.
    return [*getattr(ctx, "_protected_args", []), *ctx.args]


def resolve(group: click.Group, args: list[str], obj=None) -> list[tuple[str, click.Context]]:
    """Parse ``args`` with a click command tree as its real entry point would: every (sub)command
    must exist and every option must be one it accepts (click raises otherwise)."""
    ctx = group.make_context(group.name or "cli", list(args))
    ctx.obj = obj(ctx) if obj else None
    chain = [(group.name or "cli", ctx)]
    while isinstance(chain[-1][1].command, click.Group):
        rest = _rest(chain[-1][1])
        if not rest:
            break
        name, cmd, sub_args = chain[-1][1].command.resolve_command(chain[-1][1], rest)
        chain.append((name, cmd.make_context(name, sub_args, parent=chain[-1][1])))
    return chain


def _celery_obj(ctx: click.Context):
    """What ``celery -A X`` puts in its context: the app found by Celery's own ``find_app``."""
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext

    return CLIContext(app=find_app(ctx.params["app"]), no_color=True, workdir=None, quiet=True)


def test_the_stack_has_every_service(services):
    assert {"redis", "blue", "green", "worker", "beat", "flower"} <= set(services)
    assert services["redis"]["image"].startswith("redis:")
    for name in ("worker", "beat", "flower"):
        assert services[name].get("build") == ".", f"{name}: not built from this repository"
    assert (REPO / "Dockerfile").is_file()


@pytest.mark.parametrize("name", ["blue", "green"])
def test_mysql_servers_are_set_up_for_gtid_replication(services, name):
    svc = services[name]
    assert svc["image"] == "mysql:8.0" and "healthcheck" in svc
    f = flags(argv(svc)[1:])
    assert argv(svc)[0] == "mysqld"
    assert f["gtid-mode"] == "ON" and f["enforce-gtid-consistency"] == "ON"
    assert f.get("log-bin") and f["binlog-format"] == "ROW" and f["log-replica-updates"] == "ON"


def test_blue_and_green_have_distinct_server_ids(services):
    ids = {flags(argv(services[n])[1:])["server-id"] for n in ("blue", "green")}
    assert len(ids) == 2


def test_green_replica_setup_points_at_blue(services):
    setup = next(s for s in services.values() if any("green-replica" in str(v) for v in s.get("volumes", [])))
    mount = next(str(v) for v in setup["volumes"] if "green-replica" in str(v))
    host_path, container_path = mount.split(":")[:2]
    assert container_path in " ".join(setup.get("entrypoint") or setup.get("command") or [])
    script = (COMPOSE.parent / host_path).read_text()
    change = re.search(r"CHANGE REPLICATION SOURCE TO(.*?);", script, re.S).group(1)
    assert re.search(r"SOURCE_HOST\s*=\s*'blue'", change) and re.search(r"SOURCE_AUTO_POSITION\s*=\s*1", change)
    assert re.search(r"mysql\s+-h\s+green\b", script) and "START REPLICA" in script
    assert re.search(r"super_read_only\s*=\s*ON", script, re.I)  # green takes no stray write before the switch
    assert {"blue", "green"} <= set(setup.get("depends_on", {}))
    # The replication user it uses is the one blue creates, and the one the fleet file names.
    user = re.search(r"SOURCE_USER\s*=\s*'([^']+)'", change).group(1)
    init = next(str(v) for v in services["blue"]["volumes"] if "docker-entrypoint-initdb.d" in str(v))
    init_sql = (COMPOSE.parent / init.split(":")[0]).read_text()
    assert re.search(rf"GRANT [^;]*REPLICATION SLAVE[^;]* TO '{user}'", init_sql)
    from bgqueue.model.fleet import load_fleet

    [cluster] = load_fleet(REPO / "config" / "compose" / "fleet.yaml").clusters
    assert cluster.replication.user == user
    assert (cluster.blue.host, cluster.green.host) == ("blue", "green")


def test_files_mounted_by_volumes_exist(compose, services):
    named = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            source = str(v).split(":")[0] if isinstance(v, str) else v["source"]
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"


def test_celery_commands_are_the_projects(services):
    from celery.bin.celery import celery

    from config.celery import celery_config
    from config.settings import Settings

    conf = celery_config(Settings())
    seen = set()
    for name, svc in services.items():
        args = argv(svc)
        if not args or args[0] != "celery":
            continue
        chain = resolve(celery, args[1:], obj=_celery_obj)
        app = chain[0][1].obj.app
        sub, ctx = chain[-1]
        assert sub in CELERY_SUBCOMMANDS, f"{name}: celery {sub}"
        assert chain[0][1].params["app"] == "tasks" and app.main == "bgqueue"
        seen.add(sub)
        app.loader.import_default_modules()
        assert "bgqueue.batch.start" in app.tasks  # what `bgqueue fleet run` sends
        if sub == "worker":
            assert set(ctx.params["queues"] or [conf["task_default_queue"]]) == {conf["task_default_queue"]}
            assert ctx.params["task_events"], f"{name}: the worker must send task events (-E) for Flower"
        if sub == "beat":
            for entry in conf["beat_schedule"].values():
                assert entry["task"] in app.tasks, f"beat schedules {entry['task']}, which no module defines"
        if sub == "flower":
            from flower.command import is_flower_option

            unknown = [a for a in ctx.params["tornado_argv"] if not is_flower_option(a)]
            assert not unknown, f"{name}: not Flower options: {unknown}"
    assert seen == CELERY_SUBCOMMANDS


def test_flower_service_requires_authentication_from_the_environment(services):
    svc = services["flower"]
    f = flags(argv(svc))
    assert f.get("conf") and (REPO / f["conf"]).is_file(), "flower must load config/flower.py (it enforces auth)"
    assert "basic-auth" not in f and "oauth2-secret" not in f, "credentials on the command line are visible in ps"
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH[^}]*\}", str(env.get("FLOWER_BASIC_AUTH", ""))), \
        "FLOWER_BASIC_AUTH must come from the operator's environment, not be written in the file"
    # Published ports reach Flower only if it listens on the container's interface, and only on loopback outside.
    port = f.get("port", "5555")
    assert env.get("FLOWER_ADDRESS") == "0.0.0.0"
    assert any(str(p) == f"127.0.0.1:{port}:{port}" for p in svc.get("ports", []))


def test_bgqueue_commands_exist_in_the_cli(services):
    from bgqueue.app.cli import main

    commands = [argv(s) for s in services.values() if argv(s)[:1] == ["bgqueue"]]
    # And the commands the file's header tells operators to run.
    commands += [shlex.split(m) for m in re.findall(r"docker compose run --rm \w+ (bgqueue [^\n]+)", COMPOSE.read_text())]
    assert commands
    for args in commands:
        chain = resolve(main, args[1:])
        assert not isinstance(chain[-1][1].command, click.Group), f"{args}: names a group, not a command"
        for value in chain[-1][1].params.values():  # a file the command is given must be in the image
            if isinstance(value, str) and value.endswith((".yaml", ".yml")):
                assert (REPO / value).is_file() and value.startswith(("config/", "./config/")), value


def test_the_image_contains_what_the_commands_need():
    copied = re.findall(r"^COPY\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    for needed in ("bgqueue", "tasks", "config"):  # -A tasks, --conf=config/flower.py, config/compose/fleet.yaml
        assert needed in copied, f"Dockerfile does not copy {needed}/"
