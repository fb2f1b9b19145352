# shellcheck shell=bash
# What the bench scripts share (sourced, not run): process handling, where every process starts in
# its own session, so its PID is its process group, and all of them are stopped by PID when the
# script exits; and the common head of the nginx origin's configuration. Needs RUN (the run's
# folder, with logs/ and nginx/) and NAME (the script's name, for messages). A script that attaches
# tools to a process (perf, strace) defines stop_tools to stop them first.

declare -A PID=()
start() { # name command... (stdout and stderr to logs/NAME.log)
    local name=$1; shift
    setsid "$@" >"$RUN/logs/$name.log" 2>&1 </dev/null &
    PID[$name]=$!
}
stop_all() {
    local name
    if declare -F stop_tools >/dev/null; then stop_tools; fi
    for name in "${!PID[@]}"; do kill -TERM -- "-${PID[$name]}" 2>/dev/null; done
    sleep 0.5
    for name in "${!PID[@]}"; do kill -KILL -- "-${PID[$name]}" 2>/dev/null; wait "${PID[$name]}" 2>/dev/null; done
}
trap stop_all EXIT
trap 'exit 130' INT TERM
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
await() { # port name
    local n
    for ((n = 0; n < 200; n++)); do listening "$1" && return 0; sleep 0.05; done
    echo "${NAME:?}: $2 is not listening on 127.0.0.1:$1; its log:" >&2
    tail -n 20 "$RUN/logs/$2.log" >&2
    return 1
}
# CPU seconds (user+system) of the living processes of a process group, from /proc. The files go
# through cat, which skips one that vanished between the glob and its read (any process on the
# machine that exited meanwhile, such as the curl of a metrics poll): handed to awk itself, mawk
# stopped at the first such file without printing anything, and the caller subtracted an empty
# figure (negative CPU per miss in the first scale.sh evict runs). Fields are counted from the last
# ") ", so a command name with spaces or parentheses does not shift them. A process of the group that
# exits takes its CPU with it (its parent's cutime is another group's): use this for long-lived
# groups (nginx's master and workers), and process_cpu for one process.
group_cpu() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v g="$1" -v hz="$(getconf CLK_TCK)" '{ s=$0; sub(/^.*\) /, "", s); split(s, f, " ");
        if (f[3] == g) t += f[12] + f[13] } END { printf "%.4f", t / hz }'
}
# CPU seconds (user+system) of one process, all its threads (exited ones too), from /proc/PID/stat;
# nothing (and status 1) when the process is gone, so a caller can stop instead of subtracting 0.
process_cpu() {
    local line
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.4f", ($12 + $13) / hz }' <<<"$line"
}
# CPU seconds of one process's living threads by kind: "NAME SECONDS" lines, where NAME is the
# thread's name without its trailing number ("porter-worker-3" counts as "porter-worker").
thread_cpu() {
    local task line name
    for task in /proc/"$1"/task/*; do
        { read -r line <"$task/stat"; } 2>/dev/null || continue
        name=${line#*(}; name=${name%) *}; name=${name%-[0-9]*}
        line=${line##*) }
        echo "$name $line"
    done | awk -v hz="$(getconf CLK_TCK)" '{ t[$1] += $13 + $14 } END { for (n in t) printf "%s %.2f\n", n, t[n] / hz }' | sort
}

# Squid's configuration for a memory cache in $RUN/squid, listening on 127.0.0.1:$1 and running as
# $2, holding objects up to $3 in memory and up to $4 in all (as "16 MB"); the lines in $5 (more
# ports, ssl-bump), if any, follow the first port. Logs go to $RUN/squid.
squid_conf() {
    cat <<EOF
http_port 127.0.0.1:$1
${5:-}
cache_effective_user $2
http_access allow localhost
http_access deny all
cache_mem 256 MB
maximum_object_size_in_memory $3
maximum_object_size $4
access_log stdio:$RUN/squid/access.log
cache_log $RUN/squid/cache.log
cache_store_log none
pid_filename $RUN/squid/squid.pid
coredump_dir $RUN/squid
pinger_enable off
shutdown_lifetime 1 seconds
EOF
}

# The account Squid runs as: Debian's proxy, else nobody.
squid_user() { id -u proxy >/dev/null 2>&1 && echo proxy || echo nobody; }

# The start of an nginx configuration for an origin in $RUN/nginx, up to the inside of its http
# block: one worker, no access log, temporary files in the run's folder, unlimited keep-alive.
# The caller writes the rest (its own directives, server blocks and the closing brace).
# nginx_conf_head [WORKERS]: the conf's opening, with WORKERS worker processes (default 1).
nginx_conf_head() {
    cat <<EOF
worker_processes ${1:-1};
pid $RUN/nginx/nginx.pid;
error_log $RUN/logs/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $RUN/nginx/body; proxy_temp_path $RUN/nginx/proxy;
    fastcgi_temp_path $RUN/nginx/fcgi; uwsgi_temp_path $RUN/nginx/uwsgi; scgi_temp_path $RUN/nginx/scgi;
    keepalive_requests 1000000;
EOF
}

# A throw-away CA in $1 (origin-ca.pem, origin-ca-key.pem) named $2, and a certificate for the origin
# (origin.pem, origin-key.pem) with the subjectAltName $3 ("IP:127.0.0.1,DNS:localhost"), valid two
# days: what the HTTPS origin serves and the proxy trusts with --upstream-ca.
origin_certificate() {
    local dir=$1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$2" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$dir/origin-ca-key.pem" -out "$dir/origin-ca.pem" 2>/dev/null || return 1
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
        -keyout "$dir/origin-key.pem" -out "$dir/origin.csr" 2>/dev/null || return 1
    printf '%s\nbasicConstraints=CA:FALSE\n' "$3" >"$dir/origin.ext"
    openssl x509 -req -in "$dir/origin.csr" -CA "$dir/origin-ca.pem" -CAkey "$dir/origin-ca-key.pem" \
        -CAcreateserial -days 2 -extfile "$dir/origin.ext" -out "$dir/origin.pem" 2>/dev/null
}
