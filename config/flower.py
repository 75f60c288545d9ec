"""Flower's configuration: ``celery -A tasks flower --conf=config/flower.py`` (from the repository root).

Flower's UI and API can run any task and shut workers down: access to it is admin access to the
fleet's orchestration. So Flower refuses to start here unless one of these is true:

- ``FLOWER_BASIC_AUTH=user:password[,user2:password2]`` is in the environment (Flower reads it
  itself). Passwords of at least 12 characters. Never on the command line (``--basic_auth``):
  every user of the host sees a command line in ``ps``; this file refuses that too.
- Flower's own OAuth is configured: ``FLOWER_AUTH`` (allowed e-mail regex), ``FLOWER_AUTH_PROVIDER``
  (e.g. ``flower.views.auth.GithubLoginHandler`` or ``GoogleAuth2LoginHandler``) and
  ``FLOWER_OAUTH2_KEY``/``FLOWER_OAUTH2_SECRET``/``FLOWER_OAUTH2_REDIRECT_URI``.
- ``BGQUEUE_FLOWER_ALLOW_NO_AUTH=1``: a deliberate opt-out, for a Flower that only listens on
  loopback behind an authenticating proxy (oauth2-proxy). Flower's API still answers 401 then
  unless ``FLOWER_UNAUTHENTICATED_API=true`` is set as well.

Flower listens on 127.0.0.1 unless ``FLOWER_ADDRESS`` (or ``--address``) says otherwise; the
docker-compose service sets ``FLOWER_ADDRESS=0.0.0.0`` inside its container.

Tornado executes this file (``parse_config_file``): module-level names that match Flower options
become settings, applied after the ``FLOWER_*`` environment and before the command line. Helper
names start with an underscore so that none of them can be taken for an option.
"""
import os as _os
import sys as _sys

_MIN_PASSWORD = 12
_OPT_OUT = "BGQUEUE_FLOWER_ALLOW_NO_AUTH"
_SECRET_FLAGS = ("--basic_auth", "--basic-auth", "--oauth2_secret", "--oauth2-secret")


def _refuse(message: str) -> None:
    _sys.stderr.write(f"flower: refusing to start: {message}\n")
    raise SystemExit(2)


def _check_auth(env) -> None:
    """Raise SystemExit(2) with the reason unless Flower will require authentication (or the
    operator opted out explicitly). Never prints a credential."""
    for arg in _sys.argv[1:]:
        if arg.split("=", 1)[0] in _SECRET_FLAGS:
            _refuse(f"{arg.split('=', 1)[0]} on the command line is visible to every user of the host (ps); "
                    "put it in the environment instead (FLOWER_BASIC_AUTH / FLOWER_OAUTH2_SECRET)")
    basic = env.get("FLOWER_BASIC_AUTH", "").strip()
    if basic:
        for i, entry in enumerate(basic.split(","), 1):
            user, sep, password = entry.partition(":")
            if not sep or not user.strip() or len(password) < _MIN_PASSWORD:
                _refuse(f"FLOWER_BASIC_AUTH entry {i}: expected user:password with a password of at least "
                        f"{_MIN_PASSWORD} characters")
        return
    oauth = ("FLOWER_AUTH", "FLOWER_AUTH_PROVIDER", "FLOWER_OAUTH2_KEY", "FLOWER_OAUTH2_SECRET",
             "FLOWER_OAUTH2_REDIRECT_URI")
    if all(env.get(name) for name in oauth):
        return
    if env.get("FLOWER_AUTH") or env.get("FLOWER_AUTH_PROVIDER"):
        missing = ", ".join(n for n in oauth if not env.get(n))
        _refuse(f"Flower OAuth is half configured: {missing} not set")
    if env.get(_OPT_OUT, "").strip().lower() in ("1", "true", "yes"):
        _sys.stderr.write(f"flower: WARNING: no authentication ({_OPT_OUT} is set); only run this behind "
                          "an authenticating proxy, listening on loopback\n")
        return
    _refuse("Flower gives admin access (it can run tasks and stop workers) and no authentication is set: "
            "export FLOWER_BASIC_AUTH=user:password (or configure Flower OAuth; or, behind an authenticating "
            f"proxy only, {_OPT_OUT}=1)")


_check_auth(_os.environ)

address = _os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
# Workers send events with -E; Flower also asks them to (enable_events), so a worker started
# without -E still shows its tasks.
enable_events = True
# Forget workers that have been offline for an hour instead of listing them forever.
purge_offline_workers = 3600
