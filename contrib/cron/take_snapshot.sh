#!/bin/sh
# take_snapshot.sh CONFIG CLUSTER_ID
#
# Drop-in for the seed's script of the same name: takes a node snapshot of CLUSTER_ID, waits
# for every node's outcome and records the run. CONFIG is the cassy-scheduler TOML file
# (contrib/cron/README.md). A third argument "cluster_wide", which earlier versions of this
# shim took, still takes a cluster-wide snapshot; take_cluster_wide_snapshot.sh is the
# seed's way.
# Exit codes are those of `cassy-scheduler backup --help` (0 means every node completed).
# Set CASSY_SCHEDULER to the program to run if cassy-scheduler is not on cron's PATH.
set -eu
if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
    echo "usage: $0 CONFIG CLUSTER_ID" >&2
    exit 2
fi
kind=snapshot
if [ "$#" -eq 3 ]; then
    if [ "$3" != "cluster_wide" ]; then
        echo "$0: the third argument may only be cluster_wide, not '$3'" >&2
        exit 2
    fi
    kind=cluster-wide
fi
# shellcheck disable=SC2086 # CASSY_SCHEDULER may hold a command with arguments
exec ${CASSY_SCHEDULER:-cassy-scheduler} backup "$kind" --config "$1" "$2"
