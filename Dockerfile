# A static optimize-backup in a distroless image that runs as nonroot.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY *.go ./
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.sidecarVersion=${VERSION}" -o /optimize-backup .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /optimize-backup /optimize-backup
EXPOSE 8092
USER nonroot:nonroot
ENTRYPOINT ["/optimize-backup"]
