"""``manyi serve``, ``manyi user`` and ``manyi token``: run the control center and manage its accounts.

Only the standard library is imported at module level (the ``manyi`` command must start
on a terminal without Flask); the handlers import the web app when they run.
"""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path

from manyi.settings import DEFAULT_CENTER_DB, DEFAULT_STORE_URL, center_db_path, store_url

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
ROLE_CHOICES = ("admin", "security", "auditor", "city", "county", "assessment")   # analytics.web.auth.ROLES
STREAM_RESERVE = 8           # server threads never given to live streams (login, pages, API)


def register(subparsers) -> None:
    """Add the serve, user and token sub-commands."""
    serve = subparsers.add_parser("serve", help="run the control center web app (waitress)")
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--threads", type=int, default=32,
                       help="server threads; each open live page holds one for its event stream (default 32)")
    serve.add_argument("--secret-file", default=None,
                       help="file with the session signing key, created if missing (default: next to --db)")
    serve.add_argument("--cookie-secure", choices=("auto", "yes", "no"), default="auto",
                       help="send the session cookie only over HTTPS; auto = yes unless listening on loopback")
    serve.add_argument("--proxies", type=int, default=None,
                       help="number of reverse proxies in front (nginx: 1) whose X-Forwarded-For/-Proto is trusted "
                            "(default 0)")
    serve.add_argument("--trusted-proxy", default="127.0.0.1",
                       help="address the proxy connects from; only its X-Forwarded-* headers count (default 127.0.0.1)")
    serve.add_argument("--no-workers", action="store_true", help="do not start background workers (cases, alerts)")
    serve.set_defaults(func=cmd_serve)

    user = subparsers.add_parser("user", help="control-center accounts")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = user_sub.add_parser("add", help="create an account")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLE_CHOICES,
                     help="admin, security, auditor: the three administrators (三员); the others see data")
    add.add_argument("--county", default=None, help="county code (role county only), e.g. 371702")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--db", default=None, help=f"center db (default $MANYI_DB or {DEFAULT_CENTER_DB})")
    add.add_argument("--registry", default=None, help="registry directory to check the county against")
    add.set_defaults(func=cmd_user_add)
    passwd = user_sub.add_parser("passwd", help="set an account's password (ends its sessions)")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    passwd.add_argument("--db", default=None, help=f"center db (default $MANYI_DB or {DEFAULT_CENTER_DB})")
    passwd.set_defaults(func=cmd_user_passwd)
    lst = user_sub.add_parser("list", help="list accounts")
    lst.add_argument("--db", default=None, help=f"center db (default $MANYI_DB or {DEFAULT_CENTER_DB})")
    lst.set_defaults(func=cmd_user_list)

    token = subparsers.add_parser("token", help="API tokens")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    tadd = token_sub.add_parser("add", help="issue an API token for a user (printed once)")
    tadd.add_argument("username")
    tadd.add_argument("--name", default="", help="what the token is for")
    tadd.add_argument("--db", default=None, help=f"center db (default $MANYI_DB or {DEFAULT_CENTER_DB})")
    tadd.set_defaults(func=cmd_token_add)
    tlist = token_sub.add_parser("list", help="list API tokens (id, user, name, created, last used, state)")
    tlist.add_argument("--db", default=None, help=f"center db (default $MANYI_DB or {DEFAULT_CENTER_DB})")
    tlist.set_defaults(func=cmd_token_list)
    trevoke = token_sub.add_parser("revoke", help="revoke an API token by its id (see token list)")
    trevoke.add_argument("token_id", type=int)
    trevoke.add_argument("--db", default=None, help=f"center db (default $MANYI_DB or {DEFAULT_CENTER_DB})")
    trevoke.set_defaults(func=cmd_token_revoke)

    audit_cmd = subparsers.add_parser("audit", help="the control center's audit log")
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_sub.add_parser("verify", help="check the audit log's hash chain (exit 1 if an entry was altered)")
    verify.add_argument("--db", default=None, help=f"center db (default $MANYI_DB or {DEFAULT_CENTER_DB})")
    verify.set_defaults(func=cmd_audit_verify)


def _common(parser) -> None:
    parser.add_argument("--store", default=None, help=f"vote store URL (default $MANYI_STORE or {DEFAULT_STORE_URL})")
    parser.add_argument("--db", default=None, help=f"center db (default $MANYI_DB or {DEFAULT_CENTER_DB})")
    parser.add_argument("--registry", default=None, help="registry directory (default: the Heze sample)")


def _db_path(args) -> str:
    return center_db_path(args.db)


def secret_key(path: Path) -> str:
    """The session signing key kept in ``path`` (mode 600), created on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def build_config(args) -> dict:
    """The create_app config of ``manyi serve`` from its arguments."""
    db = _db_path(args)
    secure = args.cookie_secure == "yes" or (args.cookie_secure == "auto" and args.host not in LOOPBACK)
    secret_file = Path(args.secret_file) if args.secret_file else Path(db).parent / "web-secret.key"
    config = {
        "STORE_URL": store_url(args.store),
        "CENTER_DB": db,
        "REGISTRY_PATH": args.registry,
        "SECRET_KEY": secret_key(secret_file),
        "SESSION_COOKIE_SECURE": secure,
        "BACKGROUND_WORKERS": not args.no_workers,
    }
    threads = getattr(args, "threads", None)
    if threads:
        config["STREAM_MAX_TOTAL"] = max(1, threads - STREAM_RESERVE)
    # waitress itself reads X-Forwarded-* (serve_options); the app's ProxyFix is for other WSGI servers.
    config["PROXY_COUNT"] = 0
    return config


def serve_options(args) -> dict:
    """waitress's options: threads, timeouts, and which proxy's X-Forwarded-* headers to believe.

    waitress drops X-Forwarded-* from any peer it was not told to trust, so behind nginx the
    client address and scheme reach the app only with ``trusted_proxy`` set: then the login
    throttle and the audit log see each client, and HSTS is sent over HTTPS."""
    options = dict(host=args.host, port=args.port, threads=args.threads, ident="manyi", channel_timeout=120,
                   connection_limit=max(100, 4 * args.threads), max_request_body_size=25 * 1024 * 1024)
    if args.proxies:
        options.update(trusted_proxy=args.trusted_proxy, trusted_proxy_count=args.proxies,
                       trusted_proxy_headers={"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"},
                       clear_untrusted_proxy_headers=True)
    return options


def cmd_serve(args) -> int:
    """Serve the control center with waitress until interrupted."""
    import waitress

    from analytics.web import create_app

    from analytics.center.migrations import version_of
    from analytics.web.context import get_db

    app = create_app(build_config(args))
    # Open (and, after an upgrade, migrate) the center database now: a failed migration stops
    # the start with its message instead of failing the first request.
    db = get_db(app)
    applied = f", migrated to version {db.applied[-1]}" if db.applied else ""
    print(f"manyi control center on http://{args.host}:{args.port}/ "
          f"(store {app.config['STORE_URL']}, db {app.config['CENTER_DB']} "
          f"version {version_of(db.conn)}{applied})", flush=True)
    waitress.serve(app, **serve_options(args))
    return 0


def _read_password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        from analytics.accounts import AuthError
        raise AuthError("the two passwords differ")
    return first


@contextmanager
def _center_db(args):
    """The center database of ``--db`` (or $MANYI_DB), closed afterwards."""
    from analytics.center import CenterDB

    db = CenterDB(_db_path(args))
    try:
        yield db
    finally:
        db.close()


def _audit_cli(db, action: str, detail: dict) -> None:
    """Audit an action done on the server's command line, under the operator's login name."""
    from analytics.center.accounts import write_audit

    write_audit(db, action, detail, username=f"cli:{getpass.getuser()}")


def cmd_user_add(args) -> int:
    """Create an account (audited as done by the command line)."""
    from analytics.center.accounts import create_user

    registry = None
    if args.registry:
        from manyi.registry import Registry
        registry = Registry.load(args.registry)
    with _center_db(args) as db:
        user = create_user(db, args.username, _read_password(args), args.role, args.county, registry=registry)
        _audit_cli(db, "user.add", {"username": user.username, "role": user.role, "county_code": user.county_code})
    print(f"user {user.username} added (role {user.role}{', county ' + user.county_code if user.county_code else ''})")
    return 0


def cmd_user_passwd(args) -> int:
    """Set a password from the server (the only way for the three administrators' accounts)."""
    from analytics.center.accounts import set_password

    with _center_db(args) as db:
        set_password(db, args.username, _read_password(args))
        _audit_cli(db, "user.password", {"username": args.username})
    print(f"password of {args.username} set; its sessions are ended")
    return 0


def cmd_audit_verify(args) -> int:
    """Check the audit log's hash chain."""
    from analytics.center.accounts import verify_audit

    with _center_db(args) as db:
        checked, broken = verify_audit(db)
    if broken:
        print(f"audit log: {len(broken)} of {checked} entries do not match the chain; first ids: {broken[:20]}")
        return 1
    print(f"audit log: {checked} entries, chain intact")
    return 0


def cmd_user_list(args) -> int:
    """Print the accounts."""
    from analytics.center.accounts import list_users

    with _center_db(args) as db:
        for user in list_users(db):
            state = "disabled" if user["disabled"] else "active"
            print(f"{user['username']}\t{user['role']}\t{user['county_code'] or '-'}\t{state}\t{user['last_login'] or '-'}")
    return 0


def cmd_token_add(args) -> int:
    """Issue an API token and print it (it cannot be shown again)."""
    from analytics.center.accounts import create_token

    with _center_db(args) as db:
        token = create_token(db, args.username, args.name)
        _audit_cli(db, "token.add", {"username": args.username, "name": args.name})
    print(token)
    return 0


def cmd_token_list(args) -> int:
    """Print the API tokens (never the tokens themselves)."""
    from analytics.center.accounts import list_tokens

    with _center_db(args) as db:
        for token in list_tokens(db):
            state = "revoked" if token["revoked"] else "active"
            print(f"{token['id']}\t{token['username']}\t{token['name'] or '-'}\t{token['created_at']}\t"
                  f"{token['last_used'] or '-'}\t{state}")
    return 0


def cmd_token_revoke(args) -> int:
    """Revoke an API token (audited as done by the command line)."""
    from analytics.center.accounts import revoke_token

    with _center_db(args) as db:
        username = revoke_token(db, args.token_id)
        _audit_cli(db, "token.revoke", {"username": username, "token": args.token_id})
    print(f"token {args.token_id} of {username} revoked")
    return 0
