# syntax=docker/dockerfile:1
# A static optimize-backup in a distroless image that runs as nonroot (uid 65532).
#
# Reproducible: both base images are pinned by digest (the tag only says what the digest is),
# the build stage is the exact Go of go.mod (the official image sets GOTOOLCHAIN=local, so it
# never fetches another), the binary is built with -trimpath, without VCS stamping and with an
# empty build ID, and the version comes from the build argument VERSION (make image passes
# `git describe`). make image also passes SOURCE_DATE_EPOCH (the commit time) and rewrites the
# layers' timestamps to it, so the same commit gives the same image.
#
# To move to newer base images, look up the digests and replace both lines:
#   docker buildx imagetools inspect golang:1.26.8-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot
FROM golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY *.go openapi.json ./
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X main.sidecarVersion=${VERSION}" -o /optimize-backup .

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /optimize-backup /optimize-backup
EXPOSE 8092
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["/optimize-backup"]
