#!/usr/bin/env bash
# `make run`: llm-proxy on its embedded defaults (SQLite and generated secrets
# under ./data) with Envoy in front, until Ctrl-C.
#   UPSTREAM=          the real OpenAI API (api.openai.com:443)
#   UPSTREAM=fake      the fake OpenAI upstream from tests/, for an offline trial
#   UPSTREAM=host:port another OpenAI-compatible TLS upstream
set -euo pipefail
cd "$(dirname "$0")/.."

envoy_bin=$(bash scripts/envoy-path.sh)
run_dir=.run
mkdir -p "$run_dir"
export LLM_PROXY_DATA_DIR=${LLM_PROXY_DATA_DIR:-./data}

pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

render_args=()
case "${UPSTREAM:-}" in
"") upstream_desc="https://api.openai.com (set UPSTREAM=fake for an offline trial)" ;;
fake)
	rm -f "$run_dir/fake-ca.pem"
	bin/fake-openai -addr 127.0.0.1:8443 -cert-out "$run_dir/fake-ca.pem" >"$run_dir/fake-openai.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do [ -s "$run_dir/fake-ca.pem" ] && break; sleep 0.1; done
	render_args=(--upstream 127.0.0.1:8443 --upstream-ca "$run_dir/fake-ca.pem")
	upstream_desc="the fake OpenAI upstream on 127.0.0.1:8443 (log: $run_dir/fake-openai.log)"
	;;
*)
	render_args=(--upstream "$UPSTREAM")
	upstream_desc="https://$UPSTREAM"
	;;
esac

bin/llm-proxy envoy-config "${render_args[@]}" >"$run_dir/envoy.yaml"

bin/llm-proxy serve 2> >(tee "$run_dir/llm-proxy.log" >&2) &
pids+=($!)
"$envoy_bin" -c "$run_dir/envoy.yaml" --log-level warn --log-path "$run_dir/envoy.log" &
pids+=($!)

ready() { curl -fsS "$1" >/dev/null 2>&1; }
for _ in $(seq 150); do
	ready http://127.0.0.1:8081/readyz && ready http://127.0.0.1:9901/ready && break
	sleep 0.2
done
if ! ready http://127.0.0.1:8081/readyz || ! ready http://127.0.0.1:9901/ready; then
	echo "llm-proxy or Envoy did not become ready; see $run_dir/*.log" >&2
	exit 1
fi

mgmt=${LLM_PROXY_MANAGEMENT_TOKEN:-$(cat "$LLM_PROXY_DATA_DIR/management-token")}
cat <<MSG

llm-proxy is running:  Envoy on http://127.0.0.1:10000 -> $upstream_desc
                        ext_proc gRPC 127.0.0.1:9002, management + /metrics on 127.0.0.1:8081

Admin UI: http://127.0.0.1:10000/admin/  (sign in with the management token;
          also served directly on http://127.0.0.1:8081/admin/)

Or try it with curl (the management token is in $LLM_PROXY_DATA_DIR/management-token):

  export MGMT=$mgmt

  # 1. a project holding the real OpenAI key
  curl -s http://127.0.0.1:10000/manage/projects -H "Authorization: Bearer \$MGMT" \\
       -d '{"name":"demo","openai_api_key":"sk-your-real-key"}'

  # 2. a proxy token for it (paste the project id; the token is shown only once)
  curl -s http://127.0.0.1:10000/manage/tokens -H "Authorization: Bearer \$MGMT" \\
       -d '{"project_id":"proj_…","expires_in":"720h","max_requests":1000}'

  # 3. call OpenAI through Envoy with the proxy token
  curl -s http://127.0.0.1:10000/v1/chat/completions -H "Authorization: Bearer llmp_…" \\
       -H 'content-type: application/json' \\
       -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'

Logs: $run_dir/llm-proxy.log, $run_dir/envoy.log. Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
