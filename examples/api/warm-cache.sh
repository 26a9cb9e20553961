#!/bin/sh
# A one-of-N job: any single API instance may do it.
set -eu
echo "cache warmed by $ROLECALL_INSTANCE"
