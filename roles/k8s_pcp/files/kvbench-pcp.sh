#!/bin/sh
# kvbench PCP pod: pmcd + openmetrics PMDA for this node's sources, then pmlogger until told to stop.
# Inputs (env): NODE_NAME, KVBENCH_SCENARIO, KVBENCH_INTERVAL, KVBENCH_TIMEOUT, KVBENCH_ARCHIVE_ROOT.
set -eu
. /etc/pcp.conf
export PCP_PYTHON_PROG="${PCP_PYTHON_PROG:-python3}"
archive_dir="$KVBENCH_ARCHIVE_ROOT/$KVBENCH_SCENARIO/$NODE_NAME"
config_dir="$PCP_PMDAS_DIR/openmetrics/config.d"
mkdir -p "$archive_dir" "$config_dir"

# The sources of this node: targets ConfigMap keys are <node>__<name>.url.
names=""
for f in /kvbench/targets/*.url; do
  [ -e "$f" ] || continue
  base=$(basename "$f")
  case "$base" in
    "${NODE_NAME}__"*) name=${base#"${NODE_NAME}__"}; cp "$f" "$config_dir/$name"; names="$names ${name%.url}" ;;
  esac
done

# Install the openmetrics PMDA the non-interactive way (pmcd's start script runs .NeedInstall), start pmcd.
touch "$PCP_PMDAS_DIR/openmetrics/.NeedInstall"
"$PCP_RC_DIR/pmcd" start
"$PCP_BINADM_DIR/pmcd_wait" -t "${KVBENCH_TIMEOUT}sec"

# pmlogger reads its configuration once: wait until every source serves metrics.
deadline=$(( $(date +%s) + KVBENCH_TIMEOUT ))
for name in $names; do
  until pminfo "openmetrics.$name" 2>/dev/null | grep -q .; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "kvbench-pcp: openmetrics source $name never served metrics" >&2
      exit 1
    fi
    sleep 2
  done
done

pmlogger -c /kvbench/config/pmlogger.config -t "$KVBENCH_INTERVAL" -l "$archive_dir/pmlogger.log" "$archive_dir/archive" &
echo $! > /tmp/pmlogger.pid
touch "$archive_dir/STARTED"
# The sweep stops pmlogger (kill -INT) before copying the archive; keep the pod for the copy afterwards.
wait "$(cat /tmp/pmlogger.pid)" || true
touch "$archive_dir/STOPPED"
exec tail -f /dev/null
