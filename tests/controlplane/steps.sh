# shellcheck shell=bash
# Sourced by the build scripts: numbered steps with their elapsed time, and the chatter of apt
# and Go (download lines, dpkg progress) kept in a log file that is named, with its last lines,
# only when a step fails. A step that runs long says so every 50 s: no build is silent for a
# minute.
#
#   steps_init PREFIX TOTAL   before the first step (PREFIX like "[node build]")
#   step WHAT                 the next step: "PREFIX n/N WHAT", and the previous one's time
#   quietly CMD...            CMD with its output in the log (a failure prints the log's end)
#   steps_done                "PREFIX done in Ns" after the last step
# STEPS_LOG is the log file, for commands whose stdout the script reads (2>>"$STEPS_LOG").

steps_init() {
  STEPS_PREFIX=$1
  STEPS_TOTAL=$2
  STEPS_AT=0
  STEPS_STARTED=$SECONDS
  STEP_STARTED=$SECONDS
  local dir=${PULLSECRET_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullsecret-injector}/logs
  mkdir -p "$dir"
  STEPS_LOG=$dir/$(basename "$0" .sh)-$(date +%Y%m%dT%H%M%S)-$$.log
  : >"$STEPS_LOG"
}

step() {
  if [ "$STEPS_AT" -gt 0 ]; then
    printf '%s %d/%d done in %ds\n' "$STEPS_PREFIX" "$STEPS_AT" "$STEPS_TOTAL" "$((SECONDS - STEP_STARTED))" >&2
  fi
  STEPS_AT=$((STEPS_AT + 1))
  STEP_WHAT=$*
  STEP_STARTED=$SECONDS
  printf '%s %d/%d %s\n' "$STEPS_PREFIX" "$STEPS_AT" "$STEPS_TOTAL" "$*" >&2
}

steps_done() {
  if [ "$STEPS_AT" -gt 0 ]; then
    printf '%s %d/%d done in %ds\n' "$STEPS_PREFIX" "$STEPS_AT" "$STEPS_TOTAL" "$((SECONDS - STEP_STARTED))" >&2
  fi
  printf '%s all done in %ds\n' "$STEPS_PREFIX" "$((SECONDS - STEPS_STARTED))" >&2
  rm -f "$STEPS_LOG"
}

quietly() {
  "$@" >>"$STEPS_LOG" 2>&1 &
  local pid=$! next=$((SECONDS + 50)) rc=0
  # Polls the child once a second to say that a long step is still working.
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if [ "$SECONDS" -ge "$next" ]; then
      printf '%s %d/%d %s: still working (%ds)\n' "$STEPS_PREFIX" "$STEPS_AT" "$STEPS_TOTAL" \
        "$STEP_WHAT" "$((SECONDS - STEP_STARTED))" >&2
      next=$((next + 50))
    fi
  done
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then
    printf '%s %d/%d %s failed (exit %d); the log is %s, its last lines:\n' "$STEPS_PREFIX" \
      "$STEPS_AT" "$STEPS_TOTAL" "$STEP_WHAT" "$rc" "$STEPS_LOG" >&2
    tail -n 25 "$STEPS_LOG" >&2
  fi
  return "$rc"
}
