# syntax=docker/dockerfile:1
# tokenauth in a container: built with the Rust toolchain, run from distroless (glibc, CA
# certificates, no shell) as an unprivileged user, the store on a volume.
#
#   docker build -t tokenauth .
#   docker volume create tokenauth
#   docker run --rm -v tokenauth:/var/lib/tokenauth tokenauth init --token-uri https://auth.example.com/token
#   docker run -d -p 8080:8080 -v tokenauth:/var/lib/tokenauth tokenauth
#
# The server listens on 0.0.0.0:8080 in plain HTTP: put a TLS-terminating proxy in front, or
# mount a certificate and key and pass --tls-cert/--tls-key (then change the HEALTHCHECK's
# URL to https and give it --ca-cert).

FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin tokenauth \
 && strip target/release/tokenauth \
 && mkdir -p /state

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tokenauth /usr/local/bin/tokenauth
# The volume's mount point, owned by the image's user (65532) so a fresh volume is too.
COPY --from=build --chown=65532:65532 /state /var/lib/tokenauth
USER 65532:65532
ENV TOKENAUTH_DB=/var/lib/tokenauth/tokenauth.db \
    TOKENAUTH_LISTEN=0.0.0.0:8080 \
    TOKENAUTH_LOG_FORMAT=json \
    XDG_CACHE_HOME=/tmp
VOLUME ["/var/lib/tokenauth"]
EXPOSE 8080
# The binary checks its own liveness: `request` exits non-zero unless /healthz answers 2xx.
# (The token is a placeholder: /healthz reads none.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/tokenauth", "request", "--token", "healthcheck", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/tokenauth"]
CMD ["serve"]
