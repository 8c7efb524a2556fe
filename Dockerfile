# syntax=docker/dockerfile:1
#
# The promdrop image: both binaries, `promdrop` (the CLI, crates/cli) and `promdrop-exporter`
# (crates/exporter, the entrypoint), statically linked against musl so that `promdrop` can be
# copied into any other image (see deploy/examples: an init container copies it into an
# emptyDir for the descheduler's image, which has no promdrop).
#
#   docker build -t promdrop --build-arg PROMDROP_REVISION="$(git rev-parse HEAD)" .
#
# Not built by this repository's CI (no Docker there): deploy/validate.sh only checks that
# every path copied here exists and that the binary names match the Cargo packages.

FROM rust:1-bookworm AS builder
# musl-tools: musl-gcc for the C and assembly in ring (TLS). busybox-static: one static
# binary, shipped as `cp` only, so that an init container can copy `promdrop` out of this image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools busybox-static \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The workspace: its manifest and lock, and every member (the fixture generator and the test
# packages are members, so cargo needs their manifests and sources even though they are not
# built).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY tests/fixtures/clients/gen-rust ./tests/fixtures/clients/gen-rust
COPY tests/e2e ./tests/e2e
COPY tests/torture ./tests/torture
COPY tests/support ./tests/support
# Reported by promdrop_build_info{revision, rustversion}.
ARG PROMDROP_REVISION=unknown
RUN target="$(uname -m)-unknown-linux-musl" \
 && rustup target add "$target" \
 && PROMDROP_REVISION="$PROMDROP_REVISION" \
    PROMDROP_RUSTC_VERSION="$(rustc --version | cut -d' ' -f2)" \
    cargo build --release --locked --target "$target" -p promdrop-cli -p promdrop-exporter \
 && mkdir /out \
 && cp "target/$target/release/promdrop" "target/$target/release/promdrop-exporter" /out/ \
 && cp /bin/busybox /out/cp

# distroless static: no shell, no package manager; /etc/passwd knows UID 65532 (nonroot),
# CA certificates and /tmp are there.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="promdrop" \
      org.opencontainers.image.description="Hand short-lived jobs' Prometheus metrics to Prometheus through files on a shared volume" \
      org.opencontainers.image.source="https://github.com/promdrop/promdrop" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/promdrop /out/promdrop-exporter /usr/local/bin/
COPY --from=builder /out/cp /usr/local/bin/cp
USER 65532:65532
EXPOSE 9466
ENTRYPOINT ["/usr/local/bin/promdrop-exporter"]
