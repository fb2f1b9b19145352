#!/usr/bin/env bash
# scale.sh: Porter with a large cache and many idle connections, against nginx serving the same files.
#
#   benches/scale.sh [--entries N] [--duration S] [--stages LIST] [--porter PATH] [--out DIR]
#
# Stages (--stages takes a comma-separated subset; all by default, in this order):
#   fill      N distinct 1 KiB misses through the proxy (N = --entries, default 1,000,000): misses/s
#   restart   stop and start the proxy on that cache: time until it answers a hit, the index scan's
#             time from its log, and RSS idle with the index loaded, per entry over an empty cache's
#   random    random hits over all N through the proxy, then nginx serving the same N files itself
#             (as many workers as cores, open_file_cache off): req/s, CPU microseconds per request
#   hot       the same over a hot set of 100 entries
#   evict     a steady stream of N distinct misses into a proxy whose --cache-size holds half of
#             them: CPU per miss in each tenth of the stream (the cache 20% full after the first,
#             full after the fifth, evicting in the last five), and the most the cache ever used
#   idle      10,000 idle keep-alive connections that each made one hit: proxy RSS per connection
#   idle-tls  10,000 idle intercepted HTTPS connections (CONNECT, TLS, one hit): RSS per connection
#
# Everything listens on 127.0.0.1; nginx is the origin for every stage. Random hits read every cache
# entry and origin file once first, so both sides serve from the page cache; --out an earlier run's
# folder reuses its files and cache (then the "empty cache" RSS is not of an empty one). Files: N under
# RUN/www/f/DDD/NNNNNN.bin (about 4 KiB of disk each, and as much again for Porter's cache).
# Output: the figures as they come, and all of them in RUN/results.tsv. Needs nginx, wrk, curl,
# openssl, python3. Build first: cargo build --release.
set -u -o pipefail

ENTRIES=1000000; DURATION=10; STAGES="fill,restart,random,hot,evict,idle,idle-tls"; OUT=""
PORTER=${PORTER:-target/release/porter}
ORIGIN=${SCALE_ORIGIN:-18290}; ORIGIN_TLS=${SCALE_ORIGIN_TLS:-18293}
PORTER_PORT=${SCALE_PORTER:-13250}; EVICT_PORT=${SCALE_EVICT:-13251}
IDLE=${SCALE_IDLE:-10000}
CORES=$(nproc)

fail() { echo "scale: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --entries) ENTRIES=${2:?--entries needs a number}; shift 2 ;;
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --stages) STAGES=${2:?--stages needs a list}; shift 2 ;;
        --porter) PORTER=${2:?--porter needs a path}; shift 2 ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) fail "unknown option $1 (see --help)" ;;
    esac
done
[[ $ENTRIES =~ ^[0-9]+$ ]] && [ "$ENTRIES" -ge 1000 ] || fail "--entries takes a whole number of at least 1000"
[[ $DURATION =~ ^[0-9]+$ ]] || fail "--duration takes whole seconds"
for tool in nginx wrk curl openssl python3; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || fail "$tool is missing (apt-get install $tool)"
done
[ -x "$PORTER" ] || fail "$PORTER not found: cargo build --release"
PORTER=$(realpath "$PORTER")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HERE=$(cd "$(dirname "$0")" && pwd)
stage() { [[ ",$STAGES," == *",$1,"* ]]; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -gt $((IDLE + 1000)) ] || fail "$IDLE idle connections need more descriptors than ulimit -n $(ulimit -n)"
RUN=${OUT:-$(mktemp -d /tmp/scale.XXXXXX)}
mkdir -p "$RUN"/{www/f,nginx,porter,tls,logs}
chmod 755 "$RUN"
RESULTS=$RUN/results.tsv
: >"$RESULTS"
record() { # stage figure value unit
    printf '%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
    printf '  %-9s %-44s %12s %s\n' "$@"
}

NAME=scale
# shellcheck source=benches/common.sh
. "$HERE/common.sh"
for port in $ORIGIN $ORIGIN_TLS $PORTER_PORT $EVICT_PORT; do
    listening "$port" && fail "127.0.0.1:$port is in use (set the SCALE_* variables)"
done

# ---- the files: N of 1 KiB, a thousand to a folder, each different in its first bytes
if [ "$(cat "$RUN/www/f/.count" 2>/dev/null)" != "$ENTRIES" ]; then
echo "scale: writing $ENTRIES files under $RUN/www/f"
python3 - "$RUN/www/f" "$ENTRIES" <<'EOF'
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
filler = os.urandom(1024)
for i in range(count):
    folder = os.path.join(root, "%03d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(folder, exist_ok=True)
    head = b"%07d\n" % i
    with open(os.path.join(folder, "%06d.bin" % i), "wb") as f:
        f.write(head + filler[len(head):])
EOF
echo "$ENTRIES" >"$RUN/www/f/.count"
fi
head -c 1024 /dev/urandom >"$RUN/www/1k.bin"
chmod -R a+rX "$RUN/www"

tls=$RUN/tls
origin_certificate "$tls" scale-origin-ca 'subjectAltName=IP:127.0.0.1,DNS:localhost' || fail "openssl could not make the origin certificate"

# ---- nginx: the origin, and the ceiling for random hits (one worker a core, no open_file_cache)
{ nginx_conf_head | sed "s/^worker_processes 1;/worker_processes $CORES;/"; cat <<EOF
    sendfile on; tcp_nopush on; open_file_cache off;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$ORIGIN;
        listen 127.0.0.1:$ORIGIN_TLS ssl;
        ssl_certificate $tls/origin.pem; ssl_certificate_key $tls/origin-key.pem;
        root $RUN/www;
        location / { add_header Cache-Control "max-age=86400"; }
        location = /status { stub_status; }
    }
}
EOF
} >"$RUN/nginx/nginx.conf"
start nginx "$NGINX" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/logs/nginx-error.log" -g 'daemon off;'
await "$ORIGIN" nginx || exit 1

# ---- porter
[ -f "$RUN/porter/ca/ca.pem" ] || "$PORTER" ca init --ca-dir "$RUN/porter/ca" >/dev/null || fail "porter ca init failed"
porter_args() { # port cache-dir cache-size
    echo proxy --listen "127.0.0.1:$1" --cache-dir "$2" --cache-size "$3" \
        --max-connections $((IDLE * 2 + 1000)) --max-connections-per-client $((IDLE * 2 + 1000)) \
        --access-log "$RUN/porter/access-$1.log" \
        --intercept --ca-dir "$RUN/porter/ca" --upstream-ca "$tls/origin-ca.pem" --connect-port "$ORIGIN_TLS"
}
start_porter() { # name port cache-dir cache-size
    # shellcheck disable=SC2046
    RUST_LOG=info start "$1" "$PORTER" $(porter_args "$2" "$3" "$4")
    await "$2" "$1" || exit 1
}
stop_one() { # name
    kill -TERM -- "-${PID[$1]}" 2>/dev/null
    wait "${PID[$1]}" 2>/dev/null
    unset "PID[$1]"
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
metric() { # port name
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}
now() { date +%s.%N; }

# wrk scripts: sequential distinct URLs (each thread its own residue class), and random ones.
cat >"$RUN/sequential.lua" <<EOF
local threads = 0
function setup(thread) thread:set("first", threads); threads = threads + 1 end
function init(args) idx = first; step = $CORES; n = tonumber(os.getenv("SCALE_SPAN")); base = tonumber(os.getenv("SCALE_BASE")) end
function request()
    local i = base + idx % n
    idx = idx + step
    return wrk.format("GET", string.format("%s/f/%03d/%06d.bin", os.getenv("SCALE_PREFIX"), math.floor(i / 1000), i))
end
EOF
cat >"$RUN/random.lua" <<EOF
local threads = 0
function setup(thread) thread:set("seed", threads); threads = threads + 1 end
function init(args) n = tonumber(os.getenv("SCALE_SPAN")); prefix = os.getenv("SCALE_PREFIX"); math.randomseed(os.time() * 100 + seed) end
function request()
    local i = math.random(0, n - 1)
    return wrk.format("GET", string.format("%s/f/%03d/%06d.bin", prefix, math.floor(i / 1000), i))
end
EOF
wrk_run() { # port span prefix seconds -> prints "requests req/s"
    SCALE_SPAN=$2 SCALE_PREFIX=$3 wrk -t"$CORES" -c64 -d"$4"s -s "$RUN/random.lua" "http://127.0.0.1:$1" \
        >"$RUN/logs/wrk.out" 2>&1
    awk '/requests in/ { r = $1 } /Requests\/sec/ { s = $2 } END { print r, s }' "$RUN/logs/wrk.out"
}
measure_hits() { # label port group span prefix
    local before after out
    before=$(group_cpu "$3")
    out=$(wrk_run "$2" "$4" "$5" "$DURATION")
    after=$(group_cpu "$3")
    set -- "$1" $out "$before" "$after"
    record "$STAGE" "$1 req/s" "$3" ""
    record "$STAGE" "$1 CPU per request" "$(awk -v a="$4" -v b="$5" -v n="$2" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')" us
}

# A proxy on an empty cache first: the RSS every per-entry figure is measured against.
start_porter porter "$PORTER_PORT" "$RUN/porter/cache" 64GiB
sleep 1
EMPTY_RSS=$(rss_kib "${PID[porter]}")
record setup "RSS idle, empty cache" "$EMPTY_RSS" KiB

if stage fill; then
    STAGE=fill
    echo "scale: filling $ENTRIES entries"
    start_time=$(now)
    SCALE_SPAN=$ENTRIES SCALE_BASE=0 SCALE_PREFIX="http://127.0.0.1:$ORIGIN" \
        setsid wrk -t"$CORES" -c32 -d3600s -s "$RUN/sequential.lua" "http://127.0.0.1:$PORTER_PORT" \
        >"$RUN/logs/fill.out" 2>&1 &
    fill_pid=$!
    while :; do
        sleep 1
        entries=$(metric "$PORTER_PORT" porter_cache_entries)
        [ "${entries:-0}" -ge "$ENTRIES" ] && break
        kill -0 "$fill_pid" 2>/dev/null || fail "wrk stopped while filling (see $RUN/logs/fill.out)"
    done
    kill -TERM -- "-$fill_pid" 2>/dev/null; wait "$fill_pid" 2>/dev/null
    elapsed=$(awk -v a="$start_time" -v b="$(now)" 'BEGIN { print b - a }')
    record fill "entries" "$entries" ""
    record fill "misses per second" "$(awk -v n="$entries" -v t="$elapsed" 'BEGIN { printf "%.0f", n / t }')" /s
    record fill "cache bytes on disk" "$(metric "$PORTER_PORT" porter_cache_bytes)" B
fi

if stage restart; then
    STAGE=restart
    stop_one porter
    start_time=$(now)
    start_porter porter "$PORTER_PORT" "$RUN/porter/cache" 64GiB
    url="http://127.0.0.1:$ORIGIN/f/000/000000.bin"
    for _ in $(seq 600); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -x "127.0.0.1:$PORTER_PORT" "$url")
        [ "$code" = 200 ] && break
        sleep 0.01
    done
    record restart "first hit answered after start" \
        "$(awk -v a="$start_time" -v b="$(now)" 'BEGIN { printf "%.0f", (b - a) * 1000 }')" ms
    for _ in $(seq 1200); do grep -q 'scan took' "$RUN/logs/porter.log" && break; sleep 0.1; done
    record restart "index scan (from the log)" "$(sed -n 's/.*scan took \([0-9]*\) ms.*/\1/p' "$RUN/logs/porter.log" | tail -1)" ms
    sleep 1
    rss=$(rss_kib "${PID[porter]}")
    entries=$(metric "$PORTER_PORT" porter_cache_entries)
    record restart "entries after the scan" "$entries" ""
    record restart "RSS idle, index loaded" "$rss" KiB
    record restart "RSS per entry over the empty cache's" \
        "$(awk -v r="$rss" -v e="$EMPTY_RSS" -v n="$entries" 'BEGIN { printf "%.0f", (r - e) * 1024 / n }')" B
fi

if stage random; then
    STAGE=random
    # The index is read in the background after a start: wait for it (at most 60 s) before judging.
    for _ in $(seq 120); do
        entries=$(metric "$PORTER_PORT" porter_cache_entries)
        [ "${entries:-0}" -ge "$ENTRIES" ] && break
        sleep 0.5
    done
    [ "${entries:-0}" -ge "$ENTRIES" ] || echo "scale: only ${entries:-0} entries cached: run the fill stage too" >&2
    # Both sides from the page cache, as a warm server's would be: every cache entry and every
    # origin file read once first.
    find "$RUN/porter/cache" "$RUN/www/f" -type f -print0 | xargs -0 -P2 -n 2000 cat >/dev/null
    measure_hits "porter, random over $ENTRIES" "$PORTER_PORT" "${PID[porter]}" "$ENTRIES" "http://127.0.0.1:$ORIGIN"
    measure_hits "nginx direct, random over $ENTRIES" "$ORIGIN" "${PID[nginx]}" "$ENTRIES" ""
    record random "RSS with the memory tier in use" "$(rss_kib "${PID[porter]}")" KiB
fi

if stage hot; then
    STAGE=hot
    measure_hits "porter, random over 100" "$PORTER_PORT" "${PID[porter]}" 100 "http://127.0.0.1:$ORIGIN"
    measure_hits "nginx direct, random over 100" "$ORIGIN" "${PID[nginx]}" 100 ""
fi

if stage evict; then
    STAGE=evict
    # Half the entries fit (each takes a 4 KiB block); the stream asks for every one of them once,
    # so the second half evicts. CPU per miss is sampled in each tenth of the stream.
    tenth=$((ENTRIES / 10))
    size=$((ENTRIES / 2 * 4096))
    # A new cache folder each run, and the old ones left in place (delete RUN when done): on ext4
    # without a journal, inodes freed in the last minute or more (six while their table blocks are
    # dirty) are skipped one by one by every file creation after, so deleting an earlier run's
    # cache here made this run's misses cost several times more at first.
    evict_cache=$RUN/porter/evict-cache.$(date +%s)
    start_porter evict "$EVICT_PORT" "$evict_cache" "$size"
    SCALE_SPAN=$ENTRIES SCALE_BASE=0 SCALE_PREFIX="http://127.0.0.1:$ORIGIN" \
        setsid wrk -t"$CORES" -c32 -d3600s -s "$RUN/sequential.lua" "http://127.0.0.1:$EVICT_PORT" \
        >"$RUN/logs/evict.out" 2>&1 &
    evict_pid=$!
    # The proxy's own CPU (all its threads, from its /proc/PID/stat), read when the misses counter
    # passes each tenth; the folder's size as du sees it (files, folders and unfinished writes) at
    # the same moments.
    cache_cpu() { process_cpu "${PID[evict]}" || fail "the proxy exited in the evict stage (see $RUN/logs/evict.log)"; }
    most=0; most_du=0; step=1; last_misses=0; last_cpu=$(cache_cpu)
    while [ $step -le 10 ]; do
        sleep 0.5
        kill -0 "$evict_pid" 2>/dev/null || fail "wrk stopped in the evict stage (see $RUN/logs/evict.out)"
        misses=$(metric "$EVICT_PORT" porter_cache_misses_total)
        bytes=$(metric "$EVICT_PORT" porter_cache_bytes)
        [ "${bytes:-0}" -gt "$most" ] && most=$bytes
        if [ "${misses:-0}" -ge $((step * tenth)) ]; then
            cpu=$(cache_cpu)
            record evict "CPU per miss, tenth $step of the stream" \
                "$(awk -v a="$last_cpu" -v b="$cpu" -v n=$((misses - last_misses)) 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')" us
            last_cpu=$cpu; last_misses=$misses; step=$((step + 1))
            used=$(du -s --block-size=1 "$evict_cache" 2>/dev/null | cut -f1)
            [ "${used:-0}" -gt "$most_du" ] && most_du=$used
        fi
    done
    kill -TERM -- "-$evict_pid" 2>/dev/null; wait "$evict_pid" 2>/dev/null
    while read -r name seconds; do
        record evict "CPU per miss of its $name threads" \
            "$(awk -v s="$seconds" -v n="$misses" 'BEGIN { printf "%.1f", s * 1e6 / n }')" us
    done < <(thread_cpu "${PID[evict]}")
    record evict "--cache-size" "$size" B
    record evict "most the index counted (sampled every 0.5 s)" "$most" B
    record evict "most du saw (at the end of each tenth)" "$most_du" B
    record evict "du of the cache folder at the end" "$(du -s --block-size=1 "$evict_cache" 2>/dev/null | cut -f1)" B
    stop_one evict
fi

idle_stage() { # stage url cafile...
    local stage=$1 url=$2 before after
    shift 2
    curl -s -o /dev/null -x "127.0.0.1:$PORTER_PORT" ${1:+--cacert "$1"} "$url"
    sleep 1
    before=$(rss_kib "${PID[porter]}")
    coproc IDLE_CLIENTS { python3 "$HERE/idle_clients.py" --proxy "127.0.0.1:$PORTER_PORT" --count "$IDLE" \
        --url "$url" ${1:+--cafile "$1"} 2>"$RUN/logs/$stage-clients.log"; }
    if ! read -r -t 600 line <&"${IDLE_CLIENTS[0]}" || [ "$line" != "open $IDLE" ]; then
        fail "the idle clients did not open $IDLE connections (see $RUN/logs/$stage-clients.log)"
    fi
    sleep 2
    after=$(rss_kib "${PID[porter]}")
    record "$stage" "RSS before, with $IDLE idle connections" "$before -> $after" KiB
    record "$stage" "RSS per idle connection" "$(awk -v a="$before" -v b="$after" -v n="$IDLE" 'BEGIN { printf "%.0f", (b - a) * 1024 / n }')" B
    exec {IDLE_CLIENTS[1]}>&-
    wait "$IDLE_CLIENTS_PID" 2>/dev/null
}
stage idle && idle_stage idle "http://127.0.0.1:$ORIGIN/1k.bin"
stage idle-tls && idle_stage idle-tls "https://127.0.0.1:$ORIGIN_TLS/1k.bin" "$RUN/porter/ca/ca.pem"

echo "scale: results in $RESULTS"
