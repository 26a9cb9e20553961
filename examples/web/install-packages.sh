#!/bin/sh
# Stands in for `apt-get install nginx` on a real instance.
set -eu
echo "installing packages on $ROLECALL_INSTANCE (incarnation $ROLECALL_INCARNATION)"
sleep 0.2
echo "nginx: ok"
