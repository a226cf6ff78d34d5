#!/usr/bin/env bash
# Provision many terminals from an inventory CSV, one after another, over ssh.
#
#   provision-many.sh INVENTORY.csv --ca ca.crt [--passwd FILE] [--broker HOST:PORT]
#                     [--ntp SERVER] [--dry-run]
#
# Run on the server (it writes the terminals' credentials into the broker's password
# file with deploy/mosquitto/add-terminal.sh). For each row host,device_id,ssh_user it
# creates the credentials, copies the source tree, the config and the CA to the Pi with
# scp, runs deploy/terminal/provision.sh there with sudo, and deletes the local config.
# One failing terminal does not stop the others; a summary lists every failure and the
# exit code is 1 if any failed. Logs: provision-logs/<device_id>.log. Re-running for a
# terminal rotates its password. Afterwards: systemctl reload mosquitto.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
inventory= ca= passwd=/etc/mosquitto/passwd broker=${MANYI_BROKER:-mqtt.manyi.internal:8883} dry_run=0
ntp_args=()
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --ca) ca=$2; shift 2 ;;
        --passwd) passwd=$2; shift 2 ;;
        --broker) broker=$2; shift 2 ;;
        --ntp) ntp_args+=(--ntp "$2"); shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage ;;
        -*) echo "provision-many: unknown option $1" >&2; usage ;;
        *) inventory=$1; shift ;;
    esac
done
[[ -n $inventory && -n $ca ]] || usage
[[ -f $inventory ]] || { echo "provision-many: inventory $inventory not found" >&2; exit 1; }

run() { if [[ $dry_run -eq 1 ]]; then echo "+ $*"; else "$@"; fi; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p provision-logs
tar -C "$repo" --exclude .git --exclude .venv --exclude var --exclude '*.egg-info' -czf "$work/manyi.tar.gz" .
failed=() done_count=0
while IFS=, read -r host device user _rest; do
    host=${host//[[:space:]]/}; device=${device//[[:space:]]/}; user=${user//[[:space:]]/}
    [[ -z $host || $host == \#* || $host == host ]] && continue
    user=${user:-pi}
    log=provision-logs/$device.log
    echo "== $device on $user@$host (log: $log)"
    if (
        set -e
        run bash "$repo/deploy/mosquitto/add-terminal.sh" -f "$passwd" -o "$work/conf" -b "$broker" "$device"
        remote=/tmp/manyi-provision
        run ssh -o BatchMode=yes "$user@$host" "rm -rf $remote && mkdir -p $remote/src"
        run scp -q -o BatchMode=yes "$work/manyi.tar.gz" "$work/conf/$device.toml" "$ca" "$user@$host:$remote/"
        run ssh -o BatchMode=yes "$user@$host" \
            "tar -C $remote/src -xzf $remote/manyi.tar.gz && sudo bash $remote/src/deploy/terminal/provision.sh \
             --config $remote/$device.toml --ca $remote/$(basename "$ca") ${ntp_args[*]:-}; rc=\$?; rm -rf $remote; exit \$rc"
    ) >"$log" 2>&1; then
        done_count=$((done_count + 1))
    else
        failed+=("$device@$host")
        echo "   FAILED: see $log" >&2
    fi
    rm -f "$work/conf/$device.toml"
done <"$inventory"

echo "provisioned $done_count terminal(s); failed: ${#failed[@]}"
for item in "${failed[@]}"; do echo "  $item"; done
echo "now: systemctl reload mosquitto"
[[ ${#failed[@]} -eq 0 ]]
