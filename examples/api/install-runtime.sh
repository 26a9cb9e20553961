#!/bin/sh
set -eu
echo "installing the API runtime on $ROLECALL_INSTANCE"
