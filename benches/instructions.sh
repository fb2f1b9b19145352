#!/usr/bin/env bash
# instructions.sh: the instructions one request costs `porter proxy` in user space, counted by
# callgrind: unlike timings, the count repeats on a noisy or shared machine, so two builds compare in
# one sitting. The kernel's side (system calls) is not in it: per-request.sh counts those.
#
#   benches/instructions.sh [--porter PATH]... [--duration S] [--cases LIST] [--out DIR]
#
# Cases, each through the proxy on a cached 1 KiB file from a local nginx origin:
#   1k-hit          keep-alive (wrk -t1 -c2)
#   1k-hit-newconn  Connection: close, a new connection per request (wrk -t1 -c2)
#   https-newconn   through --intercept, one request per TLS connection (tls-load --new-conn --conns 2,
#                   which resumes sessions with the tickets it gets)
#   random-cold     keep-alive random hits over 20,000 cached 1 KiB files (INS_COLD_ENTRIES) with a
#                   2 MiB memory tier that holds few of them: the disk path of a hit (open, read,
#                   check, into memory). The cache is filled through the same binary run natively
#                   first, and read once (cat) so the entries are in the page cache.
# Each --porter (default target/release/porter; give it twice or more to compare builds) runs under
# valgrind --tool=callgrind with --workers 2 and an access log, as side-by-side.sh runs it; after a
# warm-up the counters are zeroed (callgrind_control -z), the load runs --duration seconds (default
# 8), and the dump's instruction total is divided by the requests the load made. valgrind shows ring
# and aws-lc (interception's X25519) fewer CPU features than the machine has (no ADX or SHA
# extensions), so the TLS case counts their generic code: compare builds with it, not with other TLS
# servers.
# Output: a table, and results.tsv in --out (default: a new folder under /tmp, kept) with the
# callgrind files (callgrind_annotate them). Needs: valgrind nginx wrk curl openssl; build first:
# cargo build --release && cargo build --release --example tls-load
set -u -o pipefail

DURATION=8; OUT=""; PORTERS=(); CASES=(1k-hit 1k-hit-newconn https-newconn random-cold)
COLD_ENTRIES=${INS_COLD_ENTRIES:-20000}
TLS_LOAD=${TLS_LOAD:-target/release/examples/tls-load}
ORIGIN=${INS_ORIGIN:-18075}; ORIGIN_TLS=${INS_ORIGIN_TLS:-18475}; PORTER_PORT=${INS_PORTER:-13165}

fail() { echo "instructions: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --porter) PORTERS+=("${2:?--porter needs a path}"); shift 2 ;;
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        --cases) IFS=, read -r -a CASES <<<"${2:?--cases needs a comma-separated list}"; shift 2 ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) fail "unknown option $1 (see --help)" ;;
    esac
done
[ ${#PORTERS[@]} -gt 0 ] || PORTERS=(target/release/porter)
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || fail "--duration takes whole seconds (at least 1)"
for tool in valgrind callgrind_control nginx wrk curl openssl python3; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || fail "$tool is missing (apt-get install $tool)"
done
for i in "${!PORTERS[@]}"; do
    [ -x "${PORTERS[$i]}" ] || fail "${PORTERS[$i]} not found: cargo build --release"
    PORTERS[i]=$(realpath "${PORTERS[$i]}")
done
if [[ " ${CASES[*]} " == *" https-newconn "* ]]; then
    [ -x "$TLS_LOAD" ] || fail "$TLS_LOAD not found: cargo build --release --example tls-load"
    TLS_LOAD=$(realpath "$TLS_LOAD")
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

RUN=${OUT:-$(mktemp -d /tmp/instructions.XXXXXX)}
mkdir -p "$RUN"/{www,nginx,logs,tls}
chmod 755 "$RUN"
RESULTS=$RUN/results.tsv
NAME=instructions
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"
for port in $ORIGIN $ORIGIN_TLS $PORTER_PORT; do
    listening "$port" && fail "127.0.0.1:$port is in use (set INS_ORIGIN, INS_ORIGIN_TLS, INS_PORTER)"
done

# ---- nginx, the origin (plain and TLS), with a throw-away CA
head -c 1024 /dev/urandom >"$RUN/www/1k.bin"
# random-cold's files: COLD_ENTRIES of 1 KiB, a thousand to a folder, each different in its first bytes.
python3 - "$RUN/www/r" "$COLD_ENTRIES" <<'EOF'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
filler = os.urandom(1024)
for i in range(count):
    folder = os.path.join(root, "%03d" % (i // 1000))
    os.makedirs(folder, exist_ok=True)
    head = b"%07d\n" % i
    with open(os.path.join(folder, "%06d.bin" % i), "wb") as f:
        f.write(head + filler[len(head):])
EOF
chmod -R a+rX "$RUN/www"
tls=$RUN/tls
origin_certificate "$tls" bench-origin-ca 'subjectAltName=IP:127.0.0.1' || fail "openssl could not make the origin certificate"
{ nginx_conf_head; cat <<EOF
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$ORIGIN;
        listen 127.0.0.1:$ORIGIN_TLS ssl;
        ssl_certificate $tls/origin.pem; ssl_certificate_key $tls/origin-key.pem;
        root $RUN/www;
        location / { add_header Cache-Control "max-age=3600"; }
    }
}
EOF
} >"$RUN/nginx/nginx.conf"
start nginx "$NGINX" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/logs/nginx-error.log" -g 'daemon off;'
await "$ORIGIN" nginx || exit 1

cat >"$RUN/wrk.lua" <<'EOF'
-- Absolute-form target for the proxy (INS_TARGET), optional Connection: close (INS_CLOSE=1).
wrk.path = os.getenv("INS_TARGET")
wrk.headers["Host"] = os.getenv("INS_HOST")
if os.getenv("INS_CLOSE") == "1" then wrk.headers["Connection"] = "close" end
done = function(summary, latency, requests)
  io.write(string.format("WRK requests=%d\n", summary.requests))
end
EOF
cat >"$RUN/random.lua" <<'EOF'
-- Random (INS_RANDOM=1) or, once each, sequential URLs over INS_SPAN files under /r (absolute form).
local threads = 0
function setup(thread) thread:set("first", threads); threads = threads + 1 end
function init(args)
  n = tonumber(os.getenv("INS_SPAN")); prefix = os.getenv("INS_PREFIX"); idx = first
  random = os.getenv("INS_RANDOM") == "1"; math.randomseed(12345 + first)
end
function request()
  local i
  if random then i = math.random(0, n - 1) else i = idx % n; idx = idx + 2 end
  return wrk.format("GET", string.format("%s/r/%03d/%06d.bin", prefix, math.floor(i / 1000), i))
end
done = function(summary, latency, requests)
  io.write(string.format("WRK requests=%d\n", summary.requests))
end
EOF
URL="http://127.0.0.1:$ORIGIN/1k.bin"
# load CASE SECONDS: the case's load through the proxy; prints the requests it made.
load() {
    case "$1" in
        1k-hit|1k-hit-newconn)
            env INS_TARGET="$URL" INS_HOST="127.0.0.1:$ORIGIN" INS_CLOSE="$([ "$1" = 1k-hit ] && echo 0 || echo 1)" \
                wrk -t1 -c2 -d"$2s" --timeout 20s -s "$RUN/wrk.lua" "http://127.0.0.1:$PORTER_PORT/" ;;
        random-cold)
            env INS_SPAN="$COLD_ENTRIES" INS_PREFIX="http://127.0.0.1:$ORIGIN" INS_RANDOM=1 \
                wrk -t1 -c2 -d"$2s" --timeout 20s -s "$RUN/random.lua" "http://127.0.0.1:$PORTER_PORT/" ;;
        https-newconn)
            "$TLS_LOAD" --proxy "127.0.0.1:$PORTER_PORT" --cacert "$CASE_DIR/ca/ca.pem" --conns 2 \
                --duration "$2" --new-conn "https://127.0.0.1:$ORIGIN_TLS/1k.bin" ;;
    esac 2>>"$RUN/logs/load.err" | sed -n 's/^\(WRK\|TLSLOAD\) requests=\([0-9]*\).*/\2/p'
}

printf 'porter\tcase\trequests\tinstructions\tper_request\n' >"$RESULTS"
echo "== instructions $(date -u +%FT%TZ) on $(nproc) cores; ${DURATION}s a case; folder $RUN"
for n in "${!PORTERS[@]}"; do
    porter=${PORTERS[$n]}
    echo "   porter $n: $porter (built $(date -u -r "$porter" +%FT%TZ))"
    for case in "${CASES[@]}"; do
        CASE_DIR=$RUN/porter$n-$case
        mkdir -p "$CASE_DIR"
        args=(proxy --listen "127.0.0.1:$PORTER_PORT" --cache-dir "$CASE_DIR/cache" --workers 2
            --access-log "$CASE_DIR/access.log")
        if [ "$case" = https-newconn ]; then
            "$porter" ca init --ca-dir "$CASE_DIR/ca" >/dev/null || fail "porter ca init failed"
            args+=(--intercept --ca-dir "$CASE_DIR/ca" --upstream-ca "$tls/origin-ca.pem"
                --connect-port "$ORIGIN_TLS")
        fi
        if [ "$case" = random-cold ]; then
            args+=(--memory-cache-size 2MiB)
            # Filled by the same binary, natively: every file once (two connections, each its half).
            RUST_LOG=warn start "fill$n" "$porter" "${args[@]}"
            await "$PORTER_PORT" "fill$n" || exit 1
            env INS_SPAN="$COLD_ENTRIES" INS_PREFIX="http://127.0.0.1:$ORIGIN" INS_RANDOM=0 \
                wrk -t2 -c2 -d3600s --timeout 20s -s "$RUN/random.lua" "http://127.0.0.1:$PORTER_PORT/" \
                >/dev/null 2>&1 &
            fill=$!
            for _ in $(seq 600); do
                stored=$(find "$CASE_DIR/cache" -mindepth 2 -type f ! -path '*/tmp/*' | wc -l)
                [ "$stored" -ge "$COLD_ENTRIES" ] && break
                sleep 0.5
            done
            kill "$fill" 2>/dev/null; wait "$fill" 2>/dev/null
            kill -TERM -- "-${PID[fill$n]}" 2>/dev/null; wait "${PID[fill$n]}" 2>/dev/null; unset "PID[fill$n]"
            find "$CASE_DIR/cache" -type f -print0 | xargs -0 cat >/dev/null
        fi
        RUST_LOG=warn start "porter$n-$case" valgrind --tool=callgrind \
            --callgrind-out-file="$CASE_DIR/callgrind.out" "$porter" "${args[@]}"
        await "$PORTER_PORT" "porter$n-$case" || exit 1
        vg=${PID[porter$n-$case]}
        for _ in 1 2; do curl -s -o /dev/null --max-time 30 -x "http://127.0.0.1:$PORTER_PORT" "$URL"; done
        load "$case" "$([ "$case" = random-cold ] && echo 5 || echo 2)" >/dev/null
        callgrind_control -z "$vg" >/dev/null 2>&1
        requests=$(load "$case" "$DURATION")
        callgrind_control -d "$vg" >/dev/null 2>&1
        dump=$(ls -t "$CASE_DIR"/callgrind.out.* 2>/dev/null | head -n 1)
        total=$([ -n "$dump" ] && sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$dump" | head -n 1)
        kill -TERM -- "-$vg" 2>/dev/null; wait "$vg" 2>/dev/null; unset "PID[porter$n-$case]"
        if [ -z "$requests" ] || [ "$requests" = 0 ] || [ -z "$total" ]; then
            echo "  $case: no count (see $RUN/logs)"; continue
        fi
        printf '%s\t%s\t%s\t%s\t%d\n' "$n" "$case" "$requests" "$total" $((total / requests)) >>"$RESULTS"
        printf '  porter %s  %-15s %9d instructions a request (%d requests)\n' "$n" "$case" $((total / requests)) "$requests"
    done
done
echo "results: $RESULTS"
