#!/bin/sh
# take_snapshot.sh CONFIG CLUSTER_ID [cluster_wide]
#
# Drop-in for the old script of the same name: takes a node snapshot of CLUSTER_ID (or a
# cluster-wide one when the third argument is "cluster_wide"), waits for every node's
# outcome and records the run. CONFIG is the cassy-scheduler TOML file.
# Exit codes are those of `cassy-scheduler backup --help` (0 means every node completed).
# Set CASSY_SCHEDULER to the program to run if cassy-scheduler is not on cron's PATH.
set -eu
if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
    echo "usage: $0 CONFIG CLUSTER_ID [cluster_wide]" >&2
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
