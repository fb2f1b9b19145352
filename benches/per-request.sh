#!/usr/bin/env bash
# per-request.sh: what one 1 KiB cache hit costs `porter proxy` in syscalls, context switches and CPU.
#
#   benches/per-request.sh [--duration S] [--workers N] [--porter PATH] [--out DIR]
#
# An nginx origin on 127.0.0.1:$PRQ_ORIGIN (18070) serves /1k.bin fresh for an hour; `porter proxy`
# listens on 127.0.0.1:$PRQ_PORTER (13160) with --workers 5 unless told, its cache in the run's
# folder, and RUST_LOG=warn as in side-by-side.sh (so no access log). The URL is fetched twice and
# the second answer must say HIT (Cache-Status or X-Cache), then two cases run through the proxy
# with wrk (absolute-form request lines, as curl -x sends):
#   1k-hit          wrk -t2 -c64, keep-alive
#   1k-hit-newconn  wrk -t2 -c16 with Connection: close (a new connection per request)
# Each case is a discarded 1 s wrk run, then three separate wrk runs of --duration seconds (default
# 5), each divided by its own request count, since strace slows the proxy many times over:
#   plain   no tool attached: req/s, and CPU (utime+stime from /proc/PID/stat) per request
#   perf    perf stat -e task-clock,context-switches,cpu-migrations -p PID (plus cycles and
#           instructions where the machine has hardware counters), and /proc CPU per request
#   strace  strace -c -f -p PID: calls of each syscall per request (all threads)
# Output: a table, and in --out (default: a new folder under /tmp, kept) results.tsv (one row per
# case, pass and metric; a req_s row holds the rate itself) with the raw strace and perf reports
# and the logs. Run as root (or with ptrace and perf_event_paranoid allowing it). Needs: nginx wrk
# curl strace perf (apt-get install nginx wrk curl strace linux-perf). Build first:
# cargo build --release
set -u -o pipefail

DURATION=5; WORKERS=5; OUT=""
PORTER=${PORTER:-target/release/porter}
ORIGIN=${PRQ_ORIGIN:-18070}; PORTER_PORT=${PRQ_PORTER:-13160}

fail() { echo "per-request: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --workers) WORKERS=${2:?--workers needs a number}; shift 2 ;;
        --porter) PORTER=${2:?--porter needs a path}; shift 2 ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        -h|--help) sed -n '2,/^set -u/{/^set -u/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) fail "unknown option $1 (see --help)" ;;
    esac
done
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || fail "--duration takes whole seconds (at least 1)"
[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || fail "--workers takes a number (at least 1)"
for tool in nginx wrk curl strace perf; do
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] ||
        fail "$tool is missing (apt-get install ${tool/#perf/linux-perf})"
done
[ -x "$PORTER" ] || fail "$PORTER not found: cargo build --release"
PORTER=$(realpath "$PORTER")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

RUN=${OUT:-$(mktemp -d /tmp/per-request.XXXXXX)}
mkdir -p "$RUN"/{www,nginx,porter,logs,raw}
chmod 755 "$RUN"
RESULTS=$RUN/results.tsv

# ---- processes: each in its own session, stopped by PID at exit (benches/common.sh)
NAME=per-request
# Tools attached to the proxy (perf, strace): stopped by PID too, before the processes they watch.
TOOL=""
stop_tools() { [ -n "$TOOL" ] && kill -INT "$TOOL" 2>/dev/null && wait "$TOOL" 2>/dev/null; }
# shellcheck source=benches/common.sh
. "$(dirname "$0")/common.sh"
for port in $ORIGIN $PORTER_PORT; do
    listening "$port" && fail "127.0.0.1:$port is in use (set PRQ_ORIGIN / PRQ_PORTER)"
done
HZ=$(getconf CLK_TCK)
# CPU seconds (user+system, all threads) of one process, from /proc/PID/stat.
proc_cpu() {
    awk -v hz="$HZ" '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); printf "%.4f", (f[12] + f[13]) / hz }' \
        "/proc/$1/stat"
}

# ---- nginx, the origin
head -c 1024 /dev/urandom >"$RUN/www/1k.bin"
chmod -R a+rX "$RUN/www"
{ nginx_conf_head; cat <<EOF
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$ORIGIN;
        root $RUN/www;
        location / { add_header Cache-Control "max-age=3600"; }
    }
}
EOF
} >"$RUN/nginx/nginx.conf"
start nginx "$NGINX" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/logs/nginx-error.log" -g 'daemon off;'
await "$ORIGIN" nginx || exit 1

# ---- porter
RUST_LOG=warn start porter "$PORTER" proxy --listen "127.0.0.1:$PORTER_PORT" --cache-dir "$RUN/porter/cache" \
    --workers "$WORKERS"
await "$PORTER_PORT" porter || exit 1
PP=${PID[porter]}
[ "$(cat "/proc/$PP/comm" 2>/dev/null)" = porter ] || fail "PID $PP is not the porter process"

# ---- warm: the second fetch must be a hit
URL="http://127.0.0.1:$ORIGIN/1k.bin"
curl -s -o /dev/null --max-time 10 -x "http://127.0.0.1:$PORTER_PORT" "$URL" || fail "first fetch through porter failed"
curl -s -o /dev/null -D "$RUN/logs/warm-headers.txt" --max-time 10 -x "http://127.0.0.1:$PORTER_PORT" "$URL" \
    || fail "second fetch through porter failed"
grep -qiE '^(cache-status:.*; *hit|x-cache: *hit)' "$RUN/logs/warm-headers.txt" \
    || fail "the second fetch of $URL was not a hit: $(tr -d '\r' <"$RUN/logs/warm-headers.txt" | tr '\n' '|')"

cat >"$RUN/wrk.lua" <<'EOF'
-- Absolute-form target for the proxy (PRQ_TARGET), optional Connection: close (PRQ_CLOSE=1).
wrk.path = os.getenv("PRQ_TARGET")
wrk.headers["Host"] = os.getenv("PRQ_HOST")
if os.getenv("PRQ_CLOSE") == "1" then wrk.headers["Connection"] = "close" end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK requests=%d secs=%.3f errors=%d non2xx=%d\n", summary.requests,
    summary.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status))
end
EOF
# load CONNS CLOSE(0/1) SECONDS: wrk -t2 through the proxy on the cached URL.
load() {
    env PRQ_TARGET="$URL" PRQ_HOST="127.0.0.1:$ORIGIN" PRQ_CLOSE="$2" \
        wrk -t2 -c"$1" -d"$3s" --timeout 5s -s "$RUN/wrk.lua" "http://127.0.0.1:$PORTER_PORT/"
}
# field NAME LINE: the value of NAME=... in the WRK result line.
field() { sed -n "s/.*[ ]$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# Hardware counters, where this machine (a VM often has none) supports them.
EVENTS="task-clock,context-switches,cpu-migrations"
if perf stat -x, -e cycles,instructions -- true 2>&1 | grep -qE '^[0-9]+,,cycles'; then
    EVENTS=$EVENTS,cycles,instructions
fi

printf 'case\tpass\tmetric\tcount\trequests\tper_request\n' >"$RESULTS"
row() { # case pass metric count requests
    awk -v c="$1" -v p="$2" -v m="$3" -v n="$4" -v r="$5" \
        'BEGIN { printf "%s\t%s\t%s\t%s\t%d\t%.4f\n", c, p, m, n, r, (r > 0 ? n / r : 0) }' >>"$RESULTS"
}

# attach TOOL-COMMAND...: starts a tool watching the proxy in the background (TOOL is its PID).
attach() { "$@" & TOOL=$!; }
detach() { kill -INT "$TOOL" 2>/dev/null; wait "$TOOL" 2>/dev/null; TOOL=""; }
# Waits until strace has attached to every thread of the proxy (TracerPid set), at most 5 s.
await_traced() {
    local n task all
    for ((n = 0; n < 100; n++)); do
        all=1
        for task in /proc/"$PP"/task/*; do
            [ "$(awk '/^TracerPid/ { print $2 }' "$task/status" 2>/dev/null)" = 0 ] && all=0
        done
        [ $all = 1 ] && return 0
        sleep 0.05
    done
    echo "per-request: strace did not attach to every thread in 5 s" >&2
}

# pass CASE PASS CONNS CLOSE: one wrk run through the proxy; the tool for PASS is attached around it.
pass() {
    local case=$1 kind=$2 conns=$3 close=$4
    local cpu0 cpu1 line n secs raw=$RUN/raw/$case-$kind
    case "$kind" in
        perf) attach perf stat -x, -o "$raw.perf" -e "$EVENTS" -p "$PP"; sleep 0.5 ;;
        strace) attach strace -qq -c -f -U calls,errors,name -S calls -o "$raw.strace" -p "$PP"; await_traced ;;
    esac
    cpu0=$(proc_cpu "$PP")
    line=$(load "$conns" "$close" "$DURATION" 2>"$RUN/logs/wrk-$case-$kind.err" |
        tee "$RUN/logs/wrk-$case-$kind.out" | grep '^WRK ' | tail -n 1)
    cpu1=$(proc_cpu "$PP")
    [ "$kind" = plain ] || detach
    n=$(field requests "$line"); secs=$(field secs "$line")
    if [ -z "$n" ] || [ "$n" = 0 ]; then
        echo "per-request: wrk made no requests in $case/$kind (see $RUN/logs/wrk-$case-$kind.*)" >&2
        return
    fi
    row "$case" "$kind" requests "$n" "$n"
    row "$case" "$kind" req_s "$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')" 1
    row "$case" "$kind" errors "$(( $(field errors "$line") + $(field non2xx "$line") ))" "$n"
    row "$case" "$kind" cpu_us "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.0f", (b - a) * 1e6 }')" "$n"
    case "$kind" in
        perf) # CSV: value,unit,event,...; task-clock is in milliseconds
            awk -F, -v c="$case" -v r="$n" '$1 ~ /^[0-9.]+$/ {
                    v = $1; m = $3; if (m == "task-clock") { m = "task_clock_us"; v = v * 1000 }
                    gsub(/-/, "_", m); printf "%s\t%s\t%.0f\n", m, v, r }' "$raw.perf" |
                while IFS=$'\t' read -r metric value requests; do row "$case" perf "$metric" "$value" "$requests"; done ;;
        strace) # rows: calls [errors] name; the total line's name is "total"
            awk '$1 ~ /^[0-9]+$/ { print $NF "\t" $1 }' "$raw.strace" |
                while IFS=$'\t' read -r name calls; do
                    [ "$name" = total ] && name=all_syscalls
                    row "$case" strace "$name" "$calls" "$n"
                done ;;
    esac
}

echo "== per-request $(date -u +%FT%TZ) on $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); folder $RUN"
echo "   porter $("$PORTER" --version | awk '{ print $2 }') ($PORTER, built $(date -u -r "$PORTER" +%FT%TZ)$(
    commit=$(git -C "$(dirname "$PORTER")" log -1 --format='%h %cI' 2>/dev/null) && echo "; its checkout's HEAD $commit")) "
echo "   --workers $WORKERS; $("$NGINX" -v 2>&1); wrk ${DURATION}s a pass; perf events $EVENTS"
for case in 1k-hit 1k-hit-newconn; do
    case "$case" in
        1k-hit) conns=64; close=0 ;;
        1k-hit-newconn) conns=16; close=1 ;;
    esac
    # One discarded second first, so no pass pays for the proxy's first connections of the case.
    load "$conns" "$close" 1 >"$RUN/logs/wrk-$case-warm.out" 2>&1
    for kind in plain perf strace; do
        echo "   $case: $kind pass (wrk -t2 -c$conns$([ "$close" = 1 ] && echo ', Connection: close'))"
        pass "$case" "$kind" "$conns" "$close"
    done
done

echo
echo "== per request (each pass divided by its own request count)"
awk -F'\t' 'NR > 1 { k = $1; if (!(k in seen)) { seen[k] = 1; cases[++nc] = k }
        v[k, $2, $3] = $6; c[k, $2, $3] = $4; ran[k, $2] = 1 }
    # One line per metric: per-request values (fmt), or the counts themselves (fmt ""). A metric no
    # case has is left out unless zero (a syscall strace never saw) is its honest value.
    function show(label, pass, metric, fmt, zero,   i, line, x, any) {
        for (i = 1; i <= nc; i++) if ((cases[i], pass, metric) in v) any = 1
        if (!any && !zero) return
        line = sprintf("  %-34s", label)
        for (i = 1; i <= nc; i++) {
            if ((cases[i], pass, metric) in v) x = fmt == "" ? c[cases[i], pass, metric] : sprintf(fmt, v[cases[i], pass, metric])
            else x = ran[cases[i], pass] ? sprintf(fmt, 0) : "-"
            line = line sprintf(" %15s", x) }
        print line }
    END {
        line = sprintf("  %-34s", "")
        for (i = 1; i <= nc; i++) line = line sprintf(" %15s", cases[i]); print line
        show("plain: requests", "plain", "requests", ""); show("plain: req/s", "plain", "req_s", "")
        show("plain: CPU us/request (/proc)", "plain", "cpu_us", "%.1f")
        show("perf: requests", "perf", "requests", ""); show("perf: req/s", "perf", "req_s", "")
        show("perf: CPU us/request (/proc)", "perf", "cpu_us", "%.1f")
        show("perf: task-clock us/request", "perf", "task_clock_us", "%.1f")
        show("perf: context switches/request", "perf", "context_switches", "%.3f")
        show("perf: cpu migrations/request", "perf", "cpu_migrations", "%.3f")
        show("perf: cycles/request", "perf", "cycles", "%.0f")
        show("perf: instructions/request", "perf", "instructions", "%.0f")
        show("strace: requests", "strace", "requests", ""); show("strace: req/s", "strace", "req_s", "")
        n = split("epoll_wait epoll_pwait epoll_ctl read recvfrom recvmsg readv write sendto sendmsg writev " \
            "sendfile futex sched_yield fcntl ioctl accept4 close shutdown setsockopt getsockopt all_syscalls", s, " ")
        for (j = 1; j <= n; j++)
            show("strace: " s[j] "/request", "strace", s[j], "%.3f",
                s[j] ~ /^(epoll_wait|epoll_ctl|read|recvfrom|write|sendto|writev|sendfile|futex|sched_yield|fcntl|accept4|all_syscalls)$/)
        for (i = 1; i <= nc; i++) if (c[cases[i], "strace", "errors"] + c[cases[i], "perf", "errors"] + c[cases[i], "plain", "errors"] > 0)
            printf "  (%s: wrk counted errors or non-2xx answers; see results.tsv)\n", cases[i]
    }' "$RESULTS"
echo "  (strace slows every syscall, so counts that depend on timing (futex, sched_yield, epoll_wait) can"
echo "  differ untraced; context switches come from the perf pass, which is not slowed. Syscalls not"
echo "  listed here are in results.tsv; the raw reports are in $RUN/raw)"
echo "results: $RESULTS"
