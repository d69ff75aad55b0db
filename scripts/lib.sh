# Shell helpers of the scripts (sourced, not run): start the model server and stop it.
# `paperchat serve-llm` does the real work (free port with --port 0, health check, ready
# file); these only start it in a process group of its own, wait for its ready file (it
# exits with an error if vLLM fails or is not ready in time), and stop the group.
# Needs $BIN (the app's virtualenv bin folder).

llm_pid="" LLM_URL=""

start_llm() {  # start_llm LOG [serve-llm options]: start it and wait; sets LLM_URL and llm_pid
  local log=$1 ready
  shift
  ready=$(mktemp -u "${TMPDIR:-/tmp}/paperchat-ready.XXXXXX")
  setsid "$BIN/paperchat" serve-llm --ready-file "$ready" "$@" >"$log" 2>&1 &
  llm_pid=$!
  until [ -s "$ready" ]; do
    if ! kill -0 "$llm_pid" 2>/dev/null; then
      if wait "$llm_pid" && [ -s "$ready" ]; then break; fi  # --reuse: reported, exited
      echo "error: the model server exited before it was ready (log: $log):" >&2
      tail -n 20 "$log" >&2
      llm_pid=""
      return 1
    fi
    sleep 1
  done
  LLM_URL=$(cat "$ready")
  rm -f "$ready"
  sleep 0.2
  if ! kill -0 "$llm_pid" 2>/dev/null; then  # --reuse found one running: nothing to stop
    wait "$llm_pid" || true
    llm_pid=""
  fi
}

stop_llm() {  # SIGTERM to the server's process group, bounded wait, then SIGKILL
  [ -n "${llm_pid:-}" ] || return 0
  kill -TERM -- "-$llm_pid" 2>/dev/null || true
  # serve-llm gives vLLM 30 s to stop, then 30 s more to its engine processes
  for _ in $(seq 1 75); do
    kill -0 "$llm_pid" 2>/dev/null || { llm_pid=""; return 0; }
    sleep 1
  done
  kill -KILL -- "-$llm_pid" 2>/dev/null || true
  llm_pid=""
}
