#!/bin/sh
# take_incremental_backup.sh CONFIG CLUSTER_ID
#
# Drop-in for the old script of the same name: finds the newest snapshot of CLUSTER_ID that
# completed on every node, takes an incremental backup extending it, waits for every node's
# outcome and records the run. CONFIG is the cassy-scheduler TOML file; its incremental job
# for this cluster (or its first incremental job) says what to do when there is no snapshot.
# Exit codes are those of `cassy-scheduler backup --help`.
# Set CASSY_SCHEDULER to the program to run if cassy-scheduler is not on cron's PATH.
set -eu
if [ "$#" -ne 2 ]; then
    echo "usage: $0 CONFIG CLUSTER_ID" >&2
    exit 2
fi
# shellcheck disable=SC2086 # CASSY_SCHEDULER may hold a command with arguments
exec ${CASSY_SCHEDULER:-cassy-scheduler} backup incremental --config "$1" "$2"
