#!/usr/bin/env bash
# slow-peers.sh: can a normal client still get a cached 1 KiB file while slow peers attack the proxy?
#
#   benches/slow-peers.sh [--duration S] [--connections N] [--scenarios LIST] [--probe-timeout S]
#                         [--porter PATH] [--porter-args "FLAGS"] [--out DIR]
#
# Scenarios (--scenarios takes a comma-separated subset; all three by default), each run by
# slowhttptest through the proxy (-d) for --duration seconds (default 15) with --connections
# attack connections (default 100, opened at 50 a second):
#   slow-body   -B: POST heads with Content-Length 100000, then a few body bytes every 10 s
#   slow-read   -X: GET of a cached 100 MiB object, read 32 bytes every 5 s through a 512-1024
#               byte receive window, the request repeated 3 times per connection
#   slowloris   -H: a request head that never ends, one more header line every 10 s
# While each attack runs, a probe starts one curl -x every 0.5 s (a fresh connection each, at
# most --probe-timeout seconds, default 5) for the cached http://127.0.0.1:$SP_ORIGIN/1k.bin; a
# probe is ok when it gets a 200 in time. p50 and max are over all probes, a failed one counted
# at the time it took to fail. The verdict is slowhttptest's own: the seconds its probe (through
# the proxy too) found the service available, out of the seconds it ran, and how its attack
# connections stood when it stopped (closed by the proxy / pending / still connected); it probes far
# less often than the curl probe (one request at a time, each allowed --probe-timeout), so it is
# the coarser of the two. After each attack the proxy gets up to 30 s to serve a probe again
# ("after": seconds it took) before the next one starts.
#
# What runs (all on 127.0.0.1, every process in its own process group, stopped by PID at exit):
#   nginx   origin on $SP_ORIGIN (18090): /1k.bin and /100m.bin fresh for an hour; POST /upload
#           reads the whole body, then answers with /1k.bin
#   squid   memory cache big enough for both files, on $SP_SQUID (13138), when installed
#   porter  target/release/porter proxy on $SP_PORTER (13148), cache in the run's folder, with
#           Porter's default timeouts and worker count unless --porter-args adds flags, e.g.
#           --porter-args "--head-timeout 2s --client-timeout 5s" (see porter proxy --help)
# Both caches are warmed (two requests per file) before the first attack.
#
# Output: a line per run, a final table, and everything as results.tsv in --out (default: a new
# folder under /tmp, kept), slowhttptest's own output and CSV under its logs/. About 2.5 minutes
# with the defaults (six runs of --duration + --probe-timeout + 3 s, and the set-up). Needs: slowhttptest nginx curl (apt-get install slowhttptest nginx curl),
# squid optional (apt-get install squid-openssl). Build first: cargo build --release
set -u -o pipefail

DURATION=15; CONNS=100; SCENARIOS=""; OUT=""; PROBE_TIMEOUT=5; PORTER_ARGS=""
PORTER=${PORTER:-target/release/porter}
ORIGIN=${SP_ORIGIN:-18090}; SQUID=${SP_SQUID:-13138}; PORTER_PORT=${SP_PORTER:-13148}

fail() { echo "slow-peers: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --connections) CONNS=${2:?--connections needs a number}; shift 2 ;;
        --scenarios) SCENARIOS=${2:?--scenarios needs a list}; shift 2 ;;
        --probe-timeout) PROBE_TIMEOUT=${2:?--probe-timeout needs seconds}; shift 2 ;;
        --porter) PORTER=${2:?--porter needs a path}; shift 2 ;;
        --porter-args) PORTER_ARGS=${2?--porter-args needs flags}; shift 2 ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) fail "unknown option $1 (see --help)" ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $DURATION -ge 3 ]] || fail "--duration takes whole seconds, 3 or more"
[[ $CONNS =~ ^[0-9]+$ && $CONNS -ge 1 ]] || fail "--connections takes a positive number"
[[ $PROBE_TIMEOUT =~ ^[0-9]+$ && $PROBE_TIMEOUT -ge 1 ]] || fail "--probe-timeout takes whole seconds"
for scenario in ${SCENARIOS//,/ }; do
    case "$scenario" in slow-body|slow-read|slowloris) ;; *) fail "unknown scenario $scenario" ;; esac
done
for tool in slowhttptest nginx curl; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || fail "$tool is missing (apt-get install $tool)"
done
[ -x "$PORTER" ] || fail "$PORTER not found: cargo build --release"
PORTER=$(realpath "$PORTER")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
SQUID_BIN=$(command -v squid || { [ -x /usr/sbin/squid ] && echo /usr/sbin/squid; } || true)

RUN=${OUT:-$(mktemp -d /tmp/slow-peers.XXXXXX)}
mkdir -p "$RUN"/{www,nginx,squid,porter,logs,probes}
chmod 755 "$RUN"
RESULTS=$RUN/results.tsv

# ---- processes: each in its own session, stopped by PID at exit (benches/common.sh)
NAME=slow-peers
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"
for port in $ORIGIN $SQUID $PORTER_PORT; do
    listening "$port" && fail "127.0.0.1:$port is in use (set the SP_* variables)"
done

# ---- content and the nginx origin
head -c 1024 /dev/urandom >"$RUN/www/1k.bin"
head -c 104857600 /dev/urandom >"$RUN/www/100m.bin"
chmod -R a+rX "$RUN/www"
{ nginx_conf_head; cat <<EOF
    sendfile on; tcp_nopush on;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$ORIGIN;
        root $RUN/www;
        location / { add_header Cache-Control "max-age=3600"; }
        # Reads the whole request body (request buffering), then answers a GET of /1k.bin.
        location = /upload {
            client_max_body_size 1m;
            proxy_method GET; proxy_pass_request_body off; proxy_set_header Content-Length "";
            proxy_pass http://127.0.0.1:$ORIGIN/1k.bin;
        }
    }
}
EOF
} >"$RUN/nginx/nginx.conf"
start nginx "$NGINX" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/logs/nginx-error.log" -g 'daemon off;'
await "$ORIGIN" nginx || exit 1

# ---- squid: the memory cache of side-by-side.sh, with room for the 100 MiB object
if [ -n "$SQUID_BIN" ]; then
    squid_user=$(squid_user)
    squid_conf "$SQUID" "$squid_user" "128 MB" "128 MB" >"$RUN/squid/squid.conf"
    chown -R "$squid_user" "$RUN/squid"
    start squid "$SQUID_BIN" -N -f "$RUN/squid/squid.conf"
    await "$SQUID" squid || SQUID_BIN=""
else
    echo "slow-peers: squid is not installed; its rows are skipped" >&2
fi

# ---- porter, with its defaults unless --porter-args says otherwise
read -r -a extra <<<"$PORTER_ARGS"
RUST_LOG=warn start porter "$PORTER" proxy --listen "127.0.0.1:$PORTER_PORT" --cache-dir "$RUN/porter/cache" \
    "${extra[@]}"
await "$PORTER_PORT" porter || exit 1

declare -A PORT=([porter]=$PORTER_PORT)
[ -n "$SQUID_BIN" ] && PORT[squid]=$SQUID
PROXIES=(squid porter)

# Warm the caches: two requests per file through each proxy; the second must be whole.
for name in "${PROXIES[@]}"; do
    [ -n "${PORT[$name]:-}" ] || continue
    for file in 1k.bin 100m.bin; do
        for _ in 1 2; do
            got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 60 \
                -x "http://127.0.0.1:${PORT[$name]}" "http://127.0.0.1:$ORIGIN/$file")
        done
        echo "warm $name $file: $got" >>"$RUN/logs/warm.log"
        [ "$got" = "200 $(stat -c %s "$RUN/www/$file")" ] || echo "slow-peers: warming $file through $name gave $got" >&2
    done
done

# probe_ok PORT: one probe request; true on a 200 within the probe timeout.
probe_ok() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time "$PROBE_TIMEOUT" -x "http://127.0.0.1:$1" \
        "http://127.0.0.1:$ORIGIN/1k.bin")" = 200 ]
}
# settle PORT: seconds until the proxy serves a probe again after an attack (at most 30), or "-".
settle() {
    local t0=$SECONDS
    while ! probe_ok "$1"; do
        [ $((SECONDS - t0)) -ge 30 ] && { echo -; return; }
        sleep 0.5
    done
    echo $((SECONDS - t0))
}
# probes PORT SECONDS FILE: a probe every 0.5 s for SECONDS; "code seconds" lines in FILE.
probes() {
    local port=$1 n=$(($2 * 2)) file=$3 i
    local pids=()
    : >"$file"
    for ((i = 0; i < n; i++)); do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time "$PROBE_TIMEOUT" \
            -x "http://127.0.0.1:$port" "http://127.0.0.1:$ORIGIN/1k.bin" >>"$file" 2>/dev/null &
        pids+=($!)
        sleep 0.5
    done
    wait "${pids[@]}" 2>/dev/null
}

# attack SCENARIO PROXY: slowhttptest and the probes together, then one row of results.
attack() {
    local scenario=$1 proxy=$2 port=${PORT[$2]} recovered sht log csv mode_args probe_file
    case "$scenario" in
        slow-body) mode_args=(-B -i 10 -s 100000 -u "http://127.0.0.1:$ORIGIN/upload") ;;
        slow-read) mode_args=(-X -w 512 -y 1024 -n 5 -z 32 -k 3 -u "http://127.0.0.1:$ORIGIN/100m.bin") ;;
        slowloris) mode_args=(-H -i 10 -x 24 -u "http://127.0.0.1:$ORIGIN/1k.bin") ;;
    esac
    log=$RUN/logs/slowhttptest-$scenario-$proxy
    # The attack starts a second before the probes and outlasts the last one's timeout, so every
    # probe meets it (unless the proxy closes every attack connection sooner).
    start "sht-$scenario-$proxy" timeout $((DURATION + PROBE_TIMEOUT + 30)) slowhttptest "${mode_args[@]}" \
        -c "$CONNS" -r 50 -l $((DURATION + PROBE_TIMEOUT + 2)) -p "$PROBE_TIMEOUT" -d "127.0.0.1:$port" -g -o "$log"
    sht=${PID[sht-$scenario-$proxy]}
    sleep 1
    probe_file=$RUN/probes/$scenario-$proxy.txt
    probes "$port" "$DURATION" "$probe_file"
    wait "$sht" 2>/dev/null
    unset "PID[sht-$scenario-$proxy]"
    recovered=$(settle "$port")
    csv=$log.csv
    # Probe figures: ok count, and p50/max over every probe's time (sorted, so any awk will do).
    local probe_stats sht_stats exit_line
    probe_stats=$(sort -g -k2 "$probe_file" | awk -v pt="$PROBE_TIMEOUT" '
        { n++; t[n] = $2; if ($1 == 200 && $2 + 0 < pt) ok++ }
        END { printf "%d\t%d\t%.1f\t%.1f", ok, n, n ? 1000 * t[int((n + 1) / 2)] : 0, n ? 1000 * t[n] : 0 }')
    # slowhttptest's CSV: seconds,closed,pending,connected,service available (>0 when available).
    sht_stats=$(awk -F, 'FNR > 1 && $1 ~ /^[0-9]+$/ { secs++; if ($5 + 0 > 0) avail++; c = $2; p = $3; k = $4 }
        END { printf "%d\t%d\t%d\t%d\t%d", avail, secs, c, p, k }' "$csv" 2>/dev/null) ||
        sht_stats=$(printf '0\t0\t-\t-\t-')
    exit_line=$(sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$RUN/logs/sht-$scenario-$proxy.log" |
        sed -n 's/^Exit status: *//p' | tail -n 1)
    # The CSV's last row comes before slowhttptest's last second; when it stopped because no
    # attack connection was left open, the proxy had closed them all.
    if [ "$exit_line" = "No open connections left" ]; then
        sht_stats=$(awk -F'\t' -v OFS='\t' '{ $3 = $3 + $4 + $5; $4 = 0; $5 = 0; print }' <<<"$sht_stats")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$proxy" "$probe_stats" "$sht_stats" "$recovered" \
        "${exit_line:-no slowhttptest output}" >>"$RESULTS"
    tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "  %-10s %-7s probes %3s/%-3s p50 %7s ms  max %7s ms  available %s/%s s  closed %s pending %s connected %s  (%s)  served again after %s s\n",
        $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13, $12 }'
}

wanted() { [ -z "$SCENARIOS" ] || [[ ",$SCENARIOS," == *",$1,"* ]]; }
echo "== slow-peers $(date -u +%FT%TZ) on $(nproc) cores, ${DURATION}s a scenario, $CONNS attack connections; folder $RUN"
echo "   $("$NGINX" -v 2>&1) | ${SQUID_BIN:+$("$SQUID_BIN" -v | head -n 1) | }$(slowhttptest -h 2>&1 |
    sed -n 's/.*version \([0-9.]*\).*/slowhttptest \1/p' | head -n 1) | porter $("$PORTER" --version |
    awk '{ print $2 }') ${PORTER_ARGS:-(default flags)}"
printf 'scenario\tproxy\tprobes_ok\tprobes\tprobe_p50_ms\tprobe_max_ms\tsht_available_s\tsht_seconds\tsht_closed\tsht_pending\tsht_connected\tserved_again_after_s\tsht_exit\n' >"$RESULTS"
for scenario in slow-body slow-read slowloris; do
    wanted "$scenario" || continue
    for proxy in "${PROXIES[@]}"; do
        [ -n "${PORT[$proxy]:-}" ] || continue
        attack "$scenario" "$proxy"
    done
done

echo
echo "== probes during each attack (ok = 200 within ${PROBE_TIMEOUT}s); slowhttptest's verdict and seconds it found"
echo "   the service up; its attack connections at the end; seconds until the proxy served a probe after it"
awk -F'\t' 'NR == 1 { printf "  %-10s | %-7s | %-15s | %-10s | %-10s | %-20s | %-22s | %s\n", "scenario", "proxy",
        "probes ok/total", "probe p50", "probe max", "slowhttptest verdict", "closed/pending/conn.", "after"; next }
    { printf "  %-10s | %-7s | %-15s | %-10s | %-10s | %-20s | %-22s | %s\n", $1, $2, $3 "/" $4, $5 " ms", $6 " ms",
        ($7 == $8 && $8 > 0 ? "YES" : "NO") " (up " $7 "/" $8 " s)", $9 "/" $10 "/" $11, $12 ($12 == "-" ? "" : " s") }' "$RESULTS"
echo "results: $RESULTS"
