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

# Install the PMDAs the non-interactive way (pmcd's start script runs .NeedInstall): openmetrics always,
# nvidia where the node's GPU driver is visible. Then start pmcd.
touch "$PCP_PMDAS_DIR/openmetrics/.NeedInstall"
probes=""
for name in $names; do probes="$probes openmetrics.$name"; done
if [ -e /dev/nvidiactl ] && [ -d "$PCP_PMDAS_DIR/nvidia" ]; then
  touch "$PCP_PMDAS_DIR/nvidia/.NeedInstall"
  probes="$probes nvidia.gpuactive"
fi
"$PCP_RC_DIR/pmcd" start
"$PCP_BINADM_DIR/pmcd_wait" -t "${KVBENCH_TIMEOUT}sec"

# The readiness gate: pmlogger reads its configuration once, so wait until every source has values
# (pmprobe -v prints "<metric> <number of values> ..." per leaf; a source answers when one leaf has values).
deadline=$(( $(date +%s) + KVBENCH_TIMEOUT ))
for probe in $probes; do
  until pmprobe -v "$probe" 2>/dev/null | grep -q '^[^ ]* [1-9]'; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "kvbench-pcp: metric source $probe gave no values within ${KVBENCH_TIMEOUT} s" >&2
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
