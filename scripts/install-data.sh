#!/bin/sh
# Install the Colin27 T1 head (Debian/Ubuntu package mricron-data, BSD-3) when it is missing.
set -e
FILE=/usr/share/mricron/templates/ch2.nii.gz
[ -f "$FILE" ] && exit 0
echo "Colin27 ($FILE) is missing: installing the Debian package mricron-data"
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "error: cannot install mricron-data without root. Run:" >&2
    echo "    sudo apt-get install mricron-data" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get not found; install the mricron-data package (Colin27 ch2.nii.gz)" >&2
    echo "by other means, or set data.source to your own NIfTI volume in the config." >&2
    exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mricron-data >/dev/null
[ -f "$FILE" ] || { echo "error: mricron-data installed but $FILE is absent" >&2; exit 1; }
