# transferd: one small, non-root image for the API, the worker, migrations and the audit.
# Built with -tags nodev: the image carries no embedded Temporal server or Web UI (`transferd dev`
# is for one machine; deployments run a real Temporal server, as docker-compose.yml does).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -tags nodev -ldflags='-s -w' -o /out/transferd ./cmd/transferd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/transferd /usr/local/bin/transferd
USER nonroot:nonroot
# 8080: the API. 9090: the worker's /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/transferd"]
CMD ["server"]
