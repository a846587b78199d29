#!/usr/bin/env bash
# Artifact download: `updraft serve` (hawkBit DDI artifact URL, device TargetToken) against nginx
# serving the same 4 MiB file, on this machine, in one run. Prints throughput of both and the
# ratio updraft / nginx, for Range requests and for full-file GETs.
#
#   bash bench/download.sh            # 100 connections, 2 wrk threads, 10 s per run
#   DURATION=5 CONNECTIONS=50 bash bench/download.sh
#
# Everything listens on 127.0.0.1 (free ports) and lives in a temporary directory that is
# removed at the end, with both servers stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-100}
THREADS=${THREADS:-2}
SIZE=$((4 * 1024 * 1024))
# A resumed download: everything after the first MiB, as a device resuming with `Range: bytes=N-`.
RANGE="bytes=1048576-"

# --- tools --------------------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v jq >/dev/null || missing+=(jq)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} with apt-get" >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null ||
    { $sudo apt-get update >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null; }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

nice -n 10 cargo build -q --release -p updraft
UPDRAFT=$PWD/target/release/updraft

# --- temporary directory, servers, cleanup ------------------------------------------------------
tmp=$(mktemp -d)
updraft_pid=""
nginx_pid=""
cleanup() {
  [ -n "$updraft_pid" ] && kill -TERM "$updraft_pid" 2>/dev/null && wait "$updraft_pid" 2>/dev/null
  [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_http() {
  for _ in $(seq 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2
  return 1
}

# nginx workers may run as `nobody`: they must be able to read the file.
chmod 755 "$tmp"
mkdir -p "$tmp/www" "$tmp/nginx"
head -c "$SIZE" /dev/urandom >"$tmp/www/fw.bin"
chmod 644 "$tmp/www/fw.bin"

updraft_port=$(free_port)
RUST_LOG=warn "$UPDRAFT" serve --http "127.0.0.1:$updraft_port" --data-dir "$tmp/data" \
  >"$tmp/updraft.log" 2>&1 &
updraft_pid=$!
export UPDRAFT_SERVER="http://127.0.0.1:$updraft_port" UPDRAFT_TOKEN_FILE="$tmp/data/admin-token"
wait_http "$UPDRAFT_SERVER/api/v1/openapi.json"

# The publishing path a user takes: key, trust, release create, device, deploy.
"$UPDRAFT" keys generate --out "$tmp/release.pem" >/dev/null
"$UPDRAFT" keys trust bench "$tmp/release.pub.pem" >/dev/null
"$UPDRAFT" release create --quiet --key "$tmp/release.pem" \
  --vendor-id 4f0e2c1a-7d35-4c8e-9b21-3a6f5e8d9c10 --class bench --version 1.0.0 \
  "$tmp/www/fw.bin" >/dev/null 2>&1
token=$("$UPDRAFT" devices add bench-1 | jq -r .token)
"$UPDRAFT" deploy 1.0.0 --device bench-1 >/dev/null
# The artifact URL as the device learns it: poll, then deploymentBase.
auth="TargetToken $token"
ddi="$UPDRAFT_SERVER/DEFAULT/controller/v1/bench-1"
base=$(curl -sf -H "Authorization: $auth" "$ddi" | jq -r '._links.deploymentBase.href')
updraft_url=$(curl -sf -H "Authorization: $auth" "$base" |
  jq -r '.deployment.chunks[0].artifacts[] | select(.filename == "fw.bin") | ._links["download-http"].href')

nginx_port=$(free_port)
cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path $tmp/nginx/client_body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    root $tmp/www;
  }
}
EOF
"$NGINX" -e "$tmp/nginx/error.log" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" &
nginx_pid=$!
nginx_url="http://127.0.0.1:$nginx_port/fw.bin"
wait_http "$nginx_url"

# Both serve the same bytes, with the same Range semantics, before anything is timed.
for url in "$updraft_url" "$nginx_url"; do
  full=$(curl -sf -H "Authorization: $auth" "$url" | sha256sum)
  [ "$full" = "$(sha256sum <"$tmp/www/fw.bin")" ] || { echo "wrong body from $url" >&2; exit 1; }
  code=$(curl -s -o "$tmp/part" -w '%{http_code}' -H "Authorization: $auth" -H "Range: $RANGE" "$url")
  [ "$code" = 206 ] && cmp -s "$tmp/part" <(tail -c +1048577 "$tmp/www/fw.bin") ||
    { echo "wrong Range answer ($code) from $url" >&2; exit 1; }
done

# wrk reports through this script: exact bytes, duration and error counts.
cat >"$tmp/report.lua" <<'EOF'
local range = os.getenv("BENCH_RANGE")
if range ~= nil and range ~= "" then wrk.headers["Range"] = range end
wrk.headers["Authorization"] = os.getenv("BENCH_AUTH")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d %d\n", summary.requests,
    summary.bytes, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
EOF

# run NAME URL RANGE -> sets rps and mibs
run() {
  local out
  out=$(BENCH_RANGE="$3" BENCH_AUTH="$auth" wrk -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" \
    --timeout 10s -s "$tmp/report.lua" "$2" | grep '^RESULT')
  read -r _ req bytes us econn eread ewrite estatus etimeout p50 p99 <<<"$out"
  rps=$(awk -v r="$req" -v t="$us" 'BEGIN { printf "%.0f", r / (t / 1e6) }')
  mibs=$(awk -v b="$bytes" -v t="$us" 'BEGIN { printf "%.0f", b / 1048576 / (t / 1e6) }')
  printf '  %-8s %8s req/s %8s MiB/s  p50 %6.1f ms  p99 %6.1f ms  errors: %d connect, %d read, %d write, %d status, %d timeout\n' \
    "$1" "$rps" "$mibs" "$(awk -v x="$p50" 'BEGIN { print x / 1000 }')" \
    "$(awk -v x="$p99" 'BEGIN { print x / 1000 }')" "$econn" "$eread" "$ewrite" "$estatus" "$etimeout"
}

echo "artifact download: 4 MiB random file, wrk -t $THREADS -c $CONNECTIONS -d ${DURATION}s, 127.0.0.1"
echo "  updraft $("$UPDRAFT" --version | awk '{ print $2 }') (release build, SQLite, DDI artifact URL + TargetToken)"
echo "  $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') (sendfile on, access_log off, worker_processes auto)"
echo "  $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for scenario in range full; do
  if [ "$scenario" = range ]; then
    echo "Range: $RANGE (3 MiB per answer, 206)"
    r=$RANGE
  else
    echo "full GET (4 MiB per answer, 200)"
    r=""
  fi
  run updraft "$updraft_url" "$r"
  u_mibs=$mibs
  run nginx "$nginx_url" "$r"
  awk -v u="$u_mibs" -v n="$mibs" 'BEGIN { printf "  ratio updraft / nginx (throughput): %.2f\n", u / n }'
done
