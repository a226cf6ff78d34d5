#!/usr/bin/env bash
# Create (or rotate) a terminal's MQTT credentials and write the terminal's config.
#
#   add-terminal.sh [-f PASSWD_FILE] [-o OUT_DIR] [-b BROKER] [-c CA_ON_TERMINAL] DEVICE_ID ...
#   add-terminal.sh -f PASSWD_FILE --remove DEVICE_ID ...
#
# For each DEVICE_ID (the terminal's user name, e.g. hz-371702001-w01) a random password
# is generated, its hash (PBKDF2-SHA512, mosquitto's $7$ format) is added to or replaced
# in PASSWD_FILE (default /etc/mosquitto/passwd), and OUT_DIR/DEVICE_ID.toml (mode 600,
# default ./terminals) gets the terminal's config with the password in it. The password
# is never printed, never on a command line and never in a log: copy the .toml file to
# the terminal as /etc/manyi/terminal.toml (deploy/terminal/provision.sh does that) and
# delete it here. Running the script again for the same device rotates its password.
# Afterwards: systemctl reload mosquitto
set -euo pipefail

passwd_file=/etc/mosquitto/passwd
out_dir=./terminals
broker=${MANYI_BROKER:-mqtt.manyi.internal:8883}
ca=/etc/manyi/ca.crt
remove=0
usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
while [[ $# -gt 0 ]]; do
    case $1 in
        -f|--passwd) passwd_file=$2; shift 2 ;;
        -o|--out) out_dir=$2; shift 2 ;;
        -b|--broker) broker=$2; shift 2 ;;
        -c|--ca) ca=$2; shift 2 ;;
        --remove) remove=1; shift ;;
        -h|--help) usage ;;
        -*) echo "$0: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
[[ $# -ge 1 ]] || usage
command -v python3 >/dev/null || { echo "$0: python3 not found" >&2; exit 1; }

MANYI_PASSWD_FILE=$passwd_file MANYI_OUT_DIR=$out_dir MANYI_BROKER=$broker MANYI_CA=$ca MANYI_REMOVE=$remove \
python3 - "$@" <<'PY'
import base64, hashlib, os, re, secrets, sys, tempfile
from pathlib import Path

DEVICE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,63}$")   # manyi.protocol.DEVICE_ID_PATTERN
passwd = Path(os.environ["MANYI_PASSWD_FILE"])
out_dir = Path(os.environ["MANYI_OUT_DIR"])
remove = os.environ["MANYI_REMOVE"] == "1"
devices = sys.argv[1:]
host, _, port = os.environ["MANYI_BROKER"].rpartition(":")
if not remove and (not host or not port.isdigit()):
    sys.exit(f"add-terminal: broker {os.environ['MANYI_BROKER']!r} must be HOST:PORT")
for device in devices:
    if not DEVICE_RE.match(device):
        sys.exit(f"add-terminal: {device!r} is not a valid device id (lowercase letters, digits, '-', 3-64 chars)")

def mosquitto_hash(password: str) -> str:
    """mosquitto 2.0 password hash: $7$iterations$salt$pbkdf2-sha512, base64."""
    salt = secrets.token_bytes(12)
    iterations = 101
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"

lines = passwd.read_text().splitlines() if passwd.exists() else []
entries = {line.split(":", 1)[0]: line for line in lines if ":" in line}
order = [line.split(":", 1)[0] for line in lines if ":" in line]
for device in devices:
    if remove:
        if device not in entries:
            sys.exit(f"add-terminal: {device} is not in {passwd}")
        del entries[device]
        order.remove(device)
        print(f"removed {device} from {passwd}")
        continue
    password = secrets.token_urlsafe(24)
    if device not in entries:
        order.append(device)
    entries[device] = f"{device}:{mosquitto_hash(password)}"
    out_dir.mkdir(parents=True, exist_ok=True)
    config = out_dir / f"{device}.toml"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        host, _, port = os.environ["MANYI_BROKER"].rpartition(":")
        handle.write(
            "# manyi terminal config: install as /etc/manyi/terminal.toml (mode 600, owner manyi).\n"
            "# Written by deploy/mosquitto/add-terminal.sh; contains this terminal's MQTT password.\n"
            "# Settings: device/config.py (TerminalSettings); MANYI_TERMINAL_* variables override them.\n"
            "[terminal]\n"
            f'device_id = "{device}"\n'
            f'broker_host = "{host}"\n'
            f"broker_port = {int(port)}\n"
            f'tls_ca = "{os.environ["MANYI_CA"]}"\n'
            f'username = "{device}"\n'
            f'password = "{password}"\n'
            'outbox_path = "/var/lib/manyi/outbox.db"\n'
        )
    print(f"{device}: credentials in {passwd}, terminal config written to {config}")

# Replace the password file atomically, keeping its owner and mode (mosquitto must read it).
passwd.parent.mkdir(parents=True, exist_ok=True)
fd, tmp = tempfile.mkstemp(dir=passwd.parent, prefix=".passwd.")
with os.fdopen(fd, "w") as handle:
    handle.write("".join(entries[name] + "\n" for name in order))
if passwd.exists():
    st = passwd.stat()
    os.chmod(tmp, st.st_mode & 0o777)
    try:
        os.chown(tmp, st.st_uid, st.st_gid)
    except PermissionError:
        pass
else:
    os.chmod(tmp, 0o600)
os.replace(tmp, passwd)
PY
