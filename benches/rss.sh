#!/usr/bin/env bash
# Porter's memory under load: RSS of `porter proxy` while wrk holds 64 connections on cache hits, and
# while one client pulls a 5 GiB body through it (relayed, larger than --max-object-size).
# Usage: benches/rss.sh [path/to/porter]   (default: target/release/porter; needs wrk and curl)
set -euo pipefail
porter=${1:-target/release/porter}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

head -c 1024 /dev/urandom >"$work/1k.bin"
truncate -s 5G "$work/5g.bin"                       # sparse: reading it costs no disk
"$porter" serve --root "$work" --listen 127.0.0.1:0 --cookies "$work/c.json" --event-log "$work/e.log" \
    --ban-after 0 --special-after 0 --max-age 3600 >"$work/serve.out" 2>/dev/null &
pids+=($!)
"$porter" proxy --listen 127.0.0.1:0 --cache-dir "$work/cache" >"$work/proxy.out" 2>/dev/null &
proxy_pid=$!
pids+=("$proxy_pid")
for _ in $(seq 50); do [ -s "$work/serve.out" ] && [ -s "$work/proxy.out" ] && break; sleep 0.1; done
origin=$(sed -n 's/^listening on //p' "$work/serve.out")
proxy=$(sed -n 's/^listening on //p' "$work/proxy.out")
rss() { awk '/^VmRSS/ {print $2}' "/proc/$proxy_pid/status"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$proxy_pid/status"; }

echo "idle:                       $(rss) KiB"
curl -s -x "http://$proxy" "http://$origin/1k.bin" -o /dev/null
printf 'wrk.path = "http://%s/1k.bin"\n' "$origin" >"$work/abs.lua"
wrk -t2 -c64 -d6s -s "$work/abs.lua" "http://$proxy" >"$work/wrk.out" &
wrk_pid=$!
samples=()
for _ in 1 2 3 4 5; do sleep 1; samples+=("$(rss)"); done
wait $wrk_pid
echo "64 connections, 1 KiB hits: RSS each second ${samples[*]} KiB ($(grep Requests/sec "$work/wrk.out"))"

curl -s -x "http://$proxy" "http://$origin/5g.bin" -o /dev/null -w '%{size_download}' >"$work/size" &
curl_pid=$!
samples=()
while kill -0 $curl_pid 2>/dev/null; do sleep 2; samples+=("$(rss)"); done
echo "5 GiB relayed ($(cat "$work/size") bytes): RSS every 2 s ${samples[*]} KiB"
echo "peak RSS over the whole run (VmHWM): $(hwm) KiB"
