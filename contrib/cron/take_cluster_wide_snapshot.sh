#!/bin/sh
# take_cluster_wide_snapshot.sh CONFIG CLUSTER_ID
#
# Drop-in for the old script of the same name: takes a cluster-wide snapshot (applications
# paused) of CLUSTER_ID, waits for every node's outcome and records the run. CONFIG is the
# cassy-scheduler TOML file. Exit codes are those of `cassy-scheduler backup --help`.
# Set CASSY_SCHEDULER to the program to run if cassy-scheduler is not on cron's PATH.
set -eu
if [ "$#" -ne 2 ]; then
    echo "usage: $0 CONFIG CLUSTER_ID" >&2
    exit 2
fi
# shellcheck disable=SC2086 # CASSY_SCHEDULER may hold a command with arguments
exec ${CASSY_SCHEDULER:-cassy-scheduler} backup cluster-wide --config "$1" "$2"
