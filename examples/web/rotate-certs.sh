#!/bin/sh
# A reconfiguration run: rotate the site's certificates.
set -eu
echo "rotating certificates on $ROLECALL_INSTANCE"
sleep "${ROTATE_SECONDS:-1}"
echo "done"
