# Porter in a FROM scratch image: one statically linked binary, the CA bundle it verifies origins
# with, an empty cache folder, and nothing else (no shell, no libc, no package manager).
#
# There is no builder stage: it would pull a Rust image from a registry, and the machines this is
# built on (CI included) have none. The binary is built first, on the host:
#
#   RUSTFLAGS='-C target-feature=+crt-static' \
#       cargo build --release --locked --target x86_64-unknown-linux-gnu
#   .ci/container --build-only       # stages target/image/ and builds localhost/porter
#
# or by hand: copy target/x86_64-unknown-linux-gnu/release/porter and the host's
# /etc/ssl/certs/ca-certificates.crt into target/image/, mkdir target/image/cache, then
# `podman build -t porter .` (or docker build). .dockerignore keeps the rest of the tree out.
#
# glibc linked statically still looks names up with getaddrinfo(3): since glibc 2.34 its "files"
# and "dns" sources are inside libc, so /etc/hosts and /etc/resolv.conf (which the container
# runtime provides) work; other nsswitch sources (mdns, systemd, ldap) do not. The linker's warning
# about getaddrinfo in static binaries is about those.
#
# Run it (clients reach it from the container network, not loopback, hence --allow):
#
#   podman run -d -p 127.0.0.1:3128:3128 -v porter-cache:/var/lib/porter localhost/porter
#
# Arguments after the image name replace the whole command line below (CMD), not single flags: give
# `proxy` and every flag you want, e.g. --listen, --cache-dir and --allow your LAN.
FROM scratch
COPY target/image/porter /usr/bin/porter
COPY target/image/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chown=65534:65534 target/image/cache /var/lib/porter
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# nobody:nogroup by number: there is no /etc/passwd to name them.
USER 65534:65534
WORKDIR /var/lib/porter
EXPOSE 3128
VOLUME /var/lib/porter
ENTRYPOINT ["/usr/bin/porter"]
# Loopback, Porter's default client network, is no one inside a container: admit the private
# networks (RFC 1918) that container bridges and LANs use, and no one else.
CMD ["proxy", "--listen", "0.0.0.0:3128", "--cache-dir", "/var/lib/porter/cache", \
     "--allow", "10.0.0.0/8", "--allow", "172.16.0.0/12", "--allow", "192.168.0.0/16"]
