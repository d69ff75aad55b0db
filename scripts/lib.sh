# Shell helpers shared by run_tests.sh and run_benchmarks.sh (sourced, not run).

stop_server() {  # SIGTERM to the server's process group (background jobs ignore SIGINT), bounded
  [ -n "${server_pid:-}" ] || return 0
  kill -TERM -- "-$server_pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$server_pid" 2>/dev/null || return 0; sleep 1; done
  kill -KILL -- "-$server_pid" 2>/dev/null || true
}
