#!/usr/bin/env bash
# Turn a fresh Raspberry Pi OS (Bookworm) into a manyi terminal. Run as root on the Pi.
#
#   provision.sh --config terminal.toml --ca ca.crt [--source DIR] [--wheelhouse DIR]
#                [--ntp SERVER ...] [--volatile-journal] [--dry-run]
#
#   --config      the terminal's config written by deploy/mosquitto/add-terminal.sh
#                 (contains its MQTT password; installed mode 640 root:manyi, then delete the copy)
#   --ca          the city's CA certificate (deploy/mosquitto/make-certs.sh: ca.crt)
#   --source      a manyi source tree to install (default: the tree this script is in)
#   --wheelhouse  install offline from a directory of wheels (pip download '.[device]' -d DIR)
#   --ntp         the intranet's NTP server(s) for systemd-timesyncd (default: keep the OS's)
#   --volatile-journal  keep the journal in RAM (less SD card wear; logs are lost on reboot)
#   --dry-run     print what would be done, change nothing
#
# Result: user manyi (group gpio), /opt/manyi/src and /opt/manyi/venv (manyi with
# .[device]), /etc/manyi/terminal.toml and ca.crt, state only in /var/lib/manyi (the
# outbox), NTP via systemd-timesyncd, and manyi-terminal.service enabled and started.
# Running it again upgrades the code and keeps the outbox (seqs continue).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
config= ca= wheelhouse= dry_run=0 volatile_journal=0
ntp=()
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --config) config=$2; shift 2 ;;
        --ca) ca=$2; shift 2 ;;
        --source) source_dir=$(cd "$2" && pwd); shift 2 ;;
        --wheelhouse) wheelhouse=$2; shift 2 ;;
        --ntp) ntp+=("$2"); shift 2 ;;
        --volatile-journal) volatile_journal=1; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage ;;
        *) echo "provision: unknown argument $1" >&2; usage ;;
    esac
done
[[ -n $config && -n $ca ]] || usage
[[ -f $config ]] || { echo "provision: config $config not found" >&2; exit 1; }
[[ -f $ca ]] || { echo "provision: CA certificate $ca not found" >&2; exit 1; }
[[ -f $source_dir/setup.cfg && -d $source_dir/device ]] || { echo "provision: $source_dir is not a manyi source tree" >&2; exit 1; }
if [[ $dry_run -eq 0 && $(id -u) -ne 0 ]]; then echo "provision: run as root (sudo)" >&2; exit 1; fi

run() { if [[ $dry_run -eq 1 ]]; then echo "+ $*"; else "$@"; fi; }
write() {  # write FILE MODE: stdin to FILE
    if [[ $dry_run -eq 1 ]]; then echo "+ write $1 (mode $2):"; sed 's/^/    /'; else install -D -m "$2" /dev/stdin "$1"; fi
}
step() { echo "== $*"; }

step "packages"
run apt-get update -q
run apt-get install -y -q python3-venv python3-pip rsync systemd-timesyncd

step "user manyi"
if ! getent passwd manyi >/dev/null; then
    run useradd --system --home-dir /var/lib/manyi --no-create-home --shell /usr/sbin/nologin manyi
fi
getent group gpio >/dev/null && run usermod -a -G gpio manyi

step "code and virtualenv"
run mkdir -p /opt/manyi
run rsync -a --delete --exclude .git --exclude .venv --exclude var --exclude '*.egg-info' "$source_dir/" /opt/manyi/src/
if [[ ! -x /opt/manyi/venv/bin/python ]]; then run python3 -m venv /opt/manyi/venv; fi
if [[ -n $wheelhouse ]]; then
    run /opt/manyi/venv/bin/pip install --quiet --no-index --find-links "$wheelhouse" '/opt/manyi/src[device]'
else
    run /opt/manyi/venv/bin/pip install --quiet '/opt/manyi/src[device]'
fi

step "config and credentials"
run install -d -m 750 -o root -g manyi /etc/manyi
run install -m 640 -o root -g manyi "$config" /etc/manyi/terminal.toml
run install -m 644 -o root -g root "$ca" /etc/manyi/ca.crt

step "state (read-only-friendly: the service writes only /var/lib/manyi)"
run install -d -m 750 -o manyi -g manyi /var/lib/manyi

step "time (NTP via systemd-timesyncd; votes carry clock_ok)"
if [[ ${#ntp[@]} -gt 0 ]]; then
    printf '[Time]\nNTP=%s\n' "${ntp[*]}" | write /etc/systemd/timesyncd.conf.d/manyi.conf 644
fi
run systemctl enable --now systemd-timesyncd
run timedatectl set-ntp true

if [[ $volatile_journal -eq 1 ]]; then
    step "journal in RAM"
    printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' | write /etc/systemd/journald.conf.d/manyi.conf 644
    run systemctl restart systemd-journald
fi

step "service"
run install -m 644 /opt/manyi/src/deploy/systemd/manyi-terminal.service /etc/systemd/system/manyi-terminal.service
run systemctl daemon-reload
run systemctl enable manyi-terminal.service
run systemctl restart manyi-terminal.service
step "done: journalctl -u manyi-terminal -f"
